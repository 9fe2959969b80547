package deliver

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/relaydev/relay/config"
	"github.com/relaydev/relay/relay/store"
)

// natsOn starts a nats-server with JetStream on 127.0.0.1:port, storing
// under dir.
func natsOn(t *testing.T, port int, dir string) *server.Server {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	return ns
}

// TestAckSentOnceReconnected delivers an activity, loses the connection to
// NATS before the ack goes out, and checks that the ack is sent once the
// server is back, so JetStream does not deliver the activity again.
func TestAckSentOnceReconnected(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir := t.TempDir()
	ns := natsOn(t, port, dir)
	t.Cleanup(func() { ns.Shutdown() })
	nc, err := store.ConnectExternal(config.NATS{URL: fmt.Sprintf("nats://127.0.0.1:%d", port)}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js, _ := jetstream.New(nc)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, "T", jetstream.ConsumerConfig{Durable: "c", AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "t.a", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	msg := <-batch.Messages()
	if msg == nil {
		t.Fatal("no message fetched")
	}

	ns.Shutdown() // the bus goes away between delivery and ack
	ns.WaitForShutdown()
	for deadline := time.Now().Add(10 * time.Second); nc.IsConnected(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("client never noticed the server stopped")
		}
	}
	w := &Worker{st: Stores{Bus: &store.Bus{NC: nc}}, ackWait: time.Minute}
	acked := make(chan error, 1)
	go func() { acked <- w.ack(msg) }()
	select {
	case err := <-acked:
		t.Fatalf("ack returned %v while the server was down, want it to wait", err)
	case <-time.After(300 * time.Millisecond): // the ack is held, not dropped
	}
	ns = natsOn(t, port, dir)
	select {
	case err := <-acked:
		if err != nil {
			t.Fatalf("ack after reconnecting: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("ack never sent after the server came back")
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		info, err := cons.Info(ctx)
		if err == nil && info.NumAckPending == 0 && info.AckFloor.Stream == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the activity is still pending after the ack: %+v, %v", info, err)
		}
	}
}
