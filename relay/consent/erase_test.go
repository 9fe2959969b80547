package consent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/relaydev/relay/relay/store"
)

// TestEraseAmongMany: one person's 10 activities (and their delivery-log
// records) among n stored ones — 20,000 by default, RELAY_ERASE_N=1000000
// for the figure in README — are found and erased, the answer counts
// them, and no byte of the data directory holds the person's address
// afterwards while another person's is still there. It logs how long the
// erasure took.
func TestEraseAmongMany(t *testing.T) {
	n := 20_000
	if v := os.Getenv("RELAY_ERASE_N"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			t.Fatal(err)
		}
	}
	if testing.Short() {
		n = 2_000
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	dir := t.TempDir()
	bus, err := store.OpenBus(ctx, testNATS(dir), 1<<20, discard())
	if err != nil {
		t.Fatal(err)
	}
	dlog, err := store.OpenDeliveryLog(ctx, bus.NC, 1, time.Hour, 0, discard(), nil)
	if err != nil {
		t.Fatal(err)
	}
	const target = "zed.target@example.net"
	start := time.Now()
	js, err := jetstream.New(bus.NC, jetstream.WithPublishAsyncMaxPending(8192))
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		email := fmt.Sprintf("p%d@example.net", i%50_000)
		if i%(n/10) == 7 {
			email = target
		}
		id := fmt.Sprintf("act-%08d", i)
		data := fmt.Sprintf(`{"id":%q,"name":"email.open","type":"email","action":"open","occurred_at":"2026-11-22T10:00:00Z","received_at":"2026-11-22T10:00:00Z","contact":{"email":%q},"attributes":{"campaign":"bench","pad":"%0200d"}}`, id, email, 0)
		msg := &nats.Msg{Subject: "activities.email.open", Data: []byte(data), Header: nats.Header{store.HeaderID: {id}, jetstream.MsgIDHeader: {id}}}
		if _, err := js.PublishMsgAsync(msg); err != nil {
			t.Fatal(err)
		}
		entry := fmt.Sprintf(`{"id":%q,"seq":%d,"name":"email.open","received_at":"2026-11-22T10:00:00Z"}`, id, i+1)
		if _, err := js.PublishAsync("relay.stored."+logBucket(id), []byte(entry)); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		t.Fatal("publishing did not complete")
	}
	t.Logf("stored %d activities in %s", n, time.Since(start).Round(time.Millisecond))
	p, err := NewPerson("email", "Zed.Target@example.net")
	if err != nil {
		t.Fatal(err)
	}
	e := &Eraser{JS: bus.JS, LogOn: true}
	rec, err := e.Erase(ctx, p, "admin")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("erased one person among %d activities in %d ms: %+v", n, rec.TookMS, rec.Erased)
	if rec.Erased.Activities != 10 || rec.Erased.LogEntries != 10 {
		t.Errorf("erased %+v, want 10 activities and 10 log entries", rec.Erased)
	}
	kv, err := bus.JS.KeyValue(ctx, BucketErasures)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := kv.Keys(ctx)
	if err != nil || len(keys) != 1 {
		t.Fatalf("erasure records: %v %v", keys, err)
	}
	entry, err := kv.Get(ctx, keys[0])
	if err != nil {
		t.Fatal(err)
	}
	var kept ErasureRecord
	if err := json.Unmarshal(entry.Value(), &kept); err != nil || kept.By != "admin" || kept.Field != "email" || kept.Identifier != p.Hash() || kept.Erased != rec.Erased || bytes.Contains(entry.Value(), []byte("zed")) {
		t.Errorf("erasure record %s (%v)", entry.Value(), err)
	}
	if found, _ := e.Find(ctx, p, func(jetstream.Msg) {}); found != n-10 {
		t.Errorf("%d activities left, want %d", found, n-10)
	}
	dlog.Close()
	bus.Close()
	if holds(t, dir, target) {
		t.Error("the erased address is still in the data directory")
	}
	if !holds(t, dir, "p3@example.net") {
		t.Error("another person's address is gone too: the search proves nothing")
	}
}

// logBucket is the delivery log's bucket of an activity id (store's
// layout), for writing records as ingest does.
func logBucket(id string) string {
	h := fnv.New32a()
	_, _ = h.Write([]byte(id))
	return fmt.Sprintf("%02x", h.Sum32()&0xff)
}

func holds(t *testing.T, dir, needle string) bool {
	t.Helper()
	found := false
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || found {
			return err
		}
		data, err := os.ReadFile(path)
		found = bytes.Contains(bytes.ToLower(data), []byte(needle))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// TestScanReadsEachOnce: a stream long enough to be read in parts, with
// messages deleted here and there (a whole part's worth at the start of
// one), hands every message left exactly once and nothing else.
func TestScanReadsEachOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bus := openBus(t, ctx)
	st, err := bus.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "SCANNED", Subjects: []string{"scanned.>"}, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	const n = scanSplit + 5_000
	for i := range n {
		if _, err := bus.JS.PublishAsync(fmt.Sprintf("scanned.%d", i%7), []byte(strconv.Itoa(i+1))); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-bus.JS.PublishAsyncComplete():
	case <-ctx.Done():
		t.Fatal("publishing did not complete")
	}
	gone := map[uint64]bool{}
	for seq := uint64(1); seq <= n; seq += 997 {
		gone[seq] = true
	}
	for seq := uint64(n/2 - 100); seq <= n/2+3_000; seq++ { // around where the second of two parts starts
		gone[seq] = true
	}
	for seq := range gone {
		if err := st.DeleteMsg(ctx, seq); err != nil {
			t.Fatal(err)
		}
	}
	seen := make([]atomic.Int32, n+1)
	err = scan(ctx, bus.JS, "SCANNED", nil, func(msg jetstream.Msg) {
		seq := seqOf(msg)
		if seq == 0 || seq > n || string(msg.Data()) != strconv.FormatUint(seq, 10) {
			t.Errorf("message %d: %q", seq, msg.Data())
			return
		}
		seen[seq].Add(1)
	})
	if err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= n; seq++ {
		want := int32(1)
		if gone[seq] {
			want = 0
		}
		if got := seen[seq].Load(); got != want {
			t.Fatalf("message %d handed %d times, want %d", seq, got, want)
		}
	}
}
