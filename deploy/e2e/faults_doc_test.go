package e2e

import (
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// faultsDoc is docs/faults.md: what the suite does, and the table of the
// run that wrote it.
func faultsDoc(form faultForm, base stackConfig, table string) string {
	commit := "unknown"
	if out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output(); err == nil {
		commit = strings.TrimSpace(string(out))
	}
	return fmt.Sprintf(`# Fault suite

`+"`make faults`"+` runs the whole platform as separate processes on the sandbox cluster (api, audit,
gateway and two orchestrators, through `+"`deploy/devstack`"+`) and pushes the same work through it once
without faults and once under each fault below. The work is %d WooCommerce stores created in a burst,
each upgraded once (%d of them to resources their namespace's quota refuses, so the upgrade is rolled
back), then all deleted; each phase waits until every store has an outcome. The test is
`+"`TestFaults`"+` in `+"`deploy/e2e`"+` (`+"`faults_*_test.go`"+`); `+"`make test`"+` runs its short form (%d stores,
every scenario once, nothing written here) so CI keeps it working; `+"`STOREPROV_FAULTS=full`"+` selects the
full form, which rewrites this file.

The platform is PostgreSQL and the external NATS server when `+"`STOREPROV_TEST_POSTGRES_URL`"+` and
`+"`STOREPROV_TEST_NATS_URL`"+` are set, else SQLite and an embedded NATS server; each scenario gets fresh
databases and its own bus prefix. Only faults are fake: every component is the real one.

## Scenarios

- **kill -9 a random orchestrator.** The suite watches the cluster (Helm's release Secrets, the store
  namespaces) and, when a store is in the middle of an install (release `+"`pending-install`"+` or
  `+"`pending-upgrade`"+`), waiting for readiness (release deployed, store still PROVISIONING), rolling back
  (release `+"`pending-rollback`"+`, or `+"`failed`"+` for a store whose upgrade cannot become ready) or deleting its
  namespace, it sends SIGKILL to the orchestrator holding the store's lease (read from the lease bucket;
  one at random if it cannot be read). It kills at least %d times, every kind of moment first, never
  twice within 3 s, and starts the killed worker again 1 to 4 s later under a new worker id.
- **kill -9 one orchestrator 3 s into the creates.** One of the two orchestrators is killed 3 s into
  the creates and started again at once under a new worker id. This scenario measures what a crash
  costs: the dead worker's stores wait for its leases to lapse and for their commands to be delivered
  again, so the creates should settle within the baseline's creates plus one lease TTL. The notes below
  the table give both times (a timing, reported and not asserted).
- **kill -9 every orchestrator.** Every orchestrator is killed 1.5 s into a burst (%s) and new
  ones start %s later. Their stores wait out the leases the dead workers held.
- **restart NATS.** The NATS server is shut down 1 s into a burst (%s) and started 3 s later on the same
  port with the same JetStream storage. The suite restarts only a server it runs itself: when an external
  NATS is configured, this scenario runs on the stack's embedded server instead (PostgreSQL unchanged).
- **kill -9 the api.** The api is killed a third of the way through a burst (%s; twice during the creates
  in the full form) and started again 3 s later. The client retries connection errors, 429 and 5xx, as a
  careful client does; a create retried after an answer that did not say whether it was applied may make
  one store more, which then goes through the rest of the work like the others.
- **PostgreSQL unreachable for 10 s.** A TCP proxy written in the test stands between the api and audit
  services and PostgreSQL; 1 s into a burst (%s) it drops every connection and refuses new ones for
  10 s. With SQLite the scenario does not apply and the table says so; a PostgreSQL URL that is set but
  unreachable fails the suite.
- **Kubernetes API: 5 %% errors, 300 ms delay.** The orchestrators reach the API server through a reverse
  proxy (their kubeconfig points at it; it signs in with the sandbox's credentials) that answers 5 %% of
  requests with 500 or 429 (with `+"`Retry-After: 1`"+`) and delays every other request by 300 ms, watches
  included.
- **namespace stuck Terminating.** Before the deletes, %d stores get a ConfigMap with a finalizer the suite
  holds. Each such store must say what blocks it (its reason or message naming the finalizer, through
  the api) within a minute of its delete (the orchestrators give up a delete attempt after 15 s); then the suite removes the finalizer and the store must finish
  DELETED.

## Invariants, checked after each scenario

- **No accepted request lost.** Every create, upgrade and delete the api answered 200 to has its outcome:
  the store exists, reaches the upgrade's generation, ends DELETED.
- **Every store settles with a true outcome.** After each phase every store is READY (or FAILED) on the
  generation asked for, within a generous deadline (%s per phase); the upgrade the quota refuses ends
  READY with `+"`UpgradeRolledBack`"+` naming `+"`QuotaExceeded`"+`, the others READY with no failure. Nothing the
  work asks can fail, so a FAILED store is a violation whatever its reason: a transient fault must not
  make a store fail. After the deletes every store is DELETED.
- **Exactly one Helm release per live store.** After the upgrades, each store's namespace holds Helm
  Secrets (`+"`owner=helm`"+`) of one release, with one deployed revision and none pending.
- **Nothing without a live store.** After the deletes no namespace of the scenario's stores is left (and
  so none of their PVCs and Secrets), and no PersistentVolume is bound to one a minute later.
- **The audit log has every transition.** The audit service's log (`+"`GET /v1/auditEntries?storeId=`"+`) has,
  per store, the create, upgrade and delete, a ready for each generation that became ready, the failure of
  a rolled-back upgrade, and the deleted.

Time to settle is the wall time of the three phases, from the first create to the last DELETED, beside
the same work without a fault. Settle deadlines are bounds, not measurements: a store that misses one is
reported with its last log lines.

## Last full run

Platform: %s; orchestrators run with `+"`%s`"+`; code at commit %s (uncommitted changes not counted);
generated %s.

%s`,
		form.stores, form.rollbacks, faultFormOf("").stores, form.minKills,
		strings.Join(form.phasesHit, ", "), form.allDown, strings.Join(form.phasesHit, ", "), strings.Join(form.phasesHit, ", "),
		strings.Join(form.phasesHit, ", "), form.stuck, form.settle,
		base.name, strings.Join(form.orchestratorArgs, " "), commit, time.Now().UTC().Format("2006-01-02 15:04 UTC"), table)
}
