// Package store is what Relay keeps in NATS JetStream: the streams and
// their subjects, the destinations' state, the attempt history, dead
// letters and the delivery log. It decides nothing about delivery.
package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/relaydev/relay/config"
)

// Names of the JetStream assets Relay owns.
const (
	StreamActivities  = "ACTIVITIES"
	StreamDeadLetters = "DEADLETTER"
	StreamQueues      = "QUEUES"
	BucketState       = "RELAY_STATE"
	BucketAttempts    = "RELAY_ATTEMPTS"

	// FanoutConsumer is the durable consumer every process reads the
	// stored activities from once; a destination's own consumer is
	// "relay_" + its name, so no destination name can take this one.
	FanoutConsumer = "relay-fanout"

	// SubjectRedeliver + a destination's name is a subject of the
	// activities stream that only that destination's consumer reads:
	// copies re-queued for it alone.
	SubjectRedeliver = "relay.redeliver."
	// SubjectQueue + a fanned destination's name is its subject in the
	// queues stream: its retries, hand-overs and replays.
	SubjectQueue      = "relay.queue."
	subjectDeadLetter = "relay.deadletter."
)

// minServer is the oldest nats-server Relay works with: it needs consumers
// with several filter subjects.
var minServer = [3]int{2, 10, 0}

// Bus is Relay's connection to NATS JetStream and the streams and buckets it
// keeps there.
type Bus struct {
	NC          *nats.Conn
	JS          jetstream.JetStream
	Activities  jetstream.Stream
	DeadLetters jetstream.Stream
	Queues      jetstream.Stream
	State       jetstream.KeyValue
	Attempts    jetstream.KeyValue

	embedded *server.Server
	closed   chan struct{}
	// HeldMax is engine.max_held_bytes (0: no bound), and HeldReserve the
	// largest activity with its headers: they size a pull.
	HeldMax, HeldReserve int64
}

// PullBytes bounds what one pull of activities buffers in the client: an
// eighth of engine.max_held_bytes, at most 8 MiB, and at least twice the
// largest message (a pull asks for at least half of it, so any message
// fits: one that did not would stall the pull).
func (b *Bus) PullBytes() int {
	if b.HeldMax <= 0 {
		return int(max(8<<20, 2*b.LargestMsg()))
	}
	return int(max(2*b.LargestMsg(), min(b.HeldMax/8, 8<<20)))
}

// LargestMsg is the largest message the bus carries: its max_payload, and
// at least the largest activity (ingest.max_activity) with its headers.
func (b *Bus) LargestMsg() int64 {
	n := b.NC.MaxPayload()
	n = max(n, b.HeldReserve)
	return n
}

// FanoutAckWait is the fan-out consumer's ack wait. The activities
// stream keeps ids for duplicate detection twice as long.
const FanoutAckWait = time.Minute

// DeadLetterOverhead is what a dead-letter record adds to its activity: the
// record's own fields, the bounded attempt history and the headers.
const DeadLetterOverhead = 64 << 10

// MaxMessage is the largest bus message a config needs: its largest
// activity as a dead letter.
func MaxMessage(cfg *config.Config) int {
	return int(cfg.Ingest.MaxActivity) + DeadLetterOverhead
}

// Closed is closed when the connection to NATS is closed for good: no
// reconnect will follow.
func (b *Bus) Closed() <-chan struct{} { return b.closed }

// OpenBus connects to the configured NATS (starting the embedded server when
// asked) and creates or updates Relay's streams and buckets.
//
// maxMessage is the largest message Relay will publish (MaxMessage): the
// embedded server is configured to carry it, and an external server whose
// max_payload is smaller is refused, so a dead letter can always be stored.
func OpenBus(ctx context.Context, cfg config.NATS, maxMessage int, log *slog.Logger) (*Bus, error) {
	b := &Bus{closed: make(chan struct{})}
	onClose := nats.ClosedHandler(func(*nats.Conn) { close(b.closed) })
	var err error
	if cfg.Embedded() {
		b.embedded, b.NC, err = startEmbedded(cfg.DataDir, maxMessage, log, onClose)
	} else {
		b.NC, err = ConnectExternal(cfg, log, onClose)
	}
	if err != nil {
		return nil, err
	}
	if limit := b.NC.MaxPayload(); limit < int64(maxMessage) {
		b.Close()
		return nil, fmt.Errorf("the NATS server's max_payload is %d bytes, but ingest.max_activity (%d bytes) with its dead-letter record needs messages of %d bytes: lower ingest.max_activity to %d or less, or raise the server's max_payload",
			limit, maxMessage-DeadLetterOverhead, maxMessage, limit-DeadLetterOverhead)
	}
	if err := b.setup(ctx, cfg); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

func startEmbedded(dataDir string, maxMessage int, log *slog.Logger, opts ...nats.Option) (*server.Server, *nats.Conn, error) {
	ns, err := server.NewServer(&server.Options{
		ServerName: "relay",
		JetStream:  true,
		StoreDir:   filepath.Join(dataDir, "jetstream"),
		DontListen: true,
		NoSigs:     true,
		MaxPayload: int32(max(maxMessage, 1<<20)),
	})
	if err != nil {
		return nil, nil, fmt.Errorf("start embedded nats-server: %w", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return nil, nil, errors.New("start embedded nats-server: not ready after 30s")
	}
	nc, err := nats.Connect("", append([]nats.Option{nats.InProcessServer(ns), nats.Name("relay"), nats.MaxReconnects(-1)}, opts...)...)
	if err != nil {
		ns.Shutdown()
		return nil, nil, fmt.Errorf("connect to embedded nats-server: %w", err)
	}
	log.Info("embedded nats-server started", "store_dir", filepath.Join(dataDir, "jetstream"))
	return ns, nc, nil
}

// ConnectExternal connects to the nats-server of nats.url, with its
// credentials and TLS.
func ConnectExternal(cfg config.NATS, log *slog.Logger, opts ...nats.Option) (*nats.Conn, error) {
	security, err := natsSecurity(cfg)
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect(cfg.URL, append(append(security,
		nats.Name("relay"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond),
		// Fail publishes while disconnected rather than buffer them: ingest
		// answers 503 at once and the producer retries with the same ids.
		nats.ReconnectBufSize(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn("nats disconnected", "error", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats reconnected", "server", nc.ConnectedUrlRedacted())
		}),
	), opts...)...)
	if err != nil {
		return nil, fmt.Errorf("connect to nats %s: %w%s", config.RedactURL(cfg.URL), err, connectHint(err))
	}
	if err := checkVersion(nc.ConnectedServerVersion()); err != nil {
		nc.Close()
		return nil, err
	}
	return nc, nil
}

// checkVersion refuses a server older than minServer.
func checkVersion(v string) error {
	parts := strings.SplitN(strings.TrimPrefix(v, "v"), ".", 3)
	var got [3]int
	for i := 0; i < len(parts) && i < 3; i++ {
		digits := strings.FieldsFunc(parts[i], func(r rune) bool { return r < '0' || r > '9' })
		if len(digits) > 0 {
			got[i], _ = strconv.Atoi(digits[0])
		}
	}
	for i := range got {
		if got[i] != minServer[i] {
			if got[i] < minServer[i] {
				return fmt.Errorf("nats-server %s is too old: Relay needs 2.10 or newer (consumers with several filter subjects)", v)
			}
			return nil
		}
	}
	return nil
}

// setup creates or updates Relay's streams and buckets.
func (b *Bus) setup(ctx context.Context, cfg config.NATS) error {
	js, err := jetstream.New(b.NC)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	b.JS = js
	if err := b.setupStreams(ctx, cfg); err != nil {
		return err
	}
	return b.setupBuckets(ctx, cfg)
}

// setupStreams creates or updates the activities, queues and dead-letter
// streams.
func (b *Bus) setupStreams(ctx context.Context, cfg config.NATS) error {
	var err error
	b.Activities, err = b.JS.CreateOrUpdateStream(ctx, activitiesStream(cfg))
	if err != nil {
		return fmt.Errorf("create stream %s: %w", StreamActivities, err)
	}
	b.Queues, err = b.JS.CreateOrUpdateStream(ctx, queuesStream(cfg))
	if err != nil {
		return fmt.Errorf("create stream %s: %w", StreamQueues, err)
	}
	b.DeadLetters, err = b.JS.CreateOrUpdateStream(ctx, deadLettersStream(cfg))
	if err != nil {
		return fmt.Errorf("create stream %s: %w", StreamDeadLetters, err)
	}
	return nil
}

// activitiesStream is the ACTIVITIES stream's config: every accepted
// activity and the re-queued copies, kept for nats.retention.
func activitiesStream(cfg config.NATS) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        StreamActivities,
		Description: "Relay: every accepted activity, and replays",
		Subjects:    []string{"activities.>", SubjectRedeliver + ">"},
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
		MaxAge:      time.Duration(cfg.Retention),
		Duplicates:  time.Duration(cfg.DuplicateWindow),
		// Handed-back copies name their activity by sequence (fanout.go):
		// direct gets read it without a round trip through the API.
		AllowDirect: true,
	}
}

// queuesStream is the QUEUES stream's config: each fanned destination's
// own subject, kept for nats.retention.
func queuesStream(cfg config.NATS) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        StreamQueues,
		Description: "Relay: per fanned destination, what it has yet to take besides the fan-out (retries, hand-overs, replays)",
		Subjects:    []string{SubjectQueue + ">"},
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
		MaxAge:      time.Duration(cfg.Retention),
		// Hand-overs are deduplicated only against the same activity
		// handed over again after a crash, within the fan-out's ack wait.
		Duplicates: 2 * FanoutAckWait,
	}
}

// deadLettersStream is the DEADLETTER stream's config: the last dead
// letter of each destination and activity, kept until replayed or removed.
func deadLettersStream(cfg config.NATS) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:              StreamDeadLetters,
		Description:       "Relay: activities whose delivery failed for good, one per destination and activity",
		Subjects:          []string{subjectDeadLetter + ">"},
		Storage:           jetstream.FileStorage,
		Replicas:          cfg.Replicas,
		MaxMsgsPerSubject: 1,
	}
}

// setupBuckets creates or updates the destination-state and attempt-history
// buckets.
func (b *Bus) setupBuckets(ctx context.Context, cfg config.NATS) error {
	var err error
	b.State, err = b.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      BucketState,
		Description: "Relay: destination state (active, paused)",
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
	})
	if err != nil {
		return fmt.Errorf("create bucket %s: %w", BucketState, err)
	}
	b.Attempts, err = b.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      BucketAttempts,
		Description: "Relay: attempt history of activities being retried",
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
		TTL:         time.Duration(cfg.Retention),
	})
	if err != nil {
		return fmt.Errorf("create bucket %s: %w", BucketAttempts, err)
	}
	return nil
}

// Close drains the connection and stops the embedded server, if any.
func (b *Bus) Close() {
	if b.NC != nil {
		_ = b.NC.Drain()
		b.NC.Close()
	}
	if b.embedded != nil {
		b.embedded.Shutdown()
		b.embedded.WaitForShutdown()
	}
}

// ReadMessages hands every message of it to fn until it is closed; a
// read error stops it and is returned. onIdle, when set, is asked after
// each wait next's NextMaxWait ended without a message whether to stop.
func ReadMessages(it jetstream.MessagesContext, onIdle func() bool, fn func(jetstream.Msg), next ...jetstream.NextOpt) error {
	for {
		msg, err := it.Next(next...)
		switch {
		case errors.Is(err, nats.ErrTimeout) && onIdle != nil:
			if onIdle() {
				it.Stop()
				return nil
			}
		case errors.Is(err, jetstream.ErrMsgIteratorClosed):
			return nil
		case err != nil:
			it.Stop()
			return fmt.Errorf("next activity: %w", err)
		default:
			fn(msg)
		}
	}
}

// Ack acks msg, sending the ack again once the connection is
// back for up to half of ackWait.
func Ack(bus *Bus, msg jetstream.Msg, ackWait time.Duration) error {
	err := msg.Ack()
	if err == nil || bus == nil || bus.NC == nil {
		return err
	}
	nc := bus.NC
	changed := nc.StatusChanged(nats.CONNECTED, nats.CLOSED)
	defer nc.RemoveStatusListener(changed)
	giveUp := time.After(ackWait / 2)
	for !nc.IsClosed() {
		if nc.IsConnected() {
			if err = msg.Ack(); err == nil {
				return nil
			}
		}
		select {
		case <-changed:
		case <-giveUp:
			return err
		}
	}
	return err
}

// ConsumerName is the durable consumer of a destination.
func ConsumerName(dest string) string { return "relay_" + dest }
