package deliver

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// gate holds every lane until the activities another process still held
// when this one started work have come back (or a bound passed).
type gate struct {
	needed int
	upTo   uint64
	timer  *time.Timer
}

// startGate closes the gate when an activity arrives after the process has
// held nothing for a while (its start, or a fail-over to it): activities
// another process held may still come back, and a contact's later ones
// must wait for them. It reads how many are out (NumAckPending) and up to
// which sequence JetStream has delivered.
func (s *orderSession) startGate(seq uint64) {
	s.mu.Lock()
	start := s.gate == nil && len(s.held) == 0 && time.Since(s.lastMsg) > orderIdleGap
	s.mu.Unlock()
	if !start {
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
	defer cancel()
	var info *jetstream.ConsumerInfo
	var err error
	if cons := s.w.consumer(); cons == nil {
		err = errors.New("the consumer is not bound")
	} else {
		info, err = cons.Info(ctx)
	}
	if err != nil {
		s.w.log.Warn("reading the consumer to resume in order; waiting the ack wait instead", "error", err)
		info = &jetstream.ConsumerInfo{NumAckPending: orderMaxPending, Delivered: jetstream.SequenceInfo{Stream: seq}}
	}
	if info.NumAckPending == 0 {
		return
	}
	bound := s.w.ackWait + 5*time.Second
	g := &gate{needed: info.NumAckPending, upTo: info.Delivered.Stream}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gate = g
	g.timer = time.AfterFunc(bound, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.gate == g {
			s.w.log.Warn("resuming in order: not every activity out elsewhere came back within the bound", "missing", g.needed, "bound", bound)
			s.openGate()
		}
	})
	s.w.log.Debug("resuming in order: waiting for activities out elsewhere", "out", info.NumAckPending, "up_to_seq", g.upTo)
}

// countArrival counts an activity (not one already held) toward the gate.
// Each arrival up to the delivered sequence read is one of those that were
// out. Called with s.mu held.
func (s *orderSession) countArrival(seq uint64) {
	g := s.gate
	if g == nil || seq > g.upTo {
		return
	}
	g.needed--
	if g.needed <= 0 {
		g.timer.Stop()
		s.openGate()
	}
}

// openGate lets every lane go, its head now the oldest it holds. Called
// with s.mu held.
func (s *orderSession) openGate() {
	s.gate = nil
	for _, l := range s.byKey {
		s.schedule(l)
	}
}
