package ingest

import (
	"context"

	"github.com/relaydev/relay/relay/activity"
)

// recordConsent resolves the stored consent activities of a request into
// their people's channel states before the answer, so a destination with
// `consent:` suppresses from the 202 on. A failure is the request's (a
// 503): the producer's retry with the same ids, answered as duplicates,
// records them again, which is harmless (states resolve by occurred_at).
func (in *Ingest) recordConsent(ctx context.Context, acts []*activity.Activity, stored []bool, err error) error {
	if in.Consent == nil {
		return err
	}
	for i, a := range acts {
		if !stored[i] {
			continue
		}
		if cerr := in.Consent.Record(ctx, a); cerr != nil && err == nil {
			err = cerr
		}
	}
	return err
}
