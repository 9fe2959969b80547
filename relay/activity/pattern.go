package activity

import (
	"errors"
	"fmt"
	"strings"
)

// SubjectPrefix starts the JetStream subject of every activity.
const SubjectPrefix = "activities."

// Wildcard stands for one whole part of an activity name in a pattern; alone
// it matches every activity.
const Wildcard = "*"

var (
	// ErrInvalidName is wrapped by every error about a malformed activity name.
	ErrInvalidName = errors.New("invalid activity name")
	// ErrInvalidPattern is wrapped by every error about a malformed pattern.
	ErrInvalidPattern = errors.New("invalid activity pattern")
)

// ParseName splits a canonical name into its type and action:
// "email.open" gives ("email", "open"), "pageview" gives ("pageview", "").
// Each part must be non-empty and made of a-z, 0-9, "_" and "-", so that a
// name is always a valid NATS subject suffix; there are at most two parts.
func ParseName(name string) (typ, action string, err error) {
	if len(name) > MaxNameLen {
		return "", "", fmt.Errorf("%w: longer than %d bytes", ErrInvalidName, MaxNameLen)
	}
	typ, action, two := strings.Cut(name, ".")
	if strings.Contains(action, ".") {
		return "", "", fmt.Errorf("%w %q: more than two parts", ErrInvalidName, name)
	}
	if err := checkPart(typ); err != nil {
		return "", "", fmt.Errorf("%w %q: type %v", ErrInvalidName, name, err)
	}
	if !two {
		return typ, "", nil
	}
	if err := checkPart(action); err != nil {
		return "", "", fmt.Errorf("%w %q: action %v", ErrInvalidName, name, err)
	}
	return typ, action, nil
}

// ValidPattern reports whether p is a valid include/exclude pattern: "*"
// alone, or one or two parts each either "*" or a valid name part
// ("email.*", "*.open", "pageview", "*.*").
func ValidPattern(p string) error {
	if p == Wildcard {
		return nil
	}
	first, second, two := strings.Cut(p, ".")
	if strings.Contains(second, ".") {
		return fmt.Errorf("%w %q: more than two parts", ErrInvalidPattern, p)
	}
	if err := checkPatternPart(first); err != nil {
		return fmt.Errorf("%w %q: type %v", ErrInvalidPattern, p, err)
	}
	if !two {
		return nil
	}
	if err := checkPatternPart(second); err != nil {
		return fmt.Errorf("%w %q: action %v", ErrInvalidPattern, p, err)
	}
	return nil
}

// Matches reports whether pattern selects the activity name. "*" alone
// matches every name; otherwise both must have the same number of parts and
// a "*" part matches any one non-empty part. It never allocates.
func Matches(pattern, name string) bool {
	if pattern == Wildcard {
		return true
	}
	for {
		p, pRest, pMore := strings.Cut(pattern, ".")
		n, nRest, nMore := strings.Cut(name, ".")
		if pMore != nMore || !partMatches(p, n) {
			return false
		}
		if !pMore {
			return true
		}
		pattern, name = pRest, nRest
	}
}

func partMatches(p, n string) bool {
	if p == Wildcard {
		return n != ""
	}
	return p == n
}

// Subject is the JetStream subject an activity is published on:
// "activities.email.open", "activities.pageview".
func Subject(name string) string {
	return SubjectPrefix + name
}

// FilterSubject is the NATS filter subject selecting what pattern matches:
// "*" gives "activities.>", any other pattern "activities." + pattern (a "*"
// part is a NATS single-token wildcard).
func FilterSubject(pattern string) string {
	if pattern == Wildcard {
		return SubjectPrefix + ">"
	}
	return SubjectPrefix + pattern
}

// NameFromSubject is the inverse of Subject: it reports false when subject
// is not an activity subject carrying a valid name.
func NameFromSubject(subject string) (string, bool) {
	name, ok := strings.CutPrefix(subject, SubjectPrefix)
	if !ok {
		return "", false
	}
	if _, _, err := ParseName(name); err != nil {
		return "", false
	}
	return name, true
}

func checkPatternPart(part string) error {
	if part == Wildcard {
		return nil
	}
	return checkPart(part)
}

// MaxPartLen bounds each part of an activity name, and MaxNameLen the
// whole: names become NATS subjects and headers.
const (
	MaxPartLen = 64
	MaxNameLen = 2*MaxPartLen + 1
)

// checkPart accepts a non-empty run of a-z, 0-9, "_" and "-".
func checkPart(part string) error {
	if part == "" {
		return errors.New("is empty")
	}
	if len(part) > MaxPartLen {
		return fmt.Errorf("is longer than %d bytes", MaxPartLen)
	}
	for _, r := range part {
		if !nameChar(r) {
			return fmt.Errorf("has %q (allowed: a-z 0-9 _ -)", r)
		}
	}
	return nil
}

func nameChar(c rune) bool {
	return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}
