// Package helm checks the Helm chart in deploy/helm/relay through what it renders: the
// relays' probes, user and secrets, the Services, the disruption budget and the NATS
// cluster of values-with-nats.yaml, and that the relay.yaml it renders loads in Relay.
//
// The manifests come from RELAY_HELM_RENDERED, a directory holding default.yaml and
// with-nats.yaml rendered as .ci/helm does; else the test renders them with the helm
// binary at $HELM, on PATH or in .ci/helm's cache (${HELM_CACHE:-$HOME/.cache/relay-ci}).
// Without either it skips, except under CI (CI set), where it fails.
package helm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"gopkg.in/yaml.v3"

	"github.com/relaydev/relay/relay"
)

const (
	chart = "relay"
	// testValues holds recognizable fake secrets, given to the chart as a Secret.
	testValues = "testdata/secrets-values.yaml"
	uid        = 65532 // the image's user
)

// A rendering is one value set: the file .ci/helm writes it to and the values files
// given to helm template after values.yaml.
type rendering struct {
	name, file string
	values     []string
}

var renderings = []rendering{
	{"default", "default.yaml", []string{testValues}},
	{"with-nats", "with-nats.yaml", []string{chart + "/values-with-nats.yaml", testValues}},
}

// howToRun is said when the test cannot run.
const howToRun = "no rendered manifests and no helm: run `bash .ci/helm` (builds helm once into " +
	"${HELM_CACHE:-$HOME/.cache/relay-ci}), or HELM=/path/to/helm go test ./deploy/helm, or " +
	"RELAY_HELM_RENDERED=dir holding default.yaml and with-nats.yaml rendered with -f deploy/helm/" + testValues

func TestChart(t *testing.T) {
	for _, r := range renderings {
		t.Run(r.name, func(t *testing.T) {
			m := load(t, r)
			t.Run("fake secrets only in Secrets", func(t *testing.T) { checkSecretsStayInSecrets(t, m) })
			t.Run("secret env vars from Secrets", func(t *testing.T) { checkSecretEnv(t, m) })
			t.Run("probes on the admin port", func(t *testing.T) { checkProbes(t, m) })
			t.Run("non-root and locked down", func(t *testing.T) { checkSecurity(t, m) })
			t.Run("services for ingest and admin", func(t *testing.T) { checkServices(t, m) })
			t.Run("disruption budget", func(t *testing.T) { checkPDB(t, m) })
			t.Run("termination grace", func(t *testing.T) { checkGrace(t, m) })
			t.Run("service monitor", func(t *testing.T) { checkServiceMonitor(t, m) })
			if r.name == "with-nats" {
				t.Run("nats cluster", func(t *testing.T) { checkNATSCluster(t, m) })
			} else {
				t.Run("external nats", func(t *testing.T) { checkExternalNATS(t, m) })
			}
		})
	}
}

// TestRenderedConfigIsValid loads the relay.yaml of each rendering as `relay validate`
// does, with the variables it references set to dummy values.
func TestRenderedConfigIsValid(t *testing.T) {
	for _, r := range renderings {
		t.Run(r.name, func(t *testing.T) {
			m := load(t, r)
			text, _ := m.relayConfig(t)
			path := filepath.Join(t.TempDir(), "relay.yaml")
			if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
			for _, name := range configRefs(text) {
				// A whsec_ key long enough for a webhook secret is a valid token too.
				t.Setenv(name, "whsec_ZHVtbXktc2VjcmV0LWZvci10aGUtY2hhcnQtdGVzdHM=")
			}
			cfg, err := relay.LoadConfig(path)
			if err != nil {
				t.Fatalf("relay.yaml rendered by the chart is not valid:\n%v\n--- relay.yaml\n%s", err, text)
			}
			if cfg.NATS.Embedded() {
				t.Errorf("relay.yaml uses the embedded NATS; the chart's relays must share an external one")
			}
		})
	}
}

// ---- the checks ----

// checkSecretsStayInSecrets: the fake secret values of the test values are in the
// Secret the chart made, and in nothing else (no ConfigMap, no env value, no annotation).
func checkSecretsStayInSecrets(t *testing.T, m manifests) {
	fakes := fakeSecrets(t)
	secret := m.only(t, "Secret", "")
	data := mapOf(secret["stringData"])
	for key, want := range fakes {
		if str(data[key]) != want {
			t.Errorf("the Secret %s lacks key %s of %s: were the manifests rendered with -f deploy/helm/%s?", name(secret), key, testValues, testValues)
		}
	}
	for _, o := range m.objs {
		if o["kind"] == "Secret" {
			continue
		}
		text, err := yaml.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		for key, v := range fakes {
			if bytes.Contains(text, []byte(v)) {
				t.Errorf("%s %s holds the value of secret key %s", o["kind"], name(o), key)
			}
		}
	}
	if len(m.all("ConfigMap")) == 0 {
		t.Errorf("no ConfigMap rendered")
	}
}

var secretName = regexp.MustCompile(`(?i)token|secret|password|passwd|credential|api_?key`)

// checkSecretEnv: every env var whose name says it carries a secret, and every one
// relay.yaml references where a secret goes, is read from a Secret, never a literal.
func checkSecretEnv(t *testing.T, m manifests) {
	_, cfg := m.relayConfig(t)
	secretRefs := secretPositions(cfg)
	if len(secretRefs) == 0 {
		t.Fatalf("relay.yaml references no variable where a secret goes: %v", cfg)
	}
	relayEnv := map[string]map[string]any{}
	for _, w := range m.workloads() {
		for _, c := range containers(w) {
			for _, e := range list(c["env"]) {
				e := mapOf(e)
				n := str(e["name"])
				if isRelay(w) && str(c["name"]) == "relay" {
					relayEnv[n] = e
				}
				if !secretName.MatchString(n) && !secretRefs[n] {
					continue
				}
				if _, literal := e["value"]; literal || dig(e, "valueFrom", "secretKeyRef", "key") == nil {
					t.Errorf("%s %s, container %s: env %s carries a secret but is not a secretKeyRef: %v", w["kind"], name(w), c["name"], n, e)
				}
			}
		}
	}
	for n := range secretRefs {
		if relayEnv[n] == nil {
			t.Errorf("relay.yaml references ${%s} where a secret goes, but the relay container has no such variable", n)
		}
	}
	for _, n := range configRefs(m.relayConfigText(t)) {
		if relayEnv[n] == nil {
			t.Errorf("relay.yaml references ${%s}, but the relay container has no such variable", n)
		}
	}
}

func checkProbes(t *testing.T, m manifests) {
	_, cfg := m.relayConfig(t)
	admin := listenPort(t, cfg, "admin")
	c := m.relayContainer(t)
	for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
		get := mapOf(dig(c, probe, "httpGet"))
		if get == nil {
			t.Errorf("%s: want an HTTP GET %s, got %v", probe, path, c[probe])
			continue
		}
		if str(get["path"]) != path {
			t.Errorf("%s: path %q, want %q", probe, get["path"], path)
		}
		if port := containerPort(c, get["port"]); port != admin {
			t.Errorf("%s: port %v is %d, want the admin port %d of relay.yaml", probe, get["port"], port, admin)
		}
	}
}

// checkSecurity: every container runs as a non-root user (the relays as 65532) with a
// read-only root, no privilege escalation and no capability, and writes only to
// emptyDirs and claimed volumes.
func checkSecurity(t *testing.T, m manifests) {
	for _, w := range m.workloads() {
		pod := podSpec(w)
		for _, c := range containers(w) {
			at := fmt.Sprintf("%s %s, container %s", w["kind"], name(w), c["name"])
			sc := mapOf(c["securityContext"])
			nonRoot := firstSet(dig(sc, "runAsNonRoot"), dig(pod, "securityContext", "runAsNonRoot"))
			user := firstSet(dig(sc, "runAsUser"), dig(pod, "securityContext", "runAsUser"))
			if nonRoot != true {
				t.Errorf("%s: runAsNonRoot is not true (pod or container)", at)
			}
			if n, _ := user.(int); n == 0 || (isRelay(w) && n != uid) {
				t.Errorf("%s: runAsUser %v, want %s", at, user, map[bool]string{true: strconv.Itoa(uid), false: "a non-root user"}[isRelay(w)])
			}
			if sc["readOnlyRootFilesystem"] != true || sc["allowPrivilegeEscalation"] != false {
				t.Errorf("%s: want readOnlyRootFilesystem true and allowPrivilegeEscalation false, got %v", at, sc)
			}
			if !slices.Contains(list(dig(sc, "capabilities", "drop")), any("ALL")) {
				t.Errorf("%s: capabilities do not drop ALL: %v", at, sc["capabilities"])
			}
			checkWritable(t, at, w, c)
		}
	}
	if !slices.ContainsFunc(list(podSpec(m.relayDeployment(t))["volumes"]), func(v any) bool {
		return dig(v, "emptyDir") != nil
	}) {
		t.Errorf("the relay pods have no emptyDir: the root file system is read-only")
	}
}

// checkWritable: a mount that is not read-only is an emptyDir or a claimed volume.
func checkWritable(t *testing.T, at string, w, c map[string]any) {
	volumes := map[string]map[string]any{}
	for _, v := range list(podSpec(w)["volumes"]) {
		volumes[str(dig(v, "name"))] = mapOf(v)
	}
	claims := map[string]bool{}
	for _, v := range list(dig(w, "spec", "volumeClaimTemplates")) {
		claims[str(dig(v, "metadata", "name"))] = true
	}
	for _, vm := range list(c["volumeMounts"]) {
		vm := mapOf(vm)
		n := str(vm["name"])
		v := volumes[n]
		switch {
		case claims[n] || v["emptyDir"] != nil:
		case v == nil:
			t.Errorf("%s: mount %s names no volume", at, n)
		case vm["readOnly"] != true:
			t.Errorf("%s: mount %s at %s of %v is writable", at, n, vm["mountPath"], v)
		}
	}
}

// checkServices: a Service for each of relay.yaml's two ports, selecting the relays.
func checkServices(t *testing.T, m manifests) {
	_, cfg := m.relayConfig(t)
	dep := m.relayDeployment(t)
	c := m.relayContainer(t)
	labels := mapOf(dig(dep, "spec", "template", "metadata", "labels"))
	for _, api := range []string{"ingest", "admin"} {
		want := listenPort(t, cfg, api)
		found := false
		for _, s := range m.all("Service") {
			if !selects(mapOf(dig(s, "spec", "selector")), labels) {
				continue
			}
			for _, p := range list(dig(s, "spec", "ports")) {
				target := firstSet(dig(p, "targetPort"), dig(p, "port"))
				if containerPort(c, target) == want {
					found = true
				}
			}
		}
		if !found {
			t.Errorf("no Service selecting the relays forwards to the %s port %d", api, want)
		}
	}
}

func checkPDB(t *testing.T, m manifests) {
	dep := m.relayDeployment(t)
	replicas, _ := dig(dep, "spec", "replicas").(int)
	if replicas < 2 {
		t.Fatalf("the relay Deployment has %d replicas, want the default 2", replicas)
	}
	labels := mapOf(dig(dep, "spec", "template", "metadata", "labels"))
	for _, p := range m.all("PodDisruptionBudget") {
		if selects(mapOf(dig(p, "spec", "selector", "matchLabels")), labels) {
			if dig(p, "spec", "minAvailable") != 1 {
				t.Errorf("PodDisruptionBudget %s: minAvailable %v, want 1", name(p), dig(p, "spec", "minAvailable"))
			}
			return
		}
	}
	t.Errorf("no PodDisruptionBudget selects the relays")
}

// checkGrace: the pods get at least 15 s for ingest requests in flight, plus the longest
// destination timeout for the attempts in flight, plus 10 s.
func checkGrace(t *testing.T, m manifests) {
	_, cfg := m.relayConfig(t)
	grace, ok := dig(podSpec(m.relayDeployment(t)), "terminationGracePeriodSeconds").(int)
	if !ok {
		t.Fatalf("terminationGracePeriodSeconds is not set")
	}
	longest := 10 * time.Second // a destination's default timeout
	timeouts := []any{dig(cfg, "alerts", "timeout")}
	for _, d := range list(cfg["destinations"]) {
		timeouts = append(timeouts, dig(d, "timeout"))
	}
	for _, v := range timeouts {
		if d, err := time.ParseDuration(str(v)); err == nil && d > longest {
			longest = d
		}
	}
	if want := 15*time.Second + longest + 10*time.Second; time.Duration(grace)*time.Second < want {
		t.Errorf("terminationGracePeriodSeconds %d, want at least %s (15 s + the longest timeout %s + 10 s)", grace, want, longest)
	}
}

// checkServiceMonitor: /metrics on the admin port, with the admin token's Secret as
// bearer (the test values enable it).
func checkServiceMonitor(t *testing.T, m manifests) {
	sm := m.only(t, "ServiceMonitor", "")
	if sm["apiVersion"] != "monitoring.coreos.com/v1" {
		t.Errorf("ServiceMonitor apiVersion %v", sm["apiVersion"])
	}
	_, cfg := m.relayConfig(t)
	adminVar := strings.TrimSuffix(strings.TrimPrefix(str(dig(cfg, "admin", "token")), "${"), "}")
	var adminRef map[string]any
	for _, e := range list(m.relayContainer(t)["env"]) {
		if dig(e, "name") == adminVar {
			adminRef = mapOf(dig(e, "valueFrom", "secretKeyRef"))
		}
	}
	admin := m.adminService(t)
	for _, ep := range list(dig(sm, "spec", "endpoints")) {
		ep := mapOf(ep)
		if str(ep["path"]) != "/metrics" || !servicePortNamed(admin, str(ep["port"])) {
			t.Errorf("endpoint %v: want path /metrics on the admin Service's port", ep)
		}
		cred := mapOf(dig(ep, "authorization", "credentials"))
		if dig(ep, "authorization", "type") != "Bearer" || cred["name"] != adminRef["name"] || cred["key"] != adminRef["key"] {
			t.Errorf("endpoint authorization %v: want Bearer with the admin token's Secret %v", ep["authorization"], adminRef)
		}
	}
	if !selects(mapOf(dig(sm, "spec", "selector", "matchLabels")), mapOf(dig(admin, "metadata", "labels"))) {
		t.Errorf("the ServiceMonitor does not select the admin Service")
	}
}

func checkExternalNATS(t *testing.T, m manifests) {
	_, cfg := m.relayConfig(t)
	if u := str(dig(cfg, "nats", "url")); u != "nats://nats:4222" {
		t.Errorf("relay.yaml nats.url %q, want values.yaml's nats://nats:4222", u)
	}
	if len(m.all("StatefulSet")) != 0 {
		t.Errorf("a StatefulSet is rendered without nats.cluster.enabled")
	}
}

// checkNATSCluster: three nats-server nodes with JetStream on claimed volumes, routed
// to each other, their configuration valid for nats-server, and the relays pointed at
// their client Service with three replicas.
func checkNATSCluster(t *testing.T, m manifests) {
	sts := m.only(t, "StatefulSet", "")
	if dig(sts, "spec", "replicas") != 3 {
		t.Errorf("StatefulSet %s: replicas %v, want 3", name(sts), dig(sts, "spec", "replicas"))
	}
	conf, storeDir := natsConfig(t, m, sts)
	if !regexp.MustCompile(`(?m)^\s*jetstream\s*\{`).MatchString(conf) {
		t.Errorf("nats.conf enables no JetStream:\n%s", conf)
	}
	checkStoreClaimed(t, sts, storeDir)
	headless := m.only(t, "Service", str(dig(sts, "spec", "serviceName")))
	if dig(headless, "spec", "clusterIP") != "None" {
		t.Errorf("Service %s names the nodes but is not headless", name(headless))
	}
	for i := range 3 {
		if route := fmt.Sprintf("nats://%s-%d.%s:6222", name(sts), i, name(headless)); !strings.Contains(conf, route) {
			t.Errorf("nats.conf has no route %s", route)
		}
	}
	_, cfg := m.relayConfig(t)
	if dig(cfg, "nats", "replicas") != 3 {
		t.Errorf("relay.yaml nats.replicas %v, want 3", dig(cfg, "nats", "replicas"))
	}
	u, err := url.Parse(str(dig(cfg, "nats", "url")))
	if err != nil || u.Scheme != "nats" {
		t.Fatalf("relay.yaml nats.url %q", dig(cfg, "nats", "url"))
	}
	svc := m.only(t, "Service", u.Hostname())
	podLabels := mapOf(dig(sts, "spec", "template", "metadata", "labels"))
	nats := containers(sts)[0]
	if !selects(mapOf(dig(svc, "spec", "selector")), podLabels) || !forwards(svc, u.Port(), nats, 4222) {
		t.Errorf("relay.yaml nats.url %s: Service %s does not forward port %s to the nats pods' client port 4222", u, name(svc), u.Port())
	}
}

// natsConfig returns the nats.conf the StatefulSet's nodes run with, after checking that
// nats-server accepts it, and its JetStream store_dir.
func natsConfig(t *testing.T, m manifests, sts map[string]any) (string, string) {
	c := containers(sts)[0]
	args := list(c["args"])
	i := slices.Index(args, any("--config"))
	if i < 0 || i+1 >= len(args) {
		t.Fatalf("nats container args %v: no --config", args)
	}
	text := fileInPod(t, m, sts, c, str(args[i+1]))
	path := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("POD_NAME", name(sts)+"-0")
	for _, e := range list(c["env"]) {
		if dig(e, "valueFrom", "secretKeyRef") != nil {
			t.Setenv(str(dig(e, "name")), "dummy-"+str(dig(e, "name")))
		}
	}
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("nats-server refuses the rendered nats.conf: %v\n%s", err, text)
	}
	if !opts.JetStream || opts.Cluster.Name == "" || len(opts.Routes) != 3 {
		t.Errorf("nats.conf: jetstream %v, cluster %q, %d routes; want JetStream in a named cluster of 3", opts.JetStream, opts.Cluster.Name, len(opts.Routes))
	}
	return text, opts.StoreDir
}

// checkStoreClaimed: JetStream's store_dir is on a volume of the volumeClaimTemplates.
func checkStoreClaimed(t *testing.T, sts map[string]any, storeDir string) {
	claims := map[string]bool{}
	for _, v := range list(dig(sts, "spec", "volumeClaimTemplates")) {
		claims[str(dig(v, "metadata", "name"))] = true
	}
	for _, vm := range list(containers(sts)[0]["volumeMounts"]) {
		p := str(dig(vm, "mountPath"))
		if claims[str(dig(vm, "name"))] && (storeDir == p || strings.HasPrefix(storeDir, p+"/")) {
			return
		}
	}
	t.Errorf("JetStream's store_dir %q is on no volume of the volumeClaimTemplates", storeDir)
}

// ---- reading the manifests ----

type manifests struct {
	objs []map[string]any
}

// load returns the manifests of one rendering: from RELAY_HELM_RENDERED, else rendered
// with helm, else the test is skipped (failed under CI).
func load(t *testing.T, r rendering) manifests {
	t.Helper()
	var data []byte
	if dir := os.Getenv("RELAY_HELM_RENDERED"); dir != "" {
		b, err := os.ReadFile(filepath.Join(dir, r.file))
		if err != nil {
			t.Fatalf("RELAY_HELM_RENDERED: %v", err)
		}
		data = b
	} else {
		data = render(t, helmOrSkip(t), r.values)
	}
	m, err := parse(data)
	if err != nil {
		t.Fatalf("%s: %v", r.file, err)
	}
	return m
}

// helmBinary finds helm: $HELM, PATH, or the cache .ci/helm builds it into.
func helmBinary() string {
	if h := os.Getenv("HELM"); h != "" {
		return h
	}
	if h, err := exec.LookPath("helm"); err == nil {
		return h
	}
	cache := os.Getenv("HELM_CACHE")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "relay-ci")
	}
	if h := filepath.Join(cache, "helm"); isExecutable(h) {
		return h
	}
	return ""
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

func helmOrSkip(t *testing.T) string {
	t.Helper()
	h := helmBinary()
	if h == "" {
		if os.Getenv("CI") != "" {
			t.Fatal(howToRun + " (CI is set: this test may not be skipped)")
		}
		t.Skip(howToRun)
	}
	return h
}

// render runs helm template on the chart with the values files and extra arguments.
func render(t *testing.T, helm string, values []string, args ...string) []byte {
	t.Helper()
	out, err := helmTemplate(helm, values, args...)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return out
}

func helmTemplate(helm string, values []string, args ...string) ([]byte, error) {
	cmdArgs := []string{"template", "relay", chart, "--namespace", "relay"}
	for _, v := range values {
		cmdArgs = append(cmdArgs, "-f", v)
	}
	cmd := exec.Command(helm, append(cmdArgs, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s %s: %v\n%s", helm, strings.Join(cmd.Args[1:], " "), err, stderr.String())
	}
	return out, nil
}

func parse(data []byte) (manifests, error) {
	var m manifests
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return m, nil
		}
		if err != nil {
			return m, err
		}
		if doc != nil {
			m.objs = append(m.objs, doc)
		}
	}
}

func (m manifests) all(kind string) []map[string]any {
	var out []map[string]any
	for _, o := range m.objs {
		if o["kind"] == kind {
			out = append(out, o)
		}
	}
	return out
}

// only returns the one object of a kind (and name, when given).
func (m manifests) only(t *testing.T, kind, objName string) map[string]any {
	t.Helper()
	var found []map[string]any
	for _, o := range m.all(kind) {
		if objName == "" || name(o) == objName {
			found = append(found, o)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one %s, found %d", strings.TrimSpace(kind+" "+objName), len(found))
	}
	return found[0]
}

func (m manifests) workloads() []map[string]any {
	return append(m.all("Deployment"), m.all("StatefulSet")...)
}

func isRelay(w map[string]any) bool { return w["kind"] == "Deployment" }

func (m manifests) relayDeployment(t *testing.T) map[string]any {
	return m.only(t, "Deployment", "")
}

func (m manifests) relayContainer(t *testing.T) map[string]any {
	t.Helper()
	for _, c := range containers(m.relayDeployment(t)) {
		if c["name"] == "relay" {
			return c
		}
	}
	t.Fatal("the Deployment has no container named relay")
	return nil
}

func (m manifests) adminService(t *testing.T) map[string]any {
	t.Helper()
	_, cfg := m.relayConfig(t)
	c := m.relayContainer(t)
	for _, s := range m.all("Service") {
		for _, p := range list(dig(s, "spec", "ports")) {
			if containerPort(c, firstSet(dig(p, "targetPort"), dig(p, "port"))) == listenPort(t, cfg, "admin") {
				return s
			}
		}
	}
	t.Fatal("no admin Service")
	return nil
}

// relayConfig returns the relay.yaml the relays start with: the file named by `serve -c`,
// read from the volume mounted there. Parsed too.
func (m manifests) relayConfig(t *testing.T) (string, map[string]any) {
	t.Helper()
	text := m.relayConfigText(t)
	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(text), &cfg); err != nil {
		t.Fatalf("relay.yaml: %v\n%s", err, text)
	}
	return text, cfg
}

func (m manifests) relayConfigText(t *testing.T) string {
	t.Helper()
	c := m.relayContainer(t)
	args := list(c["args"])
	i := slices.Index(args, any("-c"))
	if len(args) == 0 || args[0] != "serve" || i < 0 || i+1 >= len(args) {
		t.Fatalf("relay container args %v: want serve -c <file>", args)
	}
	return fileInPod(t, m, m.relayDeployment(t), c, str(args[i+1]))
}

// fileInPod reads a file of a container from the ConfigMap mounted at it (or at its
// directory).
func fileInPod(t *testing.T, m manifests, w, c map[string]any, path string) string {
	t.Helper()
	for _, vm := range list(c["volumeMounts"]) {
		vm := mapOf(vm)
		mount := str(vm["mountPath"])
		key := str(vm["subPath"])
		switch {
		case mount == path && key != "":
		case filepath.Dir(path) == mount:
			key = filepath.Base(path)
		default:
			continue
		}
		for _, v := range list(podSpec(w)["volumes"]) {
			if dig(v, "name") == vm["name"] {
				cmName := str(dig(v, "configMap", "name"))
				if cmName == "" {
					t.Fatalf("%s is mounted from %v, not a ConfigMap", path, v)
				}
				return str(dig(m.only(t, "ConfigMap", cmName), "data", key))
			}
		}
	}
	t.Fatalf("%s: no volume mounted at %s", name(w), path)
	return ""
}

func fakeSecrets(t *testing.T) map[string]string {
	t.Helper()
	data, err := os.ReadFile(testValues)
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Secrets struct {
			Values map[string]string `yaml:"values"`
		} `yaml:"secrets"`
	}
	if err := yaml.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Secrets.Values) == 0 {
		t.Fatalf("%s: no secrets.values", testValues)
	}
	return v.Secrets.Values
}

var varRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}`)

// configRefs lists the variables relay.yaml references.
func configRefs(text string) []string {
	var names []string
	for _, m := range varRef.FindAllStringSubmatch(text, -1) {
		if !slices.Contains(names, m[1]) {
			names = append(names, m[1])
		}
	}
	return names
}

// secretPositions returns the variables relay.yaml references where a secret goes:
// tokens, webhook and alerts secrets, a client secret, the NATS password and token, and
// headers that carry credentials.
func secretPositions(cfg map[string]any) map[string]bool {
	var values []any
	values = append(values, list(dig(cfg, "ingest", "tokens"))...)
	values = append(values, dig(cfg, "admin", "token"), dig(cfg, "nats", "password"), dig(cfg, "nats", "token"))
	values = append(values, list(dig(cfg, "alerts", "secrets"))...)
	for _, d := range append(list(cfg["destinations"]), dig(cfg, "alerts")) {
		values = append(values, list(dig(d, "secrets"))...)
		values = append(values, dig(d, "auth", "client_secret"))
		for k, v := range mapOf(dig(d, "headers")) {
			if secretName.MatchString(k) || strings.EqualFold(k, "authorization") {
				values = append(values, v)
			}
		}
	}
	refs := map[string]bool{}
	for _, v := range values {
		for _, n := range configRefs(str(v)) {
			refs[n] = true
		}
	}
	return refs
}

func listenPort(t *testing.T, cfg map[string]any, api string) int {
	t.Helper()
	_, port, err := net.SplitHostPort(str(dig(cfg, api, "listen")))
	n, _ := strconv.Atoi(port)
	if err != nil || n == 0 {
		t.Fatalf("relay.yaml %s.listen %q: %v", api, dig(cfg, api, "listen"), err)
	}
	return n
}

// containerPort resolves a port given by number or by name to the container's port.
func containerPort(c map[string]any, ref any) int {
	if n, ok := ref.(int); ok {
		return n
	}
	for _, p := range list(c["ports"]) {
		if dig(p, "name") == ref {
			n, _ := dig(p, "containerPort").(int)
			return n
		}
	}
	return 0
}

// forwards reports whether a Service port forwards to the container's port.
func forwards(svc map[string]any, port string, c map[string]any, to int) bool {
	for _, p := range list(dig(svc, "spec", "ports")) {
		if strconv.Itoa(intOf(dig(p, "port"))) == port && containerPort(c, firstSet(dig(p, "targetPort"), dig(p, "port"))) == to {
			return true
		}
	}
	return false
}

func servicePortNamed(svc map[string]any, portName string) bool {
	return slices.ContainsFunc(list(dig(svc, "spec", "ports")), func(p any) bool { return dig(p, "name") == portName })
}

// selects reports whether a label selector selects these labels.
func selects(selector, labels map[string]any) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// ---- navigating decoded YAML ----

func podSpec(w map[string]any) map[string]any { return mapOf(dig(w, "spec", "template", "spec")) }

func containers(w map[string]any) []map[string]any {
	var out []map[string]any
	for _, c := range list(podSpec(w)["containers"]) {
		out = append(out, mapOf(c))
	}
	return out
}

func name(o map[string]any) string { return str(dig(o, "metadata", "name")) }

// dig follows keys through nested maps; nil when one is missing.
func dig(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func mapOf(v any) map[string]any { m, _ := v.(map[string]any); return m }
func list(v any) []any           { l, _ := v.([]any); return l }
func str(v any) string           { s, _ := v.(string); return s }
func intOf(v any) int            { n, _ := v.(int); return n }

// firstSet returns the first value that is not nil: a container's setting before its pod's.
func firstSet(vs ...any) any {
	for _, v := range vs {
		if v != nil {
			return v
		}
	}
	return nil
}
