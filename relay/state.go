package relay

import (
	"context"
	"errors"
	"fmt"

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
// change, until ctx is done.
func (s *States) Watch(ctx context.Context, dest string, fn func(state string)) error {
	w, err := s.KV.Watch(ctx, dest)
	if err != nil {
		return fmt.Errorf("watch state of %s: %w", dest, err)
	}
	defer w.Stop()
	initial := true
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("state watch closed")
			}
			if e == nil {
				if initial { // never set: active
					fn(StateActive)
				}
				continue
			}
			initial = false
			if e.Operation() != jetstream.KeyValuePut {
				fn(StateActive)
				continue
			}
			fn(string(e.Value()))
		}
	}
}
