package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
)

// catalogEntry is one activity `relay activities --json` lists.
type catalogEntry struct {
	Name    string   `json:"name"`
	Type    string   `json:"type"`
	Action  string   `json:"action"`
	Aliases []string `json:"aliases"`
}

func catalog(t *testing.T, bin string) []catalogEntry {
	t.Helper()
	out, err := exec.Command(bin, "activities", "--json").Output()
	if err != nil {
		t.Fatalf("relay activities --json: %v", err)
	}
	var entries []catalogEntry
	if err := json.Unmarshal(out, &entries); err != nil || len(entries) == 0 {
		t.Fatalf("relay activities --json: %v (%d entries)", err, len(entries))
	}
	return entries
}

// gen writes random JSON text the way producers might: number literals
// beyond float64 and tiny ones, long decimals, unicode literal and
// escaped, deep nesting, empty objects and arrays, whitespace.
type gen struct{ r *rand.Rand }

var numberLiterals = []string{
	"12345678901234567891", "9007199254740993", "-9007199254740993", "1e-999", "1.50", "-0", "1E+400",
	"-1E+400", "0", "-0.0", "0.1", "1e-7", "123.456e+78", "2.2250738585072011e-308", "4.9e-324",
	"1.7976931348623157e308", "1.7976931348623159e308", "100000000000000000000000000000001",
	"3.14159265358979323846264338327950288419716939937510582097494459230781640628620899",
	"0.000000000000000000000000000000000000000000000000000000000001", "1e0", "1E-0", "-1.0e+00",
}

func (g gen) number() string {
	if g.r.IntN(2) == 0 {
		return numberLiterals[g.r.IntN(len(numberLiterals))]
	}
	var b strings.Builder
	if g.r.IntN(3) == 0 {
		b.WriteByte('-')
	}
	digits := 1 + g.r.IntN(60)
	b.WriteByte(byte('1' + g.r.IntN(9)))
	for range digits - 1 {
		b.WriteByte(byte('0' + g.r.IntN(10)))
	}
	if g.r.IntN(2) == 0 {
		b.WriteByte('.')
		for range 1 + g.r.IntN(40) {
			b.WriteByte(byte('0' + g.r.IntN(10)))
		}
	}
	if g.r.IntN(3) == 0 {
		b.WriteString([]string{"e", "E", "e+", "E-", "e-"}[g.r.IntN(5)])
		b.WriteString(strconv.Itoa(g.r.IntN(1000)))
	}
	return b.String()
}

// codePoint is a random valid Unicode scalar value, biased to the
// troublesome ones: line separators, RTL and bidi controls, combining
// marks, astral characters, noncharacters.
func (g gen) codePoint() rune {
	ranges := [][2]rune{
		{0x20, 0x7e}, {0x00, 0x1f}, {0x7f, 0x9f}, {0xa0, 0x24f}, {0x300, 0x36f}, {0x590, 0x6ff}, {0x2028, 0x2029},
		{0x200b, 0x200f}, {0x202a, 0x202e}, {0x2066, 0x2069}, {0x4e00, 0x9fff}, {0xfdd0, 0xfdef}, {0xfeff, 0xfeff},
		{0xfff0, 0xffff}, {0x1f300, 0x1f64f}, {0x10000, 0x10ffff}, {0xe000, 0xf8ff},
	}
	rg := ranges[g.r.IntN(len(ranges))]
	return rg[0] + rune(g.r.IntN(int(rg[1]-rg[0]+1)))
}

// str is a JSON string of random characters, each written literally
// (where JSON allows) or escaped.
func (g gen) str(maxLen int) string {
	var b strings.Builder
	b.WriteByte('"')
	for range g.r.IntN(maxLen + 1) {
		c := g.codePoint()
		escape := c < 0x20 || c == '"' || c == '\\' || g.r.IntN(4) == 0
		switch {
		case !escape:
			b.WriteRune(c)
		case c == '\n' && g.r.IntN(2) == 0:
			b.WriteString(`\n`)
		case c == '"':
			b.WriteString(`\"`)
		case c == '\\':
			b.WriteString(`\\`)
		case c == '/' && g.r.IntN(2) == 0:
			b.WriteString(`\/`)
		case c > 0xffff:
			hi, lo := utf16Pair(c)
			fmt.Fprintf(&b, `\u%04x\u%04X`, hi, lo)
		default:
			fmt.Fprintf(&b, `\u%04x`, c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func utf16Pair(c rune) (rune, rune) {
	c -= 0x10000
	return 0xd800 + c>>10, 0xdc00 + c&0x3ff
}

func (g gen) space() string {
	if g.r.IntN(4) != 0 {
		return ""
	}
	return []string{" ", "\t", "\n", "\r\n", "  \n\t"}[g.r.IntN(5)]
}

// value is any JSON value at most depth levels deep.
func (g gen) value(depth int) string {
	k := g.r.IntN(10)
	if depth <= 0 {
		k = g.r.IntN(5)
	}
	switch k {
	case 0, 1:
		return g.number()
	case 2, 3:
		return g.str(12)
	case 4:
		return []string{"true", "false", "null"}[g.r.IntN(3)]
	case 5, 6:
		return g.object(depth-1, 6)
	case 7:
		return g.array(depth - 1)
	case 8:
		return []string{"{}", "[]", "{ }", "[\n]", `""`}[g.r.IntN(5)]
	default:
		return g.chain(min(depth, 64))
	}
}

func (g gen) array(depth int) string {
	n := g.r.IntN(5)
	parts := make([]string, n)
	for i := range parts {
		parts[i] = g.space() + g.value(depth) + g.space()
	}
	return "[" + strings.Join(parts, ",") + "]"
}

// object has up to n members whose names differ once unescaped.
func (g gen) object(depth, n int) string {
	seen := map[string]bool{}
	var parts []string
	for range g.r.IntN(n + 1) {
		key := g.str(8)
		var plain string
		if json.Unmarshal([]byte(key), &plain) != nil || seen[plain] {
			continue
		}
		seen[plain] = true
		parts = append(parts, g.space()+key+g.space()+":"+g.space()+g.value(depth)+g.space())
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// chain nests arrays and objects depth levels deep around a leaf.
func (g gen) chain(depth int) string {
	var open, closing strings.Builder
	for i := range depth {
		if g.r.IntN(2) == 0 {
			open.WriteString("[")
			closing.WriteString("]")
		} else {
			fmt.Fprintf(&open, `{"d%d":`, i)
			closing.WriteString("}")
		}
	}
	c := closing.String()
	var rev strings.Builder
	for i := len(c) - 1; i >= 0; i-- {
		rev.WriteByte(c[i])
	}
	return open.String() + g.number() + rev.String()
}

// postBatch posts items as a batch and returns the answer's status, body,
// ids and the indexes its details name.
func postBatch(t *testing.T, client *http.Client, ingest string, items []string, sep string) (int, []byte, []string, []int) {
	t.Helper()
	body := []byte("[" + strings.Join(items, sep) + "]")
	if !utf8.Valid(body) {
		t.Fatalf("generated invalid UTF-8")
	}
	req, _ := http.NewRequest("POST", ingest+"/v1/activities", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+ingestToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("posting a batch: %v", err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var out struct {
		IDs     []string `json:"ids"`
		Details []struct {
			Index *int `json:"index"`
		} `json:"details"`
	}
	_ = json.Unmarshal(answer, &out)
	var refused []int
	for _, d := range out.Details {
		if d.Index != nil {
			refused = append(refused, *d.Index)
		}
	}
	return resp.StatusCode, answer, out.IDs, refused
}

// withoutOverflows returns the indexes of the items to send again when
// every refused one holds a number literal beyond float64's range; nil
// when any other was refused. Refused items are no longer expected.
func withoutOverflows(items []string, refused []int, want map[string]sent, ids []string) []int {
	if len(refused) == 0 {
		return nil
	}
	drop := map[int]bool{}
	for _, i := range refused {
		if i < 0 || i >= len(items) || !overflows(want[ids[i]].contact+" "+want[ids[i]].attributes) {
			return nil
		}
		drop[i] = true
	}
	keep := []int{}
	for i := range items {
		if !drop[i] {
			keep = append(keep, i)
		} else {
			delete(want, ids[i])
		}
	}
	return keep
}

// overflows reports whether JSON text holds a number literal beyond
// float64's range (a tiny one like 1e-999 is not: it is within range).
func overflows(text string) bool {
	dec := jsontext.NewDecoder(strings.NewReader(text))
	for {
		tok, err := dec.ReadToken()
		if err != nil {
			return false
		}
		if tok.Kind() == '0' {
			if _, err := strconv.ParseFloat(tok.String(), 64); err != nil {
				return true
			}
		}
	}
}

// custom is a random custom activity name (ingest.allow_custom): one or
// two parts of a-z, 0-9, "_" and "-", up to 64 bytes each.
func (g gen) custom() catalogEntry {
	const chars = "abcdefghijklmnopqrstuvwxyz0123456789_-"
	part := func() string {
		n := 2 + g.r.IntN(63)
		if g.r.IntN(4) == 0 {
			n = 64
		}
		b := []byte("zz") // no catalog activity starts so
		for len(b) < n {
			b = append(b, chars[g.r.IntN(len(chars))])
		}
		return string(b)
	}
	e := catalogEntry{Type: part()}
	e.Name = e.Type
	if g.r.IntN(4) > 0 {
		e.Action = part()
		e.Name += "." + e.Action
	}
	return e
}

// sent is what a producer sent for one activity: its contact and
// attributes text ("" when absent or null).
type sent struct {
	name                string
	contact, attributes string
	occurred            time.Time
}

// activityJSON is one random activity naming e, and what it sent.
func (g gen) activity(id string, e catalogEntry) (string, sent) {
	s := sent{name: e.Name}
	members := []string{`"id":"` + id + `"`}
	switch k := g.r.IntN(4); {
	case k == 0 && len(e.Aliases) > 0:
		members = append(members, `"activity":`+mustJSON(e.Aliases[g.r.IntN(len(e.Aliases))]))
	case k == 1:
		members = append(members, `"name":"`+e.Name+`"`)
	default:
		members = append(members, `"type":"`+e.Type+`"`)
		if e.Action != "" {
			members = append(members, `"action":"`+e.Action+`"`)
		}
	}
	if g.r.IntN(3) > 0 {
		// A UTC time in years 0002–9998, written with any offset.
		t := time.Unix(-62135596800+86400*366+g.r.Int64N(315_400_000_000), int64(g.r.IntN(1e9))).UTC()
		off := (g.r.IntN(48*60-1) - (24*60 - 1)) * 60 // RFC 3339 offsets: ±23:59 at most
		zone := t.In(time.FixedZone("", off))
		layout := time.RFC3339Nano
		if g.r.IntN(2) == 0 {
			layout = time.RFC3339
			t = t.Truncate(time.Second)
			zone = t.In(time.FixedZone("", off))
		}
		members = append(members, `"occurred_at":"`+zone.Format(layout)+`"`)
		s.occurred = t
	}
	contactKey, attrKey := "contact", "attributes"
	if g.r.IntN(4) == 0 {
		contactKey, attrKey = "identifiers", "data"
	}
	for _, f := range []struct {
		key string
		out *string
	}{{contactKey, &s.contact}, {attrKey, &s.attributes}} {
		switch g.r.IntN(8) {
		case 0: // absent
		case 1:
			members = append(members, `"`+f.key+`":null`)
		case 2:
			*f.out = []string{"{}", "{ }", "{\n}"}[g.r.IntN(3)]
			members = append(members, `"`+f.key+`":`+*f.out)
		case 3:
			*f.out = `{"deep":` + g.chain(1+g.r.IntN(64)) + `}`
			members = append(members, `"`+f.key+`":`+*f.out)
		default:
			*f.out = g.object(6, 12)
			members = append(members, `"`+f.key+`":`+g.space()+*f.out)
		}
	}
	g.r.Shuffle(len(members), func(i, j int) { members[i], members[j] = members[j], members[i] })
	return "{" + strings.Join(members, ",") + "}", s
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// member returns the raw text of the member at path in a JSON object, as
// it appears in doc.
func member(doc []byte, path ...string) (jsontext.Value, bool, error) {
	dec := jsontext.NewDecoder(bytes.NewReader(doc))
	for depth, want := range path {
		if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '{' {
			return nil, false, fmt.Errorf("%s is not an object (%v)", strings.Join(path[:depth], "."), err)
		}
		for {
			if dec.PeekKind() == '}' {
				return nil, false, nil
			}
			name, err := dec.ReadToken()
			if err != nil {
				return nil, false, err
			}
			if name.String() == want {
				break
			}
			if err := dec.SkipValue(); err != nil {
				return nil, false, err
			}
		}
	}
	v, err := dec.ReadValue()
	return bytes.Clone(v), true, err
}

// recorder is a sink that also keeps the first body received per id.
type recorder struct {
	*sink
	mu     sync.Mutex
	bodies map[string][]byte
}

func newRecorder(t *testing.T) (*recorder, string) {
	r := &recorder{sink: &sink{got: map[string]int{}, tries: map[string]int{}}, bodies: map[string][]byte{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		if id := req.Header.Get("webhook-id"); r.bodies[id] == nil {
			r.bodies[id] = body
		}
		r.mu.Unlock()
		req.Body = io.NopCloser(bytes.NewReader(body))
		r.sink.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	return r, srv.URL
}

func (r *recorder) body(id string) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.bodies[id]
}

// TestFidelityProperty sends a relay serve process seeded random
// activities in batches: every catalog activity at least once, by each
// of its names, with contact and attributes holding number literals beyond
// float64 and below its precision, long decimals, unicode (astral, line
// separators, RTL, combining marks; literal and escaped), nesting up to 64
// deep, empty objects and arrays, and whitespace. The webhook receiver gets
// data.contact and data.attributes byte for byte as sent, the instant of
// occurred_at unchanged, and every accepted id is delivered or a dead
// letter. RELAY_PROPERTY_SEED replays a run.
func TestFidelityProperty(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("RELAY_PROPERTY_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("RELAY_PROPERTY_SEED: %v", err)
		}
		seed = v
	}
	t.Logf("seed %d (RELAY_PROPERTY_SEED=%d replays this run)", seed, seed)
	g := gen{rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}

	bin := binary(t, "./cmd/relay")
	entries := catalog(t, bin)
	rec, sinkURL := newRecorder(t)
	cfg, ingest, admin := hostileConfig(t, t.TempDir(), sinkURL+"/hook", "")
	relay := start(t, bin, "serve", "-c", cfg)
	waitHTTP(t, admin+"/readyz", 60*time.Second, relay)

	const total = 2000
	want := map[string]sent{}
	var accepted []string
	client := &http.Client{Timeout: 30 * time.Second}
	for n := 0; n < total; {
		size := 1 + g.r.IntN(40)
		items := make([]string, 0, size)
		var ids []string
		for ; len(items) < size && n < total; n++ {
			e := entries[n%len(entries)] // every catalog activity, then again
			if n >= 2*len(entries) {
				e = entries[g.r.IntN(len(entries))]
				if g.r.IntN(5) == 0 {
					e = g.custom()
				}
			}
			id := fmt.Sprintf("p-%d-%d", seed%1000, n)
			item, s := g.activity(id, e)
			items = append(items, item)
			ids = append(ids, id)
			want[id] = s
		}
		sep := "," + g.space()
		for try := 0; ; try++ {
			status, answer, got, refused := postBatch(t, client, ingest, items, sep)
			if status == http.StatusAccepted && strings.Join(got, ",") == strings.Join(ids, ",") {
				accepted = append(accepted, got...)
				break
			}
			// The contract lets ingest refuse a number literal beyond
			// float64's range (never alter it): drop only items holding one.
			var keep []int
			if status == http.StatusBadRequest && try < 2 {
				keep = withoutOverflows(items, refused, want, ids)
			}
			if keep == nil {
				t.Fatalf("a batch of %d valid activities got %d: %s\nbody: %.2000s", len(ids), status, answer, "["+strings.Join(items, sep)+"]")
			}
			t.Logf("%d items refused for a number literal beyond float64's range: sending the other %d", len(items)-len(keep), len(keep))
			var items2, ids2 []string
			for _, i := range keep {
				items2, ids2 = append(items2, items[i]), append(ids2, ids[i])
			}
			items, ids = items2, ids2
			if len(items) == 0 {
				break
			}
		}
	}
	tl := settle(t, "property", rec.sink, accepted, func() []string { return deadLetters(t, admin, "sink") }, time.Minute)
	if tl.deadLettered > 0 {
		t.Errorf("%d dead letters with a receiver that takes everything", tl.deadLettered)
	}
	mismatches := 0
	for _, id := range accepted {
		body := rec.body(id)
		if body == nil {
			continue // reported by settle
		}
		s := want[id]
		for _, f := range []struct{ key, sent string }{{"contact", s.contact}, {"attributes", s.attributes}} {
			got, ok, err := member(body, "data", f.key)
			switch {
			case err != nil:
				t.Errorf("%s: reading data.%s of the delivery: %v", id, f.key, err)
			case f.sent == "" && ok:
				t.Errorf("%s: data.%s is %.200s, but none was sent", id, f.key, got)
			case f.sent != "" && !ok:
				t.Errorf("%s: data.%s missing; sent %.200s", id, f.key, f.sent)
			case f.sent != "" && string(got) != f.sent:
				t.Errorf("%s: data.%s differs from what was sent:\n sent %.300q\n got  %.300q", id, f.key, f.sent, got)
			default:
				continue
			}
			mismatches++
		}
		var d struct {
			Data struct {
				Name       string    `json:"name"`
				OccurredAt time.Time `json:"occurred_at"`
			} `json:"data"`
		}
		if err := json.Unmarshal(body, &d); err != nil {
			t.Errorf("%s: delivery body: %v", id, err)
			continue
		}
		if d.Data.Name != s.name {
			t.Errorf("%s: delivered as %q, sent as %q", id, d.Data.Name, s.name)
		}
		if !s.occurred.IsZero() && !d.Data.OccurredAt.Equal(s.occurred) {
			t.Errorf("%s: occurred_at delivered as %s, sent %s", id, d.Data.OccurredAt, s.occurred)
		}
		if mismatches > 20 {
			t.Fatalf("too many differences; seed %d", seed)
		}
	}
	t.Logf("property: %d activities in %d catalog names, seed %d: %s", len(accepted), len(entries), seed, tl)
	relay.stop(t)
}
