package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// clusterNode is one nats-server of a test cluster.
type clusterNode struct {
	name                    string
	port, clusterPort, http int
	store                   string
	conf                    string // its nats-server config file
	proc                    *proc
}

// composeNATSConf is the nats-server config every node of the compose
// deployment runs (deploy/compose.yaml). The cluster test runs the same
// file: nodeConfig changes only what must differ for three nodes on one
// machine.
const composeNATSConf = "deploy/compose/nats.conf"

// start runs the node's nats-server on its config file, with its name in
// NATS_SERVER_NAME as compose sets it, and waits until it listens.
func (n *clusterNode) start(t *testing.T) {
	t.Helper()
	bin := binary(t, "github.com/nats-io/nats-server/v2")
	p := &proc{cmd: exec.Command(bin, "--config", n.conf), done: make(chan struct{}), out: &bytes.Buffer{}}
	p.cmd.Env = append(os.Environ(), "NATS_SERVER_NAME="+n.name)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start nats-server %s: %v", n.name, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.kill() })
	n.proc = p
	deadline := time.Now().Add(30 * time.Second)
	for !dialable(n.port) {
		if time.Now().After(deadline) {
			t.Fatalf("nats-server %s not listening:\n%s", n.name, p.out)
		}
		select {
		case <-p.done:
			t.Fatalf("nats-server %s exited:\n%s", n.name, p.out)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// nodeConfig is deploy/compose/nats.conf for node n of nodes on this
// machine: its client, monitoring and cluster ports, its store directory,
// and each route's host name and port (nats-1:6222 -> 127.0.0.1:its
// cluster port). Everything else is the file as compose runs it.
func nodeConfig(t *testing.T, conf string, n *clusterNode, nodes []*clusterNode) string {
	t.Helper()
	subs := [][2]string{
		{"listen: 0.0.0.0:4222", fmt.Sprintf("listen: 127.0.0.1:%d", n.port)},
		{"http: 0.0.0.0:8222", fmt.Sprintf("http: 127.0.0.1:%d", n.http)},
		{"store_dir: /data", fmt.Sprintf("store_dir: %q", n.store)},
		{"listen: 0.0.0.0:6222", fmt.Sprintf("listen: 127.0.0.1:%d", n.clusterPort)},
	}
	for _, o := range nodes {
		subs = append(subs, [2]string{fmt.Sprintf("nats://%s:6222", o.name), fmt.Sprintf("nats://127.0.0.1:%d", o.clusterPort)})
	}
	for _, s := range subs {
		if c := strings.Count(conf, s[0]); c != 1 {
			t.Fatalf("%s: want %q once (the test changes it for one machine), found it %d times", composeNATSConf, s[0], c)
		}
		conf = strings.Replace(conf, s[0], s[1], 1)
	}
	return conf
}

// healthy reports whether the node's JetStream is up and current.
func (n *clusterNode) healthy() bool {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", n.http))
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// natsCluster starts a cluster of three nats-server processes with
// JetStream, each running deploy/compose/nats.conf (nodeConfig) on its own
// ports and store, and waits until every node is healthy.
func natsCluster(t *testing.T, dir string) []*clusterNode {
	t.Helper()
	conf, err := os.ReadFile(filepath.Join(moduleRoot(t), composeNATSConf))
	if err != nil {
		t.Fatal(err)
	}
	nodes := make([]*clusterNode, 3)
	for i := range nodes {
		name := fmt.Sprintf("nats-%d", i+1) // the compose services' names
		nodes[i] = &clusterNode{name: name, port: freePort(t), clusterPort: freePort(t), http: freePort(t),
			store: filepath.Join(dir, name), conf: filepath.Join(dir, name+".conf")}
	}
	for _, n := range nodes {
		if err := os.WriteFile(n.conf, []byte(nodeConfig(t, string(conf), n, nodes)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range nodes {
		n.start(t)
	}
	waitHealthy(t, nodes...)
	return nodes
}

func waitHealthy(t *testing.T, nodes ...*clusterNode) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for _, n := range nodes {
		for !n.healthy() {
			if time.Now().After(deadline) {
				t.Fatalf("nats-server %s not healthy:\n%s", n.name, n.proc.out)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func clusterURL(nodes []*clusterNode) string {
	urls := make([]string, len(nodes))
	for i, n := range nodes {
		urls[i] = fmt.Sprintf("nats://127.0.0.1:%d", n.port)
	}
	return strings.Join(urls, ",")
}

// streamInfo asks the cluster about the ACTIVITIES stream.
func streamInfo(t *testing.T, url string) *jetstream.StreamInfo {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, "ACTIVITIES")
	if err != nil {
		t.Fatalf("stream ACTIVITIES: %v", err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatalf("stream ACTIVITIES info: %v", err)
	}
	return info
}

// streamLeader is the node leading the ACTIVITIES stream, which must be
// replicated on all three.
func streamLeader(t *testing.T, url string) string {
	t.Helper()
	info := streamInfo(t, url)
	if info.Cluster == nil || info.Config.Replicas != 3 {
		t.Fatalf("stream ACTIVITIES has %d replicas, want 3", info.Config.Replicas)
	}
	return info.Cluster.Leader
}

// TestNATSClusterNodeLoss runs Relay on a three-node nats-server cluster
// with every stream replicated three times, kills the node leading the
// ACTIVITIES stream (SIGKILL) in the middle of a run and later brings it
// back. Producers retry refused batches with the same ids; every accepted
// activity is delivered, the stream holds each once, and ingest keeps
// answering throughout.
func TestNATSClusterNodeLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("the fault suite runs without -short")
	}
	relayBin := binary(t, "./cmd/relay")
	s := newSink(t)
	dir := t.TempDir()
	nodes := natsCluster(t, dir)
	url := clusterURL(nodes)
	cfg, ingest, admin := writeRelayConfig(t, dir, relayOpts{nats: url, sink: s.srv.URL, replicas: 3})
	relay := start(t, relayBin, "serve", "-c", cfg)
	waitHTTP(t, admin+"/readyz", 90*time.Second, relay)

	leader := streamLeader(t, url)
	var victim *clusterNode
	for _, n := range nodes {
		if n.name == leader {
			victim = n
		}
	}
	if victim == nil {
		t.Fatalf("stream leader %q is none of the nodes", leader)
	}

	const batches, size = 150, 100
	prod := newProducer(256, ingest)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	wait := prod.run(ctx, batches, size, 4)
	waitUntil(t, ctx, "4,000 accepted", func() bool { return prod.count() >= 4000 })
	victim.proc.kill()
	killedAt := prod.count()
	waitUntil(t, ctx, "3,000 more accepted with a node down", func() bool { return prod.count() >= killedAt+3000 })
	victim.start(t)
	backAt := prod.count()
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	waitHealthy(t, nodes...)
	accepted := prod.ids()
	if len(accepted) != batches*size {
		t.Fatalf("accepted %d, want %d", len(accepted), batches*size)
	}
	tl := settle(t, "cluster", s, accepted, func() []string { return deadLetters(t, admin, "sink") }, 3*time.Minute)
	stored := streamInfo(t, url).State.Msgs
	if stored != uint64(len(accepted)) {
		t.Errorf("stream ACTIVITIES holds %d messages for %d accepted activities: a retried batch was stored twice", stored, len(accepted))
	}
	report(t, "nats cluster node loss", tl, fmt.Sprintf("killed_leader=%s at_accepted=%d back_at_accepted=%d refused_requests=%d stream_messages=%d new_leader=%s",
		leader, killedAt, backAt, prod.refusals(), stored, streamLeader(t, url)))
	relay.stop(t)
}
