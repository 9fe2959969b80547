package relay

import (
	"context"
	"errors"
	"fmt"
	"sync"

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

// Set stores a destination's state.
func (s *States) Set(ctx context.Context, dest, state string) error {
	if _, err := s.KV.PutString(ctx, dest, state); err != nil {
		return fmt.Errorf("set %s %s: %w", dest, state, err)
	}
	return nil
}

// Watch calls fn with the destination's state as it is now, then on every
// change, until ctx is done; it returns an error when the watch breaks.
// Every destination's Watch shares one watch of the bucket, so a thousand
// destinations cost the server one consumer, not a thousand, and start
// with one round trip. fn may miss a state that was replaced before it ran,
// never the latest.
func (s *States) Watch(ctx context.Context, dest string, fn func(state string)) error {
	sw, sub, err := s.subscribe(dest)
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
			state := sub.state
			sw.mu.Unlock()
			fn(state)
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
	states map[string]string                 // destination -> state; absent is active
	subs   map[string]map[*stateSub]struct{} // by destination
	n      int                               // subscribers
}

// stateSub is one Watch: the latest state for its destination, and a
// signal that it changed.
type stateSub struct {
	dest   string
	state  string
	notify chan struct{}
}

func (s *States) subscribe(dest string) (*stateWatch, *stateSub, error) {
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
		sw = &stateWatch{stop: func() { cancel(); _ = w.Stop() }, done: make(chan struct{}), states: map[string]string{}, subs: map[string]map[*stateSub]struct{}{}}
		go sw.run(w)
		s.watch = sw
	}
	sub := &stateSub{dest: dest, notify: make(chan struct{}, 1)}
	sw.mu.Lock()
	if sw.subs[dest] == nil {
		sw.subs[dest] = map[*stateSub]struct{}{}
	}
	sw.subs[dest][sub] = struct{}{}
	sw.n++
	if sw.ready {
		sub.set(sw.state(dest))
	}
	sw.mu.Unlock()
	return sw, sub, nil
}

// unsubscribe ends a Watch; the last one stops the shared watch.
func (s *States) unsubscribe(sw *stateWatch, sub *stateSub) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sw.mu.Lock()
	delete(sw.subs[sub.dest], sub)
	if len(sw.subs[sub.dest]) == 0 {
		delete(sw.subs, sub.dest)
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
			for dest, subs := range sw.subs {
				for sub := range subs {
					sub.set(sw.state(dest))
				}
			}
			sw.mu.Unlock()
			continue
		}
		dest := e.Key()
		if e.Operation() == jetstream.KeyValuePut {
			sw.states[dest] = string(e.Value())
		} else {
			delete(sw.states, dest)
		}
		if sw.ready {
			for sub := range sw.subs[dest] {
				sub.set(sw.state(dest))
			}
		}
		sw.mu.Unlock()
	}
	sw.err = errors.New("state watch closed")
}

// state is a destination's state as last seen; sw.mu is held.
func (sw *stateWatch) state(dest string) string {
	if st, ok := sw.states[dest]; ok {
		return st
	}
	return StateActive
}

// set records the latest state and signals it; sw.mu is held.
func (sub *stateSub) set(state string) {
	sub.state = state
	select {
	case sub.notify <- struct{}{}:
	default:
	}
}
