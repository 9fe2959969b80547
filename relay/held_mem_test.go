package relay_test

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestHeldMemoryReport logs the process's RSS with a backlog of large
// activities behind a failing receiver (the scenario: 1,500
// activities of 300 KB, one contact each), ordered and unordered, while
// ingesting and after a restart. It measures, it asserts nothing: run it
// with RELAY_HELD_MEM=1 (RELAY_HELD_MEM_N=… for another count,
// RELAY_HELD_PROFILE=dir for heap profiles).
func TestHeldMemoryReport(t *testing.T) {
	if os.Getenv("RELAY_HELD_MEM") == "" {
		t.Skip("a measurement: RELAY_HELD_MEM=1 runs it")
	}
	count := 1500
	if v := os.Getenv("RELAY_HELD_MEM_N"); v != "" {
		fmt.Sscan(v, &count)
	}
	for _, order := range []bool{true, false} {
		name := "unordered"
		if order {
			name = "ordered"
		}
		t.Run(name, func(t *testing.T) { heldMemory(t, name, order, count) })
	}
}

func heldMemory(t *testing.T, name string, order bool, count int) {
	const size = 300_000
	var attempted atomic.Int64
	seen := map[string]bool{}
	rcv := newOrderReceiver(t, func(contact string, n, attempt int) int {
		if attempt == 1 && !seen[contact] {
			seen[contact] = true
			attempted.Add(1)
		}
		return http.StatusInternalServerError
	})
	rules := "    breaker: off\n    max_in_flight: 64\n    retry: {schedule: [1h], max_age: 72h}"
	if order {
		rules = "    order: contact\n" + rules
	}
	yaml := baseYAML(t.TempDir()) + "destinations:\n" + destYAML("d", rcv.srv.URL, secretA, rules)
	resetPeak()
	n := startRelay(t, yaml)
	filler := strings.Repeat("x", size)
	for from := 0; from < count; from += 15 {
		items := make([]map[string]any, 0, 15)
		for i := from; i < min(from+15, count); i++ {
			items = append(items, map[string]any{"id": fmt.Sprintf("a%d", i), "type": "email", "action": "open",
				"contact": map[string]any{"id": fmt.Sprintf("c%d", i)}, "attributes": map[string]any{"pad": filler}})
		}
		n.send(items...)
	}
	waitFor(t, 5*time.Minute, "every activity attempted once", func() bool { return attempted.Load() == int64(count) })
	if order {
		waitFor(t, time.Minute, "the lanes to hold every activity", func() bool { return n.destinations()["d"].Order.Held == count })
	}
	profile(t, name+"-ingest")
	cur, peak := rss()
	t.Logf("%s, %d × %d B, receiver failing: while ingesting and holding: peak RSS %d MB, RSS now %d MB (after a GC: %d MB)", name, count, size, peak>>20, cur>>20, freed()>>20)
	// The embedded server keeps a file-store block in memory until 10 s
	// after it was last written or read: measured again once that passed.
	pass(15 * time.Second)
	profile(t, name+"-settled")
	cur, _ = rss()
	t.Logf("%s, 15 s later (the server's block caches expired): RSS %d MB (after a GC: %d MB)", name, cur>>20, freed()>>20)
	n.stop()
	resetPeak()
	n = startRelay(t, yaml)
	if order {
		waitFor(t, 2*time.Minute, "the lanes to hold every activity again", func() bool {
			st := n.destinations()["d"].Order
			return st != nil && st.Held == count && !st.Resuming
		})
	} else {
		// The restarted relay reads what it had not settled (its retries
		// wait an hour): give it the time the ordered one took to resume.
		pass(20 * time.Second)
	}
	profile(t, name+"-resumed")
	cur, peak = rss()
	t.Logf("%s, after a restart and resume: peak RSS %d MB, RSS now %d MB (after a GC: %d MB)", name, peak>>20, cur>>20, freed()>>20)
	n.stop()
}

// rss is the process's resident set now and at most since resetPeak.
func rss() (cur, peak int64) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var kb int64
		if _, err := fmt.Sscanf(sc.Text(), "VmRSS: %d kB", &kb); err == nil {
			cur = kb << 10
		}
		if _, err := fmt.Sscanf(sc.Text(), "VmHWM: %d kB", &kb); err == nil {
			peak = kb << 10
		}
	}
	return cur, peak
}

// resetPeak starts VmHWM again from the current RSS.
func resetPeak() {
	runtime.GC()
	debug.FreeOSMemory()
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

// freed is the RSS after the garbage is collected and returned.
func freed() int64 {
	runtime.GC()
	debug.FreeOSMemory()
	cur, _ := rss()
	return cur
}

func profile(t *testing.T, name string) {
	dir := os.Getenv("RELAY_HELD_PROFILE")
	if dir == "" {
		return
	}
	runtime.GC()
	f, err := os.Create(dir + "/" + name + ".heap")
	if err != nil {
		t.Log(err)
		return
	}
	defer f.Close()
	_ = pprof.WriteHeapProfile(f)
}

// pass lets d go by: the measurement is of a relay left alone that long.
func pass(d time.Duration) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	<-timer.C
}
