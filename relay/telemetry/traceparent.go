package telemetry

import (
	"crypto/sha256"
	"encoding/hex"

	"go.opentelemetry.io/otel/trace"
)

// traceParentLen is the length of a version 00 traceparent:
// 00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>.
const traceParentLen = 55

// ParseTraceParent reads a W3C traceparent header (Trace Context, level
// 1). A later version than 00 is read as 00, as the recommendation says;
// ok is false for anything invalid (an all-zero id, upper-case hex,
// version ff, a wrong length).
func ParseTraceParent(s string) (tid trace.TraceID, sid trace.SpanID, flags trace.TraceFlags, ok bool) {
	if len(s) < traceParentLen || s[2] != '-' || s[35] != '-' || s[52] != '-' {
		return tid, sid, 0, false
	}
	var ver, fl [1]byte
	if !lowerHex(s[0:2], ver[:]) || ver[0] == 0xff || (ver[0] == 0 && len(s) != traceParentLen) ||
		(len(s) > traceParentLen && s[traceParentLen] != '-') {
		return tid, sid, 0, false
	}
	if !lowerHex(s[3:35], tid[:]) || !lowerHex(s[36:52], sid[:]) || !lowerHex(s[53:55], fl[:]) {
		return tid, sid, 0, false
	}
	if !tid.IsValid() || !sid.IsValid() {
		return tid, sid, 0, false
	}
	return tid, sid, trace.TraceFlags(fl[0]) & trace.FlagsSampled, true
}

// lowerHex decodes s (lower-case hex only, as the header must be) into dst.
func lowerHex(s string, dst []byte) bool {
	if len(s) != 2*len(dst) {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	for i := range dst {
		dst[i] = unhex(s[2*i])<<4 | unhex(s[2*i+1])
	}
	return true
}

func unhex(c byte) byte {
	if c <= '9' {
		return c - '0'
	}
	return c - 'a' + 10
}

// FormatTraceParent writes a version 00 traceparent: the only allocation
// is the string itself.
func FormatTraceParent(tid trace.TraceID, sid trace.SpanID, flags trace.TraceFlags) string {
	var b [traceParentLen]byte
	b[0], b[1], b[2] = '0', '0', '-'
	hex.Encode(b[3:35], tid[:])
	b[35] = '-'
	hex.Encode(b[36:52], sid[:])
	b[52] = '-'
	hex.Encode(b[53:55], []byte{byte(flags & trace.FlagsSampled)})
	return string(b[:])
}

// ActivityTrace is the trace an activity stored without a producer's
// traceparent belongs to when Relay recorded none at ingest (telemetry
// was off): derived from its id, so every attempt, retry and replay of it
// carries the same trace id, and the parent id is the same for all.
func ActivityTrace(id string) (trace.TraceID, trace.SpanID) {
	var tid trace.TraceID
	var sid trace.SpanID
	sum := sha256.Sum256([]byte(id))
	copy(tid[:], sum[:16])
	copy(sid[:], sum[16:24])
	if !sid.IsValid() { // one chance in 2^64, but an all-zero id is invalid
		sid[7] = 1
	}
	if !tid.IsValid() {
		tid[15] = 1
	}
	return tid, sid
}

// TraceID is the trace id an activity's attempts carry: its stored
// traceparent's, or the one derived from its id. It is what `relay trace`
// and the dashboard show.
func TraceID(traceparent, activityID string) string {
	if tid, _, _, ok := ParseTraceParent(traceparent); ok {
		return tid.String()
	}
	tid, _ := ActivityTrace(activityID)
	return tid.String()
}
