// Package examples holds example configs and the example receiver; this
// test loads every config so none can rot.
package examples

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/relaydev/relay/relay"
)

func TestExampleConfigsValidate(t *testing.T) {
	t.Setenv("SF_CLIENT_ID", "3MVG9example")
	t.Setenv("SF_CLIENT_SECRET", "example-secret")
	files, _ := filepath.Glob("*.yaml")
	files = append(files, filepath.Join("..", "relay.yaml"))
	if len(files) < 2 {
		t.Fatalf("found only %v", files)
	}
	for _, f := range files {
		if _, err := os.Stat(f); err != nil {
			t.Fatal(err)
		}
		if _, err := relay.LoadConfig(f); err != nil {
			t.Errorf("%s:\n%v", f, err)
		}
	}
}
