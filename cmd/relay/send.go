package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

type attrFlags map[string]any

func (a attrFlags) String() string { return "" }

// Set takes k=v; v is a number or bool when it reads as one.
func (a attrFlags) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want key=value, got %q", s)
	}
	switch {
	case v == "true" || v == "false":
		a[k] = v == "true"
	default:
		if n, err := strconv.ParseFloat(v, 64); err == nil {
			a[k] = json.Number(strconv.FormatFloat(n, 'f', -1, 64))
		} else {
			a[k] = v
		}
	}
	return nil
}

// cmdSend posts one activity to ingest.
func cmdSend(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("send", stderr)
	cf := addClientFlags(fs, false)
	name := fs.String("activity", "", `activity: canonical ("email.open") or Ortto name ("Opened email")`)
	email := fs.String("email", "", "contact email")
	phone := fs.String("phone", "", "contact phone")
	contactID := fs.String("contact-id", "", "contact id")
	id := fs.String("id", "", "activity id (default: generated)")
	occurred := fs.String("occurred-at", "", "RFC 3339 time (default: now)")
	asJSON := fs.Bool("json", false, "print the JSON answer")
	attrs := attrFlags{}
	fs.Var(attrs, "attr", "attribute key=value (repeatable)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *name == "" {
		return errors.New("--activity is required")
	}
	item := map[string]any{}
	if strings.ContainsAny(*name, " ABCDEFGHIJKLMNOPQRSTUVWXYZ") {
		item["activity"] = *name
	} else {
		item["name"] = *name
	}
	contact := map[string]any{}
	for k, v := range map[string]string{"email": *email, "phone": *phone, "id": *contactID} {
		if v != "" {
			contact[k] = v
		}
	}
	if len(contact) > 0 {
		item["contact"] = contact
	}
	if len(attrs) > 0 {
		item["attributes"] = map[string]any(attrs)
	}
	if *id != "" {
		item["id"] = *id
	}
	if *occurred != "" {
		item["occurred_at"] = *occurred
	}
	var out struct {
		Accepted int      `json:"accepted"`
		IDs      []string `json:"ids"`
	}
	if err := cf.client().do(ctx, "POST", "/v1/activities", item, &out); err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, out)
	}
	fmt.Fprintf(stdout, "accepted %s\n", strings.Join(out.IDs, " "))
	return nil
}
