package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/relaydev/relay/relay/api"
)

// none stands for a figure the server did not give.
const none = "—"

// destinationStatus is one entry of GET /v1/destinations as the CLI
// reads it: api.DestinationStatus, with the figures a server may leave
// out read as pointers, which shadow the api type's: absent is not zero.
// (Today's server always sends them; LastSuccessAt, LastFailureAt,
// P99LatencyMS and Order are pointers in the api type already.)
type destinationStatus struct {
	api.DestinationStatus
	Pending              *uint64  `json:"pending"`
	OldestPendingSeconds *float64 `json:"oldest_pending_seconds"`
	DeliveredLastMinute  *int     `json:"delivered_last_minute"`
	FailedLastMinute     *int     `json:"failed_last_minute"`
}

// cmdStatus prints what every destination is doing now.
func cmdStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("status", stderr)
	cf := addClientFlags(fs, true)
	asJSON := fs.Bool("json", false, "print the server's answer as one JSON document (with --watch, one a line)")
	watch := fs.Bool("watch", false, "redraw the table every --every until interrupted")
	every := fs.Duration("every", 2*time.Second, "how often --watch redraws")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if *every <= 0 {
		return usageError(fs, "--every: want a positive duration, got %s", *every)
	}
	c, err := cf.client(stderr)
	if err != nil {
		return err
	}
	if *watch {
		return watchStatus(ctx, c, *asJSON, *every, stdout)
	}
	return showStatus(ctx, c, *asJSON, stdout)
}

// clearScreen moves the cursor home and clears the terminal.
const clearScreen = "\x1b[H\x1b[2J"

// watchStatus redraws the status every interval until ctx is done
// (Ctrl-C), which is a normal end. A failed read is shown in place of the
// table, and the next one tried.
func watchStatus(ctx context.Context, c *apiClient, asJSON bool, every time.Duration, stdout io.Writer) error {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		var buf bytes.Buffer
		err := showStatus(ctx, c, asJSON, &buf)
		if ctx.Err() != nil {
			return nil
		}
		switch {
		case asJSON && err == nil:
			_, _ = stdout.Write(bytes.ReplaceAll(bytes.TrimSpace(compactJSON(buf.Bytes())), []byte("\n"), nil))
			fmt.Fprintln(stdout)
		case asJSON:
			fmt.Fprintf(stdout, "{\"error\":%q}\n", err.Error())
		default:
			fmt.Fprintf(stdout, "%srelay status, every %s · %s (Ctrl-C stops)\n\n", clearScreen, every, now().Format("15:04:05"))
			if err != nil {
				fmt.Fprintf(stdout, "relay: %v\n(trying again)\n", err)
			} else {
				_, _ = buf.WriteTo(stdout)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// compactJSON is a JSON document on one line (as it is, when it is not
// JSON).
func compactJSON(b []byte) []byte {
	var out bytes.Buffer
	if json.Compact(&out, b) != nil {
		return b
	}
	return out.Bytes()
}

// showStatus reads the destinations once and prints them.
func showStatus(ctx context.Context, c *apiClient, asJSON bool, stdout io.Writer) error {
	var raw json.RawMessage
	if err := c.do(ctx, "GET", "/v1/destinations", nil, &raw); err != nil {
		return err
	}
	if asJSON {
		return printRaw(stdout, raw)
	}
	var answer struct {
		Destinations []destinationStatus `json:"destinations"`
	}
	if err := json.Unmarshal(raw, &answer); err != nil {
		return fmt.Errorf("GET /v1/destinations: unexpected answer: %w", err)
	}
	return printStatus(stdout, answer.Destinations, now())
}

// printStatus writes the destinations table; ages are counted back from
// at.
func printStatus(w io.Writer, all []destinationStatus, at time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tTYPE\tSTATE\tBREAKER\tPENDING\tOLDEST\tDELIVERED/1M\tFAILED/1M\tLAST SUCCESS\tLAST FAILURE\tP99")
	for _, d := range all {
		oldest := none
		if d.OldestPendingSeconds != nil && (d.Pending == nil || *d.Pending > 0) {
			oldest = humanDuration(time.Duration(*d.OldestPendingSeconds * float64(time.Second)))
		}
		p99 := none
		if d.P99LatencyMS != nil {
			p99 = humanMillis(*d.P99LatencyMS)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.Name, d.Type, orNone(d.State), orNone(d.Breaker),
			count(d.Pending), oldest, count(d.DeliveredLastMinute), count(d.FailedLastMinute),
			ago(d.LastSuccessAt, at), ago(d.LastFailureAt, at), p99)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return printOrder(w, all)
}

// printOrder writes a line for each destination with order: contact: what
// the process asked holds in its contacts' lanes.
func printOrder(w io.Writer, all []destinationStatus) error {
	for _, d := range all {
		o := d.Order
		if o == nil {
			continue
		}
		line := fmt.Sprintf("%s: ordered by %s; this process holds %d activities of %d contacts, %d behind an earlier one of their contact", d.Name, o.Key, o.Held, o.Contacts, o.HeldBehind)
		if o.Resuming {
			line += "; resuming: waiting for activities another process held"
		}
		if _, err := fmt.Fprintln(w, line); err != nil {
			return err
		}
	}
	return nil
}

func orNone(s string) string {
	if s == "" {
		return none
	}
	return s
}

func count[N int | uint64](n *N) string {
	if n == nil {
		return none
	}
	return fmt.Sprint(*n)
}

// ago is how long before now t was ("3m12s ago"); nil is none.
func ago(t *time.Time, now time.Time) string {
	if t == nil || t.IsZero() {
		return none
	}
	return humanDuration(now.Sub(*t)) + " ago"
}

// humanDuration writes d to the second, in its two largest units: 45s,
// 3m12s, 2h5m, 3d4h.
func humanDuration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	s := int64(d / time.Second)
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%ds", s/60, s%60)
	case s < 86400:
		return fmt.Sprintf("%dh%dm", s/3600, s%3600/60)
	}
	return fmt.Sprintf("%dd%dh", s/86400, s%86400/3600)
}

// humanMillis writes a latency: 12ms, 0.4ms, 1.5s.
func humanMillis(ms float64) string {
	switch {
	case ms >= 1000:
		return strconv.FormatFloat(ms/1000, 'f', 1, 64) + "s"
	case ms >= 10:
		return strconv.FormatFloat(ms, 'f', 0, 64) + "ms"
	}
	return strconv.FormatFloat(ms, 'f', 1, 64) + "ms"
}

// printRaw writes a JSON answer indented, as one document, its values
// as the server wrote them.
func printRaw(w io.Writer, raw json.RawMessage) error {
	var b bytes.Buffer
	if err := json.Indent(&b, raw, "", "  "); err != nil {
		return fmt.Errorf("unexpected answer: %w", err)
	}
	b.WriteByte('\n')
	_, err := b.WriteTo(w)
	return err
}
