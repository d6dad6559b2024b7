package server_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/storeprov/storeprov/gen/storeprov/audit/v1"
	"github.com/storeprov/storeprov/pkg/auth"
	"github.com/storeprov/storeprov/pkg/database/databasetest"
	"github.com/storeprov/storeprov/pkg/rpc"
	"github.com/storeprov/storeprov/services/audit/internal/server"
	"github.com/storeprov/storeprov/services/audit/internal/store"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// users are the tokens the test authenticator knows.
var users = map[string]auth.Principal{
	"admin-token": {Name: "root", Admin: true},
	"alice-token": {Name: "alice"},
	"bob-token":   {Name: "bob"},
	"nobody":      {},
}

// start serves the audit log at url on a loopback port and returns a
// client of it.
func start(t *testing.T, url string) (auditv1.AuditServiceClient, *store.Store) {
	t.Helper()
	log, err := store.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	srv := rpc.NewServer(rpc.Options{
		Service:  "audit",
		Registry: prometheus.NewRegistry(),
		Auth: auth.AuthenticatorFunc(func(_ context.Context, token string) (auth.Principal, error) {
			if p, ok := users[token]; ok {
				return p, nil
			}
			return auth.Principal{}, auth.ErrUnauthenticated
		}),
	})
	auditv1.RegisterAuditServiceServer(srv, server.New(log, nil))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }() // returns once the test stops the server
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return auditv1.NewAuditServiceClient(conn), log
}

func as(token string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token)
}

// seed records n entries a minute apart, alternating between alice's
// store s-alice and bob's store s-bob, and returns their ids in order.
func seed(t *testing.T, log *store.Store, n int) []string {
	t.Helper()
	var ids []string
	for i := range n {
		owner := []string{"alice", "bob"}[i%2]
		e := &auditv1.AuditEntry{
			Id: fmt.Sprintf("e%02d", i), StoreId: "s-" + owner, StoreOwner: owner, Actor: owner,
			Action: []string{"create", "ready", "delete"}[i%3], Time: timestamppb.New(t0.Add(time.Duration(i) * time.Minute)),
		}
		if _, err := log.Append(context.Background(), e); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, e.Id)
	}
	return ids
}

// listAll pages through req with the given token and returns the ids and
// the size of every page.
func listAll(t *testing.T, c auditv1.AuditServiceClient, token string, req *auditv1.ListAuditEntriesRequest) (ids []string, sizes []int) {
	t.Helper()
	for {
		resp, err := c.ListAuditEntries(as(token), req)
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, len(resp.Entries))
		for _, e := range resp.Entries {
			ids = append(ids, e.Id)
		}
		if resp.NextPageToken == "" {
			return ids, sizes
		}
		req.PageToken = resp.NextPageToken
		if len(sizes) > 100 {
			t.Fatal("paging does not end")
		}
	}
}

func TestListPagesThroughEveryEntryOldestFirst(t *testing.T) {
	databasetest.Each(t, func(t *testing.T, url string) {
		c, log := start(t, url)
		want := seed(t, log, 25)
		ids, sizes := listAll(t, c, "admin-token", &auditv1.ListAuditEntriesRequest{PageSize: 10})
		if diff := cmp.Diff(want, ids); diff != "" {
			t.Errorf("ids (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]int{10, 10, 5}, sizes); diff != "" {
			t.Errorf("page sizes (-want +got):\n%s", diff)
		}
	})
}

func TestListFilters(t *testing.T) {
	databasetest.Each(t, func(t *testing.T, url string) {
		c, log := start(t, url)
		all := seed(t, log, 25)
		pick := func(keep func(i int) bool) []string {
			var ids []string
			for i, id := range all {
				if keep(i) {
					ids = append(ids, id)
				}
			}
			return ids
		}
		tests := []struct {
			name string
			req  *auditv1.ListAuditEntriesRequest
			want []string
		}{
			{name: "store", req: &auditv1.ListAuditEntriesRequest{StoreId: "s-bob"}, want: pick(func(i int) bool { return i%2 == 1 })},
			{name: "actor", req: &auditv1.ListAuditEntriesRequest{Actor: "alice"}, want: pick(func(i int) bool { return i%2 == 0 })},
			{name: "action", req: &auditv1.ListAuditEntriesRequest{Action: "ready"}, want: pick(func(i int) bool { return i%3 == 1 })},
			{name: "store and action", req: &auditv1.ListAuditEntriesRequest{StoreId: "s-alice", Action: "create"}, want: pick(func(i int) bool { return i%2 == 0 && i%3 == 0 })},
			{
				name: "start is inclusive, end exclusive",
				req:  &auditv1.ListAuditEntriesRequest{StartTime: timestamppb.New(t0.Add(5 * time.Minute)), EndTime: timestamppb.New(t0.Add(9 * time.Minute))},
				want: all[5:9],
			},
			{name: "start only", req: &auditv1.ListAuditEntriesRequest{StartTime: timestamppb.New(t0.Add(20 * time.Minute))}, want: all[20:]},
			{name: "end only", req: &auditv1.ListAuditEntriesRequest{EndTime: timestamppb.New(t0.Add(3 * time.Minute))}, want: all[:3]},
			{name: "empty range", req: &auditv1.ListAuditEntriesRequest{StartTime: timestamppb.New(t0), EndTime: timestamppb.New(t0)}, want: nil},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				tt.req.PageSize = 4
				got, _ := listAll(t, c, "admin-token", tt.req)
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("ids (-want +got):\n%s", diff)
				}
			})
		}
	})
}

func TestUsersWhoAreNotAdminsSeeOnlyTheirOwnStores(t *testing.T) {
	databasetest.Each(t, func(t *testing.T, url string) {
		c, log := start(t, url)
		all := seed(t, log, 10)
		tests := []struct {
			name  string
			token string
			req   *auditv1.ListAuditEntriesRequest
			want  []string
		}{
			{name: "admin sees everything", token: "admin-token", req: &auditv1.ListAuditEntriesRequest{}, want: all},
			{name: "alice sees her store", token: "alice-token", req: &auditv1.ListAuditEntriesRequest{}, want: []string{"e00", "e02", "e04", "e06", "e08"}},
			{name: "bob sees his store", token: "bob-token", req: &auditv1.ListAuditEntriesRequest{}, want: []string{"e01", "e03", "e05", "e07", "e09"}},
			{name: "alice cannot ask for bob's store", token: "alice-token", req: &auditv1.ListAuditEntriesRequest{StoreId: "s-bob"}, want: nil},
			{name: "alice cannot ask for bob's actions", token: "alice-token", req: &auditv1.ListAuditEntriesRequest{Actor: "bob"}, want: nil},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				tt.req.PageSize = 3
				got, _ := listAll(t, c, tt.token, tt.req)
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("ids (-want +got):\n%s", diff)
				}
			})
		}
	})
}

func TestAUserWithoutNameIsDenied(t *testing.T) {
	c, log := start(t, databasetest.SQLite(t))
	seed(t, log, 2)
	_, err := c.ListAuditEntries(as("nobody"), &auditv1.ListAuditEntriesRequest{})
	if code := status.Code(err); code != codes.PermissionDenied {
		t.Errorf("code = %v (%v), want PermissionDenied", code, err)
	}
}

func TestMalformedRequestsAreInvalidArgumentsNamingTheField(t *testing.T) {
	c, log := start(t, databasetest.SQLite(t))
	seed(t, log, 5)
	first, err := c.ListAuditEntries(as("admin-token"), &auditv1.ListAuditEntriesRequest{PageSize: 2, StoreId: "s-alice"})
	if err != nil || first.NextPageToken == "" {
		t.Fatalf("first page = %v, %v; want a next page token", first, err)
	}
	tests := []struct {
		name      string
		token     string
		req       *auditv1.ListAuditEntriesRequest
		wantField string
	}{
		{name: "page token not base64", req: &auditv1.ListAuditEntriesRequest{PageToken: "not a token!"}, wantField: "page_token"},
		{name: "page token not ours", req: &auditv1.ListAuditEntriesRequest{PageToken: "eyJ4IjoxfQ"}, wantField: "page_token"},
		{name: "page token of other filters", req: &auditv1.ListAuditEntriesRequest{StoreId: "s-bob", PageToken: first.NextPageToken}, wantField: "page_token"},
		{name: "page token of another user's view", token: "alice-token", req: &auditv1.ListAuditEntriesRequest{StoreId: "s-alice", PageToken: first.NextPageToken}, wantField: "page_token"},
		{name: "negative page size", req: &auditv1.ListAuditEntriesRequest{PageSize: -1}, wantField: "page_size"},
		{
			name:      "end before start",
			req:       &auditv1.ListAuditEntriesRequest{StartTime: timestamppb.New(t0), EndTime: timestamppb.New(t0.Add(-time.Second))},
			wantField: "end_time",
		},
		{name: "invalid start time", req: &auditv1.ListAuditEntriesRequest{StartTime: &timestamppb.Timestamp{Nanos: -5}}, wantField: "start_time"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			token := tt.token
			if token == "" {
				token = "admin-token"
			}
			_, err := c.ListAuditEntries(as(token), tt.req)
			st := status.Convert(err)
			if st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), tt.wantField) {
				t.Errorf("error = %v; want InvalidArgument naming %s", err, tt.wantField)
			}
		})
	}
}

func TestCallersWithoutAValidTokenAreUnauthenticated(t *testing.T) {
	c, _ := start(t, databasetest.SQLite(t))
	tests := []struct {
		name string
		ctx  context.Context
	}{
		{name: "no token", ctx: context.Background()},
		{name: "unknown token", ctx: as("stolen")},
		{name: "not a bearer token", ctx: metadata.AppendToOutgoingContext(context.Background(), "authorization", "Basic YWxpY2U6cHc=")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.ListAuditEntries(tt.ctx, &auditv1.ListAuditEntriesRequest{})
			if code := status.Code(err); code != codes.Unauthenticated {
				t.Errorf("code = %v (%v), want Unauthenticated", code, err)
			}
		})
	}
}
