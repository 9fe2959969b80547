package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/relaydev/relay/connectors/webhook"
)

// stdin is where verify reads the body; now is the clock of verify and
// replay. Tests replace them.
var (
	stdin io.Reader = os.Stdin
	now             = time.Now
)

// maxVerifyBody bounds the body verify reads.
const maxVerifyBody = 64 << 20

// cmdVerify checks a received webhook's signature: it prints "valid" and
// returns nil, or prints "invalid: reason" and fails.
func cmdVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("verify", stderr)
	secret := fs.String("secret", os.Getenv("RELAY_WEBHOOK_SECRET"), "whsec_… secret (default $RELAY_WEBHOOK_SECRET)")
	id := fs.String("id", "", "the webhook-id header")
	ts := fs.String("timestamp", "", "the webhook-timestamp header")
	sig := fs.String("signature", "", "the webhook-signature header")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if *secret == "" {
		return usageError(fs, "the secret is missing: give --secret whsec_… or set $RELAY_WEBHOOK_SECRET")
	}
	body, err := io.ReadAll(io.LimitReader(stdin, maxVerifyBody))
	if err != nil {
		return fmt.Errorf("read body from stdin: %w", err)
	}
	if err := webhook.Verify(*secret, *id, *ts, *sig, body, now()); err != nil {
		fmt.Fprintf(stderr, "invalid: %v\n", err)
		return errSilent
	}
	fmt.Fprintln(stdout, "valid")
	return nil
}
