package dashboard_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/relaydev/relay/connectors/salesforce/sftest"
)

// rollup is one process's minute of one destination as it is stored in
// the SERIES stream (relay/store/series.go), written here as another
// Relay process sharing the NATS would write it.
type rollup struct {
	D  string      `json:"d,omitempty"`
	M  int64       `json:"m"`
	OK int         `json:"ok,omitempty"`
	F  int         `json:"f,omitempty"`
	DL int         `json:"dl,omitempty"`
	L  map[int]int `json:"l,omitempty"`
	P  uint64      `json:"p,omitempty"`
	O  [][2]int64  `json:"o,omitempty"`
}

// latencyBucket is the roll-ups' histogram bucket of a latency.
func latencyBucket(ms float64) int { return int(math.Ceil(8 * math.Log2(ms/0.05))) }

// anHour is an hour of roll-ups ending at now: steady traffic to every
// destination, and billing down for twelve minutes half an hour ago
// (attempts failing at the 10 s timeout, three dead letters, a backlog
// building then draining, its breaker open for nine minutes).
func anHour(now time.Time) (map[string][]rollup, [2]int64) {
	base := map[string]float64{"crm-hook": 30, "analytics": 18, "billing": 45, "ledger": 6, "salesforce": 12}
	out := map[string][]rollup{}
	open := [2]int64{now.Add(-40*time.Minute + 20*time.Second).Unix(), now.Add(-31*time.Minute + 40*time.Second).Unix()}
	pending := 0
	for i := 58; i >= 1; i-- { // within the window (59 minutes and the one under way) a minute from now too
		at := now.Add(-time.Duration(i) * time.Minute)
		for name, b := range base {
			n := int(b + b/4*math.Sin(float64(i)/5+b))
			r := rollup{M: at.Unix(), OK: n, L: map[int]int{latencyBucket(38): n - n/20, latencyBucket(190): n / 20}}
			if name == "billing" {
				switch {
				case i <= 42 && i >= 31: // down: every attempt times out
					r.OK, r.F = 0, 30
					if i == 37 || i == 34 || i == 31 {
						r.F, r.DL = 29, 1
					}
					r.L = map[int]int{latencyBucket(10000): 30}
					pending += n
				case pending > 0: // back: the backlog drains
					drained := min(pending, 160)
					pending -= drained
					r.OK += drained
					r.L[latencyBucket(38)] += drained
				}
				r.P = uint64(pending)
				if i == 31 {
					r.O = [][2]int64{open}
				}
			}
			out[name] = append(out[name], r)
		}
	}
	return out, open
}

// TestChartsOfAnHour: an hour of roll-ups another Relay process wrote to
// the SERIES stream is read by the API as written, and the pages draw it:
// each row's chart and the destination's three charts show the API's
// numbers, the breaker's open period shaded. Its screenshots are
// docs/dashboard.png and docs/dashboard-destination.png.
func TestChartsOfAnHour(t *testing.T) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), MaxPayload: 8 << 20, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	ok, billing, down := newReceiver(t), newReceiver(t), newReceiver(t)
	sf := sftest.New(t, sftest.WithClient("client-id", sfSecret))
	b := newBrowser(t)
	admin, _ := startRelayOn(t, fmt.Sprintf("{url: %q}", ns.ClientURL()), ok, billing, down, sf)

	// Another process's hour, published as it publishes its minutes.
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	now := time.Now().Truncate(time.Minute)
	hour, open := anHour(now)
	byMinute := map[int64][]rollup{}
	want := map[string]int{}
	peak := uint64(0)
	for name, list := range hour {
		for _, r := range list {
			data, _ := json.Marshal(r)
			if _, err := js.Publish(ctx, "relay.series.dest."+name, data); err != nil {
				t.Fatal(err)
			}
			r.D = name
			byMinute[r.M] = append(byMinute[r.M], r)
			if name == "billing" {
				want["delivered"] += r.OK
				want["failed"] += r.F
				want["dead_letter"] += r.DL
				peak = max(peak, r.P)
			}
		}
	}
	for _, list := range byMinute {
		data, _ := json.Marshal(list)
		if _, err := js.Publish(ctx, "relay.series.all", data); err != nil {
			t.Fatal(err)
		}
	}

	// The API reads it as written.
	got := seriesSums(t, admin, "/v1/destinations/billing/series?window=1h")
	if got["delivered"] != want["delivered"] || got["failed"] != want["failed"] || got["dead_letter"] != want["dead_letter"] {
		t.Fatalf("billing's hour: %v, written %v", got, want)
	}
	_, body := call(t, http.DefaultClient, "GET", admin+"/v1/destinations/billing/series?window=1h", adminToken, "")
	var s struct {
		Points []struct {
			Pending uint64   `json:"pending"`
			P99     *float64 `json:"p99_ms"`
		} `json:"points"`
		BreakerOpen []struct {
			From  time.Time  `json:"from"`
			Until *time.Time `json:"until"`
		} `json:"breaker_open"`
	}
	if err := json.Unmarshal(body, &s); err != nil {
		t.Fatal(err)
	}
	top, slow := uint64(0), 0.0
	for _, p := range s.Points {
		top = max(top, p.Pending)
		if p.P99 != nil {
			slow = max(slow, *p.P99)
		}
	}
	if top != peak || slow < 10000 || slow > 11000 {
		t.Errorf("billing's hour: pending up to %d (written %d), p99 up to %v ms (written 10,000)", top, peak, slow)
	}
	if len(s.BreakerOpen) != 1 || s.BreakerOpen[0].From.Unix() != open[0] || s.BreakerOpen[0].Until == nil || s.BreakerOpen[0].Until.Unix() != open[1] {
		t.Errorf("billing's breaker: %s, written %v", body, open)
	}

	// The pages draw it.
	b.do("open the dashboard", chromedp.Navigate(admin+"/"), chromedp.WaitVisible(chromedp.CSS("#token")))
	b.do("sign in", chromedp.SendKeys(chromedp.CSS("#token"), adminToken), chromedp.Click(chromedp.CSS("form.form button[type=submit]")))
	b.waitJS("billing's chart shows its hour", fmt.Sprintf(`(() => { const s = document.querySelector('tr[data-name="billing"] svg.spark'); return s && s.dataset.delivered === '%d' && s.dataset.failed === '%d' && s.dataset.deadLetter === '%d' && s.querySelector('rect.breaker-band'); })()`, want["delivered"], want["failed"], want["dead_letter"]))
	b.shot("destinations-hour")
	b.do("open billing", chromedp.Click(chromedp.CSS(`tr[data-name="billing"] a.dest-link`)))
	b.waitJS("billing's charts show its hour", fmt.Sprintf(`(() => { const sum = (k) => [...document.querySelectorAll('#chart-attempts-table td[data-key="' + k + '"]')].reduce((a, td) => a + Number(td.textContent), 0); const pend = Math.max(...[...document.querySelectorAll('#chart-pending-table td[data-key="pending"]')].map((td) => Number(td.textContent.replace(/,/g, '')))); return sum('delivered') === %d && sum('failed') === %d && sum('dead_letter') === %d && pend === %d && document.querySelectorAll('#charts rect.breaker-band').length === 3; })()`, want["delivered"], want["failed"], want["dead_letter"], peak))
	b.shot("destination-hour")
	b.shotOf("destination-hour-charts", "#charts-section")
}
