package e2e

import (
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// ingestStatus posts one activity with token and returns the answer's status.
func ingestStatus(t *testing.T, ingest, token string) int {
	t.Helper()
	req, _ := http.NewRequest("POST", ingest+"/v1/activities", strings.NewReader(`{"type":"email","action":"open","contact":{"email":"a@example.com"}}`))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestReloadBySIGHUPAndCLI rotates the ingest token of a relay serve
// process with SIGHUP, then with relay reload, which also shows an invalid
// file's errors.
func TestReloadBySIGHUPAndCLI(t *testing.T) {
	bin := binary(t, "./cmd/relay")
	s := newSink(t)
	dir := t.TempDir()
	path, ingest, admin := writeRelayConfig(t, dir, relayOpts{nats: "embedded", sink: s.srv.URL})
	p := start(t, bin, "serve", "-c", path)
	waitHTTP(t, admin+"/readyz", 30*time.Second, p)
	original, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rewrite := func(token, extra string) {
		t.Helper()
		cfg := strings.Replace(string(original), `tokens: ["`+ingestToken+`"]`, `tokens: ["`+token+`"]`, 1) + extra
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	rewrite("rotated-by-hup", "")
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for ingestStatus(t, ingest, "rotated-by-hup") != http.StatusAccepted {
		if time.Now().After(deadline) {
			t.Fatalf("the token written before SIGHUP is not accepted after 30s:\n%s", p.out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := ingestStatus(t, ingest, ingestToken); got != http.StatusUnauthorized {
		t.Errorf("the old token after SIGHUP: %d", got)
	}

	rewrite("never-applied", "    colour: blue\n")
	out, err := exec.Command(bin, "reload", "-c", path).CombinedOutput()
	if err == nil || !strings.Contains(string(out), path+":") || !strings.Contains(string(out), `destinations[0].colour: unknown key "colour"`) {
		t.Errorf("relay reload of an invalid file: %v\n%s", err, out)
	}
	if got := ingestStatus(t, ingest, "rotated-by-hup"); got != http.StatusAccepted {
		t.Errorf("after an invalid reload the current token: %d", got)
	}

	rewrite("rotated-by-cli", "")
	out, err = exec.Command(bin, "reload", "-c", path).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "reloaded: added none, changed none, removed none") {
		t.Fatalf("relay reload: %v\n%s", err, out)
	}
	if got := ingestStatus(t, ingest, "rotated-by-cli"); got != http.StatusAccepted {
		t.Errorf("the token applied by relay reload: %d", got)
	}
	p.stop(t)
	for _, want := range []string{"config reloaded", "reload refused: the config is invalid", "unknown key"} {
		if !strings.Contains(p.out.String(), want) {
			t.Errorf("the log lacks %q", want)
		}
	}
	if strings.Contains(p.out.String(), "rotated-by") || strings.Contains(p.out.String(), "never-applied") {
		t.Errorf("a token appears in the log")
	}
}
