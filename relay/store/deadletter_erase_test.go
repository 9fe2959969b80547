package store

import (
	"bytes"
	"context"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/relaydev/relay/config"
)

// TestDeadLetterBytesOverwritten: a dead letter replaced by a newer one
// (a replay that failed again) and one removed (replayed) leave no byte
// of their activity on disk, so an erasure, which sees only the records
// still there, leaves nothing behind.
func TestDeadLetterBytesOverwritten(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	bus, err := OpenBus(ctx, config.NATS{URL: "embedded", DataDir: dir, Replicas: 1}, 1<<20, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	s := &DeadLetters{JS: bus.JS, Stream: bus.DeadLetters}
	put := func(id, marker string) {
		t.Helper()
		dl := DeadLetter{ID: id, Destination: "d", DeadAt: time.Now().UTC(), Activity: []byte(`{"id":"` + id + `","contact":{"email":"` + marker + `"}}`)}
		if err := s.Put(ctx, dl); err != nil {
			t.Fatal(err)
		}
	}
	put("a", "first-run@example.org")
	put("a", "second-run@example.org") // replaces the first
	put("b", "removed@example.org")
	put("c", "kept@example.org")
	if err := s.Remove(ctx, "d", "b"); err != nil {
		t.Fatal(err)
	}
	bus.Close()
	for needle, want := range map[string]bool{"first-run@example.org": false, "removed@example.org": false, "second-run@example.org": true, "kept@example.org": true} {
		if got := holds(t, dir, needle); got != want {
			t.Errorf("%s on disk: %v, want %v", needle, got, want)
		}
	}
}

func holds(t *testing.T, dir, needle string) bool {
	t.Helper()
	found := false
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		found = found || bytes.Contains(data, []byte(needle))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}
