package main

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

func TestActivitiesJSON(t *testing.T) {
	code, out, _ := runCLI(t, "activities", "--json")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	var entries []struct {
		Name        string   `json:"name"`
		Type        string   `json:"type"`
		Action      *string  `json:"action"`
		Aliases     []string `json:"aliases"`
		Description string   `json:"description"`
	}
	if err := json.Unmarshal([]byte(out), &entries); err != nil {
		t.Fatalf("stdout is not one JSON array: %v", err)
	}
	byName := map[string]int{}
	for i, e := range entries {
		byName[e.Name] = i
	}
	tests := []struct {
		name, typ, action, alias string
	}{
		{"email.open", "email", "open", "Opened email"},
		{"pageview", "pageview", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			i, ok := byName[tc.name]
			if !ok {
				t.Fatalf("%s is not in the catalog", tc.name)
			}
			e := entries[i]
			if e.Type != tc.typ || e.Action == nil || *e.Action != tc.action || e.Description == "" || e.Aliases == nil {
				t.Errorf("got %+v", e)
			}
			if tc.alias != "" && !slices.Contains(e.Aliases, tc.alias) {
				t.Errorf("aliases %v lack %q", e.Aliases, tc.alias)
			}
		})
	}
}

func TestActivitiesTable(t *testing.T) {
	code, out, _ := runCLI(t, "activities")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	lines := strings.Split(out, "\n")
	if !strings.HasPrefix(lines[0], "NAME") || !strings.Contains(lines[0], "ORTTO NAME") || !strings.Contains(lines[0], "DESCRIPTION") {
		t.Errorf("header %q", lines[0])
	}
	col := strings.Index(lines[0], "ORTTO NAME")
	for _, l := range lines {
		if strings.HasPrefix(l, "email.open ") {
			if strings.Index(l, "Opened email") != col {
				t.Errorf("row %q: Ortto name not in its column (%d)", l, col)
			}
			return
		}
	}
	t.Errorf("no email.open row in %q", out)
}
