package relay_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relaydev/relay/config"
	"github.com/relaydev/relay/connectors/webhook"
	"github.com/relaydev/relay/relay"
	"github.com/relaydev/relay/relay/sink"
)

// configFile is a relay.yaml on disk that a test rewrites and reloads.
type configFile string

func newConfigFile(t *testing.T, yaml string) configFile {
	t.Helper()
	f := configFile(filepath.Join(t.TempDir(), "relay.yaml"))
	f.write(t, yaml)
	return f
}

func (f configFile) write(t *testing.T, yaml string) {
	t.Helper()
	if err := os.WriteFile(string(f), []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
}

// startFromFile runs Relay from a config file, making connectors the way
// relay serve does, so a reload can make new ones.
func startFromFile(t *testing.T, f configFile) *node {
	t.Helper()
	cfg, err := relay.LoadConfig(string(f))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	newSink := func(d config.Destination) (sink.Connector, error) {
		s, err := webhook.New(d, webhook.Options{})
		if err != nil {
			return sink.Connector{}, err
		}
		return sink.Connector{Sink: s, Close: s.Close}, nil
	}
	r, err := relay.New(cfg, relay.Options{Logger: testLogger(t), NewSink: newSink})
	if err != nil {
		t.Fatalf("relay.New: %v", err)
	}
	return runNode(t, r)
}

// reload asks for POST /v1/reload with the admin token given.
func (n *node) reload(t *testing.T, token string) (int, map[string]any) {
	t.Helper()
	return doJSON(t, "POST", n.admin+"/v1/reload", token, "")
}

// metric reads one series of /metrics.
func (n *node) metric(t *testing.T, token, name string) float64 {
	t.Helper()
	req, _ := http.NewRequest("GET", n.admin+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + name + ` (\S+)$`).FindSubmatch(body)
	if m == nil {
		t.Fatalf("no %s in /metrics", name)
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func tokensYAML(dataDir, ingest, admin string) string {
	return fmt.Sprintf(`nats: {url: embedded, data_dir: %q}
ingest: {listen: "127.0.0.1:0", tokens: [%q]}
admin: {listen: "127.0.0.1:0", token: %q}
`, dataDir, ingest, admin)
}

// TestReloadRotatesTokens: the old ingest and admin tokens are refused and
// the new ones accepted after a reload, without a restart; an invalid file
// changes nothing and every problem comes back with its position.
func TestReloadRotatesTokens(t *testing.T) {
	dir := t.TempDir()
	rcv := newReceiver(t, secretA)
	dest := "destinations:\n" + destYAML("hook", rcv.srv.URL, secretA, "")
	f := newConfigFile(t, tokensYAML(dir, "old-ingest", "old-admin")+dest)
	n := startFromFile(t, f)
	event := `{"type":"email","action":"open","contact":{"email":"a@example.com"}}`
	if status, _ := n.post(event, "old-ingest"); status != http.StatusAccepted {
		t.Fatalf("before the reload the old token: %d", status)
	}
	startedAt := n.metric(t, "old-admin", "relay_config_last_reload_success_timestamp_seconds")

	f.write(t, tokensYAML(dir, "new-ingest", "new-admin")+dest)
	status, out := n.reload(t, "old-admin")
	if status != http.StatusOK {
		t.Fatalf("reload: %d %v", status, out)
	}
	tests := []struct {
		name, method, url, token string
		want                     int
	}{
		{"old ingest token", "POST", n.ingest + "/v1/activities", "old-ingest", http.StatusUnauthorized},
		{"new ingest token", "POST", n.ingest + "/v1/activities", "new-ingest", http.StatusAccepted},
		{"old admin token", "GET", n.admin + "/v1/destinations", "old-admin", http.StatusUnauthorized},
		{"new admin token", "GET", n.admin + "/v1/destinations", "new-admin", http.StatusOK},
		{"reload with the old admin token", "POST", n.admin + "/v1/reload", "old-admin", http.StatusUnauthorized},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if status, out := doJSON(t, tc.method, tc.url, tc.token, event); status != tc.want {
				t.Errorf("status %d (%v), want %d", status, out, tc.want)
			}
		})
	}
	if ok := n.metric(t, "new-admin", "relay_config_last_reload_successful"); ok != 1 {
		t.Errorf("relay_config_last_reload_successful = %v after a good reload", ok)
	}
	if at := n.metric(t, "new-admin", "relay_config_last_reload_success_timestamp_seconds"); at < startedAt {
		t.Errorf("success timestamp %v went back from %v", at, startedAt)
	}

	// An invalid file: 422 with every problem, and nothing changes.
	f.write(t, tokensYAML(dir, "newer-ingest", "newer-admin")+dest+"    include: [email.teleport]\n    colour: blue\n")
	status, out = n.reload(t, "new-admin")
	if status != http.StatusUnprocessableEntity {
		t.Fatalf("invalid reload: %d %v", status, out)
	}
	details, _ := out["details"].([]any)
	var lines []string
	for _, d := range details {
		lines = append(lines, d.(map[string]any)["message"].(string))
	}
	want := []string{
		string(f) + `:13:5: destinations[0].colour: unknown key "colour"`,
		string(f) + `:12:15: destinations[0].include[0]: pattern "email.teleport" matches no known activity`,
	}
	for _, w := range want {
		found := false
		for _, l := range lines {
			found = found || strings.HasPrefix(l, w)
		}
		if !found {
			t.Errorf("422 details %q lack %q", lines, w)
		}
	}
	if status, _ := n.post(event, "new-ingest"); status != http.StatusAccepted {
		t.Errorf("after an invalid reload the current ingest token: %d", status)
	}
	if status, _ := n.post(event, "newer-ingest"); status != http.StatusUnauthorized {
		t.Errorf("after an invalid reload the invalid file's token: %d", status)
	}
	if ok := n.metric(t, "new-admin", "relay_config_last_reload_successful"); ok != 0 {
		t.Errorf("relay_config_last_reload_successful = %v after an invalid reload", ok)
	}
	waitFor(t, 20*time.Second, "the 3 accepted activities delivered", func() bool { return len(rcv.delivered()) == 3 })
}

// TestReloadUnderLoad reloads while 10,000 activities flow: one
// destination is added, one narrowed, one removed, one left alone; an
// invalid reload first changes nothing.
func TestReloadUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 activities")
	}
	const total, batch = 10000, 100
	dir := t.TempDir()
	steady, narrowed, removed, added := newReceiver(t, secretA), newReceiver(t, secretA), newReceiver(t, secretA), newReceiver(t, secretA)
	head := tokensYAML(dir, ingestToken, adminToken) + "destinations:\n"
	before := head +
		destYAML("steady", steady.srv.URL, secretA, "    include: ['email.*', 'sms.*']") +
		destYAML("narrowed", narrowed.srv.URL, secretA, "    include: ['email.*', 'sms.*']\n    max_in_flight: 16") +
		destYAML("removed", removed.srv.URL, secretA, "    max_in_flight: 16")
	after := head +
		destYAML("steady", steady.srv.URL, secretA, "    include: ['email.*', 'sms.*']") +
		destYAML("narrowed", narrowed.srv.URL, secretA, "    include: ['email.open']\n    max_in_flight: 16") +
		destYAML("added", added.srv.URL, secretA, "    include: ['sms.*']")
	f := newConfigFile(t, before)
	n := startFromFile(t, f)

	names := []string{"email.open", "email.click", "sms.delivered", "sms.clicked"}
	var (
		mu        sync.Mutex
		nameOf    = map[string]string{}
		afterIDs  = map[string]bool{} // sent in a request begun once the reload had answered
		reloaded  atomic.Bool
		sendErr   = make(chan error, 1)
		progress  = make(chan int, total/batch)
		deadline  = time.Now().Add(2 * time.Minute)
		sendCount atomic.Int64
	)
	go func() { // the producer
		defer close(progress)
		for b := 0; b < total/batch; b++ {
			if time.Now().After(deadline) {
				sendErr <- fmt.Errorf("producer out of time after %d batches", b)
				return
			}
			isAfter := reloaded.Load()
			items := make([]map[string]any, batch)
			for i := range items {
				k := b*batch + i
				typ, action, _ := strings.Cut(names[k%len(names)], ".")
				items[i] = map[string]any{"type": typ, "action": action, "id": fmt.Sprintf("a%05d", k), "contact": map[string]any{"email": "a@example.com"}}
			}
			body, _ := json.Marshal(items)
			req, _ := http.NewRequest("POST", n.ingest+"/v1/activities", strings.NewReader(string(body)))
			req.Header.Set("Authorization", "Bearer "+ingestToken)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				sendErr <- err
				return
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusAccepted {
				sendErr <- fmt.Errorf("batch %d: ingest answered %d", b, resp.StatusCode)
				return
			}
			mu.Lock()
			for i, it := range items {
				id := it["id"].(string)
				nameOf[id] = names[(b*batch+i)%len(names)]
				afterIDs[id] = isAfter
			}
			mu.Unlock()
			sendCount.Add(batch)
			progress <- b
		}
	}()
	awaitBatch := func(want int) {
		t.Helper()
		for b := range progress {
			if b >= want {
				return
			}
		}
		t.Fatalf("the producer stopped before batch %d: %v", want, <-sendErr)
	}

	awaitBatch(20)
	f.write(t, after+"    include: ['email.teleport']\n")
	if status, out := n.reload(t, adminToken); status != http.StatusUnprocessableEntity {
		t.Fatalf("invalid reload: %d %v", status, out)
	}
	if got := destinationNames(n); got != "narrowed removed steady" {
		t.Fatalf("an invalid reload changed the destinations: %s", got)
	}

	awaitBatch(30)
	f.write(t, after)
	status, out := n.reload(t, adminToken)
	if status != http.StatusOK {
		t.Fatalf("reload: %d %v", status, out)
	}
	reloaded.Store(true)
	t.Logf("reloaded with %d activities accepted: %v", sendCount.Load(), out)
	if fmt.Sprint(out["added"], out["changed"], out["removed"]) != "[added] [narrowed] [removed]" {
		t.Errorf("reload answer %v", out)
	}
	if got := destinationNames(n); got != "added narrowed steady" {
		t.Errorf("destinations after the reload: %s", got)
	}
	for range progress {
	}
	select {
	case err := <-sendErr:
		t.Fatal(err)
	default:
	}

	mu.Lock()
	defer mu.Unlock()
	var wantNarrowed, wantAdded []string
	for id, name := range nameOf {
		if name == "email.open" {
			wantNarrowed = append(wantNarrowed, id)
		}
		if afterIDs[id] && strings.HasPrefix(name, "sms.") {
			wantAdded = append(wantAdded, id)
		}
	}
	if len(wantAdded) == 0 {
		t.Fatal("no activity was sent after the reload: the test proves nothing")
	}
	has := func(r *receiver, ids []string) func() bool {
		return func() bool {
			got := r.delivered()
			for _, id := range ids {
				if got[id] == 0 {
					return false
				}
			}
			return true
		}
	}
	waitFor(t, 3*time.Minute, "steady to get all 10,000", func() bool { return len(steady.delivered()) == total })
	waitFor(t, time.Minute, "narrowed to get every email.open", has(narrowed, wantNarrowed))
	waitFor(t, time.Minute, "added to get every sms activity sent after the reload", has(added, wantAdded))

	dups := func(r *receiver) int {
		n := 0
		for _, c := range r.delivered() {
			n += c - 1
		}
		return n
	}
	if d := dups(steady); d != 0 {
		t.Errorf("steady, untouched by the reload, got %d duplicates", d)
	}
	for name, r := range map[string]*receiver{"narrowed": narrowed, "removed": removed, "added": added} {
		if d := dups(r); d > 16 {
			t.Errorf("%s got %d duplicates: more than its attempts in flight", name, d)
		}
	}
	for id := range narrowed.delivered() {
		if afterIDs[id] && nameOf[id] != "email.open" {
			t.Errorf("narrowed got %s (%s), sent after it was narrowed to email.open", id, nameOf[id])
		}
	}
	for id := range removed.delivered() {
		if afterIDs[id] {
			t.Errorf("removed got %s, sent after it was removed", id)
		}
	}
	for id := range added.delivered() {
		if !strings.HasPrefix(nameOf[id], "sms.") {
			t.Errorf("added got %s (%s), outside its include", id, nameOf[id])
		}
	}
	for _, r := range []*receiver{steady, narrowed, removed, added} {
		if bad := r.badSignatures(); len(bad) > 0 {
			t.Errorf("bad signatures: %v", bad[:min(3, len(bad))])
		}
	}
	if status, out := n.adminDo("GET", "/v1/deadletters", ""); status != 200 || len(out["deadletters"].([]any)) != 0 {
		t.Errorf("dead letters: %d %v", status, out)
	}
	t.Logf("delivered: steady %d, narrowed %d, removed %d, added %d (of %d after the reload); duplicates: narrowed %d, removed %d, added %d",
		len(steady.delivered()), len(narrowed.delivered()), len(removed.delivered()), len(added.delivered()), len(wantAdded),
		dups(narrowed), dups(removed), dups(added))
}

func destinationNames(n *node) string {
	var names []string
	for name := range n.destinations() {
		names = append(names, name)
	}
	slices.Sort(names)
	return strings.Join(names, " ")
}

// TestReloadKeepsDashboardSessions: a reload that keeps the admin token
// keeps dashboard sign-ins; one that changes it ends them.
func TestReloadKeepsDashboardSessions(t *testing.T) {
	dir := t.TempDir()
	f := newConfigFile(t, tokensYAML(dir, "ingest-1", "admin-1"))
	n := startFromFile(t, f)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.PostForm(n.admin+"/login", map[string][]string{"token": {"admin-1"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cookies := resp.Cookies()
	if resp.StatusCode != http.StatusSeeOther || len(cookies) == 0 {
		t.Fatalf("sign-in: %d, cookies %v", resp.StatusCode, cookies)
	}
	page := func() int {
		req, _ := http.NewRequest("GET", n.admin+"/", nil)
		for _, c := range cookies {
			req.AddCookie(c)
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := page(); got != http.StatusOK {
		t.Fatalf("signed in, the dashboard answers %d", got)
	}
	f.write(t, tokensYAML(dir, "ingest-2", "admin-1"))
	if status, out := n.reload(t, "admin-1"); status != http.StatusOK {
		t.Fatalf("reload: %d %v", status, out)
	}
	if got := page(); got != http.StatusOK {
		t.Errorf("after a reload keeping the admin token the dashboard answers %d", got)
	}
	f.write(t, tokensYAML(dir, "ingest-2", "admin-2"))
	if status, out := n.reload(t, "admin-1"); status != http.StatusOK {
		t.Fatalf("reload: %d %v", status, out)
	}
	if got := page(); got == http.StatusOK {
		t.Errorf("after the admin token changed the old sign-in still works")
	}
}
