package app_test

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/storeprov/storeprov/gen/storeprov/events/v1"
	storev1 "github.com/storeprov/storeprov/gen/storeprov/store/v1"
	charts "github.com/storeprov/storeprov/helm"
	"github.com/storeprov/storeprov/helm/chartstest"
	"github.com/storeprov/storeprov/pkg/bus"
	"github.com/storeprov/storeprov/pkg/lifecycle"
)

// publishChartStatus publishes the orchestrator's status of a store that
// runs chart version chart.
func publishChartStatus(t *testing.T, e *apiEnv, id string, gen int64, phase storev1.Phase, reason lifecycle.Reason, chart string) {
	t.Helper()
	ev := &eventsv1.StoreStatusChanged{
		StoreId: id, Phase: phase, Reason: string(reason), ObservedGeneration: gen, Time: timestamppb.Now(),
		Url: "http://store-" + id + ".127.0.0.1.nip.io", ChartVersion: chart,
	}
	if err := bus.Publish(context.Background(), e.bus.JS, e.bus.Topology.StatusSubject(id), lifecycle.StatusEventID(id, gen, phase, reason), ev); err != nil {
		t.Fatal(err)
	}
}

// Every command the api issues for a store carries the chart version the
// store runs, so that only an upgrade moves it; an upgrade without a
// version gets the chart built into the api, never an older one than the
// store runs.
func TestCommandsCarryTheChartVersionTheStoreRuns(t *testing.T) {
	built := chartstest.Version(t, charts.WordPress)
	newer := chartstest.NextMinor(t, built)
	const older = "0.0.9"
	each(t, func(t *testing.T, e *apiEnv) {
		ctx := e.admin()
		create := func() string {
			t.Helper()
			st, err := e.stores.CreateStore(ctx, &storev1.CreateStoreRequest{Store: &storev1.Store{DisplayName: "shop", Engine: storev1.Engine_ENGINE_WOOCOMMERCE}})
			if err != nil {
				t.Fatal(err)
			}
			return st.GetId()
		}
		command := func(id string, gen int64) *eventsv1.ProvisionCommand {
			t.Helper()
			var cmd eventsv1.ProvisionCommand
			waitMessage(t, e.bus, e.bus.Topology.CommandsStream(), e.bus.Topology.CommandSubject(id), &cmd, func() bool { return cmd.GetGeneration() == gen })
			return &cmd
		}
		runs := func(id, version string) {
			t.Helper()
			waitStore(t, e, id, "chart "+version, func(st *storev1.Store) bool { return st.GetChartVersion() == version })
		}
		upgrade := func(id string, values map[string]string) {
			t.Helper()
			if _, err := e.stores.UpgradeStore(ctx, &storev1.UpgradeStoreRequest{Id: id, Values: values}); err != nil {
				t.Fatal(err)
			}
		}

		// A new store names no version: the orchestrator installs its
		// newest and reports which.
		old := create()
		if got := command(old, 1).GetSpec().GetChartVersion(); got != "" {
			t.Errorf("create command names chart %q, want none", got)
		}
		publishChartStatus(t, e, old, 1, storev1.Phase_PHASE_READY, lifecycle.ReasonReady, older)
		runs(old, older)
		// An upgrade without a version moves it to the chart built into
		// the api, which the command and the audit log name.
		upgrade(old, map[string]string{"wordpress.replicas": "2"})
		if got := command(old, 2).GetSpec().GetChartVersion(); got != built {
			t.Errorf("upgrade without a version of a store on %s names chart %q, want the built-in %s", older, got, built)
		}
		var audit eventsv1.AuditEvent
		waitMessage(t, e.bus, e.bus.Topology.EventsStream(), e.bus.Topology.AuditSubject(bus.RoleAPI, old), &audit,
			func() bool { return audit.GetEntry().GetAction() == lifecycle.ActionUpgrade })
		if d := audit.GetEntry().GetDetail(); !strings.Contains(d, "chart version "+built+" ") {
			t.Errorf("upgrade audit detail = %q, want chart version %s", d, built)
		}
		publishChartStatus(t, e, old, 2, storev1.Phase_PHASE_READY, lifecycle.ReasonReady, built)
		runs(old, built)
		if _, err := e.stores.DeleteStore(ctx, &storev1.DeleteStoreRequest{Id: old}); err != nil {
			t.Fatal(err)
		}
		if got := command(old, 3).GetSpec().GetChartVersion(); got != built {
			t.Errorf("delete command names chart %q, want %s", got, built)
		}

		// A store on a version an operator added to the orchestrators
		// keeps it through an upgrade without a version and a retry.
		ahead := create()
		publishChartStatus(t, e, ahead, 1, storev1.Phase_PHASE_READY, lifecycle.ReasonReady, newer)
		runs(ahead, newer)
		upgrade(ahead, map[string]string{"wordpress.replicas": "2"})
		if got := command(ahead, 2).GetSpec().GetChartVersion(); got != newer {
			t.Errorf("upgrade without a version of a store on %s names chart %q, want %s (never an older one)", newer, got, newer)
		}
		publishChartStatus(t, e, ahead, 2, storev1.Phase_PHASE_FAILED, lifecycle.ReasonTimeout, newer)
		waitPhase(t, e, ahead, storev1.Phase_PHASE_FAILED)
		if _, err := e.stores.RetryStore(ctx, &storev1.RetryStoreRequest{Id: ahead}); err != nil {
			t.Fatal(err)
		}
		if got := command(ahead, 3).GetSpec().GetChartVersion(); got != newer {
			t.Errorf("retry command names chart %q, want %s", got, newer)
		}

		// A store never upgraded is retried on the chart it was installed
		// with.
		failed := create()
		publishChartStatus(t, e, failed, 1, storev1.Phase_PHASE_FAILED, lifecycle.ReasonTimeout, older)
		waitPhase(t, e, failed, storev1.Phase_PHASE_FAILED)
		if _, err := e.stores.RetryStore(ctx, &storev1.RetryStoreRequest{Id: failed}); err != nil {
			t.Fatal(err)
		}
		if got := command(failed, 2).GetSpec().GetChartVersion(); got != older {
			t.Errorf("retry command of a store installed on %s names chart %q, want %s", older, got, older)
		}
	})
}
