package bench

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/storeprov/storeprov/deploy/devstack"
	storev1 "github.com/storeprov/storeprov/gen/storeprov/store/v1"
)

// Latency is one latency run: a call made Rate times a second for For,
// open loop (a slow answer does not slow the sender down).
type Latency struct {
	Call, Transport string
	// Database is the api's: sqlite or postgres.
	Database   string
	Requests   int
	Errors     int
	FirstError string
	P50, P99   time.Duration
}

// latency stops the orchestrators for good (the creates made here are
// never provisioned) and measures CreateStore and GetStore over gRPC and
// REST on the run's database. When that is PostgreSQL it measures them
// again on SQLite, the embedded default, with a second api, audit service
// and gateway of their own, so that both databases' figures come from
// one run.
func (r *run) latency(ctx context.Context) error {
	r.orchestratorsOff = true
	if err := r.stack.StopOrchestrators(ctx); err != nil {
		return err
	}
	if err := r.latencyOn(ctx, r.stack, r.users[1:], r.report.Database); err != nil {
		return err
	}
	if r.report.Database == "sqlite" {
		return nil
	}
	dataDir, err := os.MkdirTemp("", "storeprov-bench-sqlite")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dataDir)
	progress(r.cfg, "starting a second api on SQLite, without orchestrators")
	stack, err := devstack.Start(ctx, devstack.Config{
		Root: r.cfg.Root, DataDir: dataDir, BinDir: r.cfg.BinDir, Kubeconfig: r.cfg.Kubeconfig,
		NATSPort: -1, WithoutOrchestrators: true, Logs: r.cfg.Logs,
	})
	if err != nil {
		return fmt.Errorf("cannot start the platform on SQLite: %w", err)
	}
	defer stack.Stop()
	users, err := newUsers(ctx, stack, r.cfg.Form.Users)
	if err != nil {
		return err
	}
	return r.latencyOn(ctx, stack, users[1:], "sqlite")
}

// latencyOn measures each call on stack, spreading the calls over users
// round robin.
func (r *run) latencyOn(ctx context.Context, stack *devstack.Stack, users []*client, database string) error {
	conn, err := grpc.NewClient(stack.APIAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	stores := storev1.NewStoreServiceClient(conn)
	// owned are stores each user created, for GetStore.
	var mu sync.Mutex
	owned := make([][]string, len(users))
	keep := func(u int, id string) {
		mu.Lock()
		defer mu.Unlock()
		if len(owned[u]) < 16 {
			owned[u] = append(owned[u], id)
		}
	}
	asUser := func(ctx context.Context, u int) context.Context {
		return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+users[u].token)
	}
	calls := []struct {
		call, transport string
		do              func(ctx context.Context, u, i int) error
	}{
		{"CreateStore", "gRPC", func(ctx context.Context, u, i int) error {
			st, err := stores.CreateStore(asUser(ctx, u), &storev1.CreateStoreRequest{Store: &storev1.Store{
				DisplayName: fmt.Sprintf("Load %d", i), Engine: storev1.Engine_ENGINE_WOOCOMMERCE,
			}})
			if err == nil {
				keep(u, st.GetId())
			}
			return err
		}},
		{"CreateStore", "REST", func(ctx context.Context, u, i int) error {
			id, err := users[u].create(ctx, fmt.Sprintf("Load %d", i))
			if err == nil {
				keep(u, id)
			}
			return err
		}},
		{"GetStore", "gRPC", func(ctx context.Context, u, i int) error {
			if len(owned[u]) == 0 {
				return fmt.Errorf("user %s created no store to read", users[u].user)
			}
			_, err := stores.GetStore(asUser(ctx, u), &storev1.GetStoreRequest{Id: owned[u][i%len(owned[u])]})
			return err
		}},
		{"GetStore", "REST", func(ctx context.Context, u, i int) error {
			if len(owned[u]) == 0 {
				return fmt.Errorf("user %s created no store to read", users[u].user)
			}
			return users[u].call(ctx, "GET", "/v1/stores/"+owned[u][i%len(owned[u])], "", nil)
		}},
	}
	for _, c := range calls {
		progress(r.cfg, "%s over %s on %s, %d/s for %s", c.call, c.transport, database, r.cfg.Form.Rate, r.cfg.Form.For)
		l := r.openLoop(ctx, len(users), c.do)
		l.Call, l.Transport, l.Database = c.call, c.transport, database
		r.report.Latency = append(r.report.Latency, l)
	}
	return nil
}

// openLoop calls do Form.Rate times a second for Form.For, the i-th call
// as user i mod users, each in its own goroutine.
func (r *run) openLoop(ctx context.Context, users int, do func(ctx context.Context, u, i int) error) Latency {
	interval := time.Second / time.Duration(r.cfg.Form.Rate)
	n := int(r.cfg.Form.For / interval)
	took := make([]time.Duration, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		// Sleep to the i-th slot rather than tick, so that a late wake-up
		// does not drop calls.
		sleepCtx(ctx, time.Until(start.Add(time.Duration(i)*interval)))
		wg.Go(func() {
			callCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			t0 := time.Now()
			errs[i] = do(callCtx, i%users, i)
			took[i] = time.Since(t0)
		})
	}
	wg.Wait()
	l := Latency{Requests: n}
	var ok []time.Duration
	for i, err := range errs {
		if err != nil {
			if l.Errors == 0 {
				l.FirstError = err.Error()
			}
			l.Errors++
			continue
		}
		ok = append(ok, took[i])
	}
	slices.Sort(ok)
	l.P50, l.P99 = percentile(ok, 0.50), percentile(ok, 0.99)
	return l
}

// percentile of sorted durations, nearest rank.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
