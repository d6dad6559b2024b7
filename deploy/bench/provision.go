package bench

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// single creates Form.Single stores one at a time, each timed from its
// request until the api shows it READY, then installs as many baselines
// with the helm CLI, each timed alone.
func (r *run) single(ctx context.Context) error {
	var ours, theirs []time.Duration
	r.spans.record()
	for i := range r.cfg.Form.Single {
		ids, start, err := r.createAll(ctx, 1, fmt.Sprintf("Single %d", i+1))
		if err != nil {
			return err
		}
		reached, err := r.waitPhase(ctx, ids, "PHASE_READY", start, 50*time.Millisecond)
		if err != nil {
			return err
		}
		ours = append(ours, reached[ids[0]])
		if r.values == nil {
			if err := r.captureRelease(ctx, ids[0]); err != nil {
				return fmt.Errorf("cannot read the release the helm CLI is to install: %w", err)
			}
		}
	}
	// The services export their spans every 200 ms.
	sleepCtx(ctx, time.Second)
	r.report.Phases = r.spans.phases()
	for range r.cfg.Form.Single {
		took, err := r.helmInstall(ctx)
		if err != nil {
			return err
		}
		theirs = append(theirs, took)
	}
	r.report.Single = Pair{Ours: median(ours), Theirs: median(theirs)}
	return nil
}

// burst submits Form.Burst stores at once with two workers, and installs
// as many baselines with the helm CLI at the parallelism of two workers.
func (r *run) burst(ctx context.Context) error {
	workers := 2
	curve, err := r.provisionBurst(ctx, workers)
	if err != nil {
		return err
	}
	r.report.Burst = curve
	r.report.BurstHelm, err = r.helmBurst(ctx, workers*Concurrency)
	return err
}

// scaling submits Form.Burst stores at once with each worker count.
func (r *run) scaling(ctx context.Context) error {
	for _, n := range r.cfg.Form.Workers {
		curve, err := r.provisionBurst(ctx, n)
		if err != nil {
			return err
		}
		r.report.Scaling = append(r.report.Scaling, Scale{Workers: n, Curve: curve})
	}
	return nil
}

// provisionBurst runs n orchestrators, submits Form.Burst stores at once
// and records when each became READY. The orchestrators are started
// before the clock starts: a rollout's start-up is not provisioning.
func (r *run) provisionBurst(ctx context.Context, n int) (Curve, error) {
	if err := r.stack.ScaleOrchestrators(ctx, n); err != nil {
		return Curve{}, err
	}
	if err := r.waitWorkers(ctx, n); err != nil {
		return Curve{}, err
	}
	cpu := startCPU()
	ids, start, err := r.createAll(ctx, r.cfg.Form.Burst, fmt.Sprintf("Burst %d workers", n))
	if err != nil {
		return Curve{}, err
	}
	reached, err := r.waitPhase(ctx, ids, "PHASE_READY", start, 250*time.Millisecond)
	if err != nil {
		return Curve{}, err
	}
	c := Curve{Parallelism: n * Concurrency, CPU: cpu.stop()}
	for _, d := range reached {
		c.Done = append(c.Done, d)
	}
	slices.Sort(c.Done)
	return c, nil
}

// helmBurst installs Form.Burst baselines with the helm CLI, parallelism
// at a time, and records when each finished.
func (r *run) helmBurst(ctx context.Context, parallelism int) (Curve, error) {
	cpu := startCPU()
	start := time.Now()
	sem := make(chan struct{}, parallelism)
	var mu sync.Mutex
	var errs []error
	c := Curve{Parallelism: parallelism}
	var wg sync.WaitGroup
	for range r.cfg.Form.Burst {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			_, err := r.helmInstall(ctx)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			c.Done = append(c.Done, time.Since(start))
		})
	}
	wg.Wait()
	c.CPU = cpu.stop()
	if len(errs) > 0 {
		return c, errs[0]
	}
	slices.Sort(c.Done)
	return c, nil
}

// waitWorkers waits until n orchestrators have joined the work queue, so
// that a measurement does not time their start-up.
func (r *run) waitWorkers(ctx context.Context, n int) error {
	deadline := time.Now().Add(time.Minute)
	for {
		joined := r.stack.OrchestratorsPulling()
		if joined >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d orchestrators joined the work queue within a minute", joined, n)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// memory brings the fleet to Form.Idle READY stores, restarts the
// orchestrators so that nothing of the provisioning stays in their
// memory, lets a resync go over every store, and sets their resident
// memory against what they use with no store.
func (r *run) memory(ctx context.Context) error {
	if err := r.stack.ScaleOrchestrators(ctx, 2); err != nil {
		return err
	}
	if missing := r.cfg.Form.Idle - len(r.stores); missing > 0 {
		ids, start, err := r.createAll(ctx, missing, "Idle")
		if err != nil {
			return err
		}
		if _, err := r.waitPhase(ctx, ids, "PHASE_READY", start, time.Second); err != nil {
			return err
		}
	}
	if err := r.stack.ScaleOrchestrators(ctx, 2); err != nil {
		return err
	}
	if err := r.waitWorkers(ctx, 2); err != nil {
		return err
	}
	// The api queues a resync of every store once a minute.
	wait := 75 * time.Second
	if r.cfg.Form.Name == Smoke.Name {
		wait = 5 * time.Second
	}
	sleepCtx(ctx, wait)
	rss, err := r.orchestratorsRSS()
	if err != nil {
		return err
	}
	r.report.Memory = Memory{Stores: len(r.stores), Orchestrators: 2, RSS: rss, Empty: r.report.Memory.Empty}
	return nil
}

// deletes deletes Form.Single stores one at a time, timed until the api
// shows DELETED, and as many baselines' namespaces with kubectl; then
// every other store at once, untimed.
func (r *run) deletes(ctx context.Context) error {
	var ours, theirs []time.Duration
	for _, id := range r.stores[:min(r.cfg.Form.Single, len(r.stores))] {
		start := time.Now()
		if err := r.deleteAll(ctx, []string{id}); err != nil {
			return err
		}
		reached, err := r.waitPhase(ctx, []string{id}, "PHASE_DELETED", start, 50*time.Millisecond)
		if err != nil {
			return err
		}
		ours = append(ours, reached[id])
	}
	for _, ns := range r.baselines[:min(r.cfg.Form.Single, len(r.baselines))] {
		took, err := r.kubectlDeleteNamespace(ctx, ns)
		if err != nil {
			return err
		}
		theirs = append(theirs, took)
	}
	r.report.Delete = Pair{Ours: median(ours), Theirs: median(theirs)}

	rest := append([]string(nil), r.stores...)
	progress(r.cfg, "deleting the other %d stores", len(rest))
	start := time.Now()
	if err := r.deleteAll(ctx, rest); err != nil {
		return err
	}
	reached, err := r.waitPhase(ctx, rest, "PHASE_DELETED", start, time.Second)
	if err != nil {
		return err
	}
	for _, d := range reached {
		r.report.DeleteAll = max(r.report.DeleteAll, d)
	}
	r.report.DeleteAllStores = len(rest)
	return nil
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
