package deploy

// Docker cannot run here, so compose.yaml is checked by reading it: the
// NATS nodes through nats-server's own config parser, the relays' config
// through relay.LoadConfig, as `relay serve` loads it.

import (
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"gopkg.in/yaml.v3"

	"github.com/relaydev/relay/relay"
)

const (
	composePath    = "compose.yaml"
	composeImage   = "${IMAGE:-relay:dev}"
	composeNATSEnv = "NATS_SERVER_NAME"
)

type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Image       string            `yaml:"image"`
	Entrypoint  []string          `yaml:"entrypoint"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	Volumes     []string          `yaml:"volumes"`
	Ports       []string          `yaml:"ports"`
	DependsOn   map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	Healthcheck struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
}

// composeLoad reads compose.yaml and splits its services into the NATS
// nodes (image nats:…) and the relays (image composeImage), each sorted
// by name.
func composeLoad(t *testing.T) (f composeFile, nats, relays []string) {
	t.Helper()
	data, err := os.ReadFile(composePath)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &f); err != nil {
		t.Fatalf("%s: %v", composePath, err)
	}
	for name, s := range f.Services {
		switch {
		case strings.HasPrefix(s.Image, "nats:"):
			nats = append(nats, name)
		case s.Image == composeImage:
			relays = append(relays, name)
		default:
			t.Errorf("service %s: image %q is neither nats:… nor %s", name, s.Image, composeImage)
		}
	}
	sort.Strings(nats)
	sort.Strings(relays)
	return f, nats, relays
}

// composeMount is a service's volume mounted at target: its source (a
// named volume, or a path relative to deploy/) and whether it was found.
func composeMount(s composeService, target string) (string, bool) {
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 && parts[1] == target {
			return parts[0], true
		}
	}
	return "", false
}

// composeFlag is the value after flag in args.
func composeFlag(args []string, flag ...string) string {
	for i, a := range args {
		if slices.Contains(flag, a) && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// composeNATSOptions parses the config a NATS service runs with
// nats-server's own parser, with the service's environment set.
func composeNATSOptions(t *testing.T, name string, s composeService) *server.Options {
	t.Helper()
	conf := composeFlag(s.Command, "--config", "-c")
	if conf == "" {
		t.Fatalf("service %s: command %q names no --config file", name, s.Command)
	}
	src, ok := composeMount(s, conf)
	if !ok || !strings.HasPrefix(src, "./") {
		t.Fatalf("service %s: its config %s is not mounted from a file of deploy/", name, conf)
	}
	for k, v := range s.Environment {
		t.Setenv(k, v)
	}
	opts, err := server.ProcessConfigFile(filepath.FromSlash(src))
	if err != nil {
		t.Fatalf("service %s: %s: %v", name, src, err)
	}
	return opts
}

// TestComposeNATSCluster: three NATS nodes running the same config file,
// with JetStream on a volume of their own, routes naming the three of
// them, and a healthcheck on the monitoring port; the server the tests run
// (go.mod's).
func TestComposeNATSCluster(t *testing.T) {
	f, nats, _ := composeLoad(t)
	if len(nats) != 3 {
		t.Fatalf("NATS services %v, want 3", nats)
	}
	version := composeGoModVersion(t, "github.com/nats-io/nats-server/v2")
	confs := map[string]bool{}
	stores := map[string]string{}
	for _, name := range nats {
		s := f.Services[name]
		if want := "nats:" + strings.TrimPrefix(version, "v") + "-alpine"; s.Image != want {
			t.Errorf("service %s: image %s, want %s (go.mod's nats-server, which the tests run; alpine has wget for the healthcheck)", name, s.Image, want)
		}
		confs[composeFlag(s.Command, "--config", "-c")] = true
		if s.Environment[composeNATSEnv] != name {
			t.Errorf("service %s: %s=%q, want its service name (its route's host name)", name, composeNATSEnv, s.Environment[composeNATSEnv])
		}
		opts := composeNATSOptions(t, name, s)
		if opts.ServerName != name {
			t.Errorf("service %s: server_name %q, want %q", name, opts.ServerName, name)
		}
		if !opts.JetStream {
			t.Errorf("service %s: JetStream is off", name)
		}
		vol, ok := composeMount(s, opts.StoreDir)
		if _, named := f.Volumes[vol]; !ok || !named {
			t.Errorf("service %s: its JetStream store_dir %q is not a named volume (%q)", name, opts.StoreDir, s.Volumes)
		} else if other, dup := stores[vol]; dup {
			t.Errorf("services %s and %s share the volume %s", other, name, vol)
		} else {
			stores[vol] = name
		}
		if opts.Cluster.Name == "" || opts.Cluster.Port == 0 {
			t.Errorf("service %s: no cluster block (name %q, port %d)", name, opts.Cluster.Name, opts.Cluster.Port)
		}
		var routes []string
		for _, u := range opts.Routes {
			if u.Port() != strconv.Itoa(opts.Cluster.Port) {
				t.Errorf("service %s: route %s is not on the cluster port %d", name, u, opts.Cluster.Port)
			}
			routes = append(routes, u.Hostname())
		}
		sort.Strings(routes)
		if !slices.Equal(routes, nats) {
			t.Errorf("service %s: routes to %v, want every NATS service %v", name, routes, nats)
		}
		if opts.HTTPPort == 0 {
			t.Errorf("service %s: monitoring is off: no /healthz for the healthcheck", name)
		}
		health := strings.Join(s.Healthcheck.Test, " ")
		if !strings.Contains(health, "http://127.0.0.1:"+strconv.Itoa(opts.HTTPPort)+"/healthz") {
			t.Errorf("service %s: healthcheck %q does not ask /healthz on the monitoring port %d", name, health, opts.HTTPPort)
		}
	}
	if len(confs) != 1 {
		t.Errorf("the NATS services run different config files %v: want one, the fault suite's", confs)
	}
}

// TestComposeRelays: two relays of the image, each on every NATS node
// with three replicas, healthy only once the NATS nodes are, checked by
// `relay healthcheck`; the first one's ingest and admin published; and
// their config a valid Relay config whose every ${VAR} compose provides.
func TestComposeRelays(t *testing.T) {
	f, nats, relays := composeLoad(t)
	if len(relays) != 2 {
		t.Fatalf("relay services %v, want 2", relays)
	}
	opts := composeNATSOptions(t, nats[0], f.Services[nats[0]])
	var cfgPath string
	for _, name := range relays {
		s := f.Services[name]
		path := composeFlag(s.Command, "-c")
		if !slices.Contains(s.Command, "serve") || path == "" {
			t.Fatalf("service %s: command %q, want serve -c FILE", name, s.Command)
		}
		src, ok := composeMount(s, path)
		if !ok || src != "./compose/relay.yaml" {
			t.Errorf("service %s: %s is mounted from %q, want ./compose/relay.yaml", name, path, src)
		}
		cfgPath = src
		want := []string{"CMD", "/relay", "healthcheck", "-c", path}
		if !slices.Equal(s.Healthcheck.Test, want) {
			t.Errorf("service %s: healthcheck %q, want %q", name, s.Healthcheck.Test, want)
		}
		for _, n := range nats {
			if s.DependsOn[n].Condition != "service_healthy" {
				t.Errorf("service %s: does not wait for %s to be healthy", name, n)
			}
		}
	}

	// The config, loaded as relay serve loads it, with a dummy value for
	// each ${VAR}; each must be in the relays' environment.
	raw, err := os.ReadFile(filepath.FromSlash(cfgPath))
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range composeVarRefs(t, raw) {
		for _, name := range relays {
			if _, ok := f.Services[name].Environment[v]; !ok {
				t.Errorf("%s uses ${%s}, which service %s's environment does not set", cfgPath, v, name)
			}
		}
		switch {
		case strings.Contains(v, "SECRET"):
			t.Setenv(v, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
		case strings.HasSuffix(v, "_URL"):
			t.Setenv(v, "https://receiver.example.com/webhook")
		default:
			t.Setenv(v, "dummy-"+strings.ToLower(v))
		}
	}
	cfg, err := relay.LoadConfig(filepath.FromSlash(cfgPath))
	if err != nil {
		t.Fatalf("%s is not a valid Relay config:\n%v", cfgPath, err)
	}

	var hosts []string
	for _, s := range strings.Split(cfg.NATS.URL, ",") {
		u, err := url.Parse(strings.TrimSpace(s))
		if err != nil {
			t.Fatalf("nats.url %q: %v", cfg.NATS.URL, err)
		}
		if u.Port() != strconv.Itoa(opts.Port) {
			t.Errorf("nats.url: %s is not on the nodes' client port %d", s, opts.Port)
		}
		hosts = append(hosts, u.Hostname())
	}
	sort.Strings(hosts)
	if !slices.Equal(hosts, nats) {
		t.Errorf("nats.url names %v, want every NATS service %v", hosts, nats)
	}
	if cfg.NATS.Replicas != len(nats) {
		t.Errorf("nats.replicas %d, want %d: a stream on every node", cfg.NATS.Replicas, len(nats))
	}

	first := f.Services[relays[0]]
	for api, listen := range map[string]string{"ingest": cfg.Ingest.Listen, "admin": cfg.Admin.Listen} {
		host, port, err := net.SplitHostPort(listen)
		if err != nil {
			t.Fatalf("%s.listen %q: %v", api, listen, err)
		}
		if host != "" && host != "0.0.0.0" && host != "::" {
			t.Errorf("%s.listen %q: not reachable from outside the container", api, listen)
		}
		published := false
		for _, p := range first.Ports {
			published = published || strings.HasSuffix(p, ":"+port)
		}
		if !published {
			t.Errorf("service %s: %s's port %s is not published (%q)", relays[0], api, port, first.Ports)
		}
	}
}

// TestComposeNoSecretLiteral: compose.yaml and the relays' config hold no
// token or secret: compose takes each from the environment and refuses to
// start without it (${VAR:?…}), the config reads it with ${VAR}.
func TestComposeNoSecretLiteral(t *testing.T) {
	f, _, relays := composeLoad(t)
	fromEnv := regexp.MustCompile(`^\$\{[A-Za-z_][A-Za-z0-9_]*(:\?[^}]*)?\}$`)
	for _, name := range relays {
		for k, v := range f.Services[name].Environment {
			if !fromEnv.MatchString(v) {
				t.Errorf("service %s: %s: %q is not ${VAR} or ${VAR:?message}", name, k, v)
			}
		}
	}
	whsec := regexp.MustCompile(`whsec_[A-Za-z0-9+/=]{8,}`)
	for _, path := range []string{composePath, "compose/relay.yaml", "compose/nats.conf"} {
		data, err := os.ReadFile(filepath.FromSlash(path))
		if err != nil {
			t.Fatal(err)
		}
		if m := whsec.Find(data); m != nil {
			t.Errorf("%s holds a webhook secret %.10s…", path, m)
		}
	}

	// Every value under a key naming a secret, anywhere in the config.
	var doc yaml.Node
	data, err := os.ReadFile(filepath.FromSlash("compose/relay.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	secretKeys := []string{"tokens", "token", "secrets", "password", "client_secret"}
	plainRef := regexp.MustCompile(`^\$\{[A-Za-z_][A-Za-z0-9_]*\}$`)
	var walk func(n *yaml.Node, secret bool, path string)
	walk = func(n *yaml.Node, secret bool, path string) {
		switch n.Kind {
		case yaml.DocumentNode, yaml.SequenceNode:
			for _, c := range n.Content {
				walk(c, secret, path)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i].Value
				walk(n.Content[i+1], secret || slices.Contains(secretKeys, k), path+"."+k)
			}
		case yaml.ScalarNode:
			if secret && !plainRef.MatchString(n.Value) {
				t.Errorf("compose/relay.yaml:%d: %s is a literal, not ${VAR} (without a default)", n.Line, strings.TrimPrefix(path, "."))
			}
		}
	}
	walk(&doc, false, "")
}

// composeGoModVersion is the version go.mod requires of module.
func composeGoModVersion(t *testing.T, module string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*(?:require\s+)?` + regexp.QuoteMeta(module) + `\s+(v\S+)`).FindSubmatch(data)
	if m == nil {
		t.Fatalf("go.mod requires no %s", module)
	}
	return string(m[1])
}

// composeVarRefs are the variables the values of a YAML document
// reference (${VAR}, ${VAR:-default}); comments are not values.
func composeVarRefs(t *testing.T, data []byte) []string {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	ref := regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)`)
	var vars []string
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		if n.Kind == yaml.ScalarNode {
			for _, m := range ref.FindAllStringSubmatch(n.Value, -1) {
				if !slices.Contains(vars, m[1]) {
					vars = append(vars, m[1])
				}
			}
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(&doc)
	return vars
}
