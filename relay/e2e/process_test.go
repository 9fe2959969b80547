package e2e

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
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
		args := []string{"build", "-o", b.path}
		if os.Getenv("RELAY_E2E_RACE") != "" && !strings.HasPrefix(pkg, "github.com/nats-io/") {
			args = append(args, "-race")
		}
		cmd := exec.Command("go", append(args, pkg)...)
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

// freePort returns a loopback port that was free a moment ago, for a
// process the test starts to listen on. It is taken below the kernel's
// ephemeral range (32768 and up by default), so an outgoing connection of
// this busy test cannot take it before that process binds it.
func freePort(t *testing.T) int {
	t.Helper()
	for range 1000 {
		port := 20000 + rand.IntN(12000)
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		ln.Close()
		return port
	}
	t.Fatal("no free loopback port between 20000 and 32000")
	return 0
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

// waitHTTP waits until url answers 200, failing at once if p exits.
func waitHTTP(t *testing.T, url string, within time.Duration, p *proc) {
	t.Helper()
	waitAnswer(t, url, http.StatusOK, within, p)
}

// waitAnswer waits until url answers status; p, when not nil, is the
// process serving it, and the test fails at once if it exits.
func waitAnswer(t *testing.T, url string, status int, within time.Duration, p *proc) {
	t.Helper()
	deadline := time.Now().Add(within)
	var exited <-chan struct{}
	if p != nil {
		exited = p.done
	}
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == status {
				return
			}
		}
		select {
		case <-exited:
			t.Fatalf("process exited while waiting for %s:\n%s", url, p.out)
		default:
		}
		if time.Now().After(deadline) {
			if p != nil {
				t.Fatalf("%s did not answer %d within %s:\n%s", url, status, within, p.out)
			}
			t.Fatalf("%s did not answer %d within %s", url, status, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sink is a receiver that verifies signatures and counts deliveries per id.
type sink struct {
	srv *httptest.Server
	// fail, when set, decides to answer 500 to the attempt-th request for
	// id; a failed request is not a delivery.
	fail func(id string, attempt int) bool

	mu    sync.Mutex
	got   map[string]int
	tries map[string]int
	bad   int
}

func newSink(t *testing.T) *sink {
	s := &sink{got: map[string]int{}, tries: map[string]int{}}
	s.srv = httptest.NewServer(s)
	t.Cleanup(s.srv.Close)
	return s
}

// newSinkAt is a sink on 127.0.0.1:port, not yet listening: until start
// is called, deliveries to it are refused.
func newSinkAt(t *testing.T, port int) (s *sink, start func()) {
	s = &sink{got: map[string]int{}, tries: map[string]int{}}
	s.srv = httptest.NewUnstartedServer(s)
	t.Cleanup(s.srv.Close)
	return s, func() {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatalf("sink listen: %v", err)
		}
		s.srv.Listener.Close()
		s.srv.Listener = ln
		s.srv.Start()
	}
}

func (s *sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	err := webhook.VerifyRequest(secret, r.Header, body, time.Now())
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.bad++
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	id := r.Header.Get("webhook-id")
	if s.fail != nil {
		s.tries[id]++
		if s.fail(id, s.tries[id]) {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
	}
	s.got[id]++
}

// snapshot copies the deliveries so far: id -> times received.
func (s *sink) snapshot() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.got)
}

// received is how many distinct activities arrived.
func (s *sink) received() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.got)
}

func (s *sink) badSignatures() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bad
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
