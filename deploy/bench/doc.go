package bench

import (
	"fmt"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// Targets are the figures the platform aims for, checked against a
// report; each unmet one says what bounds it, from the run's own data.
func (rep *Report) Targets() []string {
	var out []string
	check := func(met bool, target, bound string) {
		if met {
			out = append(out, "met: "+target)
			return
		}
		out = append(out, "not met: "+target+". "+bound)
	}
	burstCPU := rep.Burst.CPU
	clusterBound := fmt.Sprintf("During the %d-store burst the sandbox cluster (API server, etcd, kwok, controllers) used %.0f %% of one core and the platform %.0f %%, on a machine of %d cores that runs both",
		len(rep.Burst.Done), cpuShare(burstCPU.Cluster, burstCPU.Wall), cpuShare(burstCPU.Platform, burstCPU.Wall), runtime.NumCPU())
	check(rep.Single.Ratio() <= 1.0, fmt.Sprintf("one store create → READY ≤ 1.0× helm install (%.2f×)", rep.Single.Ratio()),
		"The platform's path adds the guardrails (namespace, quota, limits, policies, Secrets), the outbox, two bus hops and the status event back to the api; the helm CLI starts in a namespace prepared beforehand.")
	check(rep.Burst.Rate() >= 1.5*rep.BurstHelm.Rate(), fmt.Sprintf("%d stores ≥ 1.5× the helm CLI's rate (%.2f×)", len(rep.Burst.Done), rep.Burst.Rate()/max(rep.BurstHelm.Rate(), 1e-9)),
		clusterBound+fmt.Sprintf("; the helm CLI's burst left the cluster %.0f %% of one core.", cpuShare(rep.BurstHelm.CPU.Cluster, rep.BurstHelm.CPU.Wall)))
	var rate1 float64
	for _, s := range rep.Scaling {
		if s.Workers == 1 {
			rate1 = s.Curve.Rate()
		}
	}
	for _, s := range rep.Scaling {
		want := map[int]float64{2: 0.85, 4: 0.7}[s.Workers]
		if want == 0 {
			continue
		}
		e := s.Curve.Rate() / (float64(s.Workers) * max(rate1, 1e-9))
		check(e >= want, fmt.Sprintf("E(%d) ≥ %.2f (%.2f)", s.Workers, want, e),
			fmt.Sprintf("With %d workers the cluster used %.0f %% of one core and the platform %.0f %% (with 1 worker: see the table); on %d cores the workers share the processors with the cluster they wait on, so more workers mostly queue on the same CPU.",
				s.Workers, cpuShare(s.Curve.CPU.Cluster, s.Curve.CPU.Wall), cpuShare(s.Curve.CPU.Platform, s.Curve.CPU.Wall), runtime.NumCPU()))
	}
	grpcP99 := rep.grpcP99()
	for _, l := range rep.Latency {
		switch {
		case l.Call == "CreateStore" && l.Transport == "gRPC":
			check(l.P99 <= 20*time.Millisecond && l.Errors == 0, fmt.Sprintf("CreateStore p99 ≤ 20 ms at %d/s on %s (%s, %d errors)", rep.Rate, l.Database, ms(l.P99), l.Errors),
				fmt.Sprintf("The api's writes bound it, not the network or the gateway: GetStore at the same rate on the same api answers in a p50 of %s. Each create commits its transaction (the store, its command and audit rows in the outbox, under the user's quota lock) and then the outbox relay's mark of the rows it published, one write per batch; on SQLite every statement goes through the database's one connection, so creates queue once the writes take longer than 1/%d s.", ms(rep.latencyP50(l.Database, "GetStore", "gRPC")), rep.Rate))
		case l.Transport == "REST" && grpcP99[l.Database+" "+l.Call] > 0:
			check(ratio(l.P99, grpcP99[l.Database+" "+l.Call]) <= 1.5, fmt.Sprintf("%s REST p99 ≤ 1.5× gRPC p99 on %s (%.2f×)", l.Call, l.Database, ratio(l.P99, grpcP99[l.Database+" "+l.Call])),
				"REST adds the gateway's hop: JSON transcoding and a second connection to the api.")
		}
	}
	check(rep.Memory.PerStore() <= 60*1024, fmt.Sprintf("orchestrator ≤ 60 KiB per idle READY store (%.1f KiB)", rep.Memory.PerStore()/1024),
		"The figure is the difference of the two orchestrators' resident memory with and without the fleet, measured after a resync pass, which decodes every store's Helm release; the Go runtime keeps up to twice its live heap resident (GOGC=100), so part of it is garbage not yet returned, and no structure has yet been traced as holding it.")
	check(rep.Delete.Ratio() <= 1.2, fmt.Sprintf("delete ≤ 1.2× kubectl delete namespace (%.2f×)", rep.Delete.Ratio()),
		"A delete also uninstalls the Helm release, waits for the namespace to be gone, and carries the outcome back through the bus to the api.")
	return out
}

// Markdown is docs/benchmarks.md for the report, its plot at plotName.
func (rep *Report) Markdown(plotName string) string {
	commit := "unknown"
	if out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output(); err == nil {
		commit = strings.TrimSpace(string(out))
	}
	nats := "an embedded NATS server"
	if rep.NATS {
		nats = "an external NATS server"
	}
	var b strings.Builder
	fmt.Fprintf(&b, strings.ReplaceAll(`# Benchmarks

~make bench~ stands the platform up on the sandbox cluster as ~make dev~ does (api, audit, gateway and
orchestrators as separate processes; %s and %s) and takes every figure beside its baseline, on the same
cluster, chart and machine, in one run. The baselines are the sandbox's own ~helm~ CLI (~helm install --wait
--wait-for-jobs~ of the same chart with the values the platform gave its first store, into a namespace that
already holds the store's Secrets) and ~kubectl delete namespace --wait~. When the platform runs on
PostgreSQL, the api's latency is also measured on SQLite, the embedded default, by a second api of its own. The code is ~deploy/bench~; ~make
test~ runs its smoke form (a few stores, figures not checked) so it keeps working.

Last full run: commit %s, %s, %d cores, %s (took %s).

%s
![Stores READY over time, storeprov against the helm CLI](%s)

## Targets

`, "~", "`"), rep.Database, nats, commit, runtime.GOOS+"/"+runtime.GOARCH, runtime.NumCPU(), rep.Started.UTC().Format("2006-01-02"), rep.Took.Round(time.Second), rep.Table(), plotName)
	for _, t := range rep.Targets() {
		fmt.Fprintf(&b, "- %s\n", t)
	}
	fmt.Fprintf(&b, "\n## Where the time goes\n\nThe median of each kind of span the services exported (OTLP) during the single-store creates;\nspans nest, so their times overlap.\n\n%s", PhaseTable(rep.Phases))
	b.WriteString(`
## How to read it

- Times run from the request to the first poll of the REST API that shows the outcome (every 50 ms for
  single stores, 250 ms for bursts), so they include everything a user waits for.
- The scaling runs submit the same burst with 1, 2 and 4 orchestrators; E(n) = rate(n) / (n × rate(1)).
  Earlier runs' stores stay READY meanwhile (and are resynced once a minute), so later runs work on a
  larger fleet. The CPU shares are the processor time of the cluster's and the platform's processes
  during the burst, over its wall time (100 % is one core).
- The latency runs stop the orchestrators (their thousands of creates are never provisioned) and send
  requests open loop, spread over several users so the per-user rate limit does not decide them.
- Memory is the orchestrators' resident memory (VmRSS) after a restart and a resync of every idle store,
  less what they use with no store at all, divided by the number of stores.
`)
	return b.String()
}
