package app_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	storev1 "github.com/storeprov/storeprov/gen/storeprov/store/v1"
	"github.com/storeprov/storeprov/pkg/bus/bustest"
	"github.com/storeprov/storeprov/pkg/database/databasetest"
	"github.com/storeprov/storeprov/services/api/internal/app"
)

// TestWatchStreamsPerUserAreCapped: with --max-watch-streams=2 a user's
// third WatchStores is refused with ResourceExhausted while another user
// still watches, and closing one stream frees its place.
func TestWatchStreamsPerUserAreCapped(t *testing.T) {
	bustest.Each(t, func(t *testing.T, nats *bustest.Env) {
		databasetest.Each(t, func(t *testing.T, dbURL string) {
			e := startAPI(t, dbURL, nats, func(o *app.Options) { o.MaxWatchStreams = 2 })
			bob, err := e.users.CreateToken(e.admin(), &storev1.CreateTokenRequest{User: "bob"})
			if err != nil {
				t.Fatal(err)
			}
			open := func(ctx context.Context) (storev1.StoreService_WatchStoresClient, error) {
				stream, err := e.stores.WatchStores(ctx, &storev1.WatchStoresRequest{})
				if err != nil {
					return nil, err
				}
				_, err = stream.Recv() // the snapshot's end: the stream is open
				return stream, err
			}
			ctx, cancel := context.WithTimeout(e.admin(), 30*time.Second)
			defer cancel()
			first, cancelFirst := context.WithCancel(ctx)
			if _, err := open(first); err != nil {
				t.Fatalf("first stream: %v", err)
			}
			if _, err := open(ctx); err != nil {
				t.Fatalf("second stream: %v", err)
			}
			_, err = open(ctx)
			if status.Code(err) != codes.ResourceExhausted || !strings.Contains(status.Convert(err).Message(), "at most 2") {
				t.Fatalf("third stream: %v; want ResourceExhausted saying at most 2", err)
			}
			bobCtx, cancelBob := context.WithTimeout(e.as(bob.GetToken()), 30*time.Second)
			defer cancelBob()
			if _, err := open(bobCtx); err != nil {
				t.Errorf("another user's stream: %v; the cap is per user", err)
			}

			cancelFirst()
			deadline := time.Now().Add(10 * time.Second)
			for {
				if _, err = open(ctx); err == nil {
					break
				}
				if status.Code(err) != codes.ResourceExhausted || time.Now().After(deadline) {
					t.Fatalf("a stream after closing one: %v; want it accepted", err)
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	})
}

// TestRateLimitIsPerReplica: the per-user rate limit lives in each api
// replica's memory. A user who spent the burst on one replica is refused
// there and still served by another; README's "Security model" says so.
func TestRateLimitIsPerReplica(t *testing.T) {
	bustest.Each(t, func(t *testing.T, nats *bustest.Env) {
		databasetest.Each(t, func(t *testing.T, dbURL string) {
			slow := func(o *app.Options) { o.RateLimit, o.RateBurst = 0.01, 3 }
			a := startAPI(t, dbURL, nats, slow)
			b := startAPI(t, dbURL, nats, slow)
			var err error
			for i := range 4 {
				if _, err = a.users.GetCurrentUser(a.admin(), &storev1.GetCurrentUserRequest{}); err != nil {
					if i < 3 {
						t.Fatalf("call %d within the burst of 3: %v", i+1, err)
					}
				}
			}
			if status.Code(err) != codes.ResourceExhausted {
				t.Fatalf("4th call on replica a: %v; want ResourceExhausted", err)
			}
			if _, err := b.users.GetCurrentUser(b.as(a.token), &storev1.GetCurrentUserRequest{}); err != nil {
				t.Errorf("first call on replica b after the burst was spent on a: %v; want it served (limits are per replica)", err)
			}
		})
	})
}
