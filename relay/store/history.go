package store

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/relaydev/relay/relay/sink"
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
func (h *History) Get(ctx context.Context, dest, id string) ([]sink.Attempt, error) {
	e, err := h.KV.Get(ctx, historyKey(dest, id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read attempts of %s: %w", id, err)
	}
	var out []sink.Attempt
	if err := json.Unmarshal(e.Value(), &out); err != nil {
		return nil, fmt.Errorf("decode attempts of %s: %w", id, err)
	}
	return out, nil
}

// Append records one more attempt and returns the whole history.
func (h *History) Append(ctx context.Context, dest, id string, at sink.Attempt) ([]sink.Attempt, error) {
	prev, err := h.Get(ctx, dest, id)
	if err != nil {
		return []sink.Attempt{at}, err
	}
	all := append(prev, at)
	return all, h.Put(ctx, dest, id, all)
}

// Bounds of an attempt history, so a dead letter of the largest activity
// always fits in a bus message (DeadLetterOverhead): the first keptFirst
// and last keptLast attempts are kept, with one entry in between saying how
// many were left out, and each error is cut to MaxAttemptError bytes.
const (
	keptFirst       = 5
	keptLast        = 50
	MaxAttemptError = 512
)

// BoundAttempts applies the bounds to a history.
func BoundAttempts(all []sink.Attempt) []sink.Attempt {
	if len(all) <= keptFirst+keptLast+1 {
		return all
	}
	omitted := all[keptFirst : len(all)-keptLast]
	n := len(omitted)
	if last := omitted[n-1]; strings.HasPrefix(last.Error, omittedPrefix) && n == 1 {
		return all
	}
	count := 0
	for _, at := range omitted {
		count += omittedCount(at)
	}
	out := make([]sink.Attempt, 0, keptFirst+1+keptLast)
	out = append(out, all[:keptFirst]...)
	out = append(out, sink.Attempt{At: omitted[n-1].At, Error: fmt.Sprintf("%s%d attempts left out", omittedPrefix, count)})
	return append(out, all[len(all)-keptLast:]...)
}

const omittedPrefix = "(history bounded) "

// omittedCount is how many attempts an entry stands for.
func omittedCount(at sink.Attempt) int {
	if rest, ok := strings.CutPrefix(at.Error, omittedPrefix); ok {
		var n int
		if _, err := fmt.Sscanf(rest, "%d", &n); err == nil {
			return n
		}
	}
	return 1
}

// Put replaces the history, as replay does with a dead letter's attempts.
func (h *History) Put(ctx context.Context, dest, id string, all []sink.Attempt) error {
	data, err := json.Marshal(BoundAttempts(all))
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
