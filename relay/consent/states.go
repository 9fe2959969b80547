package consent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/relaydev/relay/relay/activity"
)

// Bucket is the KV bucket of channel states: key "<channel>.<hash of the
// identifier>", value a Record.
const Bucket = "RELAY_CONSENT"

// States is the channel states of every person: the bucket, and a copy of
// it in memory that a watch keeps current, so the check at every attempt
// reads no network. Safe for concurrent use.
type States struct {
	kv  jetstream.KeyValue
	log *slog.Logger

	mu      sync.RWMutex
	records map[string]held // by key
	watch   jetstream.KeyWatcher
	done    chan struct{}
}

// held is a record with the bucket revision it came from: an older
// revision never replaces a newer one.
type held struct {
	rec Record
	rev uint64
}

// Open creates or binds the bucket, reads every record and keeps
// following it until Close.
func Open(ctx context.Context, js jetstream.JetStream, replicas int, log *slog.Logger) (*States, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      Bucket,
		Description: "Relay: each person's state per channel (email, sms), keyed by a hash of the identifier",
		Storage:     jetstream.FileStorage,
		Replicas:    max(1, replicas),
	})
	if err != nil {
		return nil, fmt.Errorf("create bucket %s: %w", Bucket, err)
	}
	s := &States{kv: kv, log: log, records: map[string]held{}, done: make(chan struct{})}
	s.watch, err = kv.WatchAll(context.WithoutCancel(ctx))
	if err != nil {
		return nil, fmt.Errorf("watch bucket %s: %w", Bucket, err)
	}
	if err := s.load(ctx); err != nil {
		_ = s.watch.Stop()
		return nil, err
	}
	go s.follow()
	return s, nil
}

// load takes the watch's initial values, up to its end-of-initial marker.
func (s *States) load(ctx context.Context) error {
	for {
		select {
		case e, ok := <-s.watch.Updates():
			if !ok {
				return fmt.Errorf("watch bucket %s: closed while loading", Bucket)
			}
			if e == nil {
				return nil
			}
			s.take(e)
		case <-ctx.Done():
			return fmt.Errorf("load bucket %s: %w", Bucket, ctx.Err())
		}
	}
}

// follow applies the bucket's changes until Close stops the watch.
func (s *States) follow() {
	defer close(s.done)
	for e := range s.watch.Updates() {
		if e != nil {
			s.take(e)
		}
	}
}

// Close stops following the bucket.
func (s *States) Close() {
	if s == nil {
		return
	}
	_ = s.watch.Stop()
	<-s.done
}

// take applies one entry of the bucket to the copy in memory.
func (s *States) take(e jetstream.KeyValueEntry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, ok := s.records[e.Key()]; ok && cur.rev >= e.Revision() {
		return
	}
	if e.Operation() != jetstream.KeyValuePut {
		delete(s.records, e.Key())
		return
	}
	var r Record
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		s.log.Warn("unreadable channel state ignored", "key", e.Key(), "error", err)
		return
	}
	s.records[e.Key()] = held{rec: r, rev: e.Revision()}
}

// Get is the record of a person on a channel, as this process holds it.
func (s *States) Get(ch Channel, ident string) (Record, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	h, ok := s.records[Key(ch, ident)]
	return h.rec, ok
}

// Check says why a (decoded) activity must not reach a destination with
// `consent: ch`: nil when it may. The consent activities themselves pass.
func (s *States) Check(ch Channel, a *activity.Activity) *Suppression {
	return s.CheckContact(ch, a.Name, a.Contact)
}

// CheckContact is Check for the activity name and contact (its JSON)
// alone.
func (s *States) CheckContact(ch Channel, name string, contact json.RawMessage) *Suppression {
	if Passes(name) {
		return nil
	}
	ident := Identifier(ch, contact)
	if ident == "" {
		return nil
	}
	r, ok := s.Get(ch, ident)
	if !ok {
		return nil
	}
	if m := r.Effective(); m != nil && m.State.Suppresses() {
		return &Suppression{Channel: ch, Mark: *m}
	}
	return nil
}

// Target is a mark and the identifier of the person it is for.
type Target struct {
	Ident string
	Mark  Mark
}

// Marks are the channel marks an activity sets: one per channel its rule
// names (or whose identifier its contact carries), with the identifier.
func Marks(a *activity.Activity) map[Channel]Target {
	rule, ok := RuleOf(a.Name)
	if !ok {
		return nil
	}
	out := map[Channel]Target{}
	for _, ch := range Channels {
		if rule.Channel != "" && rule.Channel != ch {
			continue
		}
		if ident := Identifier(ch, a.Contact); ident != "" {
			out[ch] = Target{ident, Mark{State: rule.State, Since: a.OccurredAt.UTC(), ActivityID: a.ID, Name: a.Name}}
		}
	}
	return out
}

// Record resolves a stored consent activity into its person's channel
// states (nothing for any other activity). Safe to call again for the same
// activity, and from any process at once: each write is a compare-and-set
// on the record's revision.
func (s *States) Record(ctx context.Context, a *activity.Activity) error {
	for ch, m := range Marks(a) {
		if err := s.apply(ctx, Key(ch, m.Ident), m.Mark); err != nil {
			return fmt.Errorf("channel state of %s (%s): %w", a.ID, ch, err)
		}
	}
	return nil
}

// casTries bounds the compare-and-set retries of one write.
const casTries = 20

// apply resolves m into the record at key with a compare-and-set.
func (s *States) apply(ctx context.Context, key string, m Mark) error {
	for range casTries {
		var cur Record
		var rev uint64
		e, err := s.kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return err
		default:
			rev = e.Revision()
			if err := json.Unmarshal(e.Value(), &cur); err != nil {
				return fmt.Errorf("decode %s: %w", key, err)
			}
		}
		next, changed := cur.Apply(m)
		if !changed {
			return nil
		}
		data, err := json.Marshal(next)
		if err != nil {
			return err
		}
		if rev == 0 {
			rev, err = s.kv.Create(ctx, key, data)
		} else {
			rev, err = s.kv.Update(ctx, key, data, rev)
		}
		if err == nil {
			s.mu.Lock()
			if cur, ok := s.records[key]; !ok || cur.rev < rev {
				s.records[key] = held{rec: next, rev: rev}
			}
			s.mu.Unlock()
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !isWrongSequence(err) {
			return err
		}
	}
	return fmt.Errorf("%s kept changing under %d writes", key, casTries)
}

// isWrongSequence is the error of an Update whose revision is no longer
// the last.
func isWrongSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}
