// Package database opens the SQL database a service keeps its state in —
// SQLite by default, PostgreSQL in production — and applies the service's
// versioned migrations to it.
//
// URLs:
//
//	sqlite:///path/to/file.db   a file (created if missing)
//	sqlite://:memory:           a private in-memory database
//	postgres://user@host/db     PostgreSQL (postgresql:// too)
package database

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"net/url"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	entdialect "entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	_ "modernc.org/sqlite"             // registers the "sqlite" driver
)

// DB is an open database and the ent driver over it.
type DB struct {
	*sql.DB
	// Dialect is entdialect.SQLite or entdialect.Postgres.
	Dialect string
	// Driver is the ent driver for ent.NewClient(ent.Driver(db.Driver)).
	Driver *entsql.Driver
}

// Open connects to the database named by rawURL and checks it answers.
func Open(ctx context.Context, rawURL string) (*DB, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("database URL %q is not a URL: %w", redact(rawURL), err)
	}
	var db *sql.DB
	var dialect string
	switch u.Scheme {
	case "sqlite":
		file := strings.TrimPrefix(rawURL, "sqlite://")
		if file == "" {
			return nil, fmt.Errorf("database URL %q names no file: use sqlite:///path/to/file.db or sqlite://:memory:", rawURL) //nolint:staticcheck // ST1005: the last character is part of the URL sqlite://:memory:
		}
		if i := strings.IndexByte(file, '?'); i >= 0 {
			file = file[:i]
		}
		// WAL and a busy timeout let readers and the single writer coexist;
		// foreign keys are off by default in SQLite.
		dsn := "file:" + file + "?_pragma=foreign_keys(1)&_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_txlock=immediate"
		if file == ":memory:" {
			dsn = "file::memory:?_pragma=foreign_keys(1)"
		}
		db, err = sql.Open("sqlite", dsn)
		if err == nil {
			// One connection: SQLite has one writer, and an in-memory
			// database exists per connection.
			db.SetMaxOpenConns(1)
		}
		dialect = entdialect.SQLite
	case "postgres", "postgresql":
		db, err = sql.Open("pgx", rawURL)
		dialect = entdialect.Postgres
	default:
		return nil, fmt.Errorf("database URL scheme %q is not supported: use sqlite:// or postgres://", u.Scheme)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot open database %s: %w", redact(rawURL), err)
	}
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := db.PingContext(pingCtx); err != nil {
		db.Close()
		return nil, fmt.Errorf("cannot reach database %s: %w", redact(rawURL), err)
	}
	return &DB{DB: db, Dialect: dialect, Driver: entsql.OpenDB(dialect, db)}, nil
}

// Migrate applies, in order and each in its own transaction, the migration
// files of the database's dialect that were not applied yet. Files live in
// migrations/<dialect>/NNNN_name.sql ("sqlite3" or "postgres"); the version
// is NNNN. Applied versions are recorded in schema_migrations.
func (db *DB) Migrate(ctx context.Context, migrations fs.FS) error {
	dir := path.Join("migrations", db.Dialect)
	entries, err := fs.ReadDir(migrations, dir)
	if err != nil {
		return fmt.Errorf("cannot read migrations for %s: %w", db.Dialect, err)
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMP NOT NULL)`); err != nil {
		return fmt.Errorf("cannot create schema_migrations: %w", err)
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name() < entries[j].Name() })
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".sql") {
			continue
		}
		version, err := strconv.ParseInt(strings.SplitN(name, "_", 2)[0], 10, 64)
		if err != nil {
			return fmt.Errorf("migration %s does not start with a version number", name)
		}
		body, err := fs.ReadFile(migrations, path.Join(dir, name))
		if err != nil {
			return err
		}
		if err := db.apply(ctx, version, name, string(body)); err != nil {
			return err
		}
	}
	return nil
}

func (db *DB) apply(ctx context.Context, version int64, name, body string) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }() // after Commit, a no-op
	if db.Dialect == entdialect.Postgres {
		// Two replicas starting at once must not both migrate.
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(72460163)`); err != nil {
			return fmt.Errorf("cannot lock migrations: %w", err)
		}
	}
	var n int
	if err := tx.QueryRowContext(ctx, db.rebind(`SELECT COUNT(*) FROM schema_migrations WHERE version = ?`), version).Scan(&n); err != nil {
		return fmt.Errorf("cannot read schema_migrations: %w", err)
	}
	if n > 0 {
		return nil
	}
	for _, stmt := range strings.Split(body, ";\n") {
		if strings.TrimSpace(stmt) == "" {
			continue
		}
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("migration %s failed: %w", name, err)
		}
	}
	if _, err := tx.ExecContext(ctx, db.rebind(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`), version, name, time.Now().UTC()); err != nil {
		return fmt.Errorf("cannot record migration %s: %w", name, err)
	}
	return tx.Commit()
}

// rebind turns ? placeholders into PostgreSQL's $n.
func (db *DB) rebind(q string) string {
	if db.Dialect != entdialect.Postgres {
		return q
	}
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// redact hides the password of a URL for messages.
// WithSearchPath returns the PostgreSQL URL rawURL with its search_path
// set to schema, so that every table of a connection lives in that schema.
func WithSearchPath(rawURL, schema string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("cannot read database URL %s: %w", redact(rawURL), err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

func redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
