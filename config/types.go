package config

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Secret is a value that never prints: String, JSON and logs show it
// redacted. Value returns the real thing.
type Secret string

// Value returns the secret itself.
func (s Secret) Value() string { return string(s) }

// String redacts: "whsec_…abcd" for webhook secrets, "<secret>" otherwise.
func (s Secret) String() string {
	v := string(s)
	if rest, ok := strings.CutPrefix(v, "whsec_"); ok && len(rest) >= 12 {
		return "whsec_…" + rest[len(rest)-4:]
	}
	if v == "" {
		return ""
	}
	return "<secret>"
}

// MarshalJSON writes the redacted form.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// LogValue logs the redacted form.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// Duration is a time.Duration written as a Go duration string ("150ms", "2h").
type Duration time.Duration

// UnmarshalYAML parses a Go duration.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil || n.Kind != yaml.ScalarNode {
		return fmt.Errorf("expected a duration like 30s, got %q", n.Value)
	}
	*d = Duration(v)
	return nil
}

func (d Duration) String() string { return time.Duration(d).String() }

// MarshalJSON writes the Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// ByteSize is a size in bytes, written "5MiB", "512KiB", "1MB" or plain bytes.
type ByteSize int64

var byteUnits = []struct {
	suffix string
	n      int64
}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000}, {"B", 1}}

// UnmarshalYAML parses a size.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	s := strings.TrimSpace(n.Value)
	mult := int64(1)
	for _, u := range byteUnits {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = strings.TrimSpace(num), u.n
			break
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v <= 0 {
		return fmt.Errorf("expected a size like 5MiB, got %q", n.Value)
	}
	*b = ByteSize(v * mult)
	return nil
}

// Rate is a number of events per period, written "200/s", "30/m", "1000/h".
type Rate struct {
	N   float64
	Per time.Duration
}

// UnmarshalYAML parses a rate.
func (r *Rate) UnmarshalYAML(n *yaml.Node) error {
	num, unit, ok := strings.Cut(strings.TrimSpace(n.Value), "/")
	per := map[string]time.Duration{"s": time.Second, "m": time.Minute, "h": time.Hour}[strings.TrimSpace(unit)]
	v, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if !ok || per == 0 || err != nil || v <= 0 {
		return fmt.Errorf("expected a rate like 200/s, 30/m or 1000/h, got %q", n.Value)
	}
	*r = Rate{N: v, Per: per}
	return nil
}

// PerSecond is the rate in events per second; 0 means unlimited.
func (r Rate) PerSecond() float64 {
	if r.N <= 0 || r.Per <= 0 {
		return 0
	}
	return r.N / r.Per.Seconds()
}

func (r Rate) String() string {
	if r.N <= 0 {
		return "unlimited"
	}
	unit := map[time.Duration]string{time.Second: "s", time.Minute: "m", time.Hour: "h"}[r.Per]
	return strconv.FormatFloat(r.N, 'f', -1, 64) + "/" + unit
}
