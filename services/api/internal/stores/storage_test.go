package stores_test

import (
	"context"
	"testing"
	"time"

	"entgo.io/ent/dialect"
	"github.com/google/go-cmp/cmp"

	storev1 "github.com/storeprov/storeprov/gen/storeprov/store/v1"
	"github.com/storeprov/storeprov/pkg/database/databasetest"
	"github.com/storeprov/storeprov/pkg/lifecycle"
	"github.com/storeprov/storeprov/services/api/internal/ent"
	"github.com/storeprov/storeprov/services/api/internal/ent/schema"
	entstore "github.com/storeprov/storeprov/services/api/internal/ent/store"
)

// TestPhaseAndEngineAreStoredByTheirNames pins the database format of the
// typed fields: rows written by an api that kept phase and engine as
// strings read as the same enums, and rows written now hold the same
// strings, so no existing database needs a migration.
func TestPhaseAndEngineAreStoredByTheirNames(t *testing.T) {
	databasetest.Each(t, func(t *testing.T, url string) {
		ctx := context.Background()
		db := databasetest.Migrated(t, url, schema.Migrations)
		client := ent.NewClient(ent.Driver(db.Driver))
		insert := "INSERT INTO stores (id, display_name, engine, owner, phase, failure_reason, create_time, update_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
		if db.Dialect == dialect.Postgres {
			insert = "INSERT INTO stores (id, display_name, engine, owner, phase, failure_reason, create_time, update_time) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
		}
		now := time.Now().UTC()
		for _, row := range [][]any{
			{"oldready", "Old", "ENGINE_MEDUSA", "alice", "PHASE_READY", "UpgradeRolledBack", now, now},
			{"oldfuture", "Future", "ENGINE_TOMORROW", "alice", "PHASE_TOMORROW", "", now, now},
		} {
			if _, err := db.ExecContext(ctx, insert, row...); err != nil {
				t.Fatalf("cannot insert a row as an older api did: %v", err)
			}
		}

		type typed struct {
			Engine storev1.Engine
			Phase  storev1.Phase
			Reason lifecycle.Reason
		}
		read := func(id string) typed {
			t.Helper()
			st, err := client.Store.Get(ctx, id)
			if err != nil {
				t.Fatalf("cannot read store %s: %v", id, err)
			}
			return typed{st.Engine, st.Phase, st.FailureReason}
		}
		want := typed{storev1.Engine_ENGINE_MEDUSA, storev1.Phase_PHASE_READY, lifecycle.ReasonUpgradeRolledBack}
		if diff := cmp.Diff(want, read("oldready")); diff != "" {
			t.Errorf("a row an older api wrote (-want +got):\n%s", diff)
		}
		// A name this api does not know reads as UNSPECIFIED, as the
		// string conversions it replaces read it.
		if diff := cmp.Diff(typed{}, read("oldfuture")); diff != "" {
			t.Errorf("a row with names this api does not know (-want +got):\n%s", diff)
		}
		ready, err := client.Store.Query().Where(entstore.Phase(storev1.Phase_PHASE_READY)).IDs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"oldready"}, ready); diff != "" {
			t.Errorf("stores found READY by a typed predicate (-want +got):\n%s", diff)
		}

		if _, err := client.Store.Create().SetID("newone").SetDisplayName("New").SetOwner("alice").
			SetEngine(storev1.Engine_ENGINE_WOOCOMMERCE).SetPhase(storev1.Phase_PHASE_PROVISIONING).Save(ctx); err != nil {
			t.Fatal(err)
		}
		if err := client.Store.UpdateOneID("oldready").SetPhase(storev1.Phase_PHASE_FAILED).SetFailureReason(lifecycle.ReasonTimeout).Exec(ctx); err != nil {
			t.Fatal(err)
		}
		type stored struct{ ID, Engine, Phase, Reason string }
		rows, err := db.QueryContext(ctx, "SELECT id, engine, phase, failure_reason FROM stores WHERE id IN ('newone', 'oldready') ORDER BY id")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var got []stored
		for rows.Next() {
			var s stored
			if err := rows.Scan(&s.ID, &s.Engine, &s.Phase, &s.Reason); err != nil {
				t.Fatal(err)
			}
			got = append(got, s)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		wantStored := []stored{
			{"newone", "ENGINE_WOOCOMMERCE", "PHASE_PROVISIONING", ""},
			{"oldready", "ENGINE_MEDUSA", "PHASE_FAILED", "Timeout"},
		}
		if diff := cmp.Diff(wantStored, got); diff != "" {
			t.Errorf("columns as stored (-want +got):\n%s", diff)
		}
	})
}
