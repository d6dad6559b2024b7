package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/storeprov/storeprov/deploy/devstack"
	"github.com/storeprov/storeprov/deploy/devstack/devstacktest"
	"github.com/storeprov/storeprov/pkg/bus"
	"github.com/storeprov/storeprov/pkg/bus/bustest"
	"github.com/storeprov/storeprov/pkg/database/databasetest"
	"github.com/storeprov/storeprov/pkg/sandboxtest"
)

// FaultsEnv selects the form of TestFaults: "full" is `make faults` (at
// least 10 stores per scenario, docs/faults.md rewritten with the table);
// anything else is the short form `make test` runs.
const FaultsEnv = "STOREPROV_FAULTS"

// faultForm is how much work each scenario does.
type faultForm struct {
	full bool
	// stores per scenario; rollbacks of them get an upgrade that cannot
	// become ready and is rolled back.
	stores, rollbacks int
	// minKills is the least number of kills of the random-kill scenario.
	minKills int
	// phasesHit are the phases (create, upgrade, delete) whose burst the
	// kill-all, NATS, api and PostgreSQL scenarios disturb.
	phasesHit []string
	// stuck is how many stores of the stuck-namespace scenario get a
	// finalizer that holds their namespace.
	stuck int
	// orchestratorArgs are given to every orchestrator of every scenario,
	// the baseline included.
	orchestratorArgs []string
	// settle bounds each phase: a generous deadline, not a measurement.
	settle time.Duration
	// allDown is how long every orchestrator stays dead.
	allDown time.Duration
}

// faultOrchestratorArgs are the orchestrators' flags in every scenario.
// Leases and the consumer's ack wait keep their defaults (30 s each), so
// settle times are those of a real installation. The provisioning
// deadline leaves room for a kill or two (each costs a store up to the
// ack wait plus the lease TTL) while keeping the wait of an upgrade that
// cannot become ready short; a delete attempt gives up after 15 s, so a
// stuck namespace is reported soon.
var faultOrchestratorArgs = []string{"--provision-timeout", "2m", "--delete-timeout", "15s"}

func faultFormOf(env string) faultForm {
	if env == "full" {
		return faultForm{
			full: true, stores: 10, rollbacks: 2, minKills: 5, stuck: 3,
			phasesHit:        []string{"create", "upgrade", "delete"},
			orchestratorArgs: faultOrchestratorArgs,
			settle:           8 * time.Minute, allDown: 15 * time.Second,
		}
	}
	return faultForm{
		stores: 2, rollbacks: 0, minKills: 2, stuck: 1,
		phasesHit:        []string{"create"},
		orchestratorArgs: faultOrchestratorArgs,
		settle:           4 * time.Minute, allDown: 5 * time.Second,
	}
}

// faultScenario is one kind of fault and how to inject it.
type faultScenario struct {
	name string
	// prepare adjusts the stack before it starts; it returns why the
	// scenario does not apply here, if it does not.
	prepare func(t *testing.T, r *faultRun, c *stackConfig) (notApplicable string)
	// start runs once the stack runs, before the work (background
	// injectors).
	start func(ctx context.Context, r *faultRun)
	// before runs before a phase's requests go out; during runs while they
	// do and the phase settles; finish after the work, returning the
	// faults injected.
	before func(ctx context.Context, r *faultRun, phase string)
	during func(ctx context.Context, r *faultRun, phase string)
	finish func(r *faultRun) string
}

// faultRun is one scenario's run: its stack, work and findings.
type faultRun struct {
	t        *testing.T
	form     faultForm
	scenario string
	stack    *devstack.Stack
	logs     *devstack.Logs
	// client is the scenario's user; admin reads the audit log.
	client, admin *faultClient

	mu sync.Mutex
	// stores by id, as last listed.
	stores map[string]store
	// accepted creates, upgrades and deletes, by store id.
	created, upgraded, deleted map[string]bool
	// rollback marks stores whose upgrade cannot become ready.
	rollback map[string]bool
	// outcomes are each store's phases after the creates and after the
	// upgrades.
	outcomes map[string][]string
	// ambiguous counts requests retried after an answer that did not
	// say whether the api had accepted them.
	ambiguous  int
	violations []string
	notes      []string
	// faults says what was injected, for the table.
	faults string
	// settled is the time the work took; phaseTook each phase's, from its
	// first request until every store settled.
	settled   time.Duration
	phaseTook map[string]time.Duration

	// kube is the faulty API server proxy, pg the PostgreSQL one.
	kube   *kubeFaultProxy
	pg     *tcpProxy
	killer *killer
	// held are the stores whose namespace a finalizer holds.
	held []string
	// count of faults injected by phase hooks.
	injected int
}

func (r *faultRun) violate(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	msg := fmt.Sprintf(format, args...)
	r.violations = append(r.violations, msg)
	r.t.Logf("VIOLATION: %s", msg)
}

func (r *faultRun) note(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

func (r *faultRun) logf(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	r.t.Log(line)
	fmt.Fprintf(r.logs, "%-15s %s\n", "[faults]", line)
}

func (r *faultRun) addInjected(n int) {
	r.mu.Lock()
	r.injected += n
	r.mu.Unlock()
}

// storeOfNamespace returns the id of the run's store whose namespace ns is.
func (r *faultRun) storeOfNamespace(ns string) (string, bool) {
	id, ok := strings.CutPrefix(ns, "store-")
	if !ok {
		return "", false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	_, known := r.stores[id]
	return id, known || r.created[id]
}

func (r *faultRun) seen(id string) store {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stores[id]
}

func (r *faultRun) rollsBack(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rollback[id]
}

// TestFaults runs the same work — stores created, upgraded and deleted —
// on the whole platform without faults, then under each fault, checks
// the invariants after each, and prints the scoreboard. The full form
// (STOREPROV_FAULTS=full, `make faults`) writes it to docs/faults.md.
func TestFaults(t *testing.T) {
	form := faultFormOf(os.Getenv(FaultsEnv))
	base := faultBaseConfig(t)
	kubeconfig := sandboxtest.KubeconfigPath(t)
	baseline := runFaultScenario(t, form, base, kubeconfig, faultScenario{name: "baseline (no fault)"})
	results := []*faultRun{baseline}
	// The short form runs the scenarios side by side to stay within a few
	// minutes (in goroutines rather than with t.Parallel, which go test
	// bounds by -parallel, the number of CPUs); its settle times are then
	// not comparable with the baseline's, and it writes no table. The
	// full form runs one at a time.
	t.Run("scenarios", func(t *testing.T) {
		scenarios := faultScenarios(form)
		runs := make([]*faultRun, len(scenarios))
		var wg sync.WaitGroup
		for i, sc := range scenarios {
			if form.full {
				runs[i] = runFaultScenario(t, form, base, kubeconfig, sc)
				continue
			}
			wg.Go(func() { runs[i] = runFaultScenario(t, form, base, kubeconfig, sc) })
		}
		wg.Wait()
		results = append(results, runs...)
	})
	for _, r := range results {
		if r.scenario == killOneScenario {
			r.noteCrashCost(baseline)
		}
	}
	table := faultTable(form, base, results, baseline)
	t.Logf("fault suite scoreboard:\n%s", table)
	ranAll := len(results) == 1+len(faultScenarios(form)) && !slices.ContainsFunc(results, func(r *faultRun) bool { return r.faults == "" })
	if form.full && !ranAll {
		t.Log("not every scenario ran (-run): docs/faults.md is left as it was")
	}
	if form.full && ranAll {
		path := filepath.Join("..", "..", "docs", "faults.md")
		if err := os.WriteFile(path, []byte(faultsDoc(form, base, table)), 0o644); err != nil {
			t.Errorf("cannot write %s: %v", path, err)
		}
	}
	for _, r := range results {
		for _, v := range r.violations {
			t.Errorf("%s: %s", r.scenario, v)
		}
	}
}

// faultBaseConfig is the platform every scenario starts from: PostgreSQL
// and the external NATS server when their URLs are set, else SQLite and
// the embedded server. Databases are made per scenario (faultRun).
func faultBaseConfig(t *testing.T) stackConfig {
	c := stackConfig{name: "sqlite-embedded-nats"}
	if pg := os.Getenv(databasetest.PostgresURLEnv); pg != "" {
		c.name, c.apiDB = "postgres", pg
		if n := os.Getenv(bustest.URLEnv); n != "" {
			c.name, c.natsURL = "postgres-external-nats", n
		}
	} else if n := os.Getenv(bustest.URLEnv); n != "" {
		c.name, c.natsURL = "sqlite-external-nats", n
	}
	return c
}

func faultScenarios(form faultForm) []faultScenario {
	hits := func(phase string) bool { return slices.Contains(form.phasesHit, phase) }
	return []faultScenario{
		{
			name: "kill -9 a random orchestrator",
			start: func(ctx context.Context, r *faultRun) {
				r.killer = newKiller(r.t, r, form.minKills)
				r.killer.watch(ctx)
			},
			finish: func(r *faultRun) string {
				kills, kinds := r.killer.wait()
				if len(kills) < form.minKills {
					r.violate("only %d kills (want at least %d): the work gave too few kill points", len(kills), form.minKills)
				}
				for _, k := range kills {
					r.note("killed %s", k)
				}
				var parts []string
				for _, p := range []killPoint{pointInstall, pointReadiness, pointRollback, pointDeletion} {
					if kinds[p] > 0 {
						parts = append(parts, fmt.Sprintf("%d at %s", kinds[p], p))
					}
				}
				return fmt.Sprintf("%d kills: %s", len(kills), strings.Join(parts, ", "))
			},
		},
		{
			// The creates of this scenario measure what a crash costs: the
			// dead worker's stores wait for its lease to lapse, so they
			// should settle within the baseline's creates plus one lease
			// TTL. Reported, not asserted: it is a timing.
			name: killOneScenario,
			during: func(ctx context.Context, r *faultRun, phase string) {
				if phase != "create" {
					return
				}
				sleep(ctx, 3*time.Second)
				killCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
				err := r.stack.KillOrchestrator(killCtx, 0)
				cancel()
				if err != nil {
					r.violate("the suite could not kill orchestrator-1: %v", err)
					return
				}
				r.logf("fault: kill -9 orchestrator-1 3 s into the creates, started again at once")
				r.addInjected(1)
				if err := r.stack.StartOrchestrator(0); err != nil {
					r.violate("the suite could not start orchestrator-1: %v", err)
				}
			},
			finish: func(r *faultRun) string {
				return fmt.Sprintf("%d × kill -9 orchestrator-1, restarted at once", r.injected)
			},
		},
		{
			name: "kill -9 every orchestrator",
			during: func(ctx context.Context, r *faultRun, phase string) {
				if !hits(phase) {
					return
				}
				sleep(ctx, 1500*time.Millisecond)
				for i := range r.stack.Orchestrators {
					killCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
					if err := r.stack.KillOrchestrator(killCtx, i); err != nil {
						r.violate("the suite could not kill orchestrator-%d: %v", i+1, err)
					}
					cancel()
				}
				r.logf("fault: kill -9 every orchestrator during the %s burst, new ones in %s", phase, form.allDown)
				r.addInjected(1)
				sleep(ctx, form.allDown)
				for i := range r.stack.Orchestrators {
					if err := r.stack.StartOrchestrator(i); err != nil {
						r.violate("the suite could not start orchestrator-%d: %v", i+1, err)
					}
				}
			},
			finish: func(r *faultRun) string {
				return fmt.Sprintf("%d × all %d killed, new ones %s later", r.injected, len(r.stack.Orchestrators), form.allDown)
			},
		},
		{
			name: "restart NATS",
			prepare: func(t *testing.T, r *faultRun, c *stackConfig) string {
				if c.natsURL != "" {
					// The external server is shared; the suite restarts
					// only a server it runs itself.
					c.natsURL = ""
					r.note("runs on the stack's embedded NATS server: the external one is not the suite's to restart")
				}
				return ""
			},
			during: func(ctx context.Context, r *faultRun, phase string) {
				if !hits(phase) {
					return
				}
				sleep(ctx, time.Second)
				r.logf("fault: NATS down for 3 s during the %s burst (same port, same storage)", phase)
				if err := r.stack.RestartNATS(ctx, 3*time.Second); err != nil {
					r.violate("the suite could not restart NATS: %v", err)
					return
				}
				r.addInjected(1)
			},
			finish: func(r *faultRun) string { return fmt.Sprintf("%d × down 3 s, same storage", r.injected) },
		},
		{
			name: "kill -9 the api",
			during: func(ctx context.Context, r *faultRun, phase string) {
				if !hits(phase) {
					return
				}
				kills := 1
				if phase == "create" && form.full {
					kills = 2
				}
				sleep(ctx, time.Duration(form.stores)*burstSpacing/3)
				for range kills {
					killCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
					err := r.stack.KillAPI(killCtx)
					cancel()
					if err != nil {
						r.violate("the suite could not kill the api: %v", err)
						return
					}
					r.logf("fault: kill -9 the api during the %s burst, started again in 3 s", phase)
					r.addInjected(1)
					sleep(ctx, 3*time.Second)
					if err := r.stack.StartAPI(); err != nil {
						r.violate("the suite could not start the api: %v", err)
						return
					}
					upCtx, cancel := context.WithTimeout(ctx, time.Minute)
					err = waitReachable(upCtx, r.stack.APIAddr)
					cancel()
					if err != nil {
						r.violate("the api did not come back: %v", err)
						return
					}
					sleep(ctx, 700*time.Millisecond)
				}
			},
			finish: func(r *faultRun) string { return fmt.Sprintf("%d × kill -9, down 3 s", r.injected) },
		},
		{
			name: "PostgreSQL unreachable for 10 s",
			prepare: func(t *testing.T, r *faultRun, c *stackConfig) string {
				if c.apiDB == "" {
					return "not applicable: SQLite (set " + databasetest.PostgresURLEnv + ")"
				}
				u, err := url.Parse(c.apiDB)
				if err != nil {
					t.Fatal(err)
				}
				host := u.Host
				if u.Port() == "" {
					host = net.JoinHostPort(u.Hostname(), "5432")
				}
				r.pg = startTCPProxy(t, host)
				c.apiDB = strings.Replace(c.apiDB, u.Host, r.pg.addr(), 1)
				return ""
			},
			during: func(ctx context.Context, r *faultRun, phase string) {
				if !hits(phase) {
					return
				}
				sleep(ctx, time.Second)
				r.logf("fault: PostgreSQL unreachable for 10 s during the %s burst", phase)
				r.pg.cut(ctx, 10*time.Second)
				r.addInjected(1)
			},
			finish: func(r *faultRun) string {
				return fmt.Sprintf("%d outages of 10 s (%d connections refused)", r.injected, r.pg.refused.Load())
			},
		},
		{
			name: "Kubernetes API: 5 % errors, 300 ms delay",
			prepare: func(t *testing.T, r *faultRun, c *stackConfig) string {
				r.kube = startKubeFaultProxy(t, sandboxtest.RESTConfig(t), 0.05, 300*time.Millisecond)
				c.kubeconfig = r.kube.kubeconfig(t)
				return ""
			},
			finish: func(r *faultRun) string {
				return fmt.Sprintf("%d errors (500/429), %d requests delayed", r.kube.errors.Load(), r.kube.delayed.Load())
			},
		},
		{
			name:   "namespace stuck Terminating",
			before: holdNamespaces,
			during: releaseNamespaces,
			finish: func(r *faultRun) string {
				return fmt.Sprintf("%d namespaces held by a finalizer", r.injected)
			},
		},
	}
}

// killOneScenario kills one worker early in the creates; its create phase
// is set against the baseline's (noteCrashCost).
const killOneScenario = "kill -9 one orchestrator 3 s into the creates"

// noteCrashCost notes how long r's creates took to settle against the
// baseline's creates plus one lease TTL, the time a crash should cost at
// most: the dead worker's stores wait for its leases to lapse.
func (r *faultRun) noteCrashCost(baseline *faultRun) {
	took, base := r.phaseTook["create"], baseline.phaseTook["create"]
	if took == 0 || base == 0 {
		return
	}
	bound := base + bus.DefaultLeaseTTL
	verdict := "within"
	if took > bound {
		verdict = "over"
	}
	r.note("creates settled in %.1f s against %.1f s without the fault: %s the bound of the no-fault time plus one lease TTL (%.1f s + %s = %.1f s)",
		took.Seconds(), base.Seconds(), verdict, base.Seconds(), bus.DefaultLeaseTTL, bound.Seconds())
}

// burstSpacing spreads a burst's requests, so that a fault lands in the
// middle of one.
const burstSpacing = 150 * time.Millisecond

// runFaultScenario starts a stack for sc, does the work while sc injects
// its fault, and checks the invariants.
func runFaultScenario(t *testing.T, form faultForm, base stackConfig, kubeconfig string, sc faultScenario) *faultRun {
	r := &faultRun{
		t: t, form: form, scenario: sc.name, logs: &devstack.Logs{},
		stores: map[string]store{}, created: map[string]bool{}, upgraded: map[string]bool{}, deleted: map[string]bool{},
		rollback: map[string]bool{}, outcomes: map[string][]string{}, phaseTook: map[string]time.Duration{},
	}
	t.Run(strings.NewReplacer(" ", "_", "%", "pct", "/", "_").Replace(sc.name), func(t *testing.T) {
		r.t = t
		c := base
		c.kubeconfig = kubeconfig
		if sc.prepare != nil {
			if na := sc.prepare(t, r, &c); na != "" {
				r.faults = na
				t.Log(na)
				return
			}
		}
		if c.apiDB != "" {
			server := c.apiDB
			c.apiDB, c.auditDB = databasetest.Postgres(t, server), databasetest.Postgres(t, server)
		}
		c.orchestratorArgs = form.orchestratorArgs
		r.stack = startFaultStack(t, c, r.logs)
		r.client, r.admin = newFaultClient(t, r.stack)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		if sc.start != nil {
			sc.start(ctx, r)
		}
		r.work(ctx, sc)
		cancel()
		if sc.finish != nil {
			r.faults = sc.finish(r)
		} else {
			r.faults = "none"
		}
		if len(r.violations) > 0 {
			t.Logf("service logs of %s:\n%s", sc.name, r.logs.String())
		}
	})
	return r
}

// startFaultStack starts a stack as startStack does, on c's kubeconfig,
// with its logs in logs.
func startFaultStack(t *testing.T, c stackConfig, logs *devstack.Logs) *devstack.Stack {
	t.Helper()
	return devstacktest.Start(t, devstack.Config{
		DataDir: t.TempDir(), Kubeconfig: c.kubeconfig,
		NATSURL: c.natsURL, NATSPort: -1, APIDatabaseURL: c.apiDB, AuditDatabaseURL: c.auditDB,
		BusPrefix: "faults" + sandboxtest.RandomSuffix(), Orchestrators: 2, Logs: logs,
		OrchestratorArgs: c.orchestratorArgs,
	})
}

// work creates form.stores stores, upgrades them and deletes them, each
// phase a burst followed by a wait until every store settles, and checks
// the invariants after the upgrades and at the end.
func (r *faultRun) work(ctx context.Context, sc faultScenario) {
	start := time.Now()
	phase := func(name string, burst func(ctx context.Context), settled func() (bool, []string)) bool {
		if sc.before != nil {
			sc.before(ctx, r, name)
		}
		var wg sync.WaitGroup
		if sc.during != nil {
			wg.Go(func() { sc.during(ctx, r, name) })
		}
		began := time.Now()
		burst(ctx)
		ok := r.waitSettled(ctx, name, settled)
		r.mu.Lock()
		r.phaseTook[name] = time.Since(began)
		r.mu.Unlock()
		wg.Wait()
		return ok
	}

	phase("create", r.createBurst, r.settledAfter("create"))
	r.checkLive("after the creates")
	phase("upgrade", r.upgradeBurst, r.settledAfter("upgrade"))
	r.checkLive("after the upgrades")
	r.checkReleases()
	phase("delete", r.deleteBurst, r.settledAfter("delete"))
	r.settled = time.Since(start)
	r.checkGone()
	r.checkAudit()
}

// createBurst creates the stores, form.rollbacks of them marked for an
// upgrade that cannot become ready.
func (r *faultRun) createBurst(ctx context.Context) {
	var wg sync.WaitGroup
	for i := range r.form.stores {
		wg.Go(func() {
			body := fmt.Sprintf(`{"displayName":"Fault Shop %d","engine":"ENGINE_WOOCOMMERCE"}`, i)
			var st store
			status, err := r.client.retry(ctx, "POST", "/v1/stores", body, &st, r)
			if err != nil || status != 200 {
				r.violate("create %d was never accepted: %d %v", i, status, err)
				return
			}
			r.mu.Lock()
			r.created[st.ID] = true
			r.stores[st.ID] = st
			if i >= r.form.stores-r.form.rollbacks {
				r.rollback[st.ID] = true
			}
			r.mu.Unlock()
		})
		sleep(ctx, burstSpacing)
	}
	wg.Wait()
}

// upgradeValues is a change every store can take, and one whose new
// WordPress pod the namespace's quota refuses.
const (
	upgradeValues      = `{"values":{"wordpress.php.memoryLimit":"512M"}}`
	upgradeCannotReady = `{"values":{"wordpress.resources.requests.cpu":"1900m","wordpress.resources.limits.cpu":"2"}}`
)

func (r *faultRun) upgradeBurst(ctx context.Context) {
	var wg sync.WaitGroup
	for _, id := range r.ids() {
		st := r.seen(id)
		if st.Phase != "PHASE_READY" {
			continue
		}
		body := upgradeValues
		if r.rollsBack(id) {
			body = upgradeCannotReady
		}
		wg.Go(func() {
			status, err := r.client.retry(ctx, "POST", "/v1/stores/"+id+":upgrade", body, nil, r)
			switch {
			case status == 200:
			case status == http.StatusPreconditionFailed && r.seenGeneration(id) >= 2:
				// An earlier attempt was accepted, its answer lost.
			default:
				r.violate("upgrade of %s was never accepted: %d %v", id, status, err)
				return
			}
			r.mu.Lock()
			r.upgraded[id] = true
			r.mu.Unlock()
		})
		sleep(ctx, burstSpacing)
	}
	wg.Wait()
}

func (r *faultRun) deleteBurst(ctx context.Context) {
	var wg sync.WaitGroup
	for _, id := range r.ids() {
		wg.Go(func() {
			status, err := r.client.retry(ctx, "DELETE", "/v1/stores/"+id, "", nil, r)
			if status != 200 {
				r.violate("delete of %s was never accepted: %d %v", id, status, err)
				return
			}
			r.mu.Lock()
			r.deleted[id] = true
			r.mu.Unlock()
		})
		sleep(ctx, burstSpacing)
	}
	wg.Wait()
}

// seenGeneration reads the store's generation from the api now.
func (r *faultRun) seenGeneration(id string) int {
	var st store
	if status, _ := r.client.retry(context.Background(), "GET", "/v1/stores/"+id, "", &st, nil); status != 200 {
		return 0
	}
	g, _ := strconv.Atoi(st.Generation)
	return g
}

// ids are the run's stores: every store its user has (a create retried
// after an ambiguous answer may have made one more), sorted.
func (r *faultRun) ids() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	ids := make([]string, 0, len(r.stores))
	for id := range r.stores {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// settledAfter is the condition that ends a phase: every store has an
// outcome for what the phase asked.
func (r *faultRun) settledAfter(phase string) func() (bool, []string) {
	return func() (bool, []string) {
		r.mu.Lock()
		defer r.mu.Unlock()
		var pending []string
		for id, st := range r.stores {
			done := false
			switch phase {
			case "create":
				done = st.Phase == "PHASE_READY" || st.Phase == "PHASE_FAILED"
			case "upgrade":
				done = (st.Phase == "PHASE_READY" || st.Phase == "PHASE_FAILED") && st.ObservedGeneration == st.Generation
			case "delete":
				done = st.Phase == "PHASE_DELETED"
			}
			if !done {
				pending = append(pending, fmt.Sprintf("%s %s at generation %s/%s (%s %s)", id, st.Phase, st.ObservedGeneration, st.Generation, st.FailureReason, st.FailureMessage))
			}
		}
		sort.Strings(pending)
		return len(pending) == 0, pending
	}
}

// waitSettled polls the store list until settled holds or the form's
// settle deadline passes, which is a violation naming what never settled.
func (r *faultRun) waitSettled(ctx context.Context, phase string, settled func() (bool, []string)) bool {
	deadline := time.Now().Add(r.form.settle)
	for {
		r.refresh(ctx)
		ok, pending := settled()
		if ok {
			return true
		}
		if time.Now().After(deadline) {
			for _, p := range pending {
				id, _, _ := strings.Cut(p, " ")
				r.violate("after the %s burst, store %s never settled within %s; its last log lines:\n    %s", phase, p, r.form.settle,
					strings.Join(trimLines(r.logs.String(), 6, id), "\n    "))
			}
			return false
		}
		sleep(ctx, time.Second)
	}
}

// refresh lists the user's stores; on an error (the api down) it keeps
// what it knew.
func (r *faultRun) refresh(ctx context.Context) {
	var list struct{ Stores []store }
	status, err := r.client.do(ctx, "GET", "/v1/stores?pageSize=500", "", &list)
	if err != nil || status != 200 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, st := range list.Stores {
		if _, known := r.stores[st.ID]; !known && !r.created[st.ID] {
			r.notes = append(r.notes, fmt.Sprintf("store %s exists without an accepted create: a create retried after an ambiguous answer", st.ID))
		}
		r.stores[st.ID] = st
	}
}

// faultClient calls the REST gateway as the scenario's own user (a quota
// of its own) and retries what a careful client retries: connection
// errors, 429 and 5xx answers.
type faultClient struct {
	base, token string
	http        *http.Client
}

func newFaultClient(t *testing.T, s *devstack.Stack) (user, admin *faultClient) {
	t.Helper()
	admin = &faultClient{base: s.GatewayURL, token: s.Token, http: &http.Client{Timeout: 30 * time.Second}}
	var tok struct{ Token string }
	body := `{"user":"faults","storeQuota":200,"description":"fault suite"}`
	if status, err := admin.retry(context.Background(), "POST", "/v1/tokens", body, &tok, nil); status != 200 || tok.Token == "" {
		t.Fatalf("cannot create the fault suite's user: %d %v", status, err)
	}
	return &faultClient{base: s.GatewayURL, token: tok.Token, http: admin.http}, admin
}

// do makes one call; err is a transport error or an unreadable body.
func (c *faultClient) do(ctx context.Context, method, path, body string, into any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode == 200 && into != nil {
		if err := json.Unmarshal(b, into); err != nil {
			return resp.StatusCode, fmt.Errorf("%w in %s", err, b)
		}
	}
	if resp.StatusCode != 200 {
		return resp.StatusCode, fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, bytes.TrimSpace(b))
	}
	return resp.StatusCode, nil
}

// retry calls until the answer is neither a transport error, 429 nor
// 5xx, for up to two minutes. A retry after an answer that does not say
// whether the request was applied counts as ambiguous in r.
func (c *faultClient) retry(ctx context.Context, method, path, body string, into any, r *faultRun) (int, error) {
	deadline := time.Now().Add(2 * time.Minute)
	delay := 200 * time.Millisecond
	for {
		status, err := c.do(ctx, method, path, body, into)
		transient := (err != nil && status == 0) || status == http.StatusTooManyRequests || status >= 500
		if !transient || time.Now().After(deadline) || ctx.Err() != nil {
			return status, err
		}
		if r != nil && method != "GET" && status != http.StatusTooManyRequests && !errors.Is(err, context.Canceled) {
			r.mu.Lock()
			r.ambiguous++
			r.mu.Unlock()
		}
		sleep(ctx, delay)
		delay = min(2*delay, 2*time.Second)
	}
}
