package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	badYAML := "ingest: {tokens: [t]}\nadmin: {token: a}\ndestinations:\n" +
		"  - {name: a, type: webhook, url: 'https://x.example', secrets: ['whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'], include: ['emial.*'], when: 'activity.'}\n"
	if err := os.WriteFile(bad, []byte(badYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		env    string // $RELAY_CONFIG
		args   []string
		code   int
		stdout string
		stderr []string
	}{
		{"shipped relay.yaml", "", []string{"-c", filepath.Join("..", "..", "relay.yaml")}, 0, "relay.yaml: ok (1 destination)\n", nil},
		{"every problem with its position", "", []string{"-c", bad}, 1, "", []string{
			bad + ":4:",
			`destinations[0].include[0]: pattern "emial.*" matches no known activity`,
			"destinations[0].when: invalid CEL expression",
		}},
		{"-c from $RELAY_CONFIG", bad, nil, 1, "", []string{bad + ":4:"}},
		{"missing file", "", []string{"-c", filepath.Join(dir, "absent.yaml")}, 1, "", []string{"relay: config " + filepath.Join(dir, "absent.yaml") + " (named by -c) does not exist\n"}},
		{"missing file named by $RELAY_CONFIG", filepath.Join(dir, "absent.yaml"), nil, 1, "", []string{"(named by $RELAY_CONFIG) does not exist"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("RELAY_CONFIG", tc.env)
			code, out, errOut := runCLI(t, append([]string{"validate"}, tc.args...)...)
			if code != tc.code || !strings.HasSuffix(out, tc.stdout) || (tc.stdout == "") != (out == "") {
				t.Errorf("exit %d, stdout %q; want %d, %q; stderr %q", code, out, tc.code, tc.stdout, errOut)
			}
			for _, want := range tc.stderr {
				if !strings.Contains(errOut, want) {
					t.Errorf("stderr %q lacks %q", errOut, want)
				}
			}
		})
	}
}
