package helm

import (
	"path"
	"strings"
	"testing"
)

// TestChartRefusesSecretsInConfig: a relay.yaml value that would put a secret in the
// ConfigMap, or a setting the chart owns, makes helm template fail with a message naming
// it, and the message does not repeat the secret. Needs helm (not only rendered files).
func TestChartRefusesSecretsInConfig(t *testing.T) {
	helm := helmOrSkip(t)
	const literal = "LITERAL-SECRET-3c7d"
	webhook := func(extra string) string {
		return `[{"name": "crm", "type": "webhook", "url": "https://crm.example.com/hook", "secrets": ["${RELAY_ADMIN_TOKEN}"]` + extra + `}]`
	}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"literal admin token", []string{"--set", "config.admin.token=" + literal}, "config.admin.token must be a ${VAR} reference"},
		{"literal ingest token", []string{"--set-json", `config.ingest.tokens=["` + literal + `"]`}, "config.ingest.tokens[0] holds a literal secret"},
		{"default in a reference", []string{"--set-json", `config.ingest.tokens=["${RELAY_INGEST_TOKEN:-` + literal + `}"]`}, "config.ingest.tokens[0] holds a literal secret"},
		{"literal webhook secret", []string{"--set-json", `config.destinations=[{"name": "crm", "type": "webhook", "url": "https://crm.example.com/hook", "secrets": ["whsec_` + literal + `"]}]`}, "config.destinations[0].secrets[0] holds a literal secret"},
		{"literal authorization header", []string{"--set-json", "config.destinations=" + webhook(`, "headers": {"Authorization": "Bearer `+literal+`"}`)}, "config.destinations[0].headers.Authorization looks like a secret"},
		{"password in a destination url", []string{"--set-json", `config.destinations=[{"name": "crm", "type": "webhook", "url": "https://user:` + literal + `@crm.example.com/hook", "secrets": ["${RELAY_ADMIN_TOKEN}"]}]`}, "config.destinations[0].url carries a user or password"},
		{"literal client secret", []string{"--set-json", `config.destinations=[{"name": "sf", "type": "salesforce", "auth": {"client_secret": "` + literal + `"}}]`}, "config.destinations[0].auth.client_secret holds a literal secret"},
		{"literal alerts secret", []string{"--set-json", `config.alerts={"url": "https://ops.example.com/a", "secrets": ["whsec_` + literal + `"]}`}, "config.alerts.secrets[0] holds a literal secret"},
		{"undefined variable", []string{"--set", "config.admin.token=${NOT_DEFINED}"}, "relay.yaml references ${NOT_DEFINED}"},
		{"password in nats.url", []string{"--set", "nats.url=nats://relay:" + literal + "@nats:4222"}, "nats.url: the URL of an external NATS without user or password"},
		{"embedded nats", []string{"--set", "nats.url=embedded"}, "the embedded NATS cannot be shared"},
		{"config.nats.url", []string{"--set", "config.nats.url=nats://other:4222"}, "config.nats.url is set by the chart"},
		{"config.nats.password", []string{"--set", "config.nats.password=" + literal}, "config.nats.password is set by the chart"},
		{"config.ingest.listen", []string{"--set", "config.ingest.listen=:9000"}, "config.ingest.listen is set by the chart"},
		{"two ways to authenticate", []string{"--set", "nats.auth.tokenKey=t,nats.auth.credsKey=c"}, "nats.auth: give one way to authenticate, not 2"},
		{"tls without a secret", []string{"--set", "nats.tls.enabled=true"}, "nats.tls.enabled needs nats.tls.existingSecret"},
		{"creds with the chart's cluster", []string{"--set", "nats.cluster.enabled=true,nats.auth.credsKey=c"}, "takes user/password or a token only"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := helmTemplate(helm, nil, c.args...)
			if err == nil {
				t.Fatalf("helm template %v rendered:\n%s", c.args, out)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("want an error saying %q, got:\n%v", c.want, err)
			}
			if strings.Contains(strings.SplitN(err.Error(), "\n", 2)[1], literal) {
				t.Errorf("the error repeats the secret:\n%v", err)
			}
		})
	}
}

// TestNATSSecurityFiles: with a creds file and TLS, every file relay.yaml names under
// nats is mounted from the right key of the right Secret.
func TestNATSSecurityFiles(t *testing.T) {
	helm := helmOrSkip(t)
	m := mustParse(t, render(t, helm, nil, "--set",
		"nats.auth.existingSecret=nats-creds,nats.auth.credsKey=relay.creds,"+
			"nats.tls.enabled=true,nats.tls.existingSecret=nats-client-tls,nats.tls.certKey=tls.crt,nats.tls.keyKey=tls.key"))
	_, cfg := m.relayConfig(t)
	files := map[string][2]string{ // relay.yaml key -> Secret, key
		"credentials":   {"nats-creds", "relay.creds"},
		"tls.ca_file":   {"nats-client-tls", "ca.crt"},
		"tls.cert_file": {"nats-client-tls", "tls.crt"},
		"tls.key_file":  {"nats-client-tls", "tls.key"},
	}
	dep := m.relayDeployment(t)
	c := m.relayContainer(t)
	for key, want := range files {
		file := str(dig(cfg["nats"], strings.Split(key, ".")...))
		if got := secretFile(dep, c, file); got != want {
			t.Errorf("relay.yaml nats.%s %q comes from %v, want Secret %s key %s", key, file, got, want[0], want[1])
		}
	}
}

// secretFile returns the Secret and key mounted at a file of the container.
func secretFile(w, c map[string]any, file string) [2]string {
	for _, vm := range list(c["volumeMounts"]) {
		if path.Dir(file) != str(dig(vm, "mountPath")) {
			continue
		}
		for _, v := range list(podSpec(w)["volumes"]) {
			if dig(v, "name") != dig(vm, "name") {
				continue
			}
			for _, item := range list(dig(v, "secret", "items")) {
				if dig(item, "path") == path.Base(file) {
					return [2]string{str(dig(v, "secret", "secretName")), str(dig(item, "key"))}
				}
			}
		}
	}
	return [2]string{}
}

// TestExistingConfigMap: the relays read the user's ConfigMap and the chart renders none.
func TestExistingConfigMap(t *testing.T) {
	helm := helmOrSkip(t)
	m := mustParse(t, render(t, helm, nil, "--set", "existingConfigMap=my-relay,existingConfigMapKey=config.yaml"))
	if cms := m.all("ConfigMap"); len(cms) != 0 {
		t.Errorf("want no ConfigMap with existingConfigMap, got %s", name(cms[0]))
	}
	dep := m.relayDeployment(t)
	c := m.relayContainer(t)
	for _, vm := range list(c["volumeMounts"]) {
		if dig(vm, "mountPath") != "/etc/relay/relay.yaml" {
			continue
		}
		if dig(vm, "subPath") != "config.yaml" {
			t.Errorf("relay.yaml mounted from key %v, want config.yaml", dig(vm, "subPath"))
		}
		for _, v := range list(podSpec(dep)["volumes"]) {
			if dig(v, "name") == dig(vm, "name") && dig(v, "configMap", "name") != "my-relay" {
				t.Errorf("relay.yaml mounted from %v, want ConfigMap my-relay", v)
			}
		}
		return
	}
	t.Errorf("nothing mounted at /etc/relay/relay.yaml")
}

// TestOneRelayNoPDB: a single relay gets no PodDisruptionBudget (it would block drains).
func TestOneRelayNoPDB(t *testing.T) {
	helm := helmOrSkip(t)
	m := mustParse(t, render(t, helm, nil, "--set", "replicaCount=1"))
	if pdbs := m.all("PodDisruptionBudget"); len(pdbs) != 0 {
		t.Errorf("replicaCount 1: want no PodDisruptionBudget, got %s", name(pdbs[0]))
	}
}

// TestClusterWithPassword: the chart's NATS cluster takes the user and password from the
// same Secret as the relays, through its environment, and nats-server accepts the file.
func TestClusterWithPassword(t *testing.T) {
	helm := helmOrSkip(t)
	m := mustParse(t, render(t, helm, []string{chart + "/values-with-nats.yaml"}, "--set",
		"nats.auth.userKey=nats-user,nats.auth.passwordKey=nats-password"))
	sts := m.only(t, "StatefulSet", "")
	conf, _ := natsConfig(t, m, sts)
	if !strings.Contains(conf, "password: $RELAY_NATS_PASSWORD") {
		t.Errorf("nats.conf takes no password from the environment:\n%s", conf)
	}
	_, cfg := m.relayConfig(t)
	if dig(cfg, "nats", "user") != "${RELAY_NATS_USER}" || dig(cfg, "nats", "password") != "${RELAY_NATS_PASSWORD}" {
		t.Errorf("relay.yaml nats: %v", cfg["nats"])
	}
	for _, w := range m.workloads() {
		c := containers(w)[0]
		found := 0
		for _, e := range list(c["env"]) {
			if n := str(dig(e, "name")); n == "RELAY_NATS_USER" || n == "RELAY_NATS_PASSWORD" {
				if dig(e, "valueFrom", "secretKeyRef", "name") == "relay-secrets" {
					found++
				}
			}
		}
		if found != 2 {
			t.Errorf("%s %s: want RELAY_NATS_USER and RELAY_NATS_PASSWORD from relay-secrets", w["kind"], name(w))
		}
	}
}

func mustParse(t *testing.T, data []byte) manifests {
	t.Helper()
	m, err := parse(data)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
