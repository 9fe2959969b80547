package activity

import (
	"bufio"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The source documents live in testdata as copied from the product's seeds;
// these tests read them to prove the literal tables (and so the catalog)
// miss nothing and invent nothing.

type seedEvent struct{ name, description string }

// readODP parses the ODP document: after each "Event Type | Action |
// Description |" header come rows of three "cell |" lines.
func readODP(t *testing.T) []seedEvent {
	t.Helper()
	lines := readLines(t, "testdata/odp-events.txt")
	var out []seedEvent
	for i := 0; i < len(lines); i++ {
		if lines[i] != "Description |" {
			continue
		}
		for i+3 < len(lines) && isCell(lines[i+1]) && isCell(lines[i+2]) && isCell(lines[i+3]) {
			typ, action, desc := cell(lines[i+1]), cell(lines[i+2]), cell(lines[i+3])
			name := typ
			if action != "(none)" {
				name += "." + action
			}
			out = append(out, seedEvent{name, desc})
			i += 3
		}
	}
	return out
}

var orttoRow = regexp.MustCompile(`^([^|]+) \| (.+) \|$`)

// readOrtto parses the Ortto document's "Activity | Definition |" rows.
func readOrtto(t *testing.T) []seedEvent {
	t.Helper()
	var out []seedEvent
	for _, line := range readLines(t, "testdata/ortto-system-activities.txt") {
		m := orttoRow.FindStringSubmatch(line)
		if m == nil || m[1] == "Activity" {
			continue
		}
		def, _, _ := strings.Cut(m[2], " Learn more about ")
		out = append(out, seedEvent{m[1], def})
	}
	return out
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, strings.TrimSpace(sc.Text()))
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}

func isCell(line string) bool { return strings.HasSuffix(line, " |") }

func cell(line string) string { return strings.TrimSuffix(line, " |") }

func TestTablesMatchDocuments(t *testing.T) {
	odp, ortto := readODP(t), readOrtto(t)
	if len(odp) != 31 || len(ortto) != 69 {
		t.Fatalf("parsed %d ODP events and %d Ortto activities, want 31 and 69", len(odp), len(ortto))
	}
	var fromODP, fromOrtto, tableODP, tableOrtto []string
	for _, e := range odp {
		fromODP = append(fromODP, e.name)
	}
	for _, e := range ortto {
		fromOrtto = append(fromOrtto, e.name)
	}
	for _, r := range odpNames {
		tableODP = append(tableODP, r.in)
	}
	for _, r := range orttoNames {
		tableOrtto = append(tableOrtto, r.in)
	}
	if !slices.Equal(fromODP, tableODP) {
		t.Errorf("odpNames = %q\nthe ODP document has %q", tableODP, fromODP)
	}
	if !slices.Equal(fromOrtto, tableOrtto) {
		t.Errorf("orttoNames = %q\nthe Ortto document has %q", tableOrtto, fromOrtto)
	}
}

func TestDescriptionsComeFromDocuments(t *testing.T) {
	odp := map[string]string{}
	for _, e := range readODP(t) {
		odp[e.name] = e.description
	}
	merged := 0
	for _, e := range readOrtto(t) {
		got, ok := Builtin().Lookup(e.name)
		switch {
		case !ok:
			t.Errorf("Ortto %q is not in the catalog", e.name)
		case odp[got.Name] != "":
			merged++ // one entry for both documents: its text is checked by hand
		case got.Description != strings.TrimSuffix(e.description, ".")+".":
			t.Errorf("%s description = %q, want Ortto's %q", got.Name, got.Description, e.description)
		}
	}
	if merged != 4 {
		t.Errorf("%d Ortto activities share an ODP entry, want 4 (sent, open, click, spamreport)", merged)
	}
	for name, desc := range odp {
		got, ok := Builtin().Lookup(name)
		switch {
		case !ok:
			t.Errorf("ODP %q is not in the catalog", name)
		case len(got.Aliases) == 0 && !strings.HasPrefix(got.Description, desc):
			t.Errorf("%s description = %q, want ODP's %q first", name, got.Description, desc)
		}
	}
}

func TestEveryEntryComesFromADocument(t *testing.T) {
	known := map[string]bool{}
	for _, e := range readODP(t) {
		known[e.name] = true
	}
	for _, e := range readOrtto(t) {
		known[e.name] = true
	}
	for _, e := range Builtin().Entries() {
		if known[e.Name] {
			continue
		}
		if len(e.Aliases) == 0 || !known[e.Aliases[0]] {
			t.Errorf("%s (aliases %q) is in neither document", e.Name, e.Aliases)
		}
	}
}
