package relay_test

import (
	"net/http"
	"testing"
)

// TestIngestReadyz: the ingest port answers GET /readyz as the admin port
// does, without a token, so a load balancer in front of ingest can ask it.
func TestIngestReadyz(t *testing.T) {
	n := startRelay(t, baseYAML(t.TempDir())+"destinations: []\n")
	for _, base := range []string{n.ingest, n.admin} {
		status, body := doJSON(t, "GET", base+"/readyz", "", "")
		if status != http.StatusOK || body["status"] != "ready" {
			t.Errorf("GET %s/readyz: %d %v, want 200 ready", base, status, body)
		}
	}
}
