package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Destination states, as stored in the state bucket.
const (
	StateActive = "active"
	StatePaused = "paused"
)

// States keeps each destination's state in a KV bucket, so every Relay
// process and every restart sees the same one.
type States struct {
	KV jetstream.KeyValue

	mu    sync.Mutex
	watch *stateWatch // one watch of the whole bucket, shared by every Watch
}

// Get returns a destination's state; one never set is active.
func (s *States) Get(ctx context.Context, dest string) (string, error) {
	e, err := s.KV.Get(ctx, dest)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return StateActive, nil
	}
	if err != nil {
		return "", fmt.Errorf("read state of %s: %w", dest, err)
	}
	return string(e.Value()), nil
}

// Set stores a destination's state. While the shared watch runs, Set
// returns once the watch has it too (or after a second), so Current
// right after it says the new state.
func (s *States) Set(ctx context.Context, dest, state string) error {
	rev, err := s.KV.PutString(ctx, dest, state)
	if err != nil {
		return fmt.Errorf("set %s %s: %w", dest, state, err)
	}
	if sw := s.running(); sw != nil {
		sw.waitRevision(ctx, dest, rev, time.Second)
	}
	return nil
}

// Current is a destination's state as the shared watch last saw it while
// the watch runs (no round trip: a status of a thousand destinations reads
// them all at once), else as Get reads it.
func (s *States) Current(ctx context.Context, dest string) (string, error) {
	if sw := s.running(); sw != nil {
		sw.mu.Lock()
		v, ok := sw.values[dest]
		ready := sw.ready
		sw.mu.Unlock()
		if ready {
			if !ok {
				return StateActive, nil
			}
			return string(v), nil
		}
	}
	return s.Get(ctx, dest)
}

// running is the shared watch while it runs, else nil.
func (s *States) running() *stateWatch {
	s.mu.Lock()
	sw := s.watch
	s.mu.Unlock()
	if sw == nil {
		return nil
	}
	select {
	case <-sw.done:
		return nil
	default:
		return sw
	}
}

// Watch calls fn with the destination's state as it is now, then on every
// change, until ctx is done; it returns an error when the watch breaks.
// Every destination's Watch shares one watch of the bucket, so a thousand
// destinations cost the server one consumer, not a thousand, and start
// with one round trip. fn may miss a state that was replaced before it ran,
// never the latest.
func (s *States) Watch(ctx context.Context, dest string, fn func(state string)) error {
	return s.WatchKey(ctx, dest, func(value []byte, ok bool) {
		if !ok {
			fn(StateActive)
			return
		}
		fn(string(value))
	})
}

// WatchKey calls fn with a key's value as it is now (ok false when the key
// is absent or deleted), then on every change, until ctx is done, through
// the bucket's shared watch. Anything kept per destination in the bucket
// (its breaker too) is followed this way.
func (s *States) WatchKey(ctx context.Context, key string, fn func(value []byte, ok bool)) error {
	sw, sub, err := s.subscribe(key)
	if err != nil {
		return err
	}
	defer s.unsubscribe(sw, sub)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-sw.done:
			return sw.err
		case <-sub.notify:
			sw.mu.Lock()
			value, ok := sub.value, sub.ok
			sw.mu.Unlock()
			fn(value, ok)
		}
	}
}

// stateWatch is the shared watch of the state bucket.
type stateWatch struct {
	stop func()
	done chan struct{} // closed when the watch ends, err then says why
	err  error

	mu     sync.Mutex
	ready  bool                              // the bucket's initial values are read
	values map[string][]byte                 // the value of each key present
	revs   map[string]uint64                 // the revision of each key's last change seen
	seen   chan struct{}                     // closed (and replaced) at each change
	subs   map[string]map[*stateSub]struct{} // by key
	n      int                               // subscribers
}

// waitRevision waits until the watch has seen key at revision rev or
// later, at most wait.
func (sw *stateWatch) waitRevision(ctx context.Context, key string, rev uint64, wait time.Duration) {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		sw.mu.Lock()
		done, seen := sw.ready && sw.revs[key] >= rev, sw.seen
		sw.mu.Unlock()
		if done {
			return
		}
		select {
		case <-seen:
		case <-sw.done:
			return
		case <-timer.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// stateSub is one WatchKey: the latest value of its key, and a signal that
// it changed.
type stateSub struct {
	key    string
	value  []byte
	ok     bool // the key is present
	notify chan struct{}
}

func (s *States) subscribe(key string) (*stateWatch, *stateSub, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sw := s.watch
	if sw != nil {
		select {
		case <-sw.done: // broken: start a new one
			sw = nil
		default:
		}
	}
	if sw == nil {
		ctx, cancel := context.WithCancel(context.Background())
		w, err := s.KV.WatchAll(ctx)
		if err != nil {
			cancel()
			return nil, nil, fmt.Errorf("watch destination states: %w", err)
		}
		sw = &stateWatch{stop: func() { cancel(); _ = w.Stop() }, done: make(chan struct{}), values: map[string][]byte{}, revs: map[string]uint64{}, seen: make(chan struct{}), subs: map[string]map[*stateSub]struct{}{}}
		go sw.run(w)
		s.watch = sw
	}
	sub := &stateSub{key: key, notify: make(chan struct{}, 1)}
	sw.mu.Lock()
	if sw.subs[key] == nil {
		sw.subs[key] = map[*stateSub]struct{}{}
	}
	sw.subs[key][sub] = struct{}{}
	sw.n++
	if sw.ready {
		sw.tell(sub)
	}
	sw.mu.Unlock()
	return sw, sub, nil
}

// unsubscribe ends a WatchKey; the last one stops the shared watch.
func (s *States) unsubscribe(sw *stateWatch, sub *stateSub) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sw.mu.Lock()
	delete(sw.subs[sub.key], sub)
	if len(sw.subs[sub.key]) == 0 {
		delete(sw.subs, sub.key)
	}
	sw.n--
	last := sw.n == 0
	sw.mu.Unlock()
	if last {
		sw.stop()
		if s.watch == sw {
			s.watch = nil
		}
	}
}

func (sw *stateWatch) run(w jetstream.KeyWatcher) {
	defer close(sw.done)
	for e := range w.Updates() {
		sw.mu.Lock()
		if e == nil { // the initial values are all in
			sw.ready = true
			sw.changed()
			for _, subs := range sw.subs {
				for sub := range subs {
					sw.tell(sub)
				}
			}
			sw.mu.Unlock()
			continue
		}
		key := e.Key()
		if e.Operation() == jetstream.KeyValuePut {
			sw.values[key] = e.Value()
		} else {
			delete(sw.values, key)
		}
		sw.revs[key] = e.Revision()
		sw.changed()
		if sw.ready {
			for sub := range sw.subs[key] {
				sw.tell(sub)
			}
		}
		sw.mu.Unlock()
	}
	sw.err = errors.New("state watch closed")
}

// changed wakes whoever waits for a revision; sw.mu is held.
func (sw *stateWatch) changed() {
	close(sw.seen)
	sw.seen = make(chan struct{})
}

// tell gives sub its key's latest value and signals it; sw.mu is held.
func (sw *stateWatch) tell(sub *stateSub) {
	sub.value, sub.ok = sw.values[sub.key]
	select {
	case sub.notify <- struct{}{}:
	default:
	}
}

// addedKey holds when a destination was first run, for a fanned one
// (whose own consumer is made only when needed): a trace tells from it
// that an older activity was stored before the destination existed.
// Destination names have no dots, so it is no destination's state key.
func addedKey(dest string) string { return "added." + dest }

// RecordAdded stores when dest was added, once: the creation of an
// earlier Relay's consumer of it (old, nil when none), else now.
func (s *States) RecordAdded(ctx context.Context, dest string, old jetstream.Consumer) error {
	at := time.Now().UTC()
	if old != nil {
		at = old.CachedInfo().Created.UTC()
	}
	_, err := s.KV.Create(ctx, addedKey(dest), []byte(at.Format(time.RFC3339Nano)))
	if err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("record when %s was added: %w", dest, err)
	}
	return nil
}

// AddedAt is when dest was added (zero when not recorded).
func (s *States) AddedAt(ctx context.Context, dest string) time.Time {
	e, err := s.KV.Get(ctx, addedKey(dest))
	if err != nil {
		return time.Time{}
	}
	t, _ := time.Parse(time.RFC3339Nano, string(e.Value()))
	return t
}
