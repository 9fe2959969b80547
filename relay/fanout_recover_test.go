package relay_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/relaydev/relay/relay/store"
)

// TestFanoutRecoversItsConsumer: the fan-out's consumer deleted under the
// running fan-out (its pull fails) is made again, from where the fan-out
// had read, rather than the fan-out stalling every destination: what is
// stored meanwhile is delivered, once. It is made after a take-over of an
// earlier Relay's consumers, so its first config had a start sequence; a
// restart afterwards binds it as it is.
func TestFanoutRecoversItsConsumer(t *testing.T) {
	dir := t.TempDir()
	const total, settled = 4, 1
	ids := writeOlderRelayData(t, dir, total, settled)
	r := newReceiver(t, secretA)
	yaml := baseYAML(dir) + "destinations:\n" + destYAML("a", r.srv.URL, secretA, "")
	n := startRelay(t, yaml)
	want := map[string]string{}
	for _, id := range ids[settled:] {
		want[id] = "email.open"
	}
	waitFor(t, 30*time.Second, "the unsettled activities", func() bool { return len(r.delivered()) >= len(want) })
	waitSettled(t, n, "a")

	js, err := jetstream.New(n.relay.BusConn())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := js.DeleteConsumer(ctx, store.StreamActivities, store.FanoutConsumer); err != nil {
		t.Fatal(err)
	}
	fresh := n.send(map[string]any{"type": "email", "action": "open"}, map[string]any{"type": "email", "action": "click"})
	want[fresh[0]], want[fresh[1]] = "email.open", "email.click"
	waitFor(t, 45*time.Second, "the activities stored after the fan-out's consumer was deleted", func() bool {
		got := r.delivered()
		return got[fresh[0]] >= 1 && got[fresh[1]] >= 1
	})
	waitSettled(t, n, "a")
	checkExactly(t, "a", r, want)
	n.stop()

	again := startRelay(t, yaml)
	last := again.send(map[string]any{"type": "email", "action": "open"})
	want[last[0]] = "email.open"
	waitFor(t, 30*time.Second, "an activity sent after the restart", func() bool { return r.delivered()[last[0]] == 1 })
	waitSettled(t, again, "a")
	checkExactly(t, "a", r, want)
}
