// Package e2e holds Relay's process-level tests: the relay binary and a
// nats-server started as separate processes, killed and restarted.
//
// Every scenario ends with the same accounting: the ids ingest acknowledged
// equal the ids each destination received plus its dead letters.
// RELAY_E2E_RACE=1 builds the relay binary with the race detector; with
// GORACE=halt_on_error=1 a race ends the process and fails the scenario.
package e2e
