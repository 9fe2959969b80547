package consent

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/relaydev/relay/relay/activity"
)

// TestTableCoversCatalog: every row names a catalog activity (with the
// Ortto alias the docs give), and every catalog activity about consent,
// subscription, reachability, bounces or abuse is either a row or listed
// as passing with its reason.
func TestTableCoversCatalog(t *testing.T) {
	cat := activity.Builtin()
	for _, r := range Table {
		if _, ok := cat.Lookup(r.Name); !ok {
			t.Errorf("table row %s is not in the catalog", r.Name)
		}
		if _, ok := Passing[r.Name]; ok {
			t.Errorf("%s is both a row and passing", r.Name)
		}
	}
	for name := range Passing {
		if _, ok := cat.Lookup(name); !ok {
			t.Errorf("passing %s is not in the catalog", name)
		}
	}
	about := regexp.MustCompile(`consent|opt|subscri|reachab|bounce|spam|abuse|invalid|deferred|token`)
	for _, e := range cat.Entries() {
		words := e.Name + " " + strings.ToLower(strings.Join(e.Aliases, " "))
		if !about.MatchString(words) {
			continue
		}
		if _, ok := RuleOf(e.Name); !ok {
			if _, ok := Passing[e.Name]; !ok {
				t.Errorf("catalog activity %s (%v) is about consent or reachability but neither sets a state nor is listed as passing", e.Name, e.Aliases)
			}
		}
	}
}

// TestDocsTable: docs/consent.md's table is the code's, row for row.
func TestDocsTable(t *testing.T) {
	b, err := os.ReadFile("../../docs/consent.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	start := strings.Index(doc, "<!-- consent-table")
	end := strings.Index(doc, "<!-- end consent-table -->")
	if start < 0 || end < start {
		t.Fatal("docs/consent.md has no consent-table block")
	}
	row := regexp.MustCompile("^\\| `([^`]+)` \\|([^|]*)\\| (\\w+) \\| `(\\w+)` \\| (\\w+) \\|$")
	var got []Rule
	for _, line := range strings.Split(doc[start:end], "\n") {
		m := row.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		ch := Channel(m[3])
		if m[3] == "identifier" {
			ch = ""
		}
		r := Rule{Name: m[1], Channel: ch, State: State(m[4])}
		got = append(got, r)
		if f := Facet(m[5]); f != r.State.Facet() {
			t.Errorf("docs: %s has facet %s, the code %s", r.Name, f, r.State.Facet())
		}
		e, _ := activity.Builtin().Lookup(r.Name)
		alias := strings.TrimSpace(m[2])
		if alias != "" && (len(e.Aliases) == 0 || e.Aliases[0] != alias) {
			t.Errorf("docs: %s has Ortto name %q, the catalog %v", r.Name, alias, e.Aliases)
		}
	}
	if len(got) != len(Table) {
		t.Fatalf("docs table has %d rows, the code %d", len(got), len(Table))
	}
	for i := range got {
		if got[i] != Table[i] {
			t.Errorf("row %d: docs %+v, code %+v", i, got[i], Table[i])
		}
	}
}
