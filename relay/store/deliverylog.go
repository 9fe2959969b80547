package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/relaydev/relay/relay/activity"
	"github.com/relaydev/relay/relay/api"
	"github.com/relaydev/relay/relay/metrics"
)

// The delivery log: stream DELIVERY_LOG keeps one entry per delivery
// attempt, on relay.log.<destination>.<outcome>.<bucket>, and one per
// stored activity, on relay.stored.<bucket>, so an activity is found by id
// (a trace) by reading one bucket rather than the whole log. The bucket is
// a hash of the activity id (00–ff), which bounds the subjects the server
// tracks whatever the number of activities.
const (
	StreamLog     = "DELIVERY_LOG"
	subjectLog    = "relay.log."
	subjectStored = "relay.stored."
)

// Outcomes of an attempt in the delivery log.
const (
	OutcomeDelivered  = "delivered"
	OutcomeFailed     = "failed"
	OutcomeDeadLetter = "dead_letter"
	// OutcomeSuppressed: not attempted, the person's consent state on the
	// destination's channel forbids it (docs/consent.md).
	OutcomeSuppressed = "suppressed"
)

// LogEntry is one delivery attempt as the log keeps it: the API's entry
// and where it is in the log's stream.
type LogEntry struct {
	api.LogEntry
	seq uint64
}

// storedEntry says where an accepted activity is in the ACTIVITIES stream.
type storedEntry struct {
	ID         string    `json:"id"`
	Seq        uint64    `json:"seq"`
	Name       string    `json:"name"`
	ReceivedAt time.Time `json:"received_at"`
}

func bucket(id string) string {
	h := fnv.New32a()
	_, _ = h.Write([]byte(id))
	return fmt.Sprintf("%02x", h.Sum32()&0xff)
}

func logSubject(dest, outcome, id string) string {
	return subjectLog + dest + "." + outcome + "." + bucket(id)
}

// DeliveryLog writes the log without ever making a delivery wait: entries
// go through a bounded queue to one writer that publishes asynchronously.
// An entry that finds the queue full is dropped and counted.
type DeliveryLog struct {
	js      jetstream.JetStream
	stream  jetstream.Stream
	queue   chan *nats.Msg
	log     *slog.Logger
	metrics *metrics.Set
	done    chan struct{}
	series  *Series // its roll-ups, for charts
}

// logQueue bounds the entries waiting for the writer.
const logQueue = 16384

// OpenDeliveryLog creates or updates the DELIVERY_LOG stream, bounded by
// retention and maxBytes (the oldest entries go first), and starts the
// log's writer.
func OpenDeliveryLog(ctx context.Context, nc *nats.Conn, replicas int, retention time.Duration, maxBytes int64, log *slog.Logger, m *metrics.Set) (*DeliveryLog, error) {
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		return nil, err
	}
	st, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        StreamLog,
		Description: "Relay: every delivery attempt's outcome, and where each accepted activity is stored",
		Subjects:    []string{subjectLog + ">", subjectStored + ">"},
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		MaxAge:      retention,
		MaxBytes:    maxBytes,
		Discard:     jetstream.DiscardOld,
		AllowDirect: true,
	})
	if err != nil {
		return nil, fmt.Errorf("create stream %s: %w", StreamLog, err)
	}
	series, err := OpenSeries(ctx, js, replicas, log)
	if err != nil {
		return nil, err
	}
	l := &DeliveryLog{js: js, stream: st, queue: make(chan *nats.Msg, logQueue), log: log, metrics: m, done: make(chan struct{}), series: series}
	go l.write()
	return l, nil
}

func (l *DeliveryLog) write() {
	defer close(l.done)
	for msg := range l.queue {
		if _, err := l.js.PublishMsgAsync(msg); err != nil {
			l.metrics.LogDropped.Inc()
		}
	}
	select {
	case <-l.js.PublishAsyncComplete():
	case <-time.After(5 * time.Second):
	}
}

// Close flushes what is queued (for at most 5 s) and stops the writer.
func (l *DeliveryLog) Close() {
	if l == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	l.series.Flush(ctx, true) // the minute under way, as the log's own flush: at most 5 s
	cancel()
	close(l.queue)
	<-l.done
}

// Series returns the log's per-minute roll-ups (nil for a nil log).
func (l *DeliveryLog) Series() *Series {
	if l == nil {
		return nil
	}
	return l.series
}

func (l *DeliveryLog) enqueue(subject string, v any) {
	if l == nil {
		return
	}
	data, err := json.Marshal(v)
	if err != nil {
		return
	}
	select {
	case l.queue <- &nats.Msg{Subject: subject, Data: data}:
	default:
		l.metrics.LogDropped.Inc()
	}
}

// Attempt records one attempt.
func (l *DeliveryLog) Attempt(e LogEntry) {
	if l != nil {
		l.series.add(&e)
	}
	l.enqueue(logSubject(e.Destination, e.Outcome, e.ID), e)
}

// Stored records where an accepted activity is stored.
func (l *DeliveryLog) Stored(a *activity.Activity, seq uint64) {
	l.enqueue(subjectStored+bucket(a.ID), storedEntry{ID: a.ID, Seq: seq, Name: a.Name, ReceivedAt: a.ReceivedAt})
}

// LogQuery selects log entries.
type LogQuery struct {
	Destination string
	Outcome     string
	Activity    string // a pattern such as email.*
	ID          string
	Since       time.Time
	Until       time.Time
	Limit       int
	Before      uint64 // cursor: entries before this log sequence
}

func (q LogQuery) filter() string {
	dest, outcome, b := "*", "*", "*"
	if q.Destination != "" {
		dest = q.Destination
	}
	if q.Outcome != "" {
		outcome = q.Outcome
	}
	if q.ID != "" {
		b = bucket(q.ID)
	}
	return subjectLog + dest + "." + outcome + "." + b
}

func (q LogQuery) match(e *LogEntry) bool {
	switch {
	case q.ID != "" && e.ID != q.ID:
		return false
	case q.Activity != "" && !activity.Matches(q.Activity, e.Name):
		return false
	case !q.Since.IsZero() && e.At.Before(q.Since):
		return false
	case !q.Until.IsZero() && e.At.After(q.Until):
		return false
	}
	return true
}

// List returns up to Limit entries, newest first, and the cursor of the
// next page (0 when there is none). It reads the log backwards in windows
// of growing size, each a forward read with the server filtering subjects.
func (l *DeliveryLog) List(ctx context.Context, q LogQuery) ([]LogEntry, uint64, error) {
	if l == nil {
		return nil, 0, ErrLogOff
	}
	info, err := l.stream.Info(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("delivery log: %w", err)
	}
	first, last := info.State.FirstSeq, info.State.LastSeq
	hi := last
	if q.Before > 0 && q.Before-1 < hi {
		hi = q.Before - 1
	}
	var out []LogEntry
	window := uint64(1024)
	for hi >= first && hi > 0 && len(out) <= q.Limit {
		lo := first
		if hi >= first+window {
			lo = hi - window + 1
		}
		var page []LogEntry
		older := false // the window reached entries older than Since
		err := l.scan(ctx, q.filter(), lo, time.Time{}, func(e LogEntry) bool {
			if e.seq > hi {
				return false
			}
			if !q.Since.IsZero() && e.At.Before(q.Since) {
				older = true
			}
			if q.match(&e) {
				page = append(page, e)
			}
			return true
		})
		if err != nil {
			return nil, 0, err
		}
		slices.Reverse(page)
		out = append(out, page...)
		if lo == first || older {
			break
		}
		hi = lo - 1
		window = min(window*4, 1<<20)
	}
	var next uint64
	if len(out) > q.Limit {
		out = out[:q.Limit]
		next = out[len(out)-1].seq
	}
	return out, next, nil
}

// ForActivity returns every attempt made for an activity, oldest first,
// reading its bucket from a little before it was received.
func (l *DeliveryLog) ForActivity(ctx context.Context, id string, since time.Time) ([]LogEntry, error) {
	if l == nil {
		return nil, ErrLogOff
	}
	var out []LogEntry
	err := l.scan(ctx, subjectLog+"*.*."+bucket(id), 0, since.Add(-time.Minute), func(e LogEntry) bool {
		if e.ID == id {
			out = append(out, e)
		}
		return true
	})
	return out, err
}

// FindStored looks an activity up by id: the newest record of it.
func (l *DeliveryLog) FindStored(ctx context.Context, id string) (*storedEntry, error) {
	if l == nil {
		return nil, ErrLogOff
	}
	var found *storedEntry
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{subjectStored + bucket(id)}}
	cons, err := l.js.OrderedConsumer(ctx, StreamLog, cfg)
	if err != nil {
		return nil, fmt.Errorf("delivery log: %w", err)
	}
	defer DeleteReader(l.js, StreamLog, cons)
	err = EachMessage(ctx, cons, func(msg jetstream.Msg, md *jetstream.MsgMetadata) (bool, error) {
		var s storedEntry
		if json.Unmarshal(msg.Data(), &s) == nil && s.ID == id {
			found = &s
		}
		return md.NumPending > 0, nil
	})
	return found, err
}

// ErrLogOff is what reading the log returns when log.deliveries is off.
var ErrLogOff = errors.New("the delivery log is off (log.deliveries: false)")

// scan reads entries on subject from log sequence from (or from a time)
// until fn says stop or the log ends.
func (l *DeliveryLog) scan(ctx context.Context, subject string, from uint64, since time.Time, fn func(LogEntry) bool) error {
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}}
	switch {
	case from > 0:
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = from
	case !since.IsZero():
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		cfg.OptStartTime = &since
	}
	cons, err := l.js.OrderedConsumer(ctx, StreamLog, cfg)
	if err != nil {
		return fmt.Errorf("delivery log: %w", err)
	}
	defer DeleteReader(l.js, StreamLog, cons)
	return EachMessage(ctx, cons, func(msg jetstream.Msg, md *jetstream.MsgMetadata) (bool, error) {
		var e LogEntry
		if err := json.Unmarshal(msg.Data(), &e); err != nil {
			return md.NumPending > 0, nil
		}
		e.seq = md.Sequence.Stream
		return fn(e) && md.NumPending > 0, nil
	})
}

// Last returns the newest entry of a destination with an outcome, or nil.
func (l *DeliveryLog) Last(ctx context.Context, dest, outcome string) (*LogEntry, error) {
	if l == nil {
		return nil, ErrLogOff
	}
	msg, err := l.stream.GetLastMsgForSubject(ctx, subjectLog+dest+"."+outcome+".*")
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var e LogEntry
	if err := json.Unmarshal(msg.Data, &e); err != nil {
		return nil, err
	}
	return &e, nil
}

// Cursor formats a log sequence as an API cursor.
func Cursor(seq uint64) string {
	if seq == 0 {
		return ""
	}
	return strconv.FormatUint(seq, 10)
}
