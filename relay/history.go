package relay

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// History keeps the attempts made to deliver an activity to a destination
// while it is being retried, in a KV bucket so they survive restarts and any
// process can continue them.
type History struct {
	KV jetstream.KeyValue
}

// idToken makes an activity id safe for subjects and KV keys.
func idToken(id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(id))
}

func historyKey(dest, id string) string { return dest + "." + idToken(id) }

// Get returns the attempts recorded so far.
func (h *History) Get(ctx context.Context, dest, id string) ([]Attempt, error) {
	e, err := h.KV.Get(ctx, historyKey(dest, id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read attempts of %s: %w", id, err)
	}
	var out []Attempt
	if err := json.Unmarshal(e.Value(), &out); err != nil {
		return nil, fmt.Errorf("decode attempts of %s: %w", id, err)
	}
	return out, nil
}

// Append records one more attempt and returns the whole history.
func (h *History) Append(ctx context.Context, dest, id string, at Attempt) ([]Attempt, error) {
	prev, err := h.Get(ctx, dest, id)
	if err != nil {
		return []Attempt{at}, err
	}
	all := append(prev, at)
	return all, h.Put(ctx, dest, id, all)
}

// Put replaces the history, as replay does with a dead letter's attempts.
func (h *History) Put(ctx context.Context, dest, id string, all []Attempt) error {
	data, err := json.Marshal(all)
	if err != nil {
		return fmt.Errorf("encode attempts of %s: %w", id, err)
	}
	if _, err := h.KV.Put(ctx, historyKey(dest, id), data); err != nil {
		return fmt.Errorf("store attempts of %s: %w", id, err)
	}
	return nil
}

// Delete forgets the history once the activity is settled.
func (h *History) Delete(ctx context.Context, dest, id string) error {
	err := h.KV.Purge(ctx, historyKey(dest, id))
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("forget attempts of %s: %w", id, err)
	}
	return nil
}
