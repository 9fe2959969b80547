// Package e2e holds Relay's process-level tests: the relay binary and a
// nats-server started as separate processes, killed and restarted.
package e2e
