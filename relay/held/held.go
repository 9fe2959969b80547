// Package held bounds what the engine holds while activities wait (engine.max_held_bytes,
// DESIGN §17): the activities an ordered destination's lanes hold, the
// fan-out's shares not yet settled and the batches being gathered or
// delivered are bounded in bytes as well as in count. Each reader charges
// what it takes to one budget for the process and, past it, takes no more
// from the stream until some settle (it drains its pull and hands back
// what was buffered, so nothing waits unseen past its ack wait).
//
// An ordered lane does not keep an activity's data while it waits: it
// keeps a handle (Msg: sequence, subject, headers, the delivery's
// reply subject for ack, nak and in-progress) and reads the data again by
// sequence when it attempts the activity, unless the budget had room to
// keep it warm. What a lane holds then costs a few hundred bytes an
// activity, whatever the activity's size.
package held

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/relaydev/relay/config"
)

// HandleOverhead is what a held activity costs besides its data and
// strings: the handle, its lane entry, metadata and map slots.
const HandleOverhead = 384

// Budget is engine.max_held_bytes for the process.
type Budget struct {
	max     int64
	reserve int64 // the largest stored message: what a reader may take next
	used    atomic.Int64
	peak    atomic.Int64

	mu   sync.Mutex
	room chan struct{} // closed when bytes are released
}

// storedSlack is what a stored activity's message adds to its JSON
// (ingest.max_activity bounds): subject, headers, reply subject.
const storedSlack = 4 << 10

// New is a budget of max bytes for activities of at most
// maxActivity bytes.
func New(max, maxActivity int64) *Budget {
	if max <= 0 {
		max = config.DefaultMaxHeldBytes
	}
	if maxActivity <= 0 {
		maxActivity = config.DefaultMaxActivity
	}
	return &Budget{max: max, reserve: maxActivity + storedSlack, room: make(chan struct{})}
}

// heldGauge exposes the budget's use as relay_engine_held_bytes.
func (b *Budget) Register(reg prometheus.Registerer) {
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "relay_engine_held_bytes",
		Help: "Bytes of the activities the engine holds while they wait (ordered lanes, fan-out shares, batches); bounded by engine.max_held_bytes.",
	}, func() float64 { return float64(b.used.Load()) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "relay_engine_max_held_bytes",
		Help: "engine.max_held_bytes: past it the engine takes no more activities from the stream until some settle.",
	}, func() float64 { return float64(b.max) }))
}

// Account is one reader's share of the budget: what it holds counts
// toward the whole, and a reader holding nothing may always take one
// activity, so no reader waits forever on what another holds.
type Account struct {
	b   *Budget
	own atomic.Int64
}

// Account opens a reader's share of the budget.
func (b *Budget) Account() *Account {
	if b == nil {
		return nil
	}
	return &Account{b: b}
}

// Used is what the whole engine holds.
func (a *Account) Used() int64 {
	if a == nil {
		return 0
	}
	return a.b.used.Load()
}

// Charge counts n bytes held.
func (a *Account) Charge(n int64) {
	if a == nil || n == 0 {
		return
	}
	a.own.Add(n)
	used := a.b.used.Add(n)
	for p := a.b.peak.Load(); used > p && !a.b.peak.CompareAndSwap(p, used); p = a.b.peak.Load() {
	}
}

// TryWarm counts n bytes of data kept warm when they fit in half the
// budget: warm data is optional, and the other half stays for what must
// be held.
func (a *Account) TryWarm(n int64) bool {
	if a == nil {
		return false
	}
	for {
		used := a.b.used.Load()
		if used+n > a.b.max/2 {
			return false
		}
		if a.b.used.CompareAndSwap(used, used+n) {
			a.own.Add(n)
			for p := a.b.peak.Load(); used+n > p && !a.b.peak.CompareAndSwap(p, used+n); p = a.b.peak.Load() {
			}
			return true
		}
	}
}

// Release gives n bytes back and wakes the readers waiting for room.
func (a *Account) Release(n int64) {
	if a == nil || n == 0 {
		return
	}
	a.own.Add(-n)
	a.b.used.Add(-n)
	a.b.mu.Lock()
	close(a.b.room)
	a.b.room = make(chan struct{})
	a.b.mu.Unlock()
}

// HasRoom reports whether the reader may take another activity: one of
// the largest size fits, or it holds nothing itself.
func (a *Account) HasRoom() bool {
	return a == nil || a.b.used.Load()+a.b.reserve <= a.b.max || a.own.Load() <= 0
}

// WaitRoom waits until the reader may take activities again (an eighth
// of the budget below where it stopped); false when
// ctx is done first, or go (looked at every second) turns false.
func (a *Account) WaitRoom(ctx context.Context, goOn func() bool) bool {
	if a == nil {
		return true
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		a.b.mu.Lock()
		room := a.b.room
		a.b.mu.Unlock()
		// Some way below the bound, so that a reader does not stop again
		// after every single activity.
		if a.b.used.Load()+a.b.reserve <= a.b.max-a.b.max/8 || a.own.Load() <= 0 {
			return true
		}
		if !goOn() {
			return false
		}
		select {
		case <-room:
		case <-tick.C:
		case <-ctx.Done():
			return false
		}
	}
}

// FetchBytes is how many bytes a fetch may ask for: what the budget has
// room for, less a handle's cost per message, and at least largest, the
// largest message (one that did not fit would stall the fetch); 0: no
// budget, no bound.
func (a *Account) FetchBytes(largest int64) int {
	if a == nil {
		return 0
	}
	return int(max((a.b.max-a.b.used.Load())*3/4, a.b.reserve, largest))
}

// MsgBytes is what holding a message costs: its data, subject, reply
// subject and headers, and a handle.
func MsgBytes(msg jetstream.Msg) int64 {
	return int64(len(msg.Data())) + HandleBytes(msg)
}

// HandleBytes is what a Msg of msg costs.
func HandleBytes(msg jetstream.Msg) int64 {
	n := HandleOverhead + len(msg.Subject()) + len(msg.Reply())
	for k, vs := range msg.Headers() {
		for _, v := range vs {
			n += len(k) + len(v) + 16
		}
	}
	return int64(n)
}

// Msg is a delivered message without its data: what a lane keeps of
// an activity while it waits. It acknowledges, hands back and keeps alive
// the delivery as the message itself would (the same reply subject).
type Msg struct {
	nc      *nats.Conn
	subject string
	reply   string
	header  nats.Header
	md      *jetstream.MsgMetadata

	mu   sync.Mutex
	ackd bool
}

var _ jetstream.Msg = (*Msg)(nil)

// NewMsg keeps msg's delivery without its data.
func NewMsg(nc *nats.Conn, msg jetstream.Msg, md *jetstream.MsgMetadata) *Msg {
	return &Msg{nc: nc, subject: msg.Subject(), reply: msg.Reply(), header: msg.Headers(), md: md}
}

func (m *Msg) Metadata() (*jetstream.MsgMetadata, error) { return m.md, nil }
func (m *Msg) Data() []byte                              { return nil }
func (m *Msg) Headers() nats.Header                      { return m.header }
func (m *Msg) Subject() string                           { return m.subject }
func (m *Msg) Reply() string                             { return m.reply }
func (m *Msg) Ack() error                                { return m.reply2(context.Background(), "+ACK", false, false) }
func (m *Msg) DoubleAck(ctx context.Context) error       { return m.reply2(ctx, "+ACK", true, false) }
func (m *Msg) Nak() error                                { return m.reply2(context.Background(), "-NAK", false, false) }
func (m *Msg) InProgress() error                         { return m.reply2(context.Background(), "+WPI", false, true) }
func (m *Msg) Term() error                               { return m.reply2(context.Background(), "+TERM", false, false) }

func (m *Msg) NakWithDelay(delay time.Duration) error {
	if delay <= 0 {
		return m.Nak()
	}
	return m.reply2(context.Background(), fmt.Sprintf("-NAK {\"delay\": %d}", delay.Nanoseconds()), false, false)
}

func (m *Msg) TermWithReason(reason string) error {
	if reason == "" {
		return m.Term()
	}
	return m.reply2(context.Background(), "+TERM "+reason, false, false)
}

// reply2 sends an acknowledgement as jetstream.Msg does: once, except
// in-progress, which may be sent any number of times.
func (m *Msg) reply2(ctx context.Context, body string, sync, again bool) error {
	if m.reply == "" {
		return jetstream.ErrMsgNoReply
	}
	m.mu.Lock()
	ackd := m.ackd
	m.mu.Unlock()
	if ackd {
		return jetstream.ErrMsgAlreadyAckd
	}
	var err error
	if sync {
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
		}
		_, err = m.nc.RequestWithContext(ctx, m.reply, []byte(body))
	} else {
		err = m.nc.Publish(m.reply, []byte(body))
	}
	if err != nil {
		return err
	}
	if !again {
		m.mu.Lock()
		m.ackd = true
		m.mu.Unlock()
	}
	return nil
}

// Max is the budget in bytes.
func (b *Budget) Max() int64 { return b.max }

// Reserve is the largest stored message: what a reader may take next.
func (b *Budget) Reserve() int64 { return b.reserve }

// Held is what is held now, and the most held since the budget was made.
func (b *Budget) Held() (now, peak int64) { return b.used.Load(), b.peak.Load() }

// Budget is the budget the account charges.
func (a *Account) Budget() *Budget { return a.b }
