package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"

	"github.com/storeprov/storeprov/deploy/devstack"
	"github.com/storeprov/storeprov/pkg/bus"
	"github.com/storeprov/storeprov/pkg/sandboxtest"
)

// tcpProxy forwards TCP connections to a server (PostgreSQL) and can cut
// it off: while down it drops every open connection and closes new ones
// as soon as they are accepted, as an unreachable server looks to a
// client whose packets are refused.
type tcpProxy struct {
	ln     net.Listener
	target string
	down   atomic.Bool
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	// refused counts connections closed while down.
	refused atomic.Int64
}

// startTCPProxy listens on a free loopback port until the test ends.
func startTCPProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	t.Cleanup(func() {
		ln.Close()
		p.dropAll()
	})
	go p.serve()
	return p
}

func (p *tcpProxy) addr() string { return p.ln.Addr().String() }

func (p *tcpProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if p.down.Load() {
			p.refused.Add(1)
			c.Close()
			continue
		}
		go p.forward(c)
	}
}

func (p *tcpProxy) forward(c net.Conn) {
	up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		c.Close()
		return
	}
	if !p.track(c, up) {
		return
	}
	var wg sync.WaitGroup
	pipe := func(dst, src net.Conn) {
		defer wg.Done()
		_, _ = io.Copy(dst, src)
		// Either side ending ends both, as a broken route would.
		dst.Close()
		src.Close()
	}
	wg.Add(2)
	go pipe(up, c)
	go pipe(c, up)
	wg.Wait()
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, up)
	p.mu.Unlock()
}

// track registers a pair of connections, unless the proxy went down
// meanwhile (then it closes them).
func (p *tcpProxy) track(conns ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down.Load() {
		for _, c := range conns {
			c.Close()
		}
		return false
	}
	for _, c := range conns {
		p.conns[c] = struct{}{}
	}
	return true
}

func (p *tcpProxy) dropAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

// cut makes the server unreachable for d.
func (p *tcpProxy) cut(ctx context.Context, d time.Duration) {
	p.mu.Lock()
	p.down.Store(true)
	p.mu.Unlock()
	p.dropAll()
	sleep(ctx, d)
	p.down.Store(false)
}

// kubeFaultProxy is a reverse proxy in front of the sandbox's API server
// that answers a share of the requests with 500 or 429 (with Retry-After,
// as an overloaded API server does) and delays every other one. It signs
// in to the API server with the sandbox's own credentials, so its clients
// need none.
type kubeFaultProxy struct {
	srv        *http.Server
	url        string
	errorShare float64
	delay      time.Duration
	// errors and delayed count the requests answered with an injected
	// error and the ones delayed.
	errors, delayed atomic.Int64
}

func startKubeFaultProxy(t *testing.T, cfg *rest.Config, errorShare float64, delay time.Duration) *kubeFaultProxy {
	t.Helper()
	upstream, err := url.Parse(cfg.Host)
	if err != nil {
		t.Fatal(err)
	}
	transport, err := rest.TransportFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p := &kubeFaultProxy{errorShare: errorShare, delay: delay}
	rp := &httputil.ReverseProxy{
		Rewrite:       func(r *httputil.ProxyRequest) { r.SetURL(upstream) },
		Transport:     transport,
		FlushInterval: -1, // watches stream
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.url = "http://" + ln.Addr().String()
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rand.Float64() < p.errorShare {
			p.errors.Add(1)
			code, reason := http.StatusInternalServerError, metav1.StatusReasonInternalError
			if rand.IntN(2) == 0 {
				code, reason = http.StatusTooManyRequests, metav1.StatusReasonTooManyRequests
				w.Header().Set("Retry-After", "1")
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			_ = json.NewEncoder(w).Encode(metav1.Status{
				TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
				Status:   metav1.StatusFailure, Message: "fault injected by the fault suite's proxy", Reason: reason, Code: int32(code),
			})
			return
		}
		p.delayed.Add(1)
		select {
		case <-time.After(p.delay):
		case <-r.Context().Done():
			return
		}
		rp.ServeHTTP(w, r)
	})}
	go func() { _ = p.srv.Serve(ln) }()
	t.Cleanup(func() { p.srv.Close() })
	return p
}

// kubeconfig writes a kubeconfig that reaches the API server through the
// proxy and returns its path.
func (p *kubeFaultProxy) kubeconfig(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubeconfig-faulty")
	doc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: faulty
  cluster:
    server: %s
users:
- name: faulty
  user: {}
contexts:
- name: faulty
  context:
    cluster: faulty
    user: faulty
current-context: faulty
`, p.url)
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// killPoint is a moment of a store's work worth killing its worker at.
type killPoint string

const (
	pointInstall   killPoint = "install"
	pointReadiness killPoint = "readiness wait"
	pointRollback  killPoint = "rollback"
	pointDeletion  killPoint = "namespace deletion"
)

// killer kills the orchestrator working on a store when the store reaches
// a kill point, as the cluster shows it (Helm's release Secrets, the
// namespace's deletion), and restarts the killed worker a moment later.
// The worker is the holder of the store's lease; when the lease cannot be
// read, it is one at random.
type killer struct {
	t      *testing.T
	s      *devstack.Stack
	run    *faultRun
	js     jetstream.JetStream
	bucket string
	leases jetstream.KeyValue
	min    int

	mu       sync.Mutex
	last     time.Time
	down     map[int]bool
	kills    []string
	hitKinds map[killPoint]int
	// hitStores are the stores killed at, each once: every kill costs a
	// store the consumer's ack wait and the lease's TTL.
	hitStores map[string]bool
	restarts  sync.WaitGroup
}

func newKiller(t *testing.T, r *faultRun, min int) *killer {
	k := &killer{t: t, s: r.stack, run: r, min: min, down: map[int]bool{}, hitKinds: map[killPoint]int{}, hitStores: map[string]bool{}}
	topology := bus.Topology{Prefix: r.stack.BusPrefix(), Replicas: 1}
	creds := bus.Credentials{User: string(bus.RoleOrchestrator), Password: r.stack.NATSPassword(bus.RoleOrchestrator)}
	opts := append(topology.ConnectOptions(bus.RoleOrchestrator, creds, slog.New(slog.DiscardHandler)),
		nats.MaxReconnects(-1), nats.ReconnectWait(200*time.Millisecond))
	nc, err := nats.Connect(r.stack.NATSURL, opts...)
	if err != nil {
		t.Fatalf("cannot connect to NATS to read the store leases: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	k.js, k.bucket = js, topology.LeaseBucket()
	return k
}

// leaseBucket binds the lease bucket the first time it exists: the
// orchestrators make it when they start, possibly after the killer.
func (k *killer) leaseBucket(ctx context.Context) (jetstream.KeyValue, error) {
	if k.leases != nil {
		return k.leases, nil
	}
	kv, err := k.js.KeyValue(ctx, k.bucket)
	if err != nil {
		return nil, err
	}
	k.leases = kv
	return kv, nil
}

// watch follows the cluster until ctx is done and kills at kill points.
func (k *killer) watch(ctx context.Context) {
	cs := sandboxtest.Clientset(k.t)
	go k.follow(ctx, func(ctx context.Context) (watch.Interface, error) {
		return cs.CoreV1().Secrets("").Watch(ctx, metav1.ListOptions{LabelSelector: "owner=helm"})
	}, func(ev watch.Event) {
		sec, ok := ev.Object.(*corev1.Secret)
		if !ok || ev.Type == watch.Deleted {
			return
		}
		id, ok := k.run.storeOfNamespace(sec.Namespace)
		if !ok {
			return
		}
		st := k.run.seen(id)
		switch status := sec.Labels["status"]; {
		case status == "pending-install" || status == "pending-upgrade":
			k.maybeKill(ctx, pointInstall, id)
		case status == "pending-rollback" || (status == "failed" && k.run.rollsBack(id)):
			k.maybeKill(ctx, pointRollback, id)
		case status == "deployed" && st.Phase == "PHASE_PROVISIONING":
			k.maybeKill(ctx, pointReadiness, id)
		}
	})
	go k.follow(ctx, func(ctx context.Context) (watch.Interface, error) {
		return cs.CoreV1().Namespaces().Watch(ctx, metav1.ListOptions{})
	}, func(ev watch.Event) {
		ns, ok := ev.Object.(*corev1.Namespace)
		if !ok || ns.DeletionTimestamp == nil || ev.Type == watch.Deleted {
			return
		}
		if id, ok := k.run.storeOfNamespace(ns.Name); ok {
			k.maybeKill(ctx, pointDeletion, id)
		}
	})
}

// follow re-opens a watch whenever it ends, until ctx is done.
func (k *killer) follow(ctx context.Context, open func(context.Context) (watch.Interface, error), on func(watch.Event)) {
	for ctx.Err() == nil {
		w, err := open(ctx)
		if err != nil {
			sleep(ctx, time.Second)
			continue
		}
		for ev := range w.ResultChan() {
			on(ev)
		}
		w.Stop()
	}
}

// maybeKill kills the worker of store id at point, if the kill plan wants
// one there: every kind of point at its first occurrence, a kind already
// hit now and then; never two kills within 3 s, nor a worker that is down,
// nor twice at the same store.
func (k *killer) maybeKill(ctx context.Context, point killPoint, id string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if ctx.Err() != nil || time.Since(k.last) < 3*time.Second || k.hitStores[id] {
		return
	}
	// A kind already hit is hit again now and then (more often until the
	// least number of kills is reached), so that the stores left see the
	// other kinds.
	again := 0.15
	if len(k.kills) < k.min {
		again = 0.3
	}
	if k.hitKinds[point] > 0 && rand.Float64() > again {
		return
	}
	slot, how := k.holder(ctx, id)
	if k.down[slot] {
		return
	}
	killCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := k.s.KillOrchestrator(killCtx, slot); err != nil {
		k.run.violate("the suite could not kill orchestrator-%d: %v", slot+1, err)
		return
	}
	k.last = time.Now()
	k.down[slot] = true
	k.hitKinds[point]++
	k.hitStores[id] = true
	k.kills = append(k.kills, fmt.Sprintf("orchestrator-%d (%s) at the %s of store %s", slot+1, how, point, id))
	k.run.logf("fault: kill -9 orchestrator-%d (%s) at the %s of store %s", slot+1, how, point, id)
	k.restarts.Go(func() {
		sleep(context.Background(), time.Second+rand.N(3*time.Second))
		k.mu.Lock()
		defer k.mu.Unlock()
		if err := k.s.StartOrchestrator(slot); err != nil {
			k.run.violate("the suite could not restart orchestrator-%d: %v", slot+1, err)
		}
		k.down[slot] = false
	})
}

// holder returns the orchestrator holding the store's lease, or one at
// random, and says which.
func (k *killer) holder(ctx context.Context, id string) (int, string) {
	random := func(why string) (int, string) {
		n := len(k.s.Orchestrators)
		slot := rand.IntN(n)
		for i := range n {
			if !k.down[(slot+i)%n] {
				return (slot + i) % n, "at random: " + why
			}
		}
		return slot, "at random: " + why
	}
	leases, err := k.leaseBucket(ctx)
	if err != nil {
		return random("lease bucket " + k.bucket + ": " + err.Error())
	}
	entry, err := leases.Get(ctx, id)
	if err != nil {
		return random("lease unreadable")
	}
	var rec struct {
		Holder string `json:"holder"`
	}
	if json.Unmarshal(entry.Value(), &rec) != nil {
		return random("lease not understood")
	}
	slot, ok := k.s.WorkerSlot(rec.Holder)
	if !ok {
		return random("holder " + rec.Holder + " unknown")
	}
	return slot, "lease holder"
}

// wait waits for the pending restarts and returns what was killed.
func (k *killer) wait() ([]string, map[killPoint]int) {
	k.restarts.Wait()
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.kills...), k.hitKinds
}

// sleep waits for d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-time.After(d):
	case <-ctx.Done():
	}
}

// errAPIDown reports that the api did not answer after it was started again.
var errAPIDown = errors.New("the api does not answer")

// waitReachable waits until something accepts connections at addr.
func waitReachable(ctx context.Context, addr string) error {
	for ctx.Err() == nil {
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return nil
		}
		sleep(ctx, 100*time.Millisecond)
	}
	return fmt.Errorf("%w at %s: %v", errAPIDown, addr, ctx.Err())
}

// trimLines keeps the lines of logs that contain every one of words, at
// most n of them, for a violation's evidence.
func trimLines(logs string, n int, words ...string) []string {
	var out []string
	for _, line := range strings.Split(logs, "\n") {
		ok := true
		for _, w := range words {
			if !strings.Contains(line, w) {
				ok = false
				break
			}
		}
		if ok {
			if len(line) > 300 {
				line = line[:300] + "…"
			}
			out = append(out, line)
		}
	}
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return out
}
