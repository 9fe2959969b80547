package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"
)

// destinationStatus reads one process's view of the sink destination.
func destinationStatus(t *testing.T, admin string) (state string, delivered int) {
	t.Helper()
	req, _ := http.NewRequest("GET", admin+"/v1/destinations", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Destinations []struct {
			State     string `json:"state"`
			Delivered int    `json:"delivered"`
		} `json:"destinations"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || len(out.Destinations) != 1 {
		t.Fatalf("destinations: %v %+v", err, out)
	}
	return out.Destinations[0].State, out.Destinations[0].Delivered
}

// TestScaleOutSharesConsumer runs two relay processes on one nats-server:
// they split each destination's deliveries, and a pause said to one holds
// the other too.
func TestScaleOutSharesConsumer(t *testing.T) {
	relayBin := binary(t, "./cmd/relay")
	s := newSink(t)
	dir := t.TempDir()
	port := freePort(t)
	natsServer(t, port, filepath.Join(dir, "nats"))
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	var ingests, admins []string
	for i := range 2 {
		sub := filepath.Join(dir, fmt.Sprint(i))
		cfg, ingest, admin := relayConfig(t, mkdir(t, sub), url, s.srv.URL)
		p := start(t, relayBin, "serve", "-c", cfg)
		waitHTTP(t, admin+"/readyz", 60*time.Second, p)
		t.Cleanup(func() { p.stop(t) })
		ingests, admins = append(ingests, ingest), append(admins, admin)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var accepted []string
	for seq := range 20 { // alternate between the two processes' ingest
		prod := &producer{url: ingests[seq%2] + "/v1/activities"}
		if err := prod.postBatch(ctx, seq, 100); err != nil {
			t.Fatal(err)
		}
		accepted = append(accepted, prod.ids()...)
	}
	dups := waitAccounted(t, s, accepted, time.Minute)
	_, d0 := destinationStatus(t, admins[0])
	_, d1 := destinationStatus(t, admins[1])
	t.Logf("scale-out: %d accepted, all delivered, %d duplicates; process 0 delivered %d, process 1 %d", len(accepted), dups, d0, d1)
	if d0 == 0 || d1 == 0 || d0+d1 < len(accepted) {
		t.Errorf("deliveries not shared: %d and %d for %d activities", d0, d1, len(accepted))
	}

	req, _ := http.NewRequest("POST", admins[0]+"/v1/destinations/sink/pause", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	deadline := time.Now().Add(10 * time.Second)
	for state, _ := destinationStatus(t, admins[1]); state != "paused"; state, _ = destinationStatus(t, admins[1]) {
		if time.Now().After(deadline) {
			t.Fatal("the other process never saw the pause")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
