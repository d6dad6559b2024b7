package recorder_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/storeprov/storeprov/gen/storeprov/audit/v1"
	eventsv1 "github.com/storeprov/storeprov/gen/storeprov/events/v1"
	"github.com/storeprov/storeprov/pkg/bus"
	"github.com/storeprov/storeprov/pkg/bus/bustest"
	"github.com/storeprov/storeprov/pkg/database/databasetest"
	"github.com/storeprov/storeprov/pkg/lifecycle"
	"github.com/storeprov/storeprov/services/audit/internal/recorder"
	"github.com/storeprov/storeprov/services/audit/internal/store"
)

// ignoreChain leaves out the fields the hash chain adds to a listed entry.
var ignoreChain = protocmp.IgnoreFields(&auditv1.AuditEntry{}, "sequence", "hash")

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func entry(id, storeID string, at time.Time) *auditv1.AuditEntry {
	return &auditv1.AuditEntry{
		Id: id, StoreId: storeID, StoreOwner: "alice", Actor: "alice",
		Action: lifecycle.ActionCreate, Time: timestamppb.New(at), Detail: "detail of " + id,
	}
}

func openLog(t *testing.T, url string) *store.Store {
	t.Helper()
	log, err := store.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	return log
}

// run starts a recorder of env's audit events into log and returns its
// metrics registry. The recorder must stop cleanly when the test ends.
func run(t *testing.T, env *bustest.Env, log recorder.Log, opts recorder.Options) *prometheus.Registry {
	t.Helper()
	reg := prometheus.NewRegistry()
	opts.Registry = reg
	if opts.RetryDelay == 0 {
		opts.RetryDelay = 100 * time.Millisecond
	}
	_, js := env.ConnectAs(t, bus.RoleAudit)
	r, err := recorder.New(js, env.Topology, log, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v after cancel, want nil", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return within 10s of cancel")
		}
	})
	return reg
}

func publish(t *testing.T, env *bustest.Env, msgID string, e *auditv1.AuditEntry) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := bus.Publish(ctx, env.JS, env.Topology.AuditSubject(bus.RoleAPI, e.GetStoreId()), msgID, &eventsv1.AuditEvent{Entry: e}); err != nil {
		t.Fatal(err)
	}
}

// eventually polls cond every 20ms for up to 15s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func list(t *testing.T, log *store.Store) []*auditv1.AuditEntry {
	t.Helper()
	entries, _, err := log.List(context.Background(), store.Query{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return entries
}

func count(t *testing.T, reg *prometheus.Registry, outcome string) int {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "storeprov_audit_events_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" && l.GetValue() == outcome {
					return int(m.GetCounter().GetValue())
				}
			}
		}
	}
	t.Fatalf("no storeprov_audit_events_total{outcome=%q}", outcome)
	return 0
}

// settled reports whether the audit consumer has nothing pending: every
// message was delivered and acked or terminated.
func settled(t *testing.T, env *bustest.Env) bool {
	t.Helper()
	c, err := env.JS.Consumer(context.Background(), env.Topology.EventsStream(), bus.AuditConsumer)
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.NumPending != 0 || info.NumAckPending != 0 {
		t.Logf("consumer: %d pending, %d awaiting ack, %d redelivered", info.NumPending, info.NumAckPending, info.NumRedelivered)
		return false
	}
	return true
}

// eachDatabaseAndBus runs f on every pair of a fresh database (SQLite and,
// when configured, PostgreSQL) and a fresh NATS topology (embedded and,
// when configured, external).
func eachDatabaseAndBus(t *testing.T, f func(t *testing.T, url string, env *bustest.Env)) {
	type database struct {
		name string
		url  func(t *testing.T) string
	}
	databases := []database{{"sqlite", func(t *testing.T) string { return databasetest.SQLite(t) }}}
	if u := os.Getenv(databasetest.PostgresURLEnv); u != "" {
		databases = append(databases, database{"postgres", func(t *testing.T) string { return databasetest.Postgres(t, u) }})
	}
	type server struct {
		name string
		env  func(t *testing.T) *bustest.Env
	}
	servers := []server{{"embedded-nats", func(t *testing.T) *bustest.Env { return bustest.Embedded(t) }}}
	if u := os.Getenv(bustest.URLEnv); u != "" {
		servers = append(servers, server{"external-nats", func(t *testing.T) *bustest.Env { return bustest.External(t, u) }})
	}
	for _, db := range databases {
		for _, srv := range servers {
			t.Run(db.name+"/"+srv.name, func(t *testing.T) { f(t, db.url(t), srv.env(t)) })
		}
	}
}

func TestPublishedEventsAreRecorded(t *testing.T) {
	eachDatabaseAndBus(t, func(t *testing.T, url string, env *bustest.Env) {
		log := openLog(t, url)
		reg := run(t, env, log, recorder.Options{})
		var want []*auditv1.AuditEntry
		for i := range 5 {
			e := entry(fmt.Sprintf("e%d", i), fmt.Sprintf("store%d", i%2), t0.Add(time.Duration(i)*time.Second))
			publish(t, env, "msg-"+e.Id, e)
			want = append(want, e)
		}
		eventually(t, "5 entries are recorded", func() bool { return len(list(t, log)) == 5 })
		if diff := cmp.Diff(want, list(t, log), protocmp.Transform(), ignoreChain); diff != "" {
			t.Errorf("entries (-want +got):\n%s", diff)
		}
		eventually(t, "every message is acked", func() bool { return settled(t, env) })
		if got := count(t, reg, recorder.OutcomeRecorded); got != 5 {
			t.Errorf("recorded = %d, want 5", got)
		}
	})
}

func TestAnEventDeliveredTwiceIsRecordedOnce(t *testing.T) {
	eachDatabaseAndBus(t, func(t *testing.T, url string, env *bustest.Env) {
		log := openLog(t, url)
		reg := run(t, env, log, recorder.Options{})
		e := entry("twice", "store1", t0)
		// Different message ids get past JetStream's deduplication, as a
		// republish after the duplicate window would.
		publish(t, env, "first", e)
		publish(t, env, "second", e)
		eventually(t, "both deliveries are handled", func() bool {
			return count(t, reg, recorder.OutcomeRecorded)+count(t, reg, recorder.OutcomeDuplicate) == 2
		})
		if got := count(t, reg, recorder.OutcomeDuplicate); got != 1 {
			t.Errorf("duplicates = %d, want 1", got)
		}
		if diff := cmp.Diff([]*auditv1.AuditEntry{e}, list(t, log), protocmp.Transform(), ignoreChain); diff != "" {
			t.Errorf("entries (-want +got):\n%s", diff)
		}
		eventually(t, "both messages are acked", func() bool { return settled(t, env) })
	})
}

func TestMessagesThatCannotBeRecordedAreDropped(t *testing.T) {
	tests := []struct {
		name    string
		publish func(t *testing.T, env *bustest.Env)
	}{
		{name: "garbage bytes", publish: func(t *testing.T, env *bustest.Env) {
			msg := &nats.Msg{Subject: env.Topology.AuditSubject(bus.RoleAPI, "s1"), Data: []byte{0xff, 0x01, 0x02}, Header: nats.Header{}}
			msg.Header.Set(bus.HeaderMessageType, bus.MessageType(&eventsv1.AuditEvent{}))
			if _, err := env.JS.PublishMsg(context.Background(), msg); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "another message type", publish: func(t *testing.T, env *bustest.Env) {
			ctx := context.Background()
			if err := bus.Publish(ctx, env.JS, env.Topology.AuditSubject(bus.RoleAPI, "s1"), "status", &eventsv1.StoreStatusChanged{StoreId: "s1"}); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "an event without id", publish: func(t *testing.T, env *bustest.Env) {
			publish(t, env, "no-id", entry("", "s1", t0))
		}},
		{name: "an event without entry", publish: func(t *testing.T, env *bustest.Env) {
			ctx := context.Background()
			if err := bus.Publish(ctx, env.JS, env.Topology.AuditSubject(bus.RoleAPI, "s1"), "empty", &eventsv1.AuditEvent{}); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bustest.Each(t, func(t *testing.T, env *bustest.Env) {
				log := openLog(t, databasetest.SQLite(t))
				reg := run(t, env, log, recorder.Options{})
				tt.publish(t, env)
				good := entry("good", "s1", t0)
				publish(t, env, "good", good)
				eventually(t, "the bad message is dropped and the good one recorded", func() bool {
					return count(t, reg, recorder.OutcomeInvalid) == 1 && count(t, reg, recorder.OutcomeRecorded) == 1
				})
				eventually(t, "nothing is left to redeliver", func() bool { return settled(t, env) })
				if diff := cmp.Diff([]*auditv1.AuditEntry{good}, list(t, log), protocmp.Transform(), ignoreChain); diff != "" {
					t.Errorf("entries (-want +got):\n%s", diff)
				}
			})
		})
	}
}

func TestAnEventWithoutTimeGetsItsPublishTime(t *testing.T) {
	env := bustest.Embedded(t)
	log := openLog(t, databasetest.SQLite(t))
	run(t, env, log, recorder.Options{})
	before := time.Now()
	e := entry("untimed", "s1", t0)
	e.Time = nil
	publish(t, env, "untimed", e)
	eventually(t, "the entry is recorded", func() bool { return len(list(t, log)) == 1 })
	got := list(t, log)[0].Time.AsTime()
	if got.Before(before.Add(-time.Second)) || got.After(time.Now().Add(time.Second)) {
		t.Errorf("time = %v, want about %v", got, before)
	}
}

// failing wraps the real log and fails its first n Appends, as a database
// that went away would.
type failing struct {
	recorder.Log
	n atomic.Int32
}

func (f *failing) Append(ctx context.Context, e *auditv1.AuditEntry) (bool, error) {
	if f.n.Add(-1) >= 0 {
		return false, errors.New("connection refused")
	}
	return f.Log.Append(ctx, e)
}

func TestDatabaseErrorsAreRetried(t *testing.T) {
	bustest.Each(t, func(t *testing.T, env *bustest.Env) {
		log := openLog(t, databasetest.SQLite(t))
		f := &failing{Log: log}
		f.n.Store(3)
		reg := run(t, env, f, recorder.Options{RetryDelay: 50 * time.Millisecond})
		e := entry("retried", "s1", t0)
		publish(t, env, "retried", e)
		eventually(t, "the entry is recorded after the failures", func() bool { return len(list(t, log)) == 1 })
		if got := count(t, reg, recorder.OutcomeFailed); got != 3 {
			t.Errorf("failed = %d, want 3", got)
		}
		eventually(t, "the message is acked", func() bool { return settled(t, env) })
	})
}

// gauge wraps the real log and measures how many Appends run at once.
type gauge struct {
	recorder.Log
	now, peak atomic.Int32
}

func (g *gauge) Append(ctx context.Context, e *auditv1.AuditEntry) (bool, error) {
	n := g.now.Add(1)
	defer g.now.Add(-1)
	for {
		p := g.peak.Load()
		if n <= p || g.peak.CompareAndSwap(p, n) {
			break
		}
	}
	time.Sleep(20 * time.Millisecond)
	return g.Log.Append(ctx, e)
}

func TestConcurrencyIsBounded(t *testing.T) {
	env := bustest.Embedded(t)
	log := openLog(t, databasetest.SQLite(t))
	g := &gauge{Log: log}
	for i := range 30 {
		publish(t, env, fmt.Sprintf("m%d", i), entry(fmt.Sprintf("e%d", i), "s1", t0.Add(time.Duration(i)*time.Second)))
	}
	run(t, env, g, recorder.Options{Concurrency: 3})
	eventually(t, "30 entries are recorded", func() bool { return len(list(t, log)) == 30 })
	if peak := g.peak.Load(); peak > 3 || peak < 2 {
		t.Errorf("peak concurrent Appends = %d, want 2 or 3 (bound 3)", peak)
	}
}

func TestRecordingResumesAfterNATSRestarts(t *testing.T) {
	env := bustest.Embedded(t)
	log := openLog(t, databasetest.SQLite(t))
	reg := run(t, env, log, recorder.Options{})
	publish(t, env, "before", entry("before", "s1", t0))
	eventually(t, "the first entry is recorded", func() bool { return len(list(t, log)) == 1 })

	env.Stop(t)
	time.Sleep(500 * time.Millisecond) // the recorder notices the outage
	env.Restart(t)

	// Publishing waits for the test's connection to reconnect.
	eventually(t, "the test reconnects and publishes", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return bus.Publish(ctx, env.JS, env.Topology.AuditSubject(bus.RoleAPI, "s1"), "after", &eventsv1.AuditEvent{Entry: entry("after", "s1", t0.Add(time.Second))}) == nil
	})
	eventually(t, "the entry published after the restart is recorded", func() bool { return count(t, reg, recorder.OutcomeRecorded) == 2 })
	if got := len(list(t, log)); got != 2 {
		t.Errorf("%d entries, want 2", got)
	}
}

// The owner of a store is what the api recorded: an orchestrator's event
// that names another owner is recorded with the api's, one that comes
// before the api's create entry waits for it, and one about a store the
// api never announced is recorded, after waiting, with no owner.
func TestOwnerComesFromTheAPI(t *testing.T) {
	bustest.Each(t, func(t *testing.T, env *bustest.Env) {
		databasetest.Each(t, func(t *testing.T, url string) {
			log := openLog(t, url)
			reg := run(t, env, log, recorder.Options{RetryDelay: 50 * time.Millisecond})
			// Each database runs on the same bus: ids of its own, or
			// JetStream drops the second run's events as duplicates.
			run := strconv.FormatInt(time.Now().UnixNano(), 36)
			s1, unknown := "s1-"+run, "s-unknown-"+run
			fromOrchestrator := func(id, storeID, owner string) {
				t.Helper()
				e := &auditv1.AuditEntry{Id: id, StoreId: storeID, StoreOwner: owner, Actor: lifecycle.SystemActor,
					Action: lifecycle.ActionReady, Time: timestamppb.New(t0.Add(time.Minute)), Detail: id}
				_, js := env.ConnectAs(t, bus.RoleOrchestrator)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if err := bus.Publish(ctx, js, env.Topology.AuditSubject(bus.RoleOrchestrator, storeID), id, &eventsv1.AuditEvent{Entry: e}); err != nil {
					t.Fatal(err)
				}
			}
			owners := func() map[string]string {
				out := map[string]string{}
				for _, e := range list(t, log) {
					out[e.GetId()] = e.GetStoreOwner()
				}
				return out
			}

			// Before the api's create entry: it waits, then takes alice.
			fromOrchestrator("early-"+run, s1, "mallory")
			eventually(t, "the early event waits", func() bool { return count(t, reg, recorder.OutcomeWaiting) > 0 })
			publish(t, env, "create-"+run, entry("create-"+run, s1, t0))
			fromOrchestrator("forged-"+run, s1, "mallory")
			fromOrchestrator("nobody's-"+run, unknown, "mallory")
			eventually(t, "all three events are recorded", func() bool { return len(owners()) == 4 })
			want := map[string]string{"create-" + run: "alice", "early-" + run: "alice", "forged-" + run: "alice", "nobody's-" + run: ""}
			if got := owners(); !maps.Equal(got, want) {
				t.Errorf("owners = %v, want %v", got, want)
			}
		})
	})
}

// A store that fails twice in one generation, under two leases (a second
// attempt after the first worker's lease lapsed), has both failures in the
// log; the same failure delivered again under the same lease is one entry.
func TestTwoFailuresInOneGenerationAreBothRecorded(t *testing.T) {
	bustest.Each(t, func(t *testing.T, env *bustest.Env) {
		databasetest.Each(t, func(t *testing.T, url string) {
			log := openLog(t, url)
			reg := run(t, env, log, recorder.Options{RetryDelay: 50 * time.Millisecond})
			run := strconv.FormatInt(time.Now().UnixNano(), 36)
			storeID := "s-" + run
			publish(t, env, "create-"+run, entry("create-"+run, storeID, t0))
			id := lifecycle.AuditEventID(storeID, 1, lifecycle.ActionFailure)
			_, js := env.ConnectAs(t, bus.RoleOrchestrator)
			failure := func(msgID string, token uint64, detail string) {
				t.Helper()
				e := &auditv1.AuditEntry{Id: id, StoreId: storeID, Actor: lifecycle.SystemActor,
					Action: lifecycle.ActionFailure, Time: timestamppb.New(t0.Add(time.Minute)), Detail: detail}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if err := bus.Publish(ctx, js, env.Topology.AuditSubject(bus.RoleOrchestrator, storeID), msgID, &eventsv1.AuditEvent{Entry: e, LeaseToken: token}); err != nil {
					t.Fatal(err)
				}
			}
			// Message ids as the orchestrator makes them; the republish gets
			// one of its own, as after JetStream's duplicate window.
			failure(lifecycle.AttemptID(id, 7), 7, "Timeout: first attempt")
			failure(lifecycle.AttemptID(id, 7)+"/again", 7, "Timeout: first attempt")
			failure(lifecycle.AttemptID(id, 12), 12, "CrashLoopBackOff: second attempt")
			eventually(t, "every event is handled", func() bool {
				return count(t, reg, recorder.OutcomeRecorded)+count(t, reg, recorder.OutcomeDuplicate) == 4
			})
			var got []string
			for _, e := range list(t, log) {
				if e.GetAction() == lifecycle.ActionFailure {
					got = append(got, fmt.Sprintf("%s %d %s", e.GetId(), e.GetLeaseToken(), e.GetDetail()))
				}
			}
			slices.Sort(got) // recorded concurrently, in any order
			want := []string{id + " 12 CrashLoopBackOff: second attempt", id + " 7 Timeout: first attempt"}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("failures recorded (-want +got):\n%s", diff)
			}
		})
	})
}
