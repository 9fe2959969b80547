package relay_test

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/relaydev/relay/"

// layers are the rooms of docs/architecture.md from the bottom up: a
// package imports only packages of a lower layer (never one of its own or
// a higher one). A package of the module missing here fails the test, so
// a new package is given its place on purpose.
var layers = [][]string{
	{"iprange", "relay/activity", "relay/metrics", "relay/telemetry/collector", "relay/clientlimit", "relay/recent", "relay/text",
		"internal/testpki", "connectors/netguard/dnstest", "connectors/salesforce/sftest"},
	{"config", "relay/api", "relay/expr", "relay/dashboard"},
	{"relay/web"},
	{"relay/sink", "relay/held", "connectors/netguard"},
	{"relay/schedule", "relay/rules", "relay/store", "connectors/webhook", "connectors/salesforce"},
	{"relay/alert", "relay/kindchange", "relay/telemetry", "relay/consent", "examples/receiver"},
	{"relay/breaker"},
	{"relay/deliver"},
	{"relay/engine", "relay/ingest"},
	{"relay/admin"},
	{"relay"},
	{"cmd/relay/bench", "relay/e2e", "examples"},
	{"cmd/relay"},
}

// TestImportsPointOneWay parses every package of the module (tests aside)
// and fails on an import that points up or sideways, and when a connector
// or the example receiver can reach nats-server through the module's own
// packages.
func TestImportsPointOneWay(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	imports := moduleImports(t, root)
	layer := map[string]int{}
	for i, names := range layers {
		for _, n := range names {
			layer[n] = i
		}
	}
	for pkg, deps := range imports {
		l, ok := layer[pkg]
		if !ok {
			t.Errorf("package %s has no layer in layers_test.go (and docs/architecture.md)", pkg)
			continue
		}
		for _, dep := range deps {
			if d, ok := strings.CutPrefix(dep, module); ok && layer[d] >= l {
				t.Errorf("%s imports %s, which is not below it", pkg, d)
			}
		}
	}
	for _, pkg := range []string{"connectors/webhook", "connectors/salesforce", "examples/receiver"} {
		if path := reaches(imports, pkg, "github.com/nats-io/nats-server"); path != nil {
			t.Errorf("%s reaches nats-server: %s", pkg, strings.Join(path, " → "))
		}
	}
}

// moduleImports maps each package of the module (its path below the
// module) to what its non-test files import.
func moduleImports(t *testing.T, root string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		pkg := filepath.ToSlash(rel)
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if !slices.Contains(out[pkg], p) {
				out[pkg] = append(out[pkg], p)
			}
		}
		if _, ok := out[pkg]; !ok {
			out[pkg] = nil
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// reaches is a chain of imports from pkg through the module's packages to
// an import path starting with target; nil when there is none.
func reaches(imports map[string][]string, pkg, target string) []string {
	seen := map[string]bool{}
	var walk func(p string) []string
	walk = func(p string) []string {
		if seen[p] {
			return nil
		}
		seen[p] = true
		for _, dep := range imports[p] {
			if strings.HasPrefix(dep, target) {
				return []string{p, dep}
			}
			if d, ok := strings.CutPrefix(dep, module); ok {
				if path := walk(d); path != nil {
					return append([]string{p}, path...)
				}
			}
		}
		return nil
	}
	return walk(pkg)
}
