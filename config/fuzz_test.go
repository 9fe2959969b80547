package config

import (
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"
)

// errStart is how every problem Parse reports starts.
var errStart = regexp.MustCompile(`^fuzz\.yaml:[1-9][0-9]*:[1-9][0-9]*: `)

// FuzzLoad: Parse never panics, and whatever it refuses it refuses as
// Errors, one "FILE:LINE:COL: path: message" line each, with a position
// inside the file.
func FuzzLoad(f *testing.F) {
	for _, name := range []string{"testdata/full.yaml", "testdata/bad.yaml"} {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	head := "ingest: {tokens: [t]}\nadmin: {token: a}\n"
	for _, s := range []string{
		"",
		"nats: [\n",
		head,
		head + "destinations: [{name: a, type: webhook, url: 'http://0x7f000001/x', secrets: ['whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw']}]\n",
		head + "destinations:\n  - &d {name: a, type: webhook, url: 'https://x.example', secrets: ['${S:-whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw}']}\n  - *d\n",
		head + "nats: {retention: 1h, duplicate_window: 2h, replicas: 0}\ningest: {max_body: 0KiB}\n",
		head + "activities: [{name: loyalty.tier_changed}, {name: loyalty.tier_changed}]\n",
		"--- !!map\n? [a]\n: b\n",
		"a: &a {b: *a}\n",
	} {
		f.Add([]byte(s))
	}
	env := env(map[string]string{"S": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "RELAY_INGEST_TOKEN": "t"})
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz.yaml", data, env)
		if err == nil {
			if cfg == nil {
				t.Fatal("no error and no config")
			}
			return
		}
		var errs Errors
		if !errors.As(err, &errs) || len(errs) == 0 {
			t.Fatalf("error %T %q is not a list of positioned problems", err, err)
		}
		lines := 1 // yaml breaks lines at \n, \r, \r\n, NEL, LS and PS: at most one per rune
		for _, r := range string(data) {
			if strings.ContainsRune("\n\r\u0085\u2028\u2029", r) {
				lines++
			}
		}
		for _, e := range errs {
			if e.Line > lines {
				t.Errorf("%q: line %d of a %d-line file", e, e.Line, lines)
			}
			if !errStart.MatchString(e.Error()) || e.Path == "" || strings.TrimSpace(e.Msg) == "" || strings.Contains(e.Msg, "\n") {
				t.Errorf("error %q is not FILE:LINE:COL: path: message", e)
			}
		}
	})
}
