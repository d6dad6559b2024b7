package app_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	storev1 "github.com/storeprov/storeprov/gen/storeprov/store/v1"
	"github.com/storeprov/storeprov/pkg/auth"
	"github.com/storeprov/storeprov/pkg/rpc"
	"github.com/storeprov/storeprov/services/gateway/internal/app"
)

const goodToken = "sp_good"

// backend is a gRPC server built as the api's is (pkg/rpc: authentication,
// rate and stream limits), serving a StoreService that answers from
// memory. It counts token lookups, each of which costs the real api a
// database query.
type backend struct {
	storev1.UnimplementedStoreServiceServer
	lookups atomic.Int64
	creates atomic.Int64
	// lookupDelay, in nanoseconds, is how long each token lookup takes.
	lookupDelay atomic.Int64
	addr        string
}

func startBackend(t *testing.T, maxStreams int) *backend {
	t.Helper()
	b := &backend{}
	authn := auth.AuthenticatorFunc(func(_ context.Context, token string) (auth.Principal, error) {
		b.lookups.Add(1)
		time.Sleep(time.Duration(b.lookupDelay.Load()))
		if token != goodToken {
			return auth.Principal{}, auth.ErrUnauthenticated
		}
		return auth.Principal{Name: "alice"}, nil
	})
	srv := rpc.NewServer(rpc.Options{Service: "api", Auth: authn, MaxStreamsPerUser: maxStreams,
		Registry: prometheus.NewRegistry(), Logger: slog.New(slog.DiscardHandler)})
	storev1.RegisterStoreServiceServer(srv, b)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }() // returns once the test stops the server
	t.Cleanup(srv.Stop)
	b.addr = lis.Addr().String()
	return b
}

func (b *backend) ListStores(context.Context, *storev1.ListStoresRequest) (*storev1.ListStoresResponse, error) {
	return &storev1.ListStoresResponse{Stores: []*storev1.Store{{Id: "s1", DisplayName: "Shop"}}}, nil
}

func (b *backend) CreateStore(_ context.Context, req *storev1.CreateStoreRequest) (*storev1.Store, error) {
	b.creates.Add(1)
	return &storev1.Store{Id: "s2", DisplayName: req.GetStore().GetDisplayName()}, nil
}

// GetStore answers only when its caller gives up.
func (b *backend) GetStore(ctx context.Context, _ *storev1.GetStoreRequest) (*storev1.Store, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// WatchStores completes the snapshot at once and sends a store 2.5 s later.
func (b *backend) WatchStores(_ *storev1.WatchStoresRequest, stream storev1.StoreService_WatchStoresServer) error {
	if err := stream.Send(&storev1.WatchStoresResponse{SnapshotComplete: true}); err != nil {
		return err
	}
	select {
	case <-time.After(2500 * time.Millisecond):
	case <-stream.Context().Done():
		return nil
	}
	if err := stream.Send(&storev1.WatchStoresResponse{Store: &storev1.Store{Id: "late"}}); err != nil {
		return err
	}
	<-stream.Context().Done()
	return nil
}

// startGateway runs the gateway in front of b with its default flags,
// changed by configure, until the test ends.
func startGateway(t *testing.T, b *backend, configure ...func(*app.Options)) app.Addrs {
	t.Helper()
	addrs, stop := runGateway(t, b, configure...)
	t.Cleanup(func() {
		if _, err := stop(); err != nil {
			t.Errorf("gateway stopped with %v", err)
		}
	})
	return addrs
}

// runGateway runs the gateway as startGateway does and returns its
// addresses and a function that stops it (as SIGTERM does), which returns
// what Run returned and how long it took.
func runGateway(t *testing.T, b *backend, configure ...func(*app.Options)) (app.Addrs, func() (time.Duration, error)) {
	t.Helper()
	var o app.Options
	if err := parseDefaults(&o); err != nil {
		t.Fatal(err)
	}
	o.HTTPAddr, o.MetricsAddr, o.APIAddr, o.AuditAddr = "127.0.0.1:0", "127.0.0.1:0", b.addr, b.addr
	o.Logger = slog.New(slog.DiscardHandler)
	o.Static = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "<html>dashboard</html>") })
	for _, c := range configure {
		c(&o)
	}
	ready := make(chan app.Addrs, 1)
	o.OnReady = func(a app.Addrs) { ready <- a }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx, o) }()
	stop := func() (time.Duration, error) {
		began := time.Now()
		cancel()
		select {
		case err := <-done:
			return time.Since(began), err
		case <-time.After(30 * time.Second):
			return time.Since(began), errors.New("gateway did not stop within 30s")
		}
	}
	select {
	case a := <-ready:
		return a, stop
	case err := <-done:
		cancel()
		t.Fatalf("gateway did not start: %v", err)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("gateway did not start within 10s")
	}
	return app.Addrs{}, nil
}

type response struct {
	status int
	header http.Header
	body   string
}

func call(t *testing.T, method, url, token string, body io.Reader, header ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// rpcError is the JSON error body of the gateway.
type rpcError struct {
	Code    *int    `json:"code"`
	Message *string `json:"message"`
}

func wantError(t *testing.T, what string, r response, status int) rpcError {
	t.Helper()
	var e rpcError
	if r.status != status {
		t.Errorf("%s: status %d %q, want %d", what, r.status, r.body, status)
	}
	if err := json.Unmarshal([]byte(r.body), &e); err != nil || e.Code == nil || e.Message == nil {
		t.Errorf("%s: body %q, want the gateway's JSON error {code, message}", what, r.body)
		return rpcError{}
	}
	return e
}

func TestBodyLargerThan1MiBIs413AndTheGatewayKeepsServing(t *testing.T) {
	b := startBackend(t, 0)
	base := "http://" + startGateway(t, b).HTTP
	big := `{"displayName":"` + strings.Repeat("x", 2<<20) + `"}`

	r := call(t, "POST", base+"/v1/stores", goodToken, strings.NewReader(big))
	if e := wantError(t, "2 MiB body with its length", r, http.StatusRequestEntityTooLarge); e.Message != nil && !strings.Contains(*e.Message, "1 MiB") {
		t.Errorf("message %q does not say the limit (1 MiB)", *e.Message)
	}
	// Without Content-Length (chunked), the limit holds as the body is read.
	r = call(t, "POST", base+"/v1/stores", goodToken, io.MultiReader(strings.NewReader(big)))
	wantError(t, "2 MiB chunked body", r, http.StatusRequestEntityTooLarge)
	if n := b.creates.Load(); n != 0 {
		t.Errorf("the api received %d creates; a body over the limit must not reach it", n)
	}

	if r := call(t, "GET", base+"/v1/stores", goodToken, nil); r.status != http.StatusOK || !strings.Contains(r.body, "Shop") {
		t.Errorf("GET /v1/stores after the 413s: %d %q, want 200 and the stores", r.status, r.body)
	}
	if r := call(t, "POST", base+"/v1/stores", goodToken, strings.NewReader(`{"displayName":"Small"}`)); r.status != http.StatusOK {
		t.Errorf("a small create after the 413s: %d %q, want 200", r.status, r.body)
	}
}

func TestBogusTokensFromOneAddressEndIn429WithoutReachingTheAPI(t *testing.T) {
	b := startBackend(t, 0)
	base := "http://" + startGateway(t, b).HTTP
	// A user whose token worked before the flood.
	if r := call(t, "GET", base+"/v1/stores", goodToken, nil); r.status != http.StatusOK {
		t.Fatalf("valid token: %d %q", r.status, r.body)
	}
	lookupsBefore := b.lookups.Load()

	counts := map[int]int{}
	var last response
	for i := range 200 {
		// A fresh X-Forwarded-For each time: not believed from a peer
		// that is not a trusted proxy.
		r := call(t, "GET", base+"/v1/stores", fmt.Sprintf("sp_bogus%d", i), nil, "X-Forwarded-For", fmt.Sprintf("203.0.113.%d", i%250))
		counts[r.status]++
		if r.status == http.StatusTooManyRequests {
			last = r
		}
	}
	if counts[http.StatusUnauthorized]+counts[http.StatusTooManyRequests] != 200 || counts[http.StatusTooManyRequests] < 150 {
		t.Errorf("200 bogus tokens got %v; want 401s, then 429s (at least 150)", counts)
	}
	if lookups := b.lookups.Load() - lookupsBefore; lookups > 25 {
		t.Errorf("the api looked up %d tokens; a refused call must not reach it (burst 20)", lookups)
	}
	e := wantError(t, "429", last, http.StatusTooManyRequests)
	if e.Code != nil && *e.Code != 8 {
		t.Errorf("429 code %d, want 8 (RESOURCE_EXHAUSTED)", *e.Code)
	}
	if s, err := strconv.Atoi(last.header.Get("Retry-After")); err != nil || s < 1 {
		t.Errorf("Retry-After %q, want whole seconds >= 1", last.header.Get("Retry-After"))
	}
	// No token at all counts the same.
	if r := call(t, "GET", base+"/v1/stores", "", nil); r.status != http.StatusTooManyRequests {
		t.Errorf("no token during the flood: %d, want 429", r.status)
	}

	// The user with a valid token is not locked out by a neighbour.
	if r := call(t, "GET", base+"/v1/stores", goodToken, nil); r.status != http.StatusOK {
		t.Errorf("known valid token from the flooded address: %d %q, want 200", r.status, r.body)
	}
	// Neither are the dashboard's files and sign-in configuration, which
	// cost the api nothing.
	for _, path := range []string{"/", "/auth/config"} {
		if r := call(t, "GET", base+path, "", nil); r.status != http.StatusOK {
			t.Errorf("%s from the flooded address: %d, want 200", path, r.status)
		}
	}
}

// A client that sends a burst of calls with a valid token the gateway has
// not seen lately (a CI job after a quiet minute) is not taken for a
// flood: the first call judges the token and the others wait for it.
func TestABurstWithAValidTokenNotYetSeenIsServed(t *testing.T) {
	b := startBackend(t, 0)
	b.lookupDelay.Store(int64(200 * time.Millisecond))
	base := "http://" + startGateway(t, b, func(o *app.Options) { o.Failures.Burst = 3 }).HTTP
	statuses := make(chan int, 40)
	for range 40 {
		go func() { statuses <- call(t, "GET", base+"/v1/stores", goodToken, nil).status }()
	}
	counts := map[int]int{}
	for range 40 {
		counts[<-statuses]++
	}
	if counts[http.StatusOK] != 40 {
		t.Errorf("40 calls at once with a valid token not yet seen got %v; want 40 200s", counts)
	}
	// A bogus token sent 40 times at once is judged once, then limited.
	bogus := make(chan int, 40)
	for range 40 {
		go func() { bogus <- call(t, "GET", base+"/v1/stores", "sp_bogus", nil).status }()
	}
	counts = map[int]int{}
	for range 40 {
		counts[<-bogus]++
	}
	if counts[http.StatusUnauthorized] > 4 || counts[http.StatusTooManyRequests] < 36 {
		t.Errorf("40 calls at once with one bogus token got %v; want at most the burst of 401s, then 429s", counts)
	}
}

func TestForwardedForIsBelievedOnlyFromTrustedProxies(t *testing.T) {
	b := startBackend(t, 0)
	base := "http://" + startGateway(t, b, func(o *app.Options) {
		if err := o.Failures.Proxies.Set("127.0.0.0/8"); err != nil {
			t.Fatal(err)
		}
		o.Failures.Burst = 3
	}).HTTP
	flood := func(client string) map[int]int {
		counts := map[int]int{}
		for i := range 10 {
			// The client forged the first entry; the trusted proxy
			// appended the real one.
			r := call(t, "GET", base+"/v1/stores", fmt.Sprintf("sp_bogus%d", i), nil, "X-Forwarded-For", fmt.Sprintf("198.51.100.%d, %s", i, client))
			counts[r.status]++
		}
		return counts
	}
	if got := flood("203.0.113.1"); got[http.StatusUnauthorized] != 3 || got[http.StatusTooManyRequests] != 7 {
		t.Errorf("client 203.0.113.1 got %v; want 3 401s then 7 429s, whatever it forges", got)
	}
	if got := flood("203.0.113.2"); got[http.StatusUnauthorized] != 3 {
		t.Errorf("client 203.0.113.2 behind the same proxy got %v; want a limit of its own (3 401s)", got)
	}
}

func TestWatchStreamOutlivesTheTimeoutsAndOtherCallsDoNot(t *testing.T) {
	b := startBackend(t, 0)
	base := "http://" + startGateway(t, b, func(o *app.Options) {
		o.ReadTimeout, o.WriteTimeout, o.IdleTimeout = time.Second, time.Second, time.Second
	}).HTTP

	req, _ := http.NewRequest("GET", base+"/v1/stores:watch", nil)
	req.Header.Set("Authorization", "Bearer "+goodToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := bufio.NewScanner(resp.Body)
	var got []string
	for len(got) < 2 && lines.Scan() {
		got = append(got, lines.Text())
	}
	if len(got) < 2 || !strings.Contains(got[1], `"late"`) {
		t.Errorf("watch stream got %q (err %v); want the store sent 2.5 s in, past the 1 s read and write timeouts", got, lines.Err())
	}

	start := time.Now()
	r := call(t, "GET", base+"/v1/stores/s1", goodToken, nil)
	if took := time.Since(start); r.status != http.StatusGatewayTimeout || took > 5*time.Second {
		t.Errorf("a call the api never answers: %d %q after %s; want 504 after the 1 s write timeout", r.status, r.body, took)
	}
}

func TestStopLetsAStreamInProgressReachTheAPIUntilTheGraceEnds(t *testing.T) {
	b := startBackend(t, 0)
	const grace = 4 * time.Second
	addrs, stop := runGateway(t, b, func(o *app.Options) { o.ShutdownGrace = grace })
	req, _ := http.NewRequest("GET", "http://"+addrs.HTTP+"/v1/stores:watch", nil)
	req.Header.Set("Authorization", "Bearer "+goodToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := bufio.NewScanner(resp.Body)
	if !lines.Scan() {
		t.Fatalf("watch stream ended before its snapshot: %v", lines.Err())
	}

	type result struct {
		err  error
		took time.Duration
	}
	stopped := make(chan result, 1)
	go func() { took, err := stop(); stopped <- result{err, took} }()
	// The store the api sends 2.5 s in, while the gateway drains.
	if !lines.Scan() || !strings.Contains(lines.Text(), `"late"`) {
		t.Errorf("watch stream while stopping got %q (err %v); want the store the api sent during the grace", lines.Text(), lines.Err())
	}
	if lines.Scan() {
		t.Errorf("watch stream got %q after the grace, want it cut", lines.Text())
	}
	r := <-stopped
	if r.err != nil || r.took < grace || r.took > grace+2*time.Second {
		t.Errorf("Run = %v after %s, want nil once the stream was cut at the end of the %s grace", r.err, r.took, grace)
	}
	if conn, err := net.DialTimeout("tcp", addrs.HTTP, time.Second); err == nil {
		conn.Close()
		t.Errorf("the public address %s still accepts connections after Run returned", addrs.HTTP)
	}
}

func TestWatchStreamsOverTheCapAre429(t *testing.T) {
	b := startBackend(t, 1)
	base := "http://" + startGateway(t, b).HTTP
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/v1/stores:watch", nil)
	req.Header.Set("Authorization", "Bearer "+goodToken)
	first, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Body.Close()
	if first.StatusCode != http.StatusOK {
		t.Fatalf("first watch: %d", first.StatusCode)
	}
	r := call(t, "GET", base+"/v1/stores:watch", goodToken, nil)
	if r.status != http.StatusTooManyRequests || !strings.Contains(r.body, "too many open streams") {
		t.Errorf("second watch: %d %q; want 429 saying too many open streams", r.status, r.body)
	}
}

func TestMetricsAndHealthAreOnlyOnTheAdminPort(t *testing.T) {
	b := startBackend(t, 0)
	addrs := startGateway(t, b)
	for _, path := range []string{"/metrics", "/healthz", "/readyz"} {
		r := call(t, "GET", "http://"+addrs.HTTP+path, "", nil)
		wantError(t, "public "+path, r, http.StatusNotFound)
		if strings.Contains(r.body, "go_goroutines") || strings.Contains(r.body, "dashboard") {
			t.Errorf("public %s answered %q", path, r.body)
		}
	}
	if r := call(t, "GET", "http://"+addrs.Metrics+"/metrics", "", nil); r.status != http.StatusOK || !strings.Contains(r.body, "go_goroutines") {
		t.Errorf("admin /metrics: %d, want 200 and the Prometheus metrics", r.status)
	}
	if r := call(t, "GET", "http://"+addrs.Metrics+"/healthz", "", nil); r.status != http.StatusOK {
		t.Errorf("admin /healthz: %d, want 200", r.status)
	}
	if r := call(t, "GET", "http://"+addrs.Metrics+"/readyz", "", nil); r.status != http.StatusOK {
		t.Errorf("admin /readyz: %d %q, want 200", r.status, r.body)
	}
	if r := call(t, "GET", "http://"+addrs.Metrics+"/metrics", "", nil); !strings.Contains(r.body, "# TYPE storeprov_gateway_refused_total counter") {
		t.Errorf("admin /metrics lacks the gateway's own metrics:\n%s", r.body)
	}
	if r := call(t, "GET", "http://"+addrs.Metrics+"/v1/stores", goodToken, nil); r.status != http.StatusNotFound {
		t.Errorf("the admin port serves the API: %d, want 404", r.status)
	}
}

// parseDefaults sets o to the gateway's flag defaults.
func parseDefaults(o *app.Options) error {
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	o.BindFlags(fs)
	return fs.Parse(nil)
}
