package app_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/storeprov/storeprov/gen/storeprov/events/v1"
	storev1 "github.com/storeprov/storeprov/gen/storeprov/store/v1"
	"github.com/storeprov/storeprov/pkg/bus"
	"github.com/storeprov/storeprov/pkg/bus/bustest"
	"github.com/storeprov/storeprov/pkg/database/databasetest"
	"github.com/storeprov/storeprov/pkg/lifecycle"
	"github.com/storeprov/storeprov/pkg/serve/servetest"
	"github.com/storeprov/storeprov/services/api/internal/app"
)

// apiEnv is a running api with a gRPC connection and the admin's token.
type apiEnv struct {
	bus    *bustest.Env
	stores storev1.StoreServiceClient
	users  storev1.UserServiceClient
	token  string
	// metricsAddr is the admin server's: /metrics, /healthz, /readyz.
	metricsAddr string
}

// startAPI runs the api; configure, when given, changes its options.
func startAPI(t *testing.T, databaseURL string, nats *bustest.Env, configure ...func(*app.Options)) *apiEnv {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	tokenFile := filepath.Join(t.TempDir(), "token")
	ready := make(chan app.Addrs, 1)
	done := make(chan error, 1)
	opts := app.Options{
		DatabaseURL: databaseURL, NATSURL: nats.URL, NATS: nats.Credentials(bus.RoleAPI), BusPrefix: nats.Topology.Prefix,
		GRPCAddr: "127.0.0.1:0", MetricsAddr: "127.0.0.1:0", AdminTokenFile: tokenFile,
		DefaultStoreQuota: 5, OnReady: func(a app.Addrs) { ready <- a },
	}
	opts.Logger = slog.New(slog.DiscardHandler)
	for _, c := range configure {
		c(&opts)
	}
	go func() { done <- app.Run(ctx, opts) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("api stopped with %v", err)
		}
	})
	var addrs app.Addrs
	select {
	case addrs = <-ready:
	case err := <-done:
		t.Fatalf("api did not start: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("api did not start within 30s")
	}
	// Only the first api on a new database writes the first admin's token.
	token, err := os.ReadFile(tokenFile)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addrs.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &apiEnv{bus: nats, stores: storev1.NewStoreServiceClient(conn), users: storev1.NewUserServiceClient(conn), token: strings.TrimSpace(string(token)),
		metricsAddr: addrs.Metrics}
}

func (e *apiEnv) as(token string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token)
}

func (e *apiEnv) admin() context.Context { return e.as(e.token) }

// each runs f on every database and NATS server the tests are configured
// for, each time with a new database.
func each(t *testing.T, f func(t *testing.T, e *apiEnv)) {
	bustest.Each(t, func(t *testing.T, nats *bustest.Env) {
		databasetest.Each(t, func(t *testing.T, dbURL string) {
			f(t, startAPI(t, dbURL, nats))
		})
	})
}

func TestCreateStoreRecordsAndQueuesIt(t *testing.T) {
	each(t, func(t *testing.T, e *apiEnv) {
		st, err := e.stores.CreateStore(e.admin(), &storev1.CreateStoreRequest{Store: &storev1.Store{DisplayName: "Corner Shop", Engine: storev1.Engine_ENGINE_WOOCOMMERCE}})
		if err != nil {
			t.Fatal(err)
		}
		if st.GetPhase() != storev1.Phase_PHASE_PROVISIONING || st.GetGeneration() != 1 || st.GetOwner() != "admin" || st.GetNamespace() != "store-"+st.GetId() {
			t.Fatalf("created store = %v", st)
		}
		if len(st.GetId()) != 8 || strings.ToLower(st.GetId()) != st.GetId() {
			t.Errorf("store id %q is not 8 lowercase characters", st.GetId())
		}

		var cmd eventsv1.ProvisionCommand
		nextMessage(t, e.bus, e.bus.Topology.CommandsStream(), e.bus.Topology.CommandSubject(st.GetId()), &cmd)
		if cmd.GetAction() != eventsv1.Action_ACTION_PROVISION || cmd.GetGeneration() != 1 || cmd.GetSpec().GetEngine() != storev1.Engine_ENGINE_WOOCOMMERCE || cmd.GetActor() != "admin" {
			t.Errorf("command = %v", &cmd)
		}
		var audit eventsv1.AuditEvent
		nextMessage(t, e.bus, e.bus.Topology.EventsStream(), e.bus.Topology.AuditSubject(bus.RoleAPI, st.GetId()), &audit)
		if audit.GetEntry().GetAction() != lifecycle.ActionCreate || audit.GetEntry().GetActor() != "admin" {
			t.Errorf("audit event = %v", &audit)
		}

		got, err := e.stores.GetStore(e.admin(), &storev1.GetStoreRequest{Id: st.GetId()})
		if err != nil || got.GetDisplayName() != "Corner Shop" {
			t.Errorf("GetStore = %v, %v", got, err)
		}
	})
}

func TestBadRequestsAreRefusedAndWriteNothing(t *testing.T) {
	each(t, func(t *testing.T, e *apiEnv) {
		tests := []struct {
			name     string
			ctx      context.Context
			store    *storev1.Store
			code     codes.Code
			contains string
		}{
			{"empty name", e.admin(), &storev1.Store{DisplayName: "  ", Engine: storev1.Engine_ENGINE_MEDUSA}, codes.InvalidArgument, "store.display_name: is required"},
			{"name too long", e.admin(), &storev1.Store{DisplayName: strings.Repeat("x", 64), Engine: storev1.Engine_ENGINE_MEDUSA}, codes.InvalidArgument, "use at most 63"},
			{"control characters", e.admin(), &storev1.Store{DisplayName: "a\x00b", Engine: storev1.Engine_ENGINE_MEDUSA}, codes.InvalidArgument, "control characters"},
			{"no engine", e.admin(), &storev1.Store{DisplayName: "shop"}, codes.InvalidArgument, "store.engine: is required"},
			{"unknown engine", e.admin(), &storev1.Store{DisplayName: "shop", Engine: 42}, codes.InvalidArgument, "42 is not an engine"},
			{"no store", e.admin(), nil, codes.InvalidArgument, "store: is required"},
			{"missing token", context.Background(), &storev1.Store{DisplayName: "shop", Engine: storev1.Engine_ENGINE_MEDUSA}, codes.Unauthenticated, "missing API token"},
			{"invalid token", e.as("sp_notatoken"), &storev1.Store{DisplayName: "shop", Engine: storev1.Engine_ENGINE_MEDUSA}, codes.Unauthenticated, "invalid API token"},
		}
		for _, tt := range tests {
			_, err := e.stores.CreateStore(tt.ctx, &storev1.CreateStoreRequest{Store: tt.store})
			if status.Code(err) != tt.code || !strings.Contains(status.Convert(err).Message(), tt.contains) {
				t.Errorf("%s: CreateStore = %v, want %s containing %q", tt.name, err, tt.code, tt.contains)
			}
		}
		_, err := e.stores.GetStore(e.admin(), &storev1.GetStoreRequest{Id: "nosuchid"})
		if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), `no store "nosuchid"`) {
			t.Errorf("GetStore of an unknown id = %v, want NotFound naming it", err)
		}
		_, err = e.stores.DeleteStore(e.admin(), &storev1.DeleteStoreRequest{Id: "nosuchid"})
		if status.Code(err) != codes.NotFound {
			t.Errorf("DeleteStore of an unknown id = %v, want NotFound", err)
		}
		_, err = e.stores.ListStores(e.admin(), &storev1.ListStoresRequest{PageToken: "garbage"})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "page_token") {
			t.Errorf("ListStores with a bad token = %v, want InvalidArgument naming page_token", err)
		}
		list, err := e.stores.ListStores(e.admin(), &storev1.ListStoresRequest{})
		if err != nil || len(list.GetStores()) != 0 {
			t.Errorf("after refused requests the store list is %v, %v; want empty", list.GetStores(), err)
		}
	})
}

func TestStoreQuotaAndOwnership(t *testing.T) {
	each(t, func(t *testing.T, e *apiEnv) {
		tok, err := e.users.CreateToken(e.admin(), &storev1.CreateTokenRequest{User: "alice", StoreQuota: 1})
		if err != nil {
			t.Fatal(err)
		}
		alice := e.as(tok.GetToken())
		me, err := e.users.GetCurrentUser(alice, &storev1.GetCurrentUserRequest{})
		if err != nil || me.GetName() != "alice" || me.GetAdmin() {
			t.Fatalf("GetCurrentUser = %v, %v", me, err)
		}
		st, err := e.stores.CreateStore(alice, &storev1.CreateStoreRequest{Store: &storev1.Store{DisplayName: "a1", Engine: storev1.Engine_ENGINE_MEDUSA}})
		if err != nil {
			t.Fatal(err)
		}
		_, err = e.stores.CreateStore(alice, &storev1.CreateStoreRequest{Store: &storev1.Store{DisplayName: "a2", Engine: storev1.Engine_ENGINE_MEDUSA}})
		if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "1 of 1 stores") {
			t.Errorf("second store beyond quota = %v, want ResourceExhausted", err)
		}
		if _, err := e.users.CreateToken(alice, &storev1.CreateTokenRequest{User: "mallory"}); status.Code(err) != codes.PermissionDenied {
			t.Errorf("alice issuing a token for someone else = %v, want PermissionDenied", err)
		}
		bob, err := e.users.CreateToken(e.admin(), &storev1.CreateTokenRequest{User: "bob"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.stores.GetStore(e.as(bob.GetToken()), &storev1.GetStoreRequest{Id: st.GetId()}); status.Code(err) != codes.NotFound {
			t.Errorf("bob reading alice's store = %v, want NotFound", err)
		}
		if _, err := e.stores.GetStore(e.admin(), &storev1.GetStoreRequest{Id: st.GetId()}); err != nil {
			t.Errorf("admin reading alice's store: %v", err)
		}
	})
}

func TestStatusEventsApplyOnlyWhenNewer(t *testing.T) {
	each(t, func(t *testing.T, e *apiEnv) {
		ctx := e.admin()
		st, err := e.stores.CreateStore(ctx, &storev1.CreateStoreRequest{Store: &storev1.Store{DisplayName: "shop", Engine: storev1.Engine_ENGINE_WOOCOMMERCE}})
		if err != nil {
			t.Fatal(err)
		}
		// A generation the api never issued is a forgery: were it applied,
		// the store would be READY and the FAILED event below dropped as old.
		publishStatus(t, e, st.GetId(), 7, storev1.Phase_PHASE_READY, lifecycle.ReasonReady, "")
		publishStatus(t, e, st.GetId(), 1, storev1.Phase_PHASE_FAILED, lifecycle.ReasonQuotaExceeded, "exceeded quota: pods")
		failed := waitPhase(t, e, st.GetId(), storev1.Phase_PHASE_FAILED)
		if failed.GetObservedGeneration() != 1 {
			t.Errorf("failed store observed generation %d, want 1: a status of a generation never issued was applied", failed.GetObservedGeneration())
		}
		if lifecycle.Reason(failed.GetFailureReason()) != lifecycle.ReasonQuotaExceeded || failed.GetFailureMessage() != "exceeded quota: pods" {
			t.Errorf("failed store = %v", failed)
		}

		retried, err := e.stores.RetryStore(ctx, &storev1.RetryStoreRequest{Id: st.GetId()})
		if err != nil || retried.GetPhase() != storev1.Phase_PHASE_PROVISIONING || retried.GetGeneration() != 2 || retried.GetFailureReason() != "" {
			t.Fatalf("RetryStore = %v, %v", retried, err)
		}
		if _, err := e.stores.RetryStore(ctx, &storev1.RetryStoreRequest{Id: st.GetId()}); status.Code(err) != codes.FailedPrecondition {
			t.Errorf("retrying a PROVISIONING store = %v, want FailedPrecondition", err)
		}

		// A late event of generation 1 must not undo the retry.
		publishStatus(t, e, st.GetId(), 1, storev1.Phase_PHASE_READY, lifecycle.ReasonReady, "")
		publishStatus(t, e, st.GetId(), 2, storev1.Phase_PHASE_READY, lifecycle.ReasonReady, "")
		ready := waitPhase(t, e, st.GetId(), storev1.Phase_PHASE_READY)
		if ready.GetObservedGeneration() != 2 || ready.GetUrl() == "" {
			t.Errorf("ready store = %v", ready)
		}

		deleting, err := e.stores.DeleteStore(ctx, &storev1.DeleteStoreRequest{Id: st.GetId()})
		if err != nil || deleting.GetPhase() != storev1.Phase_PHASE_DELETING || deleting.GetGeneration() != 3 {
			t.Fatalf("DeleteStore = %v, %v", deleting, err)
		}
		again, err := e.stores.DeleteStore(ctx, &storev1.DeleteStoreRequest{Id: st.GetId()})
		if err != nil || again.GetGeneration() != 3 {
			t.Errorf("deleting twice = %v, %v; want the same DELETING store", again, err)
		}
		// A deletion that waits says for what, until it finishes.
		publishStatus(t, e, st.GetId(), 3, storev1.Phase_PHASE_DELETING, lifecycle.ReasonNamespaceTerminating, "namespace is still terminating: finalizer x/hold")
		waitStore(t, e, st.GetId(), "DELETING saying what blocks it", func(s *storev1.Store) bool {
			return lifecycle.Reason(s.GetFailureReason()) == lifecycle.ReasonNamespaceTerminating && strings.Contains(s.GetFailureMessage(), "x/hold")
		})
		publishStatus(t, e, st.GetId(), 3, storev1.Phase_PHASE_DELETED, lifecycle.ReasonDeleted, "")
		if gone := waitPhase(t, e, st.GetId(), storev1.Phase_PHASE_DELETED); gone.GetFailureReason() != "" {
			t.Errorf("deleted store still says %s", gone.GetFailureReason())
		}
	})
}

// An event made under an older lease of the store than one already
// applied comes from a worker fenced out since (it lost its lease, and
// another took the store over): it is dropped, however late its time.
func TestStatusFromAFencedOutWorkerIsIgnored(t *testing.T) {
	each(t, func(t *testing.T, e *apiEnv) {
		ctx := e.admin()
		st, err := e.stores.CreateStore(ctx, &storev1.CreateStoreRequest{Store: &storev1.Store{DisplayName: "shop", Engine: storev1.Engine_ENGINE_WOOCOMMERCE}})
		if err != nil {
			t.Fatal(err)
		}
		id := st.GetId()
		t0 := time.Now()
		event := func(phase storev1.Phase, reason lifecycle.Reason, at time.Duration, token uint64) *eventsv1.StoreStatusChanged {
			return &eventsv1.StoreStatusChanged{StoreId: id, Phase: phase, Reason: string(reason), ObservedGeneration: 1,
				Time: timestamppb.New(t0.Add(at)), LeaseToken: token}
		}
		publishStatusEvent(t, e, event(storev1.Phase_PHASE_PROVISIONING, lifecycle.ReasonProvisioning, 0, 10))
		waitStore(t, e, id, "PROVISIONING under token 10", func(s *storev1.Store) bool {
			return s.GetPhase() == storev1.Phase_PHASE_PROVISIONING && s.GetObservedGeneration() == 1
		})
		// The fenced-out worker's READY is the latest in time: applied, it
		// would make the FAILED below look old and be kept.
		publishStatusEvent(t, e, event(storev1.Phase_PHASE_READY, lifecycle.ReasonReady, 2*time.Second, 5))
		publishStatusEvent(t, e, event(storev1.Phase_PHASE_FAILED, lifecycle.ReasonQuotaExceeded, time.Second, 10))
		failed := waitStore(t, e, id, "FAILED from the current holder", func(s *storev1.Store) bool {
			return s.GetPhase() != storev1.Phase_PHASE_PROVISIONING
		})
		if failed.GetPhase() != storev1.Phase_PHASE_FAILED {
			t.Errorf("store = %s, want FAILED: the fenced-out worker's READY was applied", failed.GetPhase())
		}
		// A later lease wins whatever its host's clock says.
		publishStatusEvent(t, e, event(storev1.Phase_PHASE_READY, lifecycle.ReasonReady, 500*time.Millisecond, 20))
		waitPhase(t, e, id, storev1.Phase_PHASE_READY)

		// A new generation starts the tokens afresh: a lease bucket whose
		// revisions restarted (recreated, restored) cannot silence a store.
		if _, err := e.stores.DeleteStore(ctx, &storev1.DeleteStoreRequest{Id: id}); err != nil {
			t.Fatal(err)
		}
		publishStatusEvent(t, e, &eventsv1.StoreStatusChanged{StoreId: id, Phase: storev1.Phase_PHASE_DELETED, Reason: string(lifecycle.ReasonDeleted),
			ObservedGeneration: 2, Time: timestamppb.Now(), LeaseToken: 3})
		waitPhase(t, e, id, storev1.Phase_PHASE_DELETED)
	})
}

// The time the store's order check last passed comes with a READY event
// of a release that ran the check, and stays through later events that
// carry none (an upgrade without a check, a failure, a retry), until a
// newer check passes.
func TestOrderCheckTimeIsKeptUntilANewerCheckPasses(t *testing.T) {
	each(t, func(t *testing.T, e *apiEnv) {
		ctx := e.admin()
		st, err := e.stores.CreateStore(ctx, &storev1.CreateStoreRequest{Store: &storev1.Store{DisplayName: "shop", Engine: storev1.Engine_ENGINE_MEDUSA}})
		if err != nil {
			t.Fatal(err)
		}
		id := st.GetId()
		if st.GetOrderCheckTime() != nil {
			t.Errorf("new store has order check time %v, want none", st.GetOrderCheckTime().AsTime())
		}
		t0 := time.Now().UTC().Truncate(time.Second)
		event := func(gen int64, phase storev1.Phase, reason lifecycle.Reason, at time.Duration, checked time.Time) *eventsv1.StoreStatusChanged {
			ev := &eventsv1.StoreStatusChanged{StoreId: id, Phase: phase, Reason: string(reason), ObservedGeneration: gen,
				Time: timestamppb.New(t0.Add(at))}
			if !checked.IsZero() {
				ev.OrderCheckTime = timestamppb.New(checked)
			}
			return ev
		}
		checkedAt := func(s *storev1.Store) time.Time {
			if s.GetOrderCheckTime() == nil {
				return time.Time{}
			}
			return s.GetOrderCheckTime().AsTime()
		}
		first := t0.Add(-30 * time.Second)
		publishStatusEvent(t, e, event(1, storev1.Phase_PHASE_PROVISIONING, lifecycle.ReasonProvisioning, 0, time.Time{}))
		publishStatusEvent(t, e, event(1, storev1.Phase_PHASE_READY, lifecycle.ReasonReady, time.Second, first))
		ready := waitStore(t, e, id, "READY with its order check", func(s *storev1.Store) bool { return s.GetPhase() == storev1.Phase_PHASE_READY })
		if got := checkedAt(ready); !got.Equal(first) {
			t.Errorf("order check time after the checked install = %v, want %v", got, first)
		}

		// An upgrade whose release runs no check, then one that fails.
		if _, err := e.stores.UpgradeStore(ctx, &storev1.UpgradeStoreRequest{Id: id}); err != nil {
			t.Fatal(err)
		}
		publishStatusEvent(t, e, event(2, storev1.Phase_PHASE_PROVISIONING, lifecycle.ReasonProvisioning, 2*time.Second, time.Time{}))
		publishStatusEvent(t, e, event(2, storev1.Phase_PHASE_READY, lifecycle.ReasonReady, 3*time.Second, time.Time{}))
		upgraded := waitStore(t, e, id, "READY at generation 2", func(s *storev1.Store) bool {
			return s.GetPhase() == storev1.Phase_PHASE_READY && s.GetObservedGeneration() == 2
		})
		if got := checkedAt(upgraded); !got.Equal(first) {
			t.Errorf("order check time after an upgrade without a check = %v, want the first check's %v", got, first)
		}
		// A later upgrade whose check passed says so.
		if _, err := e.stores.UpgradeStore(ctx, &storev1.UpgradeStoreRequest{Id: id}); err != nil {
			t.Fatal(err)
		}
		second := t0.Add(4 * time.Second)
		publishStatusEvent(t, e, event(3, storev1.Phase_PHASE_PROVISIONING, lifecycle.ReasonProvisioning, 4*time.Second, time.Time{}))
		publishStatusEvent(t, e, event(3, storev1.Phase_PHASE_READY, lifecycle.ReasonReady, 5*time.Second, second))
		checked := waitStore(t, e, id, "READY at generation 3", func(s *storev1.Store) bool {
			return s.GetPhase() == storev1.Phase_PHASE_READY && s.GetObservedGeneration() == 3
		})
		if got := checkedAt(checked); !got.Equal(second) {
			t.Errorf("order check time after a checked upgrade = %v, want %v", got, second)
		}
	})
}

func TestRequestAcceptedWhileNATSIsDownIsQueuedWhenItReturns(t *testing.T) {
	databasetest.Each(t, func(t *testing.T, dbURL string) {
		nats := bustest.Embedded(t)
		e := startAPI(t, dbURL, nats)
		nats.Stop(t)
		st, err := e.stores.CreateStore(e.admin(), &storev1.CreateStoreRequest{Store: &storev1.Store{DisplayName: "offline", Engine: storev1.Engine_ENGINE_MEDUSA}})
		if err != nil {
			t.Fatalf("CreateStore while NATS is down: %v", err)
		}
		// Ready all the same: it takes requests, which wait in the outbox.
		if code, body := servetest.Get(t, "http://"+e.metricsAddr+"/readyz"); code != http.StatusOK || body != "database: ok\n" {
			t.Errorf("/readyz while NATS is down = %d %q, want 200 with the database check only", code, body)
		}
		if code, body := servetest.Get(t, "http://"+e.metricsAddr+"/metrics"); code != http.StatusOK ||
			!strings.Contains(body, `storeprov_grpc_handled_total{code="OK",method="/storeprov.store.v1.StoreService/CreateStore",service="api"} 1`) {
			t.Errorf("/metrics = %d, lacks the CreateStore call:\n%s", code, body)
		}
		nats.Restart(t)
		var cmd eventsv1.ProvisionCommand
		nextMessage(t, nats, nats.Topology.CommandsStream(), nats.Topology.CommandSubject(st.GetId()), &cmd)
		if cmd.GetStoreId() != st.GetId() {
			t.Errorf("command for %s, want %s", cmd.GetStoreId(), st.GetId())
		}
	})
}

func TestListStoresPagesAndFilters(t *testing.T) {
	each(t, func(t *testing.T, e *apiEnv) {
		tok, err := e.users.CreateToken(e.admin(), &storev1.CreateTokenRequest{User: "carol", StoreQuota: 20})
		if err != nil {
			t.Fatal(err)
		}
		ctx := e.as(tok.GetToken())
		for range 7 {
			if _, err := e.stores.CreateStore(ctx, &storev1.CreateStoreRequest{Store: &storev1.Store{DisplayName: "s", Engine: storev1.Engine_ENGINE_MEDUSA}}); err != nil {
				t.Fatal(err)
			}
		}
		seen := map[string]bool{}
		token := ""
		pages := 0
		for {
			page, err := e.stores.ListStores(ctx, &storev1.ListStoresRequest{PageSize: 3, PageToken: token})
			if err != nil {
				t.Fatal(err)
			}
			pages++
			for _, st := range page.GetStores() {
				if seen[st.GetId()] {
					t.Errorf("store %s listed twice", st.GetId())
				}
				seen[st.GetId()] = true
			}
			if token = page.GetNextPageToken(); token == "" {
				break
			}
		}
		if len(seen) != 7 || pages != 3 {
			t.Errorf("paged through %d stores in %d pages, want 7 in 3", len(seen), pages)
		}
		ready, err := e.stores.ListStores(ctx, &storev1.ListStoresRequest{Phase: storev1.Phase_PHASE_READY})
		if err != nil || len(ready.GetStores()) != 0 {
			t.Errorf("READY filter = %v, %v; want none", ready.GetStores(), err)
		}
	})
}

func publishStatus(t *testing.T, e *apiEnv, id string, gen int64, phase storev1.Phase, reason lifecycle.Reason, message string) {
	t.Helper()
	publishStatusEvent(t, e, &eventsv1.StoreStatusChanged{
		StoreId: id, Phase: phase, Reason: string(reason), Message: message, ObservedGeneration: gen,
		Time: timestamppb.Now(), Url: "http://store-" + id + ".127.0.0.1.nip.io",
	})
}

// publishStatusEvent publishes ev as the orchestrator would.
func publishStatusEvent(t *testing.T, e *apiEnv, ev *eventsv1.StoreStatusChanged) {
	t.Helper()
	id, gen, phase, reason := ev.GetStoreId(), ev.GetObservedGeneration(), ev.GetPhase(), lifecycle.Reason(ev.GetReason())
	msgID := lifecycle.AttemptID(lifecycle.StatusEventID(id, gen, phase, reason), ev.GetLeaseToken())
	if err := bus.Publish(context.Background(), e.bus.JS, e.bus.Topology.StatusSubject(id), msgID, ev); err != nil {
		t.Fatal(err)
	}
}

func waitPhase(t *testing.T, e *apiEnv, id string, phase storev1.Phase) *storev1.Store {
	t.Helper()
	return waitStore(t, e, id, phase.String(), func(st *storev1.Store) bool { return st.GetPhase() == phase })
}

// waitStore reads the store until ok says it is as awaited (as want
// says), or fails after a while.
func waitStore(t *testing.T, e *apiEnv, id, want string, ok func(*storev1.Store) bool) *storev1.Store {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		st, err := e.stores.GetStore(e.admin(), &storev1.GetStoreRequest{Id: id})
		if err == nil && ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("store %s did not reach %s: %v, %v", id, want, st, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// nextMessage waits for the last message on subject in stream and decodes
// it. It reads the stream directly, leaving consumers alone.
func nextMessage(t *testing.T, nats *bustest.Env, stream, subject string, into proto.Message) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s, err := nats.JS.Stream(ctx, stream)
		if err == nil {
			var raw *jetstream.RawStreamMsg
			if raw, err = s.GetLastMsgForSubject(ctx, subject); err == nil {
				if err := proto.Unmarshal(raw.Data, into); err != nil {
					t.Fatal(err)
				}
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no message on %s in %s: %v", subject, stream, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestUpgradeStoreQueuesANewGenerationOfAReadyStore(t *testing.T) {
	each(t, func(t *testing.T, e *apiEnv) {
		ctx := e.admin()
		st, err := e.stores.CreateStore(ctx, &storev1.CreateStoreRequest{Store: &storev1.Store{DisplayName: "shop", Engine: storev1.Engine_ENGINE_WOOCOMMERCE}})
		if err != nil {
			t.Fatal(err)
		}
		id := st.GetId()
		upgrade := func(version string, values map[string]string) (*storev1.Store, error) {
			return e.stores.UpgradeStore(ctx, &storev1.UpgradeStoreRequest{Id: id, ChartVersion: version, Values: values})
		}
		if _, err := upgrade("", nil); status.Code(err) != codes.FailedPrecondition {
			t.Errorf("upgrading a PROVISIONING store = %v, want FailedPrecondition", err)
		}
		publishStatus(t, e, id, 1, storev1.Phase_PHASE_READY, lifecycle.ReasonReady, "")
		waitPhase(t, e, id, storev1.Phase_PHASE_READY)

		refused := []struct {
			name     string
			version  string
			values   map[string]string
			contains string
		}{
			{"image", "", map[string]string{"wordpress.image.repository": "evil/miner"},
				`values["wordpress.image.repository"]: is not a value a tenant may set; allowed: mariadb.resources.limits.cpu, `},
			{"platform key", "", map[string]string{"existingSecret.database": "other"}, `values["existingSecret.database"]: is not a value a tenant may set`},
			{"other engine's key", "", map[string]string{"medusa.replicas": "2"}, `values["medusa.replicas"]: is not a value a tenant may set`},
			{"credential", "", map[string]string{"mariadb.rootPassword": "hunter2"}, `values["mariadb.rootPassword"]: is not a value a tenant may set`},
			{"beyond the chart's bound", "", map[string]string{"wordpress.replicas": "4"}, `values["wordpress.replicas"]: must be at most 3`},
			{"not a path", "", map[string]string{"wordpress..replicas": "x"}, "dotted path"},
			{"not a version", "latest", nil, "chart_version"},
		}
		for _, tt := range refused {
			if _, err := upgrade(tt.version, tt.values); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tt.contains) {
				t.Errorf("%s: UpgradeStore = %v, want InvalidArgument containing %q", tt.name, err, tt.contains)
			}
		}
		if got, _ := e.stores.GetStore(ctx, &storev1.GetStoreRequest{Id: id}); got.GetGeneration() != 1 {
			t.Errorf("refused upgrades changed the store: generation %d", got.GetGeneration())
		}

		values := map[string]string{"wordpress.replicas": "2", "wordpress.resources.limits.memory": "1Gi"}
		up, err := upgrade("0.1.0", values)
		if err != nil || up.GetPhase() != storev1.Phase_PHASE_PROVISIONING || up.GetGeneration() != 2 {
			t.Fatalf("UpgradeStore = %v, %v; want PROVISIONING generation 2", up, err)
		}
		var cmd eventsv1.ProvisionCommand
		waitMessage(t, e.bus, e.bus.Topology.CommandsStream(), e.bus.Topology.CommandSubject(id), &cmd, func() bool { return cmd.GetGeneration() == 2 })
		if cmd.GetGeneration() != 2 || cmd.GetAction() != eventsv1.Action_ACTION_PROVISION || cmd.GetSpec().GetChartVersion() != "0.1.0" ||
			len(cmd.GetSpec().GetValues()) != 2 || cmd.GetSpec().GetValues()["wordpress.replicas"] != "2" {
			t.Errorf("upgrade command = %v", &cmd)
		}
		var audit eventsv1.AuditEvent
		waitMessage(t, e.bus, e.bus.Topology.EventsStream(), e.bus.Topology.AuditSubject(bus.RoleAPI, id), &audit,
			func() bool { return audit.GetEntry().GetAction() == lifecycle.ActionUpgrade })
		if a := audit.GetEntry(); a.GetAction() != lifecycle.ActionUpgrade || a.GetActor() != "admin" || !strings.Contains(a.GetDetail(), "wordpress.replicas=2") {
			t.Errorf("upgrade audit = %v", a)
		}

		// Rolled back: READY on the old revision, the failure recorded.
		publishStatus(t, e, id, 2, storev1.Phase_PHASE_READY, lifecycle.ReasonUpgradeRolledBack, "did not become ready: QuotaExceeded")
		kept := waitPhase(t, e, id, storev1.Phase_PHASE_READY)
		if kept.GetObservedGeneration() != 2 || lifecycle.Reason(kept.GetFailureReason()) != lifecycle.ReasonUpgradeRolledBack || kept.GetFailureMessage() == "" {
			t.Errorf("store after a rolled-back upgrade = %v", kept)
		}
		// Refused by the tenant policy of the chart version the orchestrator
		// installs: READY on the old revision as well, the refusal recorded.
		publishStatus(t, e, id, 2, storev1.Phase_PHASE_READY, lifecycle.ReasonValuesRefused, `values["wordpress.replicas"]: must be at most 1`)
		keptRefused := waitStore(t, e, id, "failure reason "+string(lifecycle.ReasonValuesRefused),
			func(st *storev1.Store) bool {
				return lifecycle.Reason(st.GetFailureReason()) == lifecycle.ReasonValuesRefused
			})
		if keptRefused.GetPhase() != storev1.Phase_PHASE_READY || !strings.Contains(keptRefused.GetFailureMessage(), `values["wordpress.replicas"]`) {
			t.Errorf("store after an upgrade whose values were refused = %v", keptRefused)
		}

		// An upgrade that FAILED may be upgraded again; a retry resends its spec.
		if _, err := upgrade("", values); err != nil {
			t.Fatal(err)
		}
		publishStatus(t, e, id, 3, storev1.Phase_PHASE_FAILED, lifecycle.ReasonTimeout, "rollback did not become ready")
		waitPhase(t, e, id, storev1.Phase_PHASE_FAILED)
		if _, err := e.stores.RetryStore(ctx, &storev1.RetryStoreRequest{Id: id}); err != nil {
			t.Fatal(err)
		}
		waitMessage(t, e.bus, e.bus.Topology.CommandsStream(), e.bus.Topology.CommandSubject(id), &cmd, func() bool { return cmd.GetGeneration() == 4 })
		if cmd.GetGeneration() != 4 || cmd.GetSpec().GetValues()["wordpress.resources.limits.memory"] != "1Gi" {
			t.Errorf("retry command after a failed upgrade = %v, want the upgrade's values", &cmd)
		}
		publishStatus(t, e, id, 4, storev1.Phase_PHASE_FAILED, lifecycle.ReasonTimeout, "again")
		waitPhase(t, e, id, storev1.Phase_PHASE_FAILED)
		if _, err := upgrade("", nil); status.Code(err) != codes.FailedPrecondition {
			t.Errorf("upgrading a store whose retry FAILED = %v, want FailedPrecondition (retry it)", err)
		}
	})
}

// waitMessage reads the last message on subject until ok says it is the
// one awaited, or fails after a while.
func waitMessage(t *testing.T, nats *bustest.Env, stream, subject string, into proto.Message, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		nextMessage(t, nats, stream, subject, into)
		if ok() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("last message on %s is still %v", subject, into)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Concurrent creates of one user through two api replicas never pass the
// user's quota together: the quota check locks the user's row.
func TestConcurrentCreatesThroughTwoReplicasHoldTheQuota(t *testing.T) {
	bustest.Each(t, func(t *testing.T, nats *bustest.Env) {
		databasetest.Each(t, func(t *testing.T, dbURL string) {
			unlimited := func(o *app.Options) { o.RateLimit = 0 }
			a := startAPI(t, dbURL, nats, unlimited)
			b := startAPI(t, dbURL, nats, unlimited)
			tok, err := a.users.CreateToken(a.admin(), &storev1.CreateTokenRequest{User: "carol", StoreQuota: 3})
			if err != nil {
				t.Fatal(err)
			}
			const attempts = 50
			var (
				wg               sync.WaitGroup
				created, refused atomic.Int32
				mu               sync.Mutex
				unexpected       []error
			)
			for i := range attempts {
				replica := []*apiEnv{a, b}[i%2]
				wg.Go(func() {
					_, err := replica.stores.CreateStore(replica.as(tok.GetToken()), &storev1.CreateStoreRequest{
						Store: &storev1.Store{DisplayName: fmt.Sprintf("shop %d", i), Engine: storev1.Engine_ENGINE_WOOCOMMERCE}})
					switch {
					case err == nil:
						created.Add(1)
					case status.Code(err) == codes.ResourceExhausted && strings.Contains(err.Error(), "of 3 stores"):
						refused.Add(1)
					default:
						mu.Lock()
						unexpected = append(unexpected, err)
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			if len(unexpected) > 0 {
				t.Errorf("%d creates failed otherwise than on the quota, first: %v", len(unexpected), unexpected[0])
			}
			if created.Load() != 3 || refused.Load() != attempts-3 {
				t.Errorf("%d creates succeeded and %d were refused for the quota; want exactly 3 and %d", created.Load(), refused.Load(), attempts-3)
			}
			list, err := a.stores.ListStores(a.as(tok.GetToken()), &storev1.ListStoresRequest{})
			if err != nil || len(list.GetStores()) != 3 {
				t.Errorf("carol has %d stores (%v), want 3", len(list.GetStores()), err)
			}
		})
	})
}

// A create retried with the same request id returns the store the first
// one created; the same id for another store is refused.
func TestCreateWithARequestIDIsIdempotent(t *testing.T) {
	each(t, func(t *testing.T, e *apiEnv) {
		ctx := e.admin()
		req := func(name, id string) *storev1.CreateStoreRequest {
			return &storev1.CreateStoreRequest{RequestId: id, Store: &storev1.Store{DisplayName: name, Engine: storev1.Engine_ENGINE_MEDUSA}}
		}
		first, err := e.stores.CreateStore(ctx, req("shop", "8d1c0b3e-retry"))
		if err != nil {
			t.Fatal(err)
		}
		again, err := e.stores.CreateStore(ctx, req("shop", "8d1c0b3e-retry"))
		if err != nil || again.GetId() != first.GetId() || again.GetGeneration() != 1 {
			t.Errorf("retried create = %v, %v; want store %s again", again, err, first.GetId())
		}
		if _, err := e.stores.CreateStore(ctx, req("other shop", "8d1c0b3e-retry")); status.Code(err) != codes.AlreadyExists || !strings.Contains(err.Error(), first.GetId()) {
			t.Errorf("another store with the same request id = %v, want AlreadyExists naming %s", err, first.GetId())
		}
		other, err := e.stores.CreateStore(ctx, req("shop", "another-id"))
		if err != nil || other.GetId() == first.GetId() {
			t.Errorf("create with a new request id = %v, %v; want a second store", other, err)
		}
		for _, bad := range []string{"has space", strings.Repeat("x", 129), "é"} {
			if _, err := e.stores.CreateStore(ctx, req("shop", bad)); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "request_id") {
				t.Errorf("request id %q = %v, want InvalidArgument naming request_id", bad, err)
			}
		}
		list, err := e.stores.ListStores(ctx, &storev1.ListStoresRequest{})
		if err != nil || len(list.GetStores()) != 2 {
			t.Errorf("stores after the retries = %d (%v), want 2", len(list.GetStores()), err)
		}
	})
}
