package store

import (
	"strings"
	"testing"
)

func TestCheckVersion(t *testing.T) {
	tests := []struct {
		v  string
		ok bool
	}{
		{"2.10.0", true}, {"2.10.22", true}, {"2.11.0-RC.1", true}, {"v2.15.2", true}, {"3.0.0", true},
		{"2.9.25", false}, {"2.2.0", false}, {"1.4.1", false},
	}
	for _, tc := range tests {
		err := checkVersion(tc.v)
		if (err == nil) != tc.ok {
			t.Errorf("checkVersion(%s) = %v", tc.v, err)
		}
		if err != nil && !strings.Contains(err.Error(), "2.10 or newer") {
			t.Errorf("message %q does not say what is needed", err)
		}
	}
}
