package app_test

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/storeprov/storeprov/gen/storeprov/audit/v1"
	eventsv1 "github.com/storeprov/storeprov/gen/storeprov/events/v1"
	storev1 "github.com/storeprov/storeprov/gen/storeprov/store/v1"
	"github.com/storeprov/storeprov/pkg/bus"
	"github.com/storeprov/storeprov/pkg/bus/bustest"
	"github.com/storeprov/storeprov/pkg/database/databasetest"
	"github.com/storeprov/storeprov/pkg/lifecycle"
	"github.com/storeprov/storeprov/pkg/serve"
	"github.com/storeprov/storeprov/pkg/serve/servetest"
	"github.com/storeprov/storeprov/services/audit/internal/app"
	"github.com/storeprov/storeprov/services/audit/internal/store"
)

// ignoreChain leaves out the fields the hash chain adds to a listed entry.
var ignoreChain = protocmp.IgnoreFields(&auditv1.AuditEntry{}, "sequence", "hash")

// api is the api's UserService as far as the audit service uses it.
type api struct {
	storev1.UnimplementedUserServiceServer
}

func (api) GetCurrentUser(ctx context.Context, _ *storev1.GetCurrentUserRequest) (*storev1.User, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("authorization"); len(v) == 1 && v[0] == "Bearer alice-token" {
		return &storev1.User{Name: "alice"}, nil
	}
	return nil, status.Error(codes.Unauthenticated, "invalid API token")
}

// serveAPI runs the fake api on a loopback port and returns its address.
func serveAPI(t *testing.T) string {
	t.Helper()
	s := grpc.NewServer()
	storev1.RegisterUserServiceServer(s, api{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(lis) }() // returns once the test stops the server
	t.Cleanup(s.Stop)
	return lis.Addr().String()
}

// start runs the service with opts and returns its addresses; the test
// fails unless it stops cleanly when the test ends.
func start(t *testing.T, opts app.Options) app.Addrs {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan app.Addrs, 1)
	opts.OnReady = func(a app.Addrs) { ready <- a }
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx, opts) }()
	var addrs app.Addrs
	select {
	case addrs = <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("Run ended before it was ready: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("not ready within 30s")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v after cancel, want nil", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("Run did not return within 15s of cancel")
		}
		if conn, err := net.DialTimeout("tcp", addrs.GRPC, time.Second); err == nil {
			conn.Close()
			t.Errorf("gRPC address %s still accepts connections after shutdown", addrs.GRPC)
		}
	})
	return addrs
}

func TestServiceRecordsPublishedEventsAndServesThem(t *testing.T) {
	databasetest.Each(t, func(t *testing.T, url string) {
		env := bustest.Embedded(t)
		opts := app.Defaults()
		opts.DatabaseURL, opts.NATSURL, opts.BusPrefix = url, env.URL, env.Topology.Prefix
		opts.NATS = env.Credentials(bus.RoleAudit)
		opts.GRPCAddr, opts.MetricsAddr, opts.APIAddr = "127.0.0.1:0", "127.0.0.1:0", serveAPI(t)
		addrs := start(t, opts)
		if strings.HasSuffix(addrs.GRPC, ":0") || strings.HasSuffix(addrs.Metrics, ":0") {
			t.Fatalf("addresses %+v are not the bound ones", addrs)
		}

		mine := &auditv1.AuditEntry{Id: "e1", Action: lifecycle.ActionCreate, Actor: "alice", StoreId: "s1", StoreOwner: "alice", Time: timestamppb.New(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))}
		theirs := &auditv1.AuditEntry{Id: "e2", Action: lifecycle.ActionReady, Actor: lifecycle.SystemActor, StoreId: "s2", StoreOwner: "bob", Time: timestamppb.New(time.Date(2026, 3, 1, 12, 1, 0, 0, time.UTC))}
		for _, e := range []*auditv1.AuditEntry{mine, theirs} {
			if err := bus.Publish(context.Background(), env.JS, env.Topology.AuditSubject(bus.RoleAPI, e.StoreId), e.Id, &eventsv1.AuditEvent{Entry: e}); err != nil {
				t.Fatal(err)
			}
		}

		conn, err := grpc.NewClient(addrs.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		client := auditv1.NewAuditServiceClient(conn)
		alice := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer alice-token")
		deadline := time.Now().Add(15 * time.Second)
		var got []*auditv1.AuditEntry
		for {
			resp, err := client.ListAuditEntries(alice, &auditv1.ListAuditEntriesRequest{})
			if err != nil {
				t.Fatal(err)
			}
			got = resp.Entries
			if len(got) > 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if diff := cmp.Diff([]*auditv1.AuditEntry{mine}, got, protocmp.Transform(), ignoreChain); diff != "" {
			t.Errorf("alice's entries (-want +got):\n%s", diff)
		}

		_, err = client.ListAuditEntries(context.Background(), &auditv1.ListAuditEntriesRequest{})
		if code := status.Code(err); code != codes.Unauthenticated {
			t.Errorf("without a token: %v, want Unauthenticated", err)
		}
		health, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{Service: auditv1.AuditService_ServiceDesc.ServiceName})
		if err != nil || health.Status != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health = %v, %v; want SERVING", health, err)
		}

		if code, body := servetest.Get(t, "http://"+addrs.Metrics+"/healthz"); code != http.StatusOK {
			t.Errorf("/healthz = %d %q, want 200", code, body)
		}
		if code, body := servetest.Get(t, "http://"+addrs.Metrics+"/readyz"); code != http.StatusOK || body != "database: ok\n" {
			t.Errorf("/readyz = %d %q, want 200 with the database check", code, body)
		}
		// Both events are recorded once alice's is; theirs may trail.
		servetest.WaitForMetrics(t, "http://"+addrs.Metrics+"/metrics",
			`storeprov_audit_events_total{outcome="recorded"} 2`,
			`storeprov_grpc_handled_total{code="Unauthenticated",method="/storeprov.audit.v1.AuditService/ListAuditEntries",service="audit"} 1`,
		)
	})
}

func TestServiceServesWhileNATSIsDownAndRecordsOnceItIsBack(t *testing.T) {
	env := bustest.Embedded(t)
	// The service creates the events stream once NATS is back.
	if err := env.JS.DeleteStream(context.Background(), env.Topology.EventsStream()); err != nil {
		t.Fatal(err)
	}
	env.Stop(t)
	opts := app.Defaults()
	opts.DatabaseURL, opts.NATSURL, opts.BusPrefix = databasetest.SQLite(t), env.URL, env.Topology.Prefix
	opts.NATS = env.Credentials(bus.RoleAudit)
	opts.GRPCAddr, opts.MetricsAddr, opts.APIAddr = "127.0.0.1:0", "", serveAPI(t)
	addrs := start(t, opts)
	if addrs.Metrics != "" {
		t.Errorf("metrics address = %q, want none when disabled", addrs.Metrics)
	}
	conn, err := grpc.NewClient(addrs.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	alice := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer alice-token")
	client := auditv1.NewAuditServiceClient(conn)
	if _, err := client.ListAuditEntries(alice, &auditv1.ListAuditEntriesRequest{}); err != nil {
		t.Errorf("query while NATS is down: %v", err)
	}

	env.Restart(t)
	topology := env.Topology
	e := &auditv1.AuditEntry{Id: "late", Action: lifecycle.ActionCreate, Actor: "alice", StoreId: "s1", StoreOwner: "alice", Time: timestamppb.Now()}
	deadline := time.Now().Add(20 * time.Second)
	for {
		// Fails until the test reconnects and the service created the stream.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := bus.Publish(ctx, env.JS, topology.AuditSubject(bus.RoleAPI, "s1"), e.Id, &eventsv1.AuditEvent{Entry: e})
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cannot publish after NATS came back: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for {
		resp, err := client.ListAuditEntries(alice, &auditv1.ListAuditEntriesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Entries) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the event published after NATS came back was not recorded")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestRetentionDeletesOldEntriesAndTheRestVerifies(t *testing.T) {
	ctx := context.Background()
	url := databasetest.SQLite(t)
	log, err := store.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for i, age := range []time.Duration{72 * time.Hour, 49 * time.Hour, 48 * time.Hour, time.Hour, 0} {
		log.SetClock(func() time.Time { return now.Add(-age) })
		e := &auditv1.AuditEntry{Id: fmt.Sprintf("e%d", i+1), StoreId: "s1", Action: "create", Time: timestamppb.New(now)}
		if _, err := log.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	log.Close()

	o := app.Defaults()
	o.DatabaseURL, o.GRPCAddr, o.MetricsAddr, o.APIAddr = url, "127.0.0.1:0", "", serveAPI(t)
	o.NATSURL = "nats://127.0.0.1:1" // retention needs no NATS
	o.Retention, o.RetentionInterval = 24*time.Hour, 50*time.Millisecond
	start(t, o)

	log, err = store.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := log.Verify(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetCheckpointSequence() == 3 {
			if !resp.GetIntact() || resp.GetCheckedEntries() != 2 || resp.GetHeadSequence() != 5 {
				t.Errorf("verify after retention = %v, want intact with entries 4 and 5 after checkpoint 3", resp)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("retention did not delete the 3 entries older than 24h within 15s: %v", resp)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestRunRefusesUnusableOptions(t *testing.T) {
	valid := func() app.Options {
		o := app.Defaults()
		o.DatabaseURL, o.GRPCAddr, o.MetricsAddr = databasetest.SQLite(t), "127.0.0.1:0", ""
		return o
	}
	tests := []struct {
		name    string
		change  func(o *app.Options)
		wantErr string
	}{
		{name: "unsupported database", change: func(o *app.Options) { o.DatabaseURL = "mysql://db" }, wantErr: "sqlite:// or postgres://"},
		{name: "no grpc address", change: func(o *app.Options) { o.GRPCAddr = "" }, wantErr: "--grpc-addr"},
		{name: "no way to authenticate", change: func(o *app.Options) { o.APIAddr = "" }, wantErr: "--api-addr"},
		{name: "invalid listen address", change: func(o *app.Options) { o.GRPCAddr = "127.0.0.1:notaport" }, wantErr: "cannot listen for gRPC"},
		{name: "negative retention", change: func(o *app.Options) { o.Retention = -time.Hour }, wantErr: "--audit-retention -1h0m0s is negative: use 0 to keep entries forever"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := valid()
			tt.change(&o)
			o.OnReady = func(app.Addrs) { t.Error("ready with unusable options") }
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := app.Run(ctx, o)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Run = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestFlagsSetOptions(t *testing.T) {
	passwordFile := filepath.Join(t.TempDir(), "nats-password")
	if err := os.WriteFile(passwordFile, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	withPassword := func(o app.Options, password string) app.Options { o.NATS.Password = password; return o }
	tests := []struct {
		name string
		args []string
		// env is $STOREPROV_NATS_PASSWORD.
		env  string
		want app.Options
	}{
		{name: "defaults", args: nil, want: app.Defaults()},
		{name: "password from the environment", env: "from-env", want: withPassword(app.Defaults(), "from-env")},
		{
			name: "every flag",
			args: []string{
				"--database-url", "postgres://audit@db/audit", "--nats-url", "nats://nats:4222", "--bus-prefix", "prod",
				"--bus-replicas", "3", "--grpc-addr", ":1", "--metrics-addr", "", "--api-addr", "api:9090", "--concurrency", "4",
				"--audit-retention", "2160h", "--nats-user", "audit-prod", "--nats-password-file", passwordFile,
				"--log-level", "debug", "--shutdown-grace", "20s",
			},
			env: "from-env",
			want: app.Options{
				DatabaseURL: "postgres://audit@db/audit", NATSURL: "nats://nats:4222", BusPrefix: "prod", BusReplicas: 3,
				GRPCAddr: ":1", MetricsAddr: "", APIAddr: "api:9090", Concurrency: 4, Retention: 2160 * time.Hour,
				NATS:    bus.Credentials{User: "audit-prod", Password: "from-file"},
				Options: serve.Options{LogLevel: slog.LevelDebug, ShutdownGrace: 20 * time.Second},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(bus.PasswordEnv, tt.env)
			var got app.Options
			fs := flag.NewFlagSet("audit", flag.ContinueOnError)
			got.BindFlags(fs)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, cmp.FilterPath(func(p cmp.Path) bool {
				return strings.Contains(p.String(), "OnReady") || strings.Contains(p.String(), "Logger") || strings.Contains(p.String(), "Authenticator")
			}, cmp.Ignore())); diff != "" {
				t.Errorf("options (-want +got):\n%s", diff)
			}
		})
	}
}
