package consent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/relaydev/relay/relay/store"
)

// BucketErasures keeps one record per erasure: when, by which token, a
// hash of the identifier (never the identifier) and the counts.
const BucketErasures = "RELAY_ERASURES"

// Erased counts what an erasure removed.
type Erased struct {
	Activities       int `json:"activities"`        // stored activities, replayed copies included
	Queued           int `json:"queued"`            // hand-overs, retries and replays waiting on QUEUES
	AttemptHistories int `json:"attempt_histories"` // attempt histories of activities being retried
	DeadLetters      int `json:"dead_letters"`
	LogEntries       int `json:"log_entries"` // delivery-log entries: attempts and stored records
}

// ErasureRecord is what is kept of an erasure.
type ErasureRecord struct {
	At         time.Time `json:"at"`
	By         string    `json:"by"`         // the token's role: "admin"
	Field      string    `json:"field"`      // email, phone or id
	Identifier string    `json:"identifier"` // Person.Hash
	Erased     Erased    `json:"erased"`
	TookMS     int64     `json:"took_ms"`
}

// Eraser finds a person's data in the streams and buckets and deletes it
// for good: every message by JetStream's secure delete, which overwrites
// its bytes on disk, so nothing of it is left for a compaction to remove.
type Eraser struct {
	JS jetstream.JetStream
	// LogOn: the delivery log is kept (its stream exists).
	LogOn bool
	// Replicas is nats.replicas, for the erasure records' bucket.
	Replicas int
}

// Find hands fn every stored activity of the person in ACTIVITIES
// (replayed copies included), one at a time but in no set order, and
// says how many it read.
func (e *Eraser) Find(ctx context.Context, p Person, fn func(msg jetstream.Msg)) (int, error) {
	var n atomic.Int64
	var mu sync.Mutex
	err := scan(ctx, e.JS, store.StreamActivities, nil, func(msg jetstream.Msg) {
		n.Add(1)
		if p.MatchesActivity(msg.Data()) {
			mu.Lock()
			defer mu.Unlock()
			fn(msg)
		}
	})
	return int(n.Load()), err
}

// Erase deletes every stored activity of the person, its hand-overs and
// replays, attempt histories, dead letters and delivery-log entries, then
// records the erasure under by. Activities stored while it runs may be
// left: erase again once producers no longer send the person.
func (e *Eraser) Erase(ctx context.Context, p Person, by string) (*ErasureRecord, error) {
	start := time.Now()
	rec := &ErasureRecord{At: start.UTC(), By: by, Field: p.Field, Identifier: p.Hash()}
	ids := map[string]bool{}
	var idsMu sync.Mutex
	var seqs map[uint64]bool
	var err error
	rec.Erased.Activities, seqs, err = e.deleteWhere(ctx, store.StreamActivities, nil, func(msg jetstream.Msg) bool {
		if !p.MatchesActivity(msg.Data()) {
			return false
		}
		id := activityID(msg)
		idsMu.Lock()
		ids[id] = true
		idsMu.Unlock()
		return true
	})
	if err != nil {
		return nil, err
	}
	delete(ids, "")
	if rec.Erased.Queued, _, err = e.deleteWhere(ctx, store.StreamQueues, nil, func(msg jetstream.Msg) bool {
		seq, _ := strconv.ParseUint(msg.Headers().Get(store.HeaderSeq), 10, 64)
		return ids[activityID(msg)] || seqs[seq] || p.MatchesActivity(msg.Data())
	}); err != nil {
		return nil, err
	}
	tokens := map[string]bool{}
	for id := range ids {
		tokens[store.IDToken(id)] = true
	}
	if rec.Erased.DeadLetters, _, err = e.deleteWhere(ctx, store.StreamDeadLetters, nil, func(msg jetstream.Msg) bool {
		return tokens[store.DeadLetterIDToken(msg.Subject())] || deadLetterOf(p, msg.Data())
	}); err != nil {
		return nil, err
	}
	list := slices.Sorted(maps.Keys(ids))
	if rec.Erased.AttemptHistories, err = e.deleteAttempts(ctx, list); err != nil {
		return nil, err
	}
	if rec.Erased.LogEntries, err = e.deleteLog(ctx, ids, list); err != nil {
		return nil, err
	}
	rec.TookMS = time.Since(start).Milliseconds()
	return rec, e.record(ctx, rec)
}

// filterGroup bounds the filter subjects of one scan.
const filterGroup = 64

// deleteAttempts purges the ids' attempt histories at every destination.
// The bucket refuses message deletes (a KV bucket's stream denies them),
// so its keys are purged the KV way: a history holds times, statuses and
// errors, never the person's identifiers.
func (e *Eraser) deleteAttempts(ctx context.Context, ids []string) (int, error) {
	kv, err := e.JS.KeyValue(ctx, store.BucketAttempts)
	if err != nil {
		return 0, fmt.Errorf("bucket %s: %w", store.BucketAttempts, err)
	}
	n := 0
	for group := range slices.Chunk(ids, filterGroup) {
		filters := make([]string, len(group))
		for i, id := range group {
			filters[i] = store.AttemptsFilter(id)
		}
		keys := map[string]bool{}
		err := scan(ctx, e.JS, store.StreamAttempts, filters, func(msg jetstream.Msg) {
			if msg.Headers().Get("KV-Operation") == "" { // a value, not a delete or purge marker
				keys[strings.TrimPrefix(msg.Subject(), "$KV."+store.BucketAttempts+".")] = true
			}
		})
		if err != nil {
			return n, err
		}
		for key := range keys {
			if err := kv.Purge(ctx, key); err != nil {
				return n, fmt.Errorf("purge attempts %s: %w", key, err)
			}
			n++
		}
	}
	return n, nil
}

// deleteLog deletes the ids' delivery-log entries.
func (e *Eraser) deleteLog(ctx context.Context, ids map[string]bool, list []string) (int, error) {
	if !e.LogOn || len(list) == 0 {
		return 0, nil
	}
	// One read per filter subject: the server finds a single subject's
	// next message from its index, where a read with many filters would
	// match every subject of a block against all of them per message.
	n := 0
	for _, filter := range store.LogFilters(list) {
		got, _, err := e.deleteWhere(ctx, store.StreamLog, []string{filter}, func(msg jetstream.Msg) bool {
			var entry struct {
				ID string `json:"id"`
			}
			return json.Unmarshal(msg.Data(), &entry) == nil && ids[entry.ID]
		})
		n += got
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// deleteWhere securely deletes the messages of a stream that match, and
// counts them and returns their sequences. match may be called from
// several goroutines at once (scan's parts).
func (e *Eraser) deleteWhere(ctx context.Context, stream string, filters []string, match func(jetstream.Msg) bool) (int, map[uint64]bool, error) {
	found := map[uint64]bool{}
	var mu sync.Mutex
	err := scan(ctx, e.JS, stream, filters, func(msg jetstream.Msg) {
		if match(msg) {
			seq := seqOf(msg)
			mu.Lock()
			found[seq] = true
			mu.Unlock()
		}
	})
	if err != nil || len(found) == 0 {
		return 0, found, err
	}
	st, err := e.JS.Stream(ctx, stream)
	if err != nil {
		return 0, found, fmt.Errorf("stream %s: %w", stream, err)
	}
	n := 0
	for seq := range found {
		err := st.SecureDeleteMsg(ctx, seq)
		switch {
		case err == nil:
			n++
		case errors.Is(err, jetstream.ErrMsgNotFound):
			// gone meanwhile (acked off a queue, expired)
		default:
			return n, found, fmt.Errorf("erase message %d of %s: %w", seq, stream, err)
		}
	}
	return n, found, nil
}

// record keeps the erasure's record.
func (e *Eraser) record(ctx context.Context, rec *ErasureRecord) error {
	kv, err := e.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      BucketErasures,
		Description: "Relay: one record per erasure (when, by which token, a hash of the identifier, what was removed)",
		Storage:     jetstream.FileStorage,
		Replicas:    max(1, e.Replicas),
	})
	if err != nil {
		return fmt.Errorf("create bucket %s: %w", BucketErasures, err)
	}
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	key := strconv.FormatInt(rec.At.UnixNano(), 10)
	if _, err := kv.Put(ctx, key, data); err != nil {
		return fmt.Errorf("record the erasure: %w", err)
	}
	return nil
}

// activityID is the id of the activity a message holds or stands for.
func activityID(msg jetstream.Msg) string {
	if id := msg.Headers().Get(store.HeaderID); id != "" {
		return id
	}
	if id := msg.Headers().Get(jetstream.MsgIDHeader); id != "" {
		return id
	}
	var a struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(msg.Data(), &a)
	return a.ID
}

// deadLetterOf says whether a dead-letter record's activity is the person's.
func deadLetterOf(p Person, data []byte) bool {
	if !p.Might(data) {
		return false
	}
	var dl struct {
		Activity json.RawMessage `json:"activity"`
	}
	return json.Unmarshal(data, &dl) == nil && p.MatchesActivity(dl.Activity)
}
