package worker_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	storev1 "github.com/storeprov/storeprov/gen/storeprov/store/v1"
	charts "github.com/storeprov/storeprov/helm"
	"github.com/storeprov/storeprov/helm/chartstest"
	"github.com/storeprov/storeprov/pkg/bus/bustest"
	"github.com/storeprov/storeprov/pkg/lifecycle"
	"github.com/storeprov/storeprov/services/orchestrator/internal/catalog"
	"github.com/storeprov/storeprov/services/orchestrator/internal/reconcile"
)

// A command without a chart version (a resync, or a command from an api
// that did not send the version a store runs) keeps the chart of the
// store's deployed revision, even when the orchestrator has a newer one:
// only a command that names a version moves a store.
func TestCommandWithoutAVersionKeepsTheDeployedChart(t *testing.T) {
	t.Parallel()
	old := chartstest.Version(t, charts.WordPress)
	next := chartstest.NextMinor(t, old)
	dir := t.TempDir()
	chartstest.WriteWordPress(t, dir, next)
	cat, err := catalog.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	env := bustest.Embedded(t)
	w := startWorker(t, env, setup{worker: fastRetries(), release: true, charts: cat, reconcile: reconcile.Options{ProvisionTimeout: time.Minute}})
	id := newStore(t)
	events := watch(t, env, id)
	publish(t, env, versionCommand(id, 1, old), "")
	if ready := events.waitStatus(t, 1, storev1.Phase_PHASE_READY, time.Minute); ready.GetChartVersion() != old {
		t.Fatalf("store installed on %s is READY with chart %q", old, ready.GetChartVersion())
	}
	waitSettled(t, env, 10*time.Second)
	statuses0, audits0 := events.counts()

	// A resync without a version: the store is in sync on its chart, so
	// nothing is upgraded and nothing published.
	cmd, msgID := resyncCommand(id, 1)
	if cmd.GetSpec().GetChartVersion() != "" {
		t.Fatalf("resync command names chart version %q, want none", cmd.GetSpec().GetChartVersion())
	}
	publish(t, env, cmd, msgID)
	eventually(t, 30*time.Second, func() bool { return count(w.metrics, "provision", "done") == 2 },
		func() string { return "the resync was not handled as done" })
	time.Sleep(time.Second)
	if s, a := events.counts(); s != statuses0 || a != audits0 {
		t.Errorf("after the resync: %d status and %d audit events, want %d and %d as before: %s", s, a, statuses0, audits0, events.summary())
	}
	hist := helmHistory(t, id)
	if diff := cmp.Diff([]string{"1:deployed"}, statuses(hist)); diff != "" {
		t.Errorf("release history after the resync (-want +got):\n%s", diff)
	}

	// A new generation without a version changes the values it asks for,
	// on the chart the store runs.
	publish(t, env, upgradeCommand(id, 2, map[string]string{"setup.currency": "EUR"}), "")
	ready := events.waitStatus(t, 2, storev1.Phase_PHASE_READY, time.Minute)
	if lifecycle.Reason(ready.GetReason()) != lifecycle.ReasonReady || ready.GetChartVersion() != old {
		t.Errorf("READY after an upgrade without a version = %s with chart %q: %s; want Ready with chart %s", ready.GetReason(), ready.GetChartVersion(), ready.GetMessage(), old)
	}
	hist = helmHistory(t, id)
	if diff := cmp.Diff([]string{"1:superseded", "2:deployed"}, statuses(hist)); diff != "" {
		t.Fatalf("release history after the upgrade (-want +got):\n%s", diff)
	}
	if hist[1].ChartVersion != old || !strings.Contains(fmt.Sprint(hist[1].Values["setup"]), "currency:EUR") {
		t.Errorf("revision 2 runs chart %s with setup values %v, want %s with currency EUR", hist[1].ChartVersion, hist[1].Values["setup"], old)
	}
}
