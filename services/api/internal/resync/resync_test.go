package resync_test

import (
	"context"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"

	eventsv1 "github.com/storeprov/storeprov/gen/storeprov/events/v1"
	storev1 "github.com/storeprov/storeprov/gen/storeprov/store/v1"
	"github.com/storeprov/storeprov/pkg/bus"
	"github.com/storeprov/storeprov/pkg/bus/bustest"
	"github.com/storeprov/storeprov/pkg/database/databasetest"
	"github.com/storeprov/storeprov/pkg/lifecycle"
	"github.com/storeprov/storeprov/services/api/internal/ent"
	"github.com/storeprov/storeprov/services/api/internal/ent/schema"
	"github.com/storeprov/storeprov/services/api/internal/resync"
)

// queued reads every command in the commands stream, as "store gen ACTION
// actor", sorted, with the commands by store.
func queued(t *testing.T, env *bustest.Env) ([]string, map[string]*eventsv1.ProvisionCommand) {
	t.Helper()
	ctx := context.Background()
	s, err := env.JS.Stream(ctx, env.Topology.ResyncStream())
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	cmds := map[string]*eventsv1.ProvisionCommand{}
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		raw, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		var cmd eventsv1.ProvisionCommand
		if got := raw.Header.Get(bus.HeaderMessageType); got != bus.MessageType(&cmd) {
			t.Fatalf("message %d is a %s", seq, got)
		}
		if err := proto.Unmarshal(raw.Data, &cmd); err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%s %d %s %s", cmd.GetStoreId(), cmd.GetGeneration(), strings.TrimPrefix(cmd.GetAction().String(), "ACTION_"), cmd.GetActor()))
		cmds[cmd.GetStoreId()] = &cmd
	}
	sort.Strings(out)
	return out, cmds
}

func TestResyncQueuesReadyAndStuckStoresOnly(t *testing.T) {
	t.Parallel()
	databasetest.Each(t, func(t *testing.T, dbURL string) {
		db := databasetest.Migrated(t, dbURL, schema.Migrations)
		client := ent.NewClient(ent.Driver(db.Driver))
		env := bustest.Embedded(t)
		ctx := context.Background()
		now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
		interval := 5 * time.Minute
		old, recent := now.Add(-time.Hour), now.Add(-time.Minute)
		for _, s := range []struct {
			id      string
			phase   storev1.Phase
			gen     int64
			updated time.Time
		}{
			{"ready", storev1.Phase_PHASE_READY, 3, recent},
			{"readyold", storev1.Phase_PHASE_READY, 1, old},
			{"provstuck", storev1.Phase_PHASE_PROVISIONING, 2, old},
			{"provbusy", storev1.Phase_PHASE_PROVISIONING, 1, recent},
			{"delstuck", storev1.Phase_PHASE_DELETING, 4, old},
			{"delbusy", storev1.Phase_PHASE_DELETING, 4, recent},
			{"failed", storev1.Phase_PHASE_FAILED, 2, old},
			{"deleted", storev1.Phase_PHASE_DELETED, 5, old},
		} {
			// readyold was never upgraded: it runs what it was installed with.
			desired := "0.1.0"
			if s.id == "readyold" {
				desired = ""
			}
			if err := client.Store.Create().SetID(s.id).SetDisplayName("Shop " + s.id).SetEngine(storev1.Engine_ENGINE_WOOCOMMERCE).
				SetOwner("alice").SetPhase(s.phase).SetGeneration(s.gen).SetObservedGeneration(s.gen).
				SetDesiredChartVersion(desired).SetChartVersion("0.0.9").SetChartValues(map[string]string{"setup.currency": "EUR"}).
				SetCreateTime(old).SetUpdateTime(s.updated).Exec(ctx); err != nil {
				t.Fatal(err)
			}
		}

		// Two api replicas resync in the same period.
		for _, replica := range []time.Duration{0, 30 * time.Second} {
			_, js := env.ConnectAs(t, bus.RoleAPI)
			r := &resync.Resyncer{Client: client, JS: js, Topology: env.Topology, Interval: interval,
				Now: func() time.Time { return now.Add(replica) }}
			n, err := r.Once(ctx)
			if err != nil || n != 4 {
				t.Fatalf("Once = %d, %v; want 4 commands queued", n, err)
			}
		}
		got, cmds := queued(t, env)
		// provbusy and delbusy (status changed within the interval), failed
		// and deleted get nothing; each command is queued once for both
		// replicas.
		want := []string{
			"delstuck 4 DELETE " + lifecycle.ResyncActor,
			"provstuck 2 PROVISION " + lifecycle.ResyncActor,
			"ready 3 PROVISION " + lifecycle.ResyncActor,
			"readyold 1 PROVISION " + lifecycle.ResyncActor,
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("queued commands (-want +got):\n%s", diff)
		}
		// A READY store is verified from now, at its desired spec; a stuck
		// one keeps the time its status last changed, so its provisioning
		// deadline does not move.
		if c := cmds["ready"]; c.GetIssueTime().AsTime() != now || c.GetSpec().GetChartVersion() != "0.1.0" || c.GetSpec().GetValues()["setup.currency"] != "EUR" || c.GetSpec().GetOwner() != "alice" {
			t.Errorf("resync of a READY store = %v, want issued now with its spec", c)
		}
		// A store never upgraded stays on the chart it runs, whatever the
		// orchestrator's newest.
		if c := cmds["readyold"]; c.GetSpec().GetChartVersion() != "0.0.9" {
			t.Errorf("resync of a store never upgraded names chart %q, want the one it runs, 0.0.9", c.GetSpec().GetChartVersion())
		}
		if c := cmds["provstuck"]; c.GetIssueTime().AsTime() != old || !c.GetRepublish() {
			t.Errorf("resync of a stuck store issued at %s (republish %v), want its last status change %s and its outcome asked for again", c.GetIssueTime().AsTime(), c.GetRepublish(), old)
		}
		if c := cmds["ready"]; c.GetRepublish() {
			t.Error("resync of a READY store asks to republish: a healthy store's status would change every period")
		}

		// The next period queues them again, and the stores whose status
		// has now not changed for longer than the interval too; a store's
		// newer resync replaces the one still waiting, so the queue holds
		// one per store whatever the backlog.
		_, js := env.ConnectAs(t, bus.RoleAPI)
		r := &resync.Resyncer{Client: client, JS: js, Topology: env.Topology, Interval: interval,
			Now: func() time.Time { return now.Add(interval) }}
		if _, err := r.Once(ctx); err != nil {
			t.Fatal(err)
		}
		if got, _ := queued(t, env); len(got) != 6 || !strings.Contains(strings.Join(got, ","), "provbusy 1 PROVISION") || !strings.Contains(strings.Join(got, ","), "delbusy 4 DELETE") {
			t.Errorf("after the next period: %q, want the 4, once each, and provbusy and delbusy", got)
		}
	})
}

func TestResyncIntervalFlagIsValidated(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name, arg string
		want      time.Duration
		err       string
	}{
		{name: "default", want: 5 * time.Minute},
		{name: "disabled", arg: "0", want: 0},
		{name: "minutes", arg: "2m", want: 2 * time.Minute},
		{name: "negative", arg: "-1m", err: "--resync-interval -1m0s: use 0 to disable the resync, or an interval of at least 10s"},
		{name: "too short", arg: "500ms", err: "--resync-interval 500ms: use 0 to disable the resync, or an interval of at least 10s"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var o resync.Options
			fs := flag.NewFlagSet("api", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			o.BindFlags(fs)
			var args []string
			if tt.arg != "" {
				args = []string{"--resync-interval=" + tt.arg}
			}
			if err := fs.Parse(args); err != nil {
				t.Fatal(err)
			}
			err := o.Validate()
			var got string
			if err != nil {
				got = err.Error()
			}
			if !strings.HasPrefix(got, tt.err) || (tt.err == "") != (err == nil) {
				t.Errorf("Validate() = %v, want an error starting %q", err, tt.err)
			}
			if err == nil && o.Interval != tt.want {
				t.Errorf("interval = %s, want %s", o.Interval, tt.want)
			}
		})
	}
}
