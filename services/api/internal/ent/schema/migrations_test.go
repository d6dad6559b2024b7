package schema_test

import (
	"context"
	"strings"
	"testing"

	"github.com/storeprov/storeprov/pkg/database/databasetest"
	"github.com/storeprov/storeprov/services/api/internal/ent"
	"github.com/storeprov/storeprov/services/api/internal/ent/schema"
)

// TestMigrationsMatchSchema fails when the ent schema changed without a
// new versioned migration: after migrating, ent must find nothing to do.
func TestMigrationsMatchSchema(t *testing.T) {
	databasetest.Each(t, func(t *testing.T, url string) {
		ctx := context.Background()
		db := databasetest.Migrated(t, url, schema.Migrations)
		// Applying them again must be a no-op.
		if err := db.Migrate(ctx, schema.Migrations); err != nil {
			t.Fatal(err)
		}
		var pending strings.Builder
		if err := ent.NewClient(ent.Driver(db.Driver)).Schema.WriteTo(ctx, &pending); err != nil {
			t.Fatal(err)
		}
		var changes []string
		for _, l := range strings.Split(pending.String(), "\n") {
			if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "PRAGMA") && l != "BEGIN;" && l != "COMMIT;" {
				changes = append(changes, l)
			}
		}
		if len(changes) > 0 {
			t.Errorf("the ent schema differs from the migrations; add a migration with:\n%s", strings.Join(changes, "\n"))
		}
	})
}
