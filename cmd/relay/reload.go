package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/relaydev/relay/relay/api"
)

// cmdReload asks a running Relay to read its config again and apply it.
func cmdReload(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("reload", stderr)
	cf := addClientFlags(fs, true)
	asJSON := fs.Bool("json", false, "print the answer as JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError(fs, "takes no arguments")
	}
	c, err := cf.client(stderr)
	if err != nil {
		return err
	}
	c.timeout = reloadTimeout
	var out api.ReloadResult
	if err := c.do(ctx, "POST", "/v1/reload", nil, &out); err != nil {
		if strings.Contains(err.Error(), "environment variable") {
			return fmt.Errorf("%w\n%s", err, serverEnvNote)
		}
		return err
	}
	if *asJSON {
		return printJSON(stdout, out)
	}
	fmt.Fprintf(stdout, "reloaded: added %s, changed %s, removed %s\n", names(out.Added), names(out.Changed), names(out.Removed))
	if len(out.Applied) > 0 {
		fmt.Fprintf(stdout, "also applied: %s\n", strings.Join(out.Applied, ", "))
	}
	if len(out.RestartRequired) > 0 {
		fmt.Fprintf(stdout, "changed but applied only at the next start: %s\n", strings.Join(out.RestartRequired, ", "))
	}
	return nil
}

// serverEnvNote says whose environment a reload reads ${VAR} from.
const serverEnvNote = "note: the server reads the file and its ${VAR}s with its own environment (the one relay serve started with), not this shell's; set the variable there and restart, or write the value in the file (relay validate reads this shell's environment)"

// reloadTimeout bounds a reload: a changed destination's attempts in
// flight finish first, each within its timeout.
const reloadTimeout = 5 * time.Minute

func names(list []string) string {
	if len(list) == 0 {
		return "none"
	}
	return strings.Join(list, ", ")
}
