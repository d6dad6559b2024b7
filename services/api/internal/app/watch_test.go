package app_test

import (
	"context"
	"testing"
	"time"

	storev1 "github.com/storeprov/storeprov/gen/storeprov/store/v1"
	"github.com/storeprov/storeprov/pkg/bus/bustest"
	"github.com/storeprov/storeprov/pkg/database/databasetest"
)

// TestWatchSeesChangesMadeByAnotherReplica runs two api replicas on one
// database and NATS: a watcher connected to one sees the stores the other
// creates and deletes.
func TestWatchSeesChangesMadeByAnotherReplica(t *testing.T) {
	bustest.Each(t, func(t *testing.T, nats *bustest.Env) {
		databasetest.Each(t, func(t *testing.T, dbURL string) {
			a := startAPI(t, dbURL, nats)
			b := startAPI(t, dbURL, nats)
			ctx, cancel := context.WithTimeout(b.as(a.token), 30*time.Second)
			defer cancel()
			stream, err := b.stores.WatchStores(ctx, &storev1.WatchStoresRequest{})
			if err != nil {
				t.Fatal(err)
			}
			for {
				resp, err := stream.Recv()
				if err != nil {
					t.Fatalf("before the snapshot completed: %v", err)
				}
				if resp.GetSnapshotComplete() {
					break
				}
			}
			next := func(id string) *storev1.Store {
				t.Helper()
				for {
					resp, err := stream.Recv()
					if err != nil {
						t.Fatalf("waiting for store %s on the other replica's watch: %v", id, err)
					}
					if resp.GetStore().GetId() == id {
						return resp.GetStore()
					}
				}
			}

			created, err := a.stores.CreateStore(a.admin(), &storev1.CreateStoreRequest{Store: &storev1.Store{DisplayName: "Elsewhere", Engine: storev1.Engine_ENGINE_WOOCOMMERCE}})
			if err != nil {
				t.Fatal(err)
			}
			if got := next(created.GetId()); got.GetPhase() != storev1.Phase_PHASE_PROVISIONING || got.GetDisplayName() != "Elsewhere" {
				t.Errorf("replica b's watch got %v; want the new PROVISIONING store", got)
			}
			if _, err := a.stores.DeleteStore(a.admin(), &storev1.DeleteStoreRequest{Id: created.GetId()}); err != nil {
				t.Fatal(err)
			}
			if got := next(created.GetId()); got.GetPhase() != storev1.Phase_PHASE_DELETING {
				t.Errorf("replica b's watch got phase %s after the delete on a; want DELETING", got.GetPhase())
			}
		})
	})
}
