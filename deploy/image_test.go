package deploy

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/x509"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/relaydev/relay/config"
)

const (
	uid        = 65532 // the image's user and group
	configPath = "/etc/relay/relay.yaml"
	binary     = "/relay"
)

// The tokens the image's config takes from the environment.
var tokenEnv = []string{"RELAY_INGEST_TOKEN=image-test-ingest", "RELAY_ADMIN_TOKEN=image-test-admin"}

// TestImage checks the image deploy/build-image.sh saved. Containers
// cannot be started on the machine this test was written on: podman's crun
// refuses ("cgroups in hybrid mode not supported, drop all controllers
// from cgroupv2": no cgroup controllers it can use; before that, the
// rlimits it sets are not permitted). So the test checks what can be
// checked from the saved image: the image's config (user, entrypoint,
// command, ports, volume, healthcheck, labels), its files as the layers
// leave them (owner and mode of /data, the CA bundle, the config), and the
// /relay binary taken out of the layer and run on this machine: version,
// validate of the image's config, and serve with the HEALTHCHECK command
// answering for it.
//
// Build and save the image, then run the test:
//
//	.ci/image    # or deploy/build-image.sh --save /tmp/relay-image.tar
//	RELAY_IMAGE_TAR=/tmp/relay-image.tar go test ./deploy/ -count=1 -v
func TestImage(t *testing.T) {
	img := loadImage(t)
	cfg := img.Config.Config
	relayCfg := imageRelayConfig(t, img)

	t.Run("runs as 65532, not root", func(t *testing.T) {
		if user, _, _ := strings.Cut(cfg.User, ":"); user != fmt.Sprint(uid) {
			t.Errorf("User %q, want %d:%d", cfg.User, uid, uid)
		}
	})
	t.Run("entrypoint and command", func(t *testing.T) {
		checkEqual(t, "Entrypoint", cfg.Entrypoint, []string{binary})
		checkEqual(t, "Cmd", cfg.Cmd, []string{"serve", "-c", configPath})
	})
	t.Run("exposes the ingest and admin ports of its config", func(t *testing.T) {
		want := map[string]struct{}{}
		for _, listen := range []string{relayCfg.Ingest.Listen, relayCfg.Admin.Listen} {
			host, port, err := net.SplitHostPort(listen)
			if err != nil {
				t.Fatalf("listen %q: %v", listen, err)
			}
			if ip := net.ParseIP(host); host != "" && (ip == nil || !ip.IsUnspecified()) {
				t.Errorf("the image's config listens on %s: a published port reaches only 0.0.0.0", listen)
			}
			want[port+"/tcp"] = struct{}{}
		}
		checkEqual(t, "ExposedPorts", cfg.ExposedPorts, want)
	})
	t.Run("healthcheck", func(t *testing.T) {
		if cfg.Healthcheck == nil {
			t.Fatal("no Healthcheck (podman builds it only with --format docker)")
		}
		checkEqual(t, "Healthcheck.Test", cfg.Healthcheck.Test, []string{"CMD", binary, "healthcheck", "-c", configPath})
		if cfg.Healthcheck.Timeout != 0 && cfg.Healthcheck.Timeout <= int64(3*time.Second) {
			t.Errorf("Healthcheck.Timeout %s: want more than the 3s healthcheck waits for /readyz", time.Duration(cfg.Healthcheck.Timeout))
		}
	})
	t.Run("/data is the data directory, owned by 65532", func(t *testing.T) {
		if relayCfg.NATS.DataDir != "/data" {
			t.Errorf("the image's config stores under %q, want /data", relayCfg.NATS.DataDir)
		}
		if _, ok := cfg.Volumes["/data"]; !ok {
			t.Errorf("Volumes %v, want /data", cfg.Volumes)
		}
		f := img.file(t, "/data")
		if f.Typeflag != tar.TypeDir || f.Uid != uid || f.Gid != uid || f.Mode&0o700 != 0o700 {
			t.Errorf("/data: type %c, owner %d:%d, mode %o; want a directory of %d:%d it can write", f.Typeflag, f.Uid, f.Gid, f.Mode, uid, uid)
		}
	})
	t.Run("CA certificates", func(t *testing.T) {
		f := img.file(t, "/etc/ssl/certs/ca-certificates.crt")
		if !x509.NewCertPool().AppendCertsFromPEM(f.data) {
			t.Errorf("/etc/ssl/certs/ca-certificates.crt holds no PEM certificate (%d bytes)", len(f.data))
		}
	})
	t.Run("labels", func(t *testing.T) {
		for _, key := range []string{"version", "revision", "source"} {
			if v := cfg.Labels["org.opencontainers.image."+key]; v == "" {
				t.Errorf("no label org.opencontainers.image.%s", key)
			}
		}
	})
	t.Run("a static /relay", func(t *testing.T) {
		f := img.file(t, binary)
		if f.Typeflag != tar.TypeReg || f.Mode&0o111 == 0 {
			t.Fatalf("%s: type %c, mode %o; want an executable file", binary, f.Typeflag, f.Mode)
		}
		e, err := elf.NewFile(bytes.NewReader(f.data))
		if err != nil {
			t.Fatalf("%s: %v", binary, err)
		}
		for _, p := range e.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("%s is dynamically linked: scratch has no loader (build with CGO_ENABLED=0)", binary)
			}
		}
	})

	// The binary, run on this machine.
	bin := img.extractBinary(t)
	t.Run("version prints the labels' version and commit", func(t *testing.T) {
		out := runOK(t, img, bin, "version", "--json")
		var v struct{ Version, Commit, Go string }
		if err := json.Unmarshal(out, &v); err != nil {
			t.Fatalf("version --json printed %q: %v", out, err)
		}
		if v.Version != cfg.Labels["org.opencontainers.image.version"] || v.Commit != cfg.Labels["org.opencontainers.image.revision"] {
			t.Errorf("version %q, commit %q; want the labels' %q and %q", v.Version, v.Commit, cfg.Labels["org.opencontainers.image.version"], cfg.Labels["org.opencontainers.image.revision"])
		}
		if v.Version == "" || v.Version == "dev" || v.Commit == "" || v.Commit == "unknown" || !strings.HasPrefix(v.Go, "go") {
			t.Errorf("version --json: %+v; want a stamped version and commit", v)
		}
		line := string(runOK(t, img, bin, "version"))
		if want := fmt.Sprintf("relay %s (commit %s, %s)\n", v.Version, v.Commit, v.Go); line != want {
			t.Errorf("version printed %q, want %q", line, want)
		}
	})
	t.Run("the binary validates the image's config", func(t *testing.T) {
		out := runOK(t, img, bin, "validate", "-c", img.extract(t, configPath))
		if !strings.Contains(string(out), ": ok") {
			t.Errorf("validate printed %q", out)
		}
	})
	t.Run("the healthcheck fails, then passes once serve is ready", func(t *testing.T) {
		serveAndProbe(t, img, bin)
	})
}

// serveAndProbe runs the image's command (serve) and HEALTHCHECK with the
// image's binary and config, its data directory and ports moved to this
// machine's free ones: the healthcheck must fail before serve starts and
// pass once it is ready, and serve must stop on SIGTERM with exit 0.
func serveAndProbe(t *testing.T, img *image, bin string) {
	local := localConfig(t, img.file(t, configPath).data)
	subst := func(args []string) []string {
		out := slices.Clone(args)
		for i, a := range out {
			switch a {
			case binary:
				out[i] = bin
			case configPath:
				out[i] = local
			}
		}
		return out
	}
	hc := img.Config.Config.Healthcheck
	if hc == nil || len(hc.Test) < 2 || hc.Test[0] != "CMD" {
		t.Fatalf("Healthcheck %+v: want CMD and a command", hc)
	}
	health := subst(hc.Test[1:])
	if code, _, stderr := runImage(t, img, health); code != 1 || strings.Count(stderr, "\n") != 1 {
		t.Errorf("healthcheck before serve: exit %d, stderr %q; want 1 and one line", code, stderr)
	}
	serve := subst(append(slices.Clone(img.Config.Config.Entrypoint), img.Config.Config.Cmd...))
	var logs lockedBuffer // written by exec's copying goroutine, read here
	cmd := exec.Command(serve[0], serve[1:]...)
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = t.TempDir(), img.env(), &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done, stopped := make(chan error, 1), false
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		if !stopped {
			cmd.Process.Kill()
			<-done
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		code, stdout, stderr := runImage(t, img, health)
		if code == 0 {
			t.Logf("healthcheck: %s", strings.TrimSpace(stdout))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("healthcheck still failing after 60s: %s\nserve's log:\n%s", stderr, logs.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		stopped = true
		if err != nil {
			t.Errorf("serve after SIGTERM: %v\n%s", err, logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Errorf("serve did not stop within 30s of SIGTERM\n%s", logs.String())
	}
}

// localConfig writes the image's relay.yaml with its data directory in a
// temp dir and its listeners on free ports (same hosts), and returns its
// path.
func localConfig(t *testing.T, data []byte) string {
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("the image's config: %v", err)
	}
	section := func(name string) map[string]any {
		m, ok := doc[name].(map[string]any)
		if !ok {
			t.Fatalf("the image's config has no %s section", name)
		}
		return m
	}
	section("nats")["data_dir"] = t.TempDir()
	for _, name := range []string{"ingest", "admin"} {
		s := section(name)
		host, _, err := net.SplitHostPort(fmt.Sprint(s["listen"]))
		if err != nil {
			t.Fatalf("%s.listen: %v", name, err)
		}
		s["listen"] = net.JoinHostPort(host, freePort(t))
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "relay.yaml")
	if err := os.WriteFile(p, out, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}

// image is a saved image: its config and the files its layers leave.
type image struct {
	Config imageConfigFile
	files  map[string]*file // by absolute path, as the last layer leaves it
}

// imageConfigFile is the part of the image's config JSON checked here.
type imageConfigFile struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	Config       struct {
		User         string
		Env          []string
		Entrypoint   []string
		Cmd          []string
		ExposedPorts map[string]struct{}
		Volumes      map[string]struct{}
		Labels       map[string]string
		Healthcheck  *struct {
			Test        []string
			Interval    int64 // nanoseconds
			Timeout     int64
			StartPeriod int64
			Retries     int
		}
	} `json:"config"`
}

type file struct {
	*tar.Header
	data []byte
}

// loadImage reads the docker-archive tar at $RELAY_IMAGE_TAR: manifest.json
// names the config and the layers, in order.
func loadImage(t *testing.T) *image {
	tarPath := os.Getenv("RELAY_IMAGE_TAR")
	if tarPath == "" {
		msg := "RELAY_IMAGE_TAR is not set: build and save the image with .ci/image (or deploy/build-image.sh --save /tmp/relay-image.tar), then run RELAY_IMAGE_TAR=/tmp/relay-image.tar go test ./deploy/"
		if os.Getenv("CI") != "" {
			t.Fatal(msg + " (CI is set: this test may not be skipped)")
		}
		t.Skip(msg)
	}
	entries, err := readTar(tarPath)
	if err != nil {
		t.Fatal(err)
	}
	var manifest []struct {
		Config string
		Layers []string
	}
	if err := json.Unmarshal(entries["manifest.json"], &manifest); err != nil || len(manifest) != 1 {
		t.Fatalf("%s: manifest.json: want one image, got %d (%v)", tarPath, len(manifest), err)
	}
	img := &image{files: map[string]*file{}}
	if err := json.Unmarshal(entries[manifest[0].Config], &img.Config); err != nil {
		t.Fatalf("%s: config %s: %v", tarPath, manifest[0].Config, err)
	}
	for _, name := range manifest[0].Layers {
		if err := img.apply(entries[name]); err != nil {
			t.Fatalf("%s: layer %s: %v", tarPath, name, err)
		}
	}
	t.Logf("%s: %s/%s, %d layers, %d files", tarPath, img.Config.OS, img.Config.Architecture, len(manifest[0].Layers), len(img.files))
	return img
}

// readTar returns the files of a tar by name.
func readTar(p string) (map[string][]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string][]byte{}
	tr := tar.NewReader(bufio.NewReader(f))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		if out[path.Clean(h.Name)], err = io.ReadAll(tr); err != nil {
			return nil, fmt.Errorf("%s: %s: %w", p, h.Name, err)
		}
	}
}

// apply lays a layer tar (gzipped or not) over the files, honouring
// whiteouts.
func (img *image) apply(layer []byte) error {
	var r io.Reader = bytes.NewReader(layer)
	if bytes.HasPrefix(layer, []byte{0x1f, 0x8b}) {
		gz, err := gzip.NewReader(r)
		if err != nil {
			return err
		}
		r = gz
	}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		name := path.Join("/", h.Name)
		dir, base := path.Split(name)
		if base == ".wh..wh..opq" {
			img.remove(path.Clean(dir), false)
			continue
		}
		if gone, ok := strings.CutPrefix(base, ".wh."); ok {
			img.remove(path.Join(dir, gone), true)
			continue
		}
		f := &file{Header: h}
		if h.Typeflag == tar.TypeReg {
			if f.data, err = io.ReadAll(tr); err != nil {
				return err
			}
		}
		img.files[name] = f
	}
}

// remove deletes what is under dir, and dir itself when self.
func (img *image) remove(dir string, self bool) {
	for name := range img.files {
		if (self && name == dir) || strings.HasPrefix(name, strings.TrimSuffix(dir, "/")+"/") {
			delete(img.files, name)
		}
	}
}

// file returns the file at p, failing the test when there is none.
func (img *image) file(t *testing.T, p string) *file {
	t.Helper()
	f, ok := img.files[p]
	if !ok {
		t.Fatalf("the image has no %s", p)
	}
	return f
}

// extract writes the image's file p into a temp dir and returns its path.
func (img *image) extract(t *testing.T, p string) string {
	t.Helper()
	f := img.file(t, p)
	out := filepath.Join(t.TempDir(), path.Base(p))
	if err := os.WriteFile(out, f.data, os.FileMode(f.Mode).Perm()|0o200); err != nil {
		t.Fatal(err)
	}
	return out
}

// extractBinary takes /relay out of the image, refusing to run one built
// for another machine.
func (img *image) extractBinary(t *testing.T) string {
	t.Helper()
	if img.Config.OS != runtime.GOOS || img.Config.Architecture != runtime.GOARCH {
		t.Fatalf("the image is %s/%s: its binary cannot run on this %s/%s machine", img.Config.OS, img.Config.Architecture, runtime.GOOS, runtime.GOARCH)
	}
	return img.extract(t, binary)
}

// env is the image's environment with the tokens its config needs, as
// podman run -e would give them.
func (img *image) env() []string {
	env := []string{"PATH=/nonexistent"} // scratch has nothing to find
	for _, kv := range img.Config.Config.Env {
		if !strings.HasPrefix(kv, "RELAY_CONFIG=") { // names the image's path
			env = append(env, kv)
		}
	}
	return append(env, tokenEnv...)
}

// imageRelayConfig loads the image's relay.yaml as Relay does, with the
// tokens set.
func imageRelayConfig(t *testing.T, img *image) *config.Config {
	t.Helper()
	for _, kv := range tokenEnv {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	cfg, err := config.Load(img.extract(t, configPath))
	if err != nil {
		t.Fatalf("the image's %s: %v", configPath, err)
	}
	return cfg
}

// runImage runs args with the image's environment from a temp dir and
// returns the exit status and output.
func runImage(t *testing.T, img *image, args []string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = t.TempDir(), img.env(), &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return exit.ExitCode(), stdout.String(), stderr.String()
	case err != nil:
		t.Fatalf("%s: %v", strings.Join(args, " "), err)
	}
	return 0, stdout.String(), stderr.String()
}

// runOK is runImage failing the test unless the command exits 0; it
// returns stdout.
func runOK(t *testing.T, img *image, args ...string) []byte {
	t.Helper()
	code, stdout, stderr := runImage(t, img, args)
	if code != 0 {
		t.Fatalf("%s: exit %d\n%s", strings.Join(args, " "), code, stderr)
	}
	return []byte(stdout)
}

// lockedBuffer is a bytes.Buffer safe to write and read at once.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func checkEqual(t *testing.T, what string, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s %v, want %v", what, got, want)
	}
}
