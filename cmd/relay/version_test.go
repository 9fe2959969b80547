package main

import (
	"encoding/json"
	"runtime"
	"runtime/debug"
	"testing"
)

func TestVersion(t *testing.T) {
	goVersion := runtime.Version()
	built := func(mainVersion string, settings ...string) func() (*debug.BuildInfo, bool) {
		return func() (*debug.BuildInfo, bool) {
			info := &debug.BuildInfo{Main: debug.Module{Path: "github.com/relaydev/relay", Version: mainVersion}}
			for i := 0; i+1 < len(settings); i += 2 {
				info.Settings = append(info.Settings, debug.BuildSetting{Key: settings[i], Value: settings[i+1]})
			}
			return info, true
		}
	}
	noInfo := func() (*debug.BuildInfo, bool) { return nil, false }
	tests := []struct {
		name            string
		version, commit string // the variables, as -ldflags -X sets them
		info            func() (*debug.BuildInfo, bool)
		want            buildVersion
	}{
		{"stamped", "v1.2.3", "abc1234", built("v0.0.9", "vcs.revision", "ffff"),
			buildVersion{"v1.2.3", "abc1234", goVersion}},
		{"not stamped: the module version and VCS revision", "dev", "", built("v1.2.4", "vcs.revision", "0123abcd", "vcs.modified", "false"),
			buildVersion{"v1.2.4", "0123abcd", goVersion}},
		{"not stamped, changed tree", "dev", "", built("v1.2.5-0.20261207120000-0123abcd4567+dirty", "vcs.revision", "0123abcd4567", "vcs.modified", "true"),
			buildVersion{"v1.2.5-0.20261207120000-0123abcd4567+dirty", "0123abcd4567-dirty", goVersion}},
		{"not stamped, go run without VCS information", "dev", "", built("(devel)"),
			buildVersion{"dev", "unknown", goVersion}},
		{"not stamped, no build information", "", "", noInfo,
			buildVersion{"dev", "unknown", goVersion}},
		{"version stamped, commit from VCS", "v2.0.0", "", built("(devel)", "vcs.revision", "beef"),
			buildVersion{"v2.0.0", "beef", goVersion}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stamp(t, tc.version, tc.commit, tc.info)
			code, out, errOut := runCLI(t, "version")
			want := "relay " + tc.want.Version + " (commit " + tc.want.Commit + ", " + goVersion + ")\n"
			if code != 0 || out != want || errOut != "" {
				t.Errorf("exit %d, stdout %q, stderr %q; want 0, %q", code, out, errOut, want)
			}
			code, out, _ = runCLI(t, "version", "--json")
			var got buildVersion
			if err := json.Unmarshal([]byte(out), &got); code != 0 || err != nil || got != tc.want {
				t.Errorf("--json: exit %d, %q (%v); want %+v", code, out, err, tc.want)
			}
		})
	}
}

func TestVersionJSONKeys(t *testing.T) {
	stamp(t, "v1.2.3", "abc1234", debug.ReadBuildInfo)
	_, out, _ := runCLI(t, "version", "--json")
	var got map[string]string
	if err := json.Unmarshal([]byte(out), &got); err != nil || len(got) != 3 || got["version"] != "v1.2.3" || got["commit"] != "abc1234" || got["go"] != runtime.Version() {
		t.Errorf("--json printed %q (%v); want {\"version\", \"commit\", \"go\"}", out, err)
	}
	if code, _, errOut := runCLI(t, "version", "extra"); code != 2 || errOut == "" {
		t.Errorf("version extra: exit %d, stderr %q; want 2 and the usage", code, errOut)
	}
}

// stamp sets the variables -ldflags -X sets, and the build information,
// for one test.
func stamp(t *testing.T, v, c string, info func() (*debug.BuildInfo, bool)) {
	oldV, oldC, oldInfo := version, commit, readBuildInfo
	version, commit, readBuildInfo = v, c, info
	t.Cleanup(func() { version, commit, readBuildInfo = oldV, oldC, oldInfo })
}
