package salesforce

import (
	"strings"
	"sync"
)

// OrgMaxCalls is the most calls Relay has in flight to one org, over all
// its destinations: Salesforce runs at most 25 long requests at once per
// org.
const OrgMaxCalls = 25

// orgSlots holds, per org (its configured instance URL), a slot per call
// in flight from any destination of this process.
var orgSlots = struct {
	mu sync.Mutex
	m  map[string]chan struct{}
}{m: map[string]chan struct{}{}}

// orgCalls is the org's slots, made when first asked for.
func orgCalls(instance string) chan struct{} {
	key := strings.ToLower(strings.TrimRight(instance, "/"))
	orgSlots.mu.Lock()
	defer orgSlots.mu.Unlock()
	c, ok := orgSlots.m[key]
	if !ok {
		c = make(chan struct{}, OrgMaxCalls)
		orgSlots.m[key] = c
	}
	return c
}
