package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// Stamped at build time (deploy/build-image.sh):
//
//	go build -ldflags "-X main.version=v1.2.3 -X main.commit=abc1234" ./cmd/relay
//
// Left as they are, the build's own information fills them (buildVersion).
var (
	version = "dev"
	commit  = ""
)

// readBuildInfo is debug.ReadBuildInfo; tests replace it.
var readBuildInfo = debug.ReadBuildInfo

// buildVersion is what relay version prints.
type buildVersion struct {
	Version string `json:"version"`
	Commit  string `json:"commit"`
	Go      string `json:"go"`
}

// currentVersion returns the stamped version and commit, else the main
// module's version and the VCS revision the go command recorded (so
// go run and go install say something useful), else "dev" and "unknown".
func currentVersion() buildVersion {
	v := buildVersion{Version: version, Commit: commit, Go: runtime.Version()}
	info, ok := readBuildInfo()
	if !ok {
		info = &debug.BuildInfo{}
	}
	if v.Version == "" || v.Version == "dev" {
		v.Version = "dev"
		if mv := info.Main.Version; mv != "" && mv != "(devel)" {
			v.Version = mv
		}
	}
	if v.Commit == "" {
		v.Commit = vcsRevision(info)
	}
	return v
}

// vcsRevision is the revision the go command stamped, marked -dirty when
// the tree had changes, or "unknown".
func vcsRevision(info *debug.BuildInfo) string {
	rev, dirty := "unknown", ""
	for _, s := range info.Settings {
		switch {
		case s.Key == "vcs.revision" && s.Value != "":
			rev = s.Value
		case s.Key == "vcs.modified" && s.Value == "true":
			dirty = "-dirty"
		}
	}
	if rev == "unknown" {
		return rev
	}
	return rev + dirty
}

// cmdVersion prints the version, the commit and the Go version.
func cmdVersion(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("version", stderr)
	asJSON := fs.Bool("json", false, `print {"version", "commit", "go"}`)
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	v := currentVersion()
	if *asJSON {
		return printJSON(stdout, v)
	}
	_, err := fmt.Fprintf(stdout, "relay %s (commit %s, %s)\n", v.Version, v.Commit, v.Go)
	return err
}
