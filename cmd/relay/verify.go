package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/relaydev/relay/connectors/webhook"
)

// stdin is where verify reads the body; tests replace it.
var stdin io.Reader = os.Stdin

// cmdVerify checks a received webhook: exit 0 when valid, 1 when not.
func cmdVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("verify", stderr)
	secret := fs.String("secret", os.Getenv("RELAY_WEBHOOK_SECRET"), "whsec_… secret (default $RELAY_WEBHOOK_SECRET)")
	id := fs.String("id", "", "webhook-id header")
	ts := fs.String("timestamp", "", "webhook-timestamp header")
	sig := fs.String("signature", "", "webhook-signature header")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	body, err := io.ReadAll(io.LimitReader(stdin, 64<<20))
	if err != nil {
		return fmt.Errorf("read body: %w", err)
	}
	if err := webhook.Verify(*secret, *id, *ts, *sig, body, time.Now()); err != nil {
		fmt.Fprintf(stderr, "invalid: %v\n", err)
		return errSilent
	}
	fmt.Fprintln(stdout, "valid")
	return nil
}
