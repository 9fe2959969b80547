package e2e

import (
	"context"
	"fmt"
	"net/http"
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
	routes                  string
	proc                    *proc
}

func (n *clusterNode) start(t *testing.T) {
	t.Helper()
	n.proc = natsServer(t, n.port, n.store, "-n", n.name, "--cluster_name", "relay",
		"--cluster", fmt.Sprintf("nats://127.0.0.1:%d", n.clusterPort), "--routes", n.routes,
		"-m", fmt.Sprint(n.http))
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
// JetStream, each on its own ports and store, and waits until every node
// is healthy.
func natsCluster(t *testing.T, dir string) []*clusterNode {
	t.Helper()
	nodes := make([]*clusterNode, 3)
	for i := range nodes {
		nodes[i] = &clusterNode{name: fmt.Sprintf("n%d", i), port: freePort(t), clusterPort: freePort(t), http: freePort(t),
			store: filepath.Join(dir, fmt.Sprintf("n%d", i))}
	}
	for i, n := range nodes {
		var routes []string
		for j, o := range nodes {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", o.clusterPort))
			}
		}
		n.routes = strings.Join(routes, ",")
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
