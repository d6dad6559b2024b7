// Package databasetest gives tests a fresh, empty database: always SQLite,
// and also PostgreSQL when $STOREPROV_TEST_POSTGRES_URL is set. Each
// PostgreSQL test gets a schema of its own, dropped when it ends. A
// configured server that cannot be reached fails the test.
package databasetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/storeprov/storeprov/pkg/database"
)

// PostgresURLEnv names the environment variable of a PostgreSQL server.
const PostgresURLEnv = "STOREPROV_TEST_POSTGRES_URL"

// Each runs f as a subtest with the URL of a fresh SQLite database and,
// when $STOREPROV_TEST_POSTGRES_URL is set, of a fresh PostgreSQL schema.
func Each(t *testing.T, f func(t *testing.T, databaseURL string)) {
	t.Run("sqlite", func(t *testing.T) { f(t, SQLite(t)) })
	if u := os.Getenv(PostgresURLEnv); u != "" {
		t.Run("postgres", func(t *testing.T) { f(t, Postgres(t, u)) })
	}
}

// SQLite returns the URL of a new database file in the test's temp dir.
func SQLite(t testing.TB) string {
	return "sqlite://" + filepath.Join(t.TempDir(), "test.db")
}

// Postgres creates a schema on the server at serverURL and returns a URL
// whose connections use it.
func Postgres(t testing.TB, serverURL string) string {
	t.Helper()
	ctx := context.Background()
	db, err := database.Open(ctx, serverURL)
	if err != nil {
		t.Fatalf("%s is set but PostgreSQL cannot be used: %v", PostgresURLEnv, err)
	}
	t.Cleanup(func() { db.Close() })
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	schema := "test_" + hex.EncodeToString(b)
	if _, err := db.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("cannot create schema %s: %v", schema, err)
	}
	t.Cleanup(func() {
		if _, err := db.ExecContext(context.Background(), "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("cannot drop schema %s: %v", schema, err)
		}
	})
	u, err := database.WithSearchPath(serverURL, schema)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// Migrated opens the database at databaseURL and applies migrations; the
// database closes when the test ends.
func Migrated(t testing.TB, databaseURL string, migrations fs.FS) *database.DB {
	t.Helper()
	ctx := context.Background()
	db, err := database.Open(ctx, databaseURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(ctx, migrations); err != nil {
		t.Fatal(err)
	}
	return db
}
