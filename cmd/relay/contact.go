package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/url"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/relaydev/relay/relay/api"
)

// contactTimeout bounds a lookup or an erasure: both read the whole store.
const contactTimeout = 10 * time.Minute

// personFlags name one person by --email, --phone or --id.
type personFlags struct{ email, phone, id *string }

func addPersonFlags(fs *flag.FlagSet) *personFlags {
	return &personFlags{
		email: fs.String("email", "", "the person's email address"),
		phone: fs.String("phone", "", "the person's phone number"),
		id:    fs.String("id", "", "the person's contact id"),
	}
}

// one is the field and value given; exactly one must be.
func (p *personFlags) one(fs *flag.FlagSet) (field, value string, err error) {
	for _, f := range []struct{ name, v string }{{"email", *p.email}, {"phone", *p.phone}, {"id", *p.id}} {
		if f.v == "" {
			continue
		}
		if field != "" {
			return "", "", usageError(fs, "give one of --email, --phone, --id")
		}
		field, value = f.name, f.v
	}
	if field == "" {
		return "", "", usageError(fs, "name the person with --email, --phone or --id")
	}
	return field, value, nil
}

// request parses a contact command's arguments and names its person
// (field and value), with the admin client to ask about them.
func (p *personFlags) request(fs *flag.FlagSet, cf *clientFlags, args []string, stderr io.Writer) (field, value string, c *apiClient, err error) {
	if err = parseNoArgs(fs, args); err != nil {
		return "", "", nil, err
	}
	if field, value, err = p.one(fs); err != nil {
		return "", "", nil, err
	}
	if c, err = cf.client(stderr); err != nil {
		return "", "", nil, err
	}
	c.timeout = contactTimeout
	return field, value, c, nil
}

// cmdContact shows a person's channel states and newest activities.
func cmdContact(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("contact", stderr)
	cf := addClientFlags(fs, true)
	person := addPersonFlags(fs)
	limit := fs.Int("limit", 20, "how many of the newest activities to list (at most 200)")
	asJSON := fs.Bool("json", false, "print the server's answer as one JSON document")
	field, value, c, err := person.request(fs, cf, args, stderr)
	if err != nil {
		return err
	}
	var out api.Contact
	q := url.Values{field: {value}, "limit": {fmt.Sprint(*limit)}}
	if err := c.do(ctx, "GET", "/v1/contacts?"+q.Encode(), nil, &out); err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, out)
	}
	return printContact(stdout, out)
}

// printContact writes the channels, then the activities with their status
// at each destination.
func printContact(w io.Writer, c api.Contact) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CHANNEL\tSTATE\tSINCE\tSET BY")
	if len(c.Channels) == 0 {
		fmt.Fprintln(tw, "(none)\t-\t-\t-")
	}
	for _, ch := range slices.Sorted(maps.Keys(c.Channels)) {
		s := c.Channels[ch]
		state := s.State
		if s.Suppressed {
			state += " (suppressed)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s %s\n", ch, state, s.Since.Format(time.RFC3339), s.Name, s.ActivityID)
	}
	fmt.Fprintf(tw, "\nACTIVITY\tNAME\tRECEIVED\tDESTINATIONS\n")
	for _, a := range c.Activities {
		var ds []string
		for _, d := range a.Destinations {
			ds = append(ds, d.Name+": "+d.Status)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", a.ID, a.Name, a.ReceivedAt.Format(time.RFC3339), strings.Join(ds, ", "))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "\n%d activities of this person listed (%d stored activities read)\n", len(c.Activities), c.Scanned)
	return err
}

// cmdErase forgets a person: every stored activity of theirs and all that
// refers to it.
func cmdErase(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("erase", stderr)
	cf := addClientFlags(fs, true)
	person := addPersonFlags(fs)
	asJSON := fs.Bool("json", false, "print the server's answer as one JSON document")
	field, value, c, err := person.request(fs, cf, args, stderr)
	if err != nil {
		return err
	}
	var out api.EraseResult
	if err := c.do(ctx, "POST", "/v1/contacts/erase", map[string]string{field: value}, &out); err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, out)
	}
	e := out.Erased
	_, err = fmt.Fprintf(stdout, "erased %d activities, %d queued copies, %d attempt histories, %d dead letters, %d log entries in %s\nrecorded as %s\n",
		e.Activities, e.Queued, e.AttemptHistories, e.DeadLetters, e.LogEntries, time.Duration(out.TookMS)*time.Millisecond, out.IdentifierHash)
	return err
}
