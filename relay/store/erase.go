package store

import "strings"

// Where a person's data lives besides ACTIVITIES, for an erasure
// (relay/consent): the layouts are this package's.

// StreamAttempts is the stream behind the attempt-history bucket.
const StreamAttempts = "KV_" + BucketAttempts

// AttemptsFilter is the subject of an activity's attempt histories at
// every destination.
func AttemptsFilter(id string) string { return "$KV." + BucketAttempts + ".*." + idToken(id) }

// DeadLetterIDToken is the activity-id part of a dead letter's subject
// ("" for another subject), and IDToken that of an id, to compare them.
func DeadLetterIDToken(subject string) string {
	rest, ok := strings.CutPrefix(subject, subjectDeadLetter)
	if !ok {
		return ""
	}
	if i := strings.LastIndexByte(rest, '.'); i >= 0 {
		return rest[i+1:]
	}
	return ""
}

// IDToken is an activity id as subjects and keys carry it.
func IDToken(id string) string { return idToken(id) }

// LogFilters are the delivery log's subjects that can hold entries of the
// activities ids (attempts and stored records), one pair per bucket.
func LogFilters(ids []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, id := range ids {
		b := bucket(id)
		if !seen[b] {
			seen[b] = true
			out = append(out, subjectLog+"*.*."+b, subjectStored+b)
		}
	}
	return out
}
