package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relaydev/relay/connectors/webhook"
)

const (
	ingestToken = "e2e-ingest-token"
	adminToken  = "e2e-admin-token"
	secret      = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
)

var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "relay-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var builds sync.Map // package path -> *buildResult

type buildResult struct {
	once sync.Once
	path string
	err  error
}

// binary builds a main package once per test run and returns its path.
func binary(t *testing.T, pkg string) string {
	t.Helper()
	v, _ := builds.LoadOrStore(pkg, &buildResult{})
	b := v.(*buildResult)
	b.once.Do(func() {
		b.path = filepath.Join(binDir, filepath.Base(strings.TrimSuffix(pkg, "/v2")))
		cmd := exec.Command("go", "build", "-o", b.path, pkg)
		cmd.Dir = moduleRoot(t)
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.err = fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

func moduleRoot(t *testing.T) string {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// proc is a child process this test started; only it is ever signalled.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	out  *bytes.Buffer
}

func start(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(name, args...), done: make(chan struct{}), out: &bytes.Buffer{}}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.kill() })
	return p
}

func (p *proc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

func (p *proc) stop(t *testing.T) {
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Errorf("process %d did not stop on SIGINT", p.cmd.Process.Pid)
		p.kill()
	}
}

// waitHTTP waits until url answers 200.
func waitHTTP(t *testing.T, url string, within time.Duration, p *proc) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		select {
		case <-p.done:
			t.Fatalf("process exited while waiting for %s:\n%s", url, p.out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after %s:\n%s", url, within, p.out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sink is a receiver that verifies signatures and counts deliveries per id.
type sink struct {
	srv *httptest.Server
	mu  sync.Mutex
	got map[string]int
	bad int
}

func newSink(t *testing.T) *sink {
	s := &sink{got: map[string]int{}}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		defer s.mu.Unlock()
		if err := webhook.VerifyRequest(secret, r.Header, body, time.Now()); err != nil {
			s.bad++
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		s.got[r.Header.Get("webhook-id")]++
	}))
	t.Cleanup(s.srv.Close)
	return s
}

// account compares what ingest accepted with what arrived.
func (s *sink) account(accepted []string) (missing []string, dups int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range accepted {
		switch c := s.got[id]; {
		case c == 0:
			missing = append(missing, id)
		case c > 1:
			dups += c - 1
		}
	}
	return missing, dups
}

// producer posts batches until told to stop, keeping the ids of every
// batch ingest answered 202 to.
type producer struct {
	url      string
	mu       sync.Mutex
	accepted []string
	refused  int
}

func (p *producer) postBatch(ctx context.Context, seq, size int) error {
	items := make([]map[string]any, size)
	for i := range items {
		items[i] = map[string]any{
			"id": fmt.Sprintf("a-%d-%d", seq, i), "type": "email", "action": "open",
			"contact": map[string]any{"email": fmt.Sprintf("p%d@example.com", i)},
		}
	}
	body, _ := json.Marshal(items)
	req, _ := http.NewRequestWithContext(ctx, "POST", p.url, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+ingestToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		p.mu.Lock()
		p.refused++
		p.mu.Unlock()
		return err
	}
	defer resp.Body.Close()
	var out struct {
		IDs []string `json:"ids"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&out)
	p.mu.Lock()
	defer p.mu.Unlock()
	if resp.StatusCode == http.StatusAccepted {
		p.accepted = append(p.accepted, out.IDs...)
		return nil
	}
	p.refused++
	// A 503 lists what was persisted: those are accepted too.
	p.accepted = append(p.accepted, out.IDs...)
	return fmt.Errorf("ingest answered %d", resp.StatusCode)
}

func (p *producer) ids() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.accepted...)
}

func waitAccounted(t *testing.T, s *sink, accepted []string, within time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		missing, dups := s.account(accepted)
		if len(missing) == 0 {
			return dups
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d accepted activities never delivered, e.g. %v", len(missing), len(accepted), missing[:min(5, len(missing))])
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func dialable(port int) bool {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 200*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func mkdir(t *testing.T, dir string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}
