package relay_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/relaydev/relay/relay/activity"
	"github.com/relaydev/relay/relay/store"
)

// TestFanoutTakesOverOlderConsumers: data written by a Relay from before
// the fan-out, where each destination's consumer read the activities
// itself. The activities that consumer had not settled are delivered by
// the fan-out, those it had are not sent again, and the old consumer is
// gone.
func TestFanoutTakesOverOlderConsumers(t *testing.T) {
	dir := t.TempDir()
	const total, settled = 30, 10
	ids := writeOlderRelayData(t, dir, total, settled)

	r := newReceiver(t, secretA)
	n := startRelay(t, baseYAML(dir)+"destinations:\n"+destYAML("a", r.srv.URL, secretA, ""))
	want := map[string]string{}
	for _, id := range ids[settled:] {
		want[id] = "email.open"
	}
	waitFor(t, 30*time.Second, "the unsettled activities", func() bool { return len(r.delivered()) >= len(want) })
	waitSettled(t, n, "a")
	checkExactly(t, "a", r, want)

	if _, err := n.relay.ConsumerDelivered(context.Background(), store.StreamActivities, store.ConsumerName("a")); !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Errorf("the older consumer on %s: %v, want it deleted", store.StreamActivities, err)
	}
}

// writeOlderRelayData stores total activities the way a Relay before the
// fan-out did, with destination a's consumer on ACTIVITIES having acked the
// first settled of them, and returns their ids in stored order.
func writeOlderRelayData(t *testing.T, dir string, total, settled int) []string {
	t.Helper()
	ns, err := server.NewServer(&server.Options{JetStream: true, StoreDir: filepath.Join(dir, "jetstream"), DontListen: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	nc, err := nats.Connect("", nats.InProcessServer(ns))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: store.StreamActivities, Subjects: []string{"activities.>", "relay.redeliver.>"}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	cons, err := js.CreateConsumer(ctx, store.StreamActivities, jetstream.ConsumerConfig{
		Durable: store.ConsumerName("a"), FilterSubjects: []string{"activities.>", "relay.redeliver.a"},
		AckPolicy: jetstream.AckExplicitPolicy, DeliverPolicy: jetstream.DeliverNewPolicy,
	})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	now := time.Now().UTC()
	for i := range total {
		a := &activity.Activity{ID: fmt.Sprintf("older-%02d", i), Name: "email.open", Type: "email", Action: "open",
			OccurredAt: now, ReceivedAt: now, Contact: []byte(`{"email":"a@example.com"}`)}
		data, err := activity.Encode(a)
		if err != nil {
			t.Fatal(err)
		}
		msg := &nats.Msg{Subject: "activities.email.open", Data: data, Header: nats.Header{}}
		msg.Header.Set(jetstream.MsgIDHeader, a.ID)
		msg.Header.Set("Relay-Id", a.ID)
		msg.Header.Set("Relay-Name", a.Name)
		msg.Header.Set("Relay-Occurred-At", now.Format(time.RFC3339Nano))
		if _, err := js.PublishMsg(ctx, msg); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, a.ID)
	}
	batch, err := cons.Fetch(settled, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	acked := 0
	for msg := range batch.Messages() {
		if err := msg.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
		acked++
	}
	if acked != settled {
		t.Fatalf("acked %d of %d", acked, settled)
	}
	return ids
}

// TestFanoutRestartsAfterTakingOver: the fan-out's consumer, made with a
// start sequence when it took over an earlier Relay's consumers, is bound
// as it is on the next start (its deliver policy cannot change): the relay
// starts and delivers what arrives.
func TestFanoutRestartsAfterTakingOver(t *testing.T) {
	dir := t.TempDir()
	const total, settled = 6, 2
	ids := writeOlderRelayData(t, dir, total, settled)

	r := newReceiver(t, secretA)
	yaml := baseYAML(dir) + "destinations:\n" + destYAML("a", r.srv.URL, secretA, "")
	first := startRelay(t, yaml)
	waitFor(t, 30*time.Second, "the unsettled activities", func() bool { return len(r.delivered()) >= total-settled })
	waitSettled(t, first, "a")
	first.stop()

	second := startRelay(t, yaml)
	fresh := second.send(map[string]any{"type": "email", "action": "open"}, map[string]any{"type": "email", "action": "click"})
	waitFor(t, 30*time.Second, "the activities sent after the restart", func() bool {
		got := r.delivered()
		return got[fresh[0]] == 1 && got[fresh[1]] == 1
	})
	waitSettled(t, second, "a")
	want := map[string]string{fresh[0]: "email.open", fresh[1]: "email.click"}
	for _, id := range ids[settled:] {
		want[id] = "email.open"
	}
	checkExactly(t, "a", r, want)
}
