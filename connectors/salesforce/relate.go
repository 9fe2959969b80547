package salesforce

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/relaydev/relay/config"
	"github.com/relaydev/relay/relay/sink"
)

// relater finds the Contact or Lead an activity is about, and remembers
// what it found.
type relater struct {
	field, match string
	value        source
	objects      []string
	deadLetter   bool // nobody matched: a dead letter rather than an unset lookup
	ttl          time.Duration

	mu    sync.Mutex
	cache map[string]cached // folded value -> what the last query said
}

type cached struct {
	id    string // "" when nobody matched
	until time.Time
}

// maxCache bounds the cache; past it, it starts again empty.
const maxCache = 100_000

// maxQueryLen bounds one query's URL-encoded IN list, well below the 16 KiB
// Salesforce accepts for a request line; a batch of 200 emails fits in one.
const maxQueryLen = 12_000

func newRelater(r config.Relate) (*relater, error) {
	src, err := compileSource(r.Value)
	if err != nil {
		return nil, fmt.Errorf("relate.value: %w", err)
	}
	return &relater{
		field: r.Field, match: r.Match, value: src, objects: r.Objects,
		deadLetter: r.OnMissing == "dead_letter", ttl: time.Duration(r.CacheTTL),
		cache: map[string]cached{},
	}, nil
}

// key is an activity's match value, folded as Salesforce compares text
// (case-insensitively); "" when it has none.
func (r *relater) key(in *input) (string, string, error) {
	v, ok, err := r.value.value(in)
	if err != nil || !ok {
		return "", "", err
	}
	s := fmt.Sprint(v)
	return strings.ToLower(s), s, nil
}

// cachedIDs returns what the cache knows about keys, and the keys it
// does not.
func (r *relater) cachedIDs(keys []string, now time.Time) (map[string]string, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	found := map[string]string{}
	var missing []string
	for _, k := range keys {
		if c, ok := r.cache[k]; ok && now.Before(c.until) {
			found[k] = c.id
			continue
		}
		missing = append(missing, k)
	}
	return found, missing
}

func (r *relater) remember(found map[string]string, keys []string, now time.Time) {
	if r.ttl <= 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.cache)+len(keys) > maxCache {
		r.cache = map[string]cached{}
	}
	for _, k := range keys {
		r.cache[k] = cached{id: found[k], until: now.Add(r.ttl)}
	}
}

// resolve maps each key (folded value; original spelling in values) to the
// id of the first object's matching record, "" when none matches: the cache
// first, then one query per object for what is still unknown.
func (s *Sink) resolve(ctx context.Context, values map[string]string) (map[string]string, error) {
	r, now := s.relate, time.Now()
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	slices.Sort(keys) // the same batch asks the same query
	found, missing := r.cachedIDs(keys, now)
	asked := missing
	for _, object := range r.objects {
		if len(missing) == 0 {
			break
		}
		ids, err := s.lookup(ctx, object, missing, values)
		if err != nil {
			return nil, err
		}
		var still []string
		for _, k := range missing {
			if id, ok := ids[k]; ok {
				found[k] = id
			} else {
				still = append(still, k)
			}
		}
		missing = still
	}
	r.remember(found, asked, now)
	return found, nil
}

// lookup queries one object for records whose match field is one of keys,
// in as few queries as the URL length allows (one for a batch of 200).
func (s *Sink) lookup(ctx context.Context, object string, keys []string, values map[string]string) (map[string]string, error) {
	ids := map[string]string{}
	for len(keys) > 0 {
		q, n := s.soql(object, keys, values)
		if err := s.query(ctx, q, ids); err != nil {
			return nil, fmt.Errorf("look up %s: %w", object, err)
		}
		keys = keys[n:]
	}
	return ids, nil
}

// soql is `SELECT Id, <match> FROM <object> WHERE <match> IN (…)` over as
// many of keys as fit, and how many it took.
func (s *Sink) soql(object string, keys []string, values map[string]string) (string, int) {
	m := s.relate.match
	var b strings.Builder
	fmt.Fprintf(&b, "SELECT Id, %s FROM %s WHERE %s IN (", m, object, m)
	n := 0
	for _, k := range keys {
		lit := soqlString(values[k])
		if n > 0 && b.Len()+len(url.QueryEscape(lit)) > maxQueryLen {
			break
		}
		if n > 0 {
			b.WriteString(", ")
		}
		b.WriteString(lit)
		n++
	}
	b.WriteString(")")
	return b.String(), n
}

// soqlString quotes a SOQL string literal.
func soqlString(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `'`, `\'`, "\n", `\n`, "\r", `\r`, "\t", `\t`)
	return "'" + r.Replace(s) + "'"
}

type queryResult struct {
	TotalSize      int               `json:"totalSize"`
	Done           bool              `json:"done"`
	NextRecordsURL string            `json:"nextRecordsUrl"`
	Records        []json.RawMessage `json:"records"`
}

// query runs q, following nextRecordsUrl, and adds each record's Id under
// its folded match value (the smallest Id when several match).
func (s *Sink) query(ctx context.Context, q string, ids map[string]string) error {
	path := fmt.Sprintf("/services/data/%s/query?q=%s", s.version, url.QueryEscape(q))
	for path != "" {
		var res queryResult
		if err := s.getJSON(ctx, path, &res); err != nil {
			return err
		}
		for _, raw := range res.Records {
			var rec map[string]any
			if err := json.Unmarshal(raw, &rec); err != nil {
				return &sink.DeliveryError{Kind: sink.Retry, Status: http.StatusOK, Err: fmt.Errorf("unreadable record: %w", err)}
			}
			id, _ := rec["Id"].(string)
			v, ok := rec[s.relate.match]
			if id == "" || !ok || v == nil {
				continue
			}
			k := strings.ToLower(fmt.Sprint(v))
			if old, seen := ids[k]; !seen || id < old {
				ids[k] = id
			}
		}
		path = ""
		if !res.Done {
			path = res.NextRecordsURL
		}
	}
	return nil
}

// getJSON GETs a path of the instance and decodes a 200's body into out,
// refreshing the token and trying once more on 401; other answers are
// classified like the upsert call's.
func (s *Sink) getJSON(ctx context.Context, path string, out any) error {
	return s.callJSON(ctx, request{method: http.MethodGet, path: path}, out)
}
