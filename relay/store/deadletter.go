package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/relaydev/relay/relay/sink"
)

// DeadLetter is an activity whose delivery to one destination failed for
// good, with every attempt made.
type DeadLetter struct {
	ID          string          `json:"id"`
	Destination string          `json:"destination"`
	Activity    json.RawMessage `json:"activity"`
	Attempts    []sink.Attempt  `json:"attempts"`
	DeadAt      time.Time       `json:"dead_at"`
	// TraceParent and TraceState are the activity's stored trace context
	// (HeaderTraceParent): a replay carries them on, so its attempts
	// continue the activity's trace.
	TraceParent string `json:"traceparent,omitempty"`
	TraceState  string `json:"tracestate,omitempty"`

	// Seq is the record's stream sequence, as read.
	Seq uint64 `json:"-"`
}

// encode writes the record with the activity's stored JSON as it is, so a
// replay re-queues the producer's text byte for byte.
func (dl DeadLetter) encode() ([]byte, error) {
	head, err := json.Marshal(struct {
		ID          string         `json:"id"`
		Destination string         `json:"destination"`
		Attempts    []sink.Attempt `json:"attempts"`
		DeadAt      time.Time      `json:"dead_at"`
		TraceParent string         `json:"traceparent,omitempty"`
		TraceState  string         `json:"tracestate,omitempty"`
	}{dl.ID, dl.Destination, dl.Attempts, dl.DeadAt, dl.TraceParent, dl.TraceState})
	if err != nil {
		return nil, err
	}
	act := dl.Activity
	if len(act) == 0 {
		act = []byte("null")
	}
	if !json.Valid(act) {
		return nil, errors.New("activity is not valid JSON")
	}
	out := make([]byte, 0, len(head)+len(act)+16)
	out = append(out, head[:len(head)-1]...)
	out = append(out, `,"activity":`...)
	out = append(out, act...)
	return append(out, '}'), nil
}

// DeadLetters is the DEADLETTER stream: one message per destination and
// activity, on subject relay.deadletter.<destination>.<activity id token>.
type DeadLetters struct {
	JS     jetstream.JetStream
	Stream jetstream.Stream
}

func deadLetterSubject(dest, id string) string {
	return subjectDeadLetter + dest + "." + idToken(id)
}

func deadLetterFilter(dest string) string {
	if dest == "" {
		return subjectDeadLetter + ">"
	}
	return subjectDeadLetter + dest + ".*"
}

// Put stores a dead letter, replacing an older one for the same
// destination and activity.
func (s *DeadLetters) Put(ctx context.Context, dl DeadLetter) error {
	data, err := dl.encode()
	if err != nil {
		return fmt.Errorf("encode dead letter %s: %w", dl.ID, err)
	}
	// The one it replaces is overwritten first: a replaced record's bytes
	// would otherwise stay on disk, out of an erasure's reach.
	if err := s.Remove(ctx, dl.Destination, dl.ID); err != nil {
		return err
	}
	_, err = s.JS.Publish(ctx, deadLetterSubject(dl.Destination, dl.ID), data, jetstream.WithExpectStream(StreamDeadLetters))
	if err != nil {
		return fmt.Errorf("store dead letter %s for %s: %w", dl.ID, dl.Destination, err)
	}
	return nil
}

// Remove deletes the dead letter of an activity for a destination,
// overwriting its bytes on disk (a secure delete), so what an erasure
// cannot see anymore is gone too.
func (s *DeadLetters) Remove(ctx context.Context, dest, id string) error {
	last, err := s.Stream.GetLastMsgForSubject(ctx, deadLetterSubject(dest, id))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil
	}
	if err == nil {
		err = s.Stream.SecureDeleteMsg(ctx, last.Sequence)
	}
	if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("remove dead letter %s for %s: %w", id, dest, err)
	}
	return nil
}

// Count returns how many dead letters a destination has.
func (s *DeadLetters) Count(ctx context.Context, dest string) (int, error) {
	info, err := s.Stream.Info(ctx, jetstream.WithSubjectFilter(deadLetterFilter(dest)))
	if err != nil {
		return 0, fmt.Errorf("count dead letters of %s: %w", dest, err)
	}
	return len(info.State.Subjects), nil
}

// Counts returns how many dead letters each destination has, from one
// read of the stream's subjects.
func (s *DeadLetters) Counts(ctx context.Context) (map[string]int, error) {
	info, err := s.Stream.Info(ctx, jetstream.WithSubjectFilter(deadLetterFilter("")))
	if err != nil {
		return nil, fmt.Errorf("count dead letters: %w", err)
	}
	counts := map[string]int{}
	for subject := range info.State.Subjects {
		rest := strings.TrimPrefix(subject, subjectDeadLetter)
		if i := strings.LastIndexByte(rest, '.'); i > 0 {
			counts[rest[:i]]++
		}
	}
	return counts, nil
}

// Each calls fn for every dead letter of dest (every destination when
// empty), oldest first, until fn returns false.
func (s *DeadLetters) Each(ctx context.Context, dest string, fn func(DeadLetter) bool) error {
	return s.scan(ctx, dest, 0, func(dl DeadLetter, _ uint64) bool { return fn(dl) })
}

func (s *DeadLetters) scan(ctx context.Context, dest string, from uint64, fn func(DeadLetter, uint64) bool) error {
	cons, err := s.reader(ctx, dest, from, false)
	if err != nil {
		return err
	}
	defer s.done(cons)
	return s.each(ctx, cons, fn)
}

// each decodes what cons reads, oldest first, until fn returns false or
// nothing is left.
func (s *DeadLetters) each(ctx context.Context, cons jetstream.Consumer, fn func(DeadLetter, uint64) bool) error {
	return EachMessage(ctx, cons, func(msg jetstream.Msg, md *jetstream.MsgMetadata) (bool, error) {
		var dl DeadLetter
		if err := json.Unmarshal(msg.Data(), &dl); err != nil {
			return false, fmt.Errorf("decode dead letter at %d: %w", md.Sequence.Stream, err)
		}
		dl.Seq = md.Sequence.Stream
		return fn(dl, md.NumPending) && md.NumPending > 0, nil
	})
}

// EachMessage reads an ordered consumer in batches until fn says stop or
// nothing is left.
func EachMessage(ctx context.Context, cons jetstream.Consumer, fn func(jetstream.Msg, *jetstream.MsgMetadata) (bool, error)) error {
	for {
		batch, err := cons.FetchNoWait(256)
		if err != nil {
			return fmt.Errorf("fetch: %w", err)
		}
		n := 0
		for msg := range batch.Messages() {
			n++
			md, err := msg.Metadata()
			if err != nil {
				return fmt.Errorf("message metadata: %w", err)
			}
			more, err := fn(msg, md)
			if err != nil || !more {
				return err
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return fmt.Errorf("fetch: %w", err)
		}
		if n == 0 {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// Has reports whether a destination has a dead letter of an activity.
func (s *DeadLetters) Has(ctx context.Context, dest, id string) (bool, error) {
	_, err := s.Stream.GetLastMsgForSubject(ctx, deadLetterSubject(dest, id))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("dead letter %s of %s: %w", id, dest, err)
	}
	return true, nil
}

// Filtered returns the page of dead letters that match, from stream
// sequence cursor on, the cursor of the next page, and how many match in
// all. A nil match takes every dead letter: the page is read from the
// cursor and no further than the next page's first, and the total is the
// consumer's count, so a page costs the same however many dead letters
// there are. A match reads them all, to count.
func (s *DeadLetters) Filtered(ctx context.Context, dest string, match func(DeadLetter) bool, cursor uint64, limit int) ([]DeadLetter, uint64, int, error) {
	if match == nil {
		return s.page(ctx, dest, cursor, limit)
	}
	var page []DeadLetter
	var next uint64
	total := 0
	err := s.scan(ctx, dest, 0, func(dl DeadLetter, _ uint64) bool {
		if !match(dl) {
			return true
		}
		total++
		switch {
		case dl.Seq < cursor:
		case len(page) < limit:
			page = append(page, dl)
		case next == 0:
			next = dl.Seq
		}
		return true
	})
	return page, next, total, err
}

// page is Filtered taking every dead letter: one consumer, made from the
// start, gives the total (what it has pending before anything is read) and
// the first page; a later page reads from its cursor with one of its own.
func (s *DeadLetters) page(ctx context.Context, dest string, cursor uint64, limit int) ([]DeadLetter, uint64, int, error) {
	cons, err := s.reader(ctx, dest, 0, false)
	if err != nil {
		return nil, 0, 0, err
	}
	defer s.done(cons)
	info, err := cons.Info(ctx)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("count dead letters: %w", err)
	}
	total := int(info.NumPending)
	if total == 0 {
		return nil, 0, 0, nil
	}
	if cursor > 0 {
		if cons, err = s.reader(ctx, dest, cursor, false); err != nil {
			return nil, 0, 0, err
		}
		defer s.done(cons)
	}
	var page []DeadLetter
	var next uint64
	err = s.each(ctx, cons, func(dl DeadLetter, _ uint64) bool {
		if len(page) < limit {
			page = append(page, dl)
			return true
		}
		next = dl.Seq
		return false
	})
	return page, next, total, err
}

// reader is an ordered consumer of dest's dead letters (every
// destination's when empty) from sequence from on, reading headers only
// when headersOnly. done deletes it once read.
func (s *DeadLetters) reader(ctx context.Context, dest string, from uint64, headersOnly bool) (jetstream.Consumer, error) {
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{deadLetterFilter(dest)}, HeadersOnly: headersOnly}
	if from > 0 {
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = from
	}
	cons, err := s.JS.OrderedConsumer(ctx, StreamDeadLetters, cfg)
	if err != nil {
		return nil, fmt.Errorf("read dead letters: %w", err)
	}
	return cons, nil
}

// done deletes a reader's consumer (DeleteReader).
func (s *DeadLetters) done(cons jetstream.Consumer) { DeleteReader(s.JS, StreamDeadLetters, cons) }

// DeleteReader deletes an ordered consumer read to its end rather than
// leaving it to the server's inactivity threshold: reads made often (a
// dashboard's pages, a poll) would otherwise each leave one behind for
// minutes, until the server refuses more.
func DeleteReader(js jetstream.JetStream, stream string, cons jetstream.Consumer) {
	info := cons.CachedInfo()
	if info == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = js.DeleteConsumer(ctx, stream, info.Name)
}

// Dropped is what a Sweep dropped, by reason.
type Dropped struct {
	MaxAge, MaxBytes int
}

// sweepSlack is what a stored message costs besides its subject, headers
// and data, in the stream's bytes.
const sweepSlack = 40

// Sweep drops the dead letters stored before now-maxAge, then the oldest
// while the stream holds more than maxBytes, deleting each by sequence:
// every drop is counted, by reason. It reads headers only, oldest first,
// and stops at the first it keeps.
func (s *DeadLetters) Sweep(ctx context.Context, maxAge time.Duration, maxBytes int64, now time.Time) (Dropped, error) {
	var out Dropped
	info, err := s.Stream.Info(ctx)
	if err != nil {
		return out, fmt.Errorf("dead letters: %w", err)
	}
	cutoff := now.Add(-maxAge)
	excess := int64(info.State.Bytes) - maxBytes
	if info.State.Msgs == 0 || (excess <= 0 && !info.State.FirstTime.Before(cutoff)) {
		return out, nil
	}
	cons, err := s.reader(ctx, "", 0, true)
	if err != nil {
		return out, err
	}
	defer s.done(cons)
	err = EachMessage(ctx, cons, func(msg jetstream.Msg, md *jetstream.MsgMetadata) (bool, error) {
		old := md.Timestamp.Before(cutoff)
		if !old && excess <= 0 {
			return false, nil
		}
		size, _ := strconv.ParseInt(msg.Headers().Get(nats.MsgSize), 10, 64)
		if err := s.Stream.SecureDeleteMsg(ctx, md.Sequence.Stream); err != nil {
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				return md.NumPending > 0, nil // replayed or dropped by another process meanwhile
			}
			return false, fmt.Errorf("drop dead letter at %d: %w", md.Sequence.Stream, err)
		}
		excess -= size + int64(len(msg.Subject())) + sweepSlack
		if old {
			out.MaxAge++
		} else {
			out.MaxBytes++
		}
		return md.NumPending > 0, nil
	})
	return out, err
}
