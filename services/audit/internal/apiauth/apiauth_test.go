package apiauth_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	storev1 "github.com/storeprov/storeprov/gen/storeprov/store/v1"
	"github.com/storeprov/storeprov/pkg/auth"
	"github.com/storeprov/storeprov/services/audit/internal/apiauth"
)

// users is a UserService that knows a fixed set of tokens and records the
// authorization headers it was sent.
type users struct {
	storev1.UnimplementedUserServiceServer
	known map[string]*storev1.User
	// down makes every call fail as an unavailable api would.
	down bool

	mu      sync.Mutex
	headers []string
}

func (u *users) GetCurrentUser(ctx context.Context, _ *storev1.GetCurrentUserRequest) (*storev1.User, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	u.mu.Lock()
	u.headers = append(u.headers, md.Get("authorization")...)
	u.mu.Unlock()
	if u.down {
		return nil, status.Error(codes.Unavailable, "database is down")
	}
	for token, user := range u.known {
		if md.Get("authorization")[0] == "Bearer "+token {
			return user, nil
		}
	}
	return nil, status.Error(codes.Unauthenticated, "invalid API token")
}

func (u *users) calls() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.headers...)
}

// serve runs u on a loopback port and returns a client of it.
func serve(t *testing.T, u *users) storev1.UserServiceClient {
	t.Helper()
	s := grpc.NewServer()
	storev1.RegisterUserServiceServer(s, u)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(lis) }() // returns once the test stops the server
	t.Cleanup(s.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return storev1.NewUserServiceClient(conn)
}

func newUsers() *users {
	return &users{known: map[string]*storev1.User{
		"alice-token": {Name: "alice"},
		"root-token":  {Name: "root", Admin: true},
	}}
}

func TestAuthenticateAsksTheAPIWithTheCallersToken(t *testing.T) {
	tests := []struct {
		name        string
		token       string
		down        bool
		want        auth.Principal
		wantUnauthn bool
		wantErr     bool
	}{
		{name: "a user", token: "alice-token", want: auth.Principal{Name: "alice"}},
		{name: "an admin", token: "root-token", want: auth.Principal{Name: "root", Admin: true}},
		{name: "an unknown token is unauthenticated", token: "stolen", wantUnauthn: true, wantErr: true},
		{name: "an unavailable api is not the caller's fault", token: "alice-token", down: true, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := newUsers()
			u.down = tt.down
			// Incoming metadata of the caller must not leak to the api.
			ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer other"))
			got, err := apiauth.New(serve(t, u), apiauth.Options{}).Authenticate(ctx, tt.token)
			if (err != nil) != tt.wantErr || errors.Is(err, auth.ErrUnauthenticated) != tt.wantUnauthn {
				t.Fatalf("error = %v; want error %v, unauthenticated %v", err, tt.wantErr, tt.wantUnauthn)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("principal (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string{"Bearer " + tt.token}, u.calls()); diff != "" {
				t.Errorf("authorization sent to the api (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAnswersAreCachedForTheTTL(t *testing.T) {
	tests := []struct {
		name      string
		token     string
		after     time.Duration
		wantCalls int
	}{
		{name: "a second call within the TTL is answered from the cache", token: "alice-token", after: 29 * time.Second, wantCalls: 1},
		{name: "a call after the TTL asks again", token: "alice-token", after: 30 * time.Second, wantCalls: 2},
		{name: "a rejected token is not cached", token: "stolen", after: time.Second, wantCalls: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := newUsers()
			now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
			a := apiauth.New(serve(t, u), apiauth.Options{Now: func() time.Time { return now }})
			first, err1 := a.Authenticate(context.Background(), tt.token)
			now = now.Add(tt.after)
			second, err2 := a.Authenticate(context.Background(), tt.token)
			if first != second || (err1 == nil) != (err2 == nil) {
				t.Errorf("answers differ: %v, %v then %v, %v", first, err1, second, err2)
			}
			if got := len(u.calls()); got != tt.wantCalls {
				t.Errorf("api called %d times, want %d", got, tt.wantCalls)
			}
		})
	}
}

func TestCacheIsBounded(t *testing.T) {
	u := newUsers()
	for i := range 20 {
		u.known[fmt.Sprintf("token-%d", i)] = &storev1.User{Name: fmt.Sprintf("user-%d", i)}
	}
	a := apiauth.New(serve(t, u), apiauth.Options{MaxEntries: 5})
	for i := range 20 {
		p, err := a.Authenticate(context.Background(), fmt.Sprintf("token-%d", i))
		if err != nil || p.Name != fmt.Sprintf("user-%d", i) {
			t.Fatalf("token-%d: %v, %v", i, p, err)
		}
	}
	if n := a.Len(); n > 5 {
		t.Errorf("cache holds %d tokens, bound is 5", n)
	}
}
