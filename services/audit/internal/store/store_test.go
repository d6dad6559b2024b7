package store_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"sort"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/storeprov/storeprov/gen/storeprov/audit/v1"
	"github.com/storeprov/storeprov/pkg/database/databasetest"
	"github.com/storeprov/storeprov/services/audit/internal/ent"
	"github.com/storeprov/storeprov/services/audit/internal/store"
)

// ignoreChain leaves out the fields the hash chain adds to a listed entry.
var ignoreChain = protocmp.IgnoreFields(&auditv1.AuditEntry{}, "sequence", "hash")

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func entry(id, storeID, owner, actor, action string, at time.Time) *auditv1.AuditEntry {
	return &auditv1.AuditEntry{
		Id: id, StoreId: storeID, StoreOwner: owner, Actor: actor, Action: action,
		Time: timestamppb.New(at), Detail: "detail of " + id,
	}
}

func open(t *testing.T, url string) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// withoutLine returns the migrations with every line containing one of substrs
// removed, to prove the schema comparison notices a difference.
func withoutLine(substrs ...string) fs.FS {
	m := fstest.MapFS{}
	names, err := fs.Glob(store.Migrations(), "migrations/*/*.sql")
	if err != nil || len(names) == 0 {
		panic(fmt.Sprintf("no migrations: %v", err))
	}
	for _, name := range names {
		body, err := fs.ReadFile(store.Migrations(), name)
		if err != nil {
			panic(err)
		}
		var kept []string
		for _, line := range strings.Split(string(body), "\n") {
			if !slices.ContainsFunc(substrs, func(sub string) bool { return strings.Contains(line, sub) }) {
				kept = append(kept, line)
			}
		}
		m[name] = &fstest.MapFile{Data: []byte(strings.Join(kept, "\n"))}
	}
	return m
}

func TestMigrationsMatchEntSchema(t *testing.T) {
	tests := []struct {
		name       string
		migrations fs.FS
		wantDiff   bool
	}{
		{name: "the embedded migrations create exactly the ent schema", migrations: store.Migrations()},
		{name: "a missing index is reported", migrations: withoutLine("auditentry_actor_time"), wantDiff: true},
		{name: "a missing chain column is reported", migrations: withoutLine(`ADD COLUMN "hash"`, "ADD COLUMN `hash`"), wantDiff: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			databasetest.Each(t, func(t *testing.T, url string) {
				ctx := context.Background()
				db := databasetest.Migrated(t, url, tt.migrations)
				var pending bytes.Buffer
				if err := ent.NewClient(ent.Driver(db.Driver)).Schema.WriteTo(ctx, &pending); err != nil {
					t.Fatal(err)
				}
				if got := strings.TrimSpace(pending.String()) != ""; got != tt.wantDiff {
					t.Errorf("pending schema change = %v, want %v; ent would run:\n%s", got, tt.wantDiff, pending.String())
				}
			})
		})
	}
}

func TestOpenAppliesMigrationsOnce(t *testing.T) {
	databasetest.Each(t, func(t *testing.T, url string) {
		ctx := context.Background()
		s := open(t, url)
		if _, err := s.Append(ctx, entry("e1", "s1", "alice", "alice", "create", t0)); err != nil {
			t.Fatal(err)
		}
		s.Close()
		s = open(t, url) // migrating again must keep the data
		got, _, err := s.List(ctx, store.Query{Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 {
			t.Errorf("after reopening, %d entries, want 1", len(got))
		}
	})
}

func TestAppendRecordsAnEventOnce(t *testing.T) {
	databasetest.Each(t, func(t *testing.T, url string) {
		ctx := context.Background()
		s := open(t, url)
		first := entry("e1", "s1", "alice", "alice", "create", t0.Add(123456789*time.Nanosecond))
		inserted, err := s.Append(ctx, first)
		if err != nil || !inserted {
			t.Fatalf("first Append = %v, %v; want true, nil", inserted, err)
		}
		again := entry("e1", "s2", "bob", "bob", "delete", t0.Add(time.Hour))
		inserted, err = s.Append(ctx, again)
		if err != nil || inserted {
			t.Fatalf("second Append of the same id = %v, %v; want false, nil", inserted, err)
		}
		got, next, err := s.List(ctx, store.Query{Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		want := entry("e1", "s1", "alice", "alice", "create", t0.Add(123456*time.Microsecond))
		if diff := cmp.Diff([]*auditv1.AuditEntry{want}, got, protocmp.Transform(), ignoreChain); diff != "" {
			t.Errorf("entries (-want +got):\n%s", diff)
		}
		if next != nil {
			t.Errorf("next cursor = %+v, want none", next)
		}
	})
}

func TestAppendRejectsInvalidEntries(t *testing.T) {
	tests := []struct {
		name  string
		entry *auditv1.AuditEntry
	}{
		{name: "no id", entry: entry("", "s1", "alice", "alice", "create", t0)},
		{name: "no time", entry: &auditv1.AuditEntry{Id: "e1", StoreId: "s1"}},
		{name: "invalid time", entry: &auditv1.AuditEntry{Id: "e1", Time: &timestamppb.Timestamp{Nanos: -1}}},
		{name: "nil entry", entry: nil},
	}
	s := open(t, databasetest.SQLite(t))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inserted, err := s.Append(context.Background(), tt.entry)
			if inserted || !errors.Is(err, store.ErrInvalidEntry) {
				t.Errorf("Append = %v, %v; want false, ErrInvalidEntry", inserted, err)
			}
		})
	}
}

func TestListFiltersInTimeOrderAndPagesByKeyset(t *testing.T) {
	databasetest.Each(t, func(t *testing.T, url string) {
		ctx := context.Background()
		s := open(t, url)
		// 25 entries, two per minute, appended out of order: the log is
		// ordered by time, then by the order entries were recorded in.
		var all []*auditv1.AuditEntry
		for i := range 25 {
			owner := []string{"alice", "bob"}[i%2]
			action := []string{"create", "ready", "delete"}[i%3]
			all = append(all, entry(fmt.Sprintf("e%02d", i), fmt.Sprintf("s%d", i%4), owner, owner, action, t0.Add(time.Duration(i/2)*time.Minute)))
		}
		order := []int{3, 0, 24, 1, 2, 7, 5, 4, 6, 8, 9, 10, 12, 11, 13, 14, 16, 15, 17, 18, 20, 19, 21, 23, 22}
		recorded := map[string]int{}
		for n, i := range order {
			if _, err := s.Append(ctx, all[i]); err != nil {
				t.Fatal(err)
			}
			recorded[all[i].Id] = n
		}
		expect := func(keep func(*auditv1.AuditEntry) bool) []string {
			var kept []*auditv1.AuditEntry
			for _, e := range all {
				if keep(e) {
					kept = append(kept, e)
				}
			}
			sort.SliceStable(kept, func(i, j int) bool {
				ti, tj := kept[i].Time.AsTime(), kept[j].Time.AsTime()
				if !ti.Equal(tj) {
					return ti.Before(tj)
				}
				return recorded[kept[i].Id] < recorded[kept[j].Id]
			})
			ids := make([]string, len(kept))
			for i, e := range kept {
				ids[i] = e.Id
			}
			return ids
		}
		start, end := t0.Add(3*time.Minute), t0.Add(6*time.Minute)
		tests := []struct {
			name  string
			query store.Query
			want  []string
		}{
			{name: "everything", query: store.Query{}, want: expect(func(*auditv1.AuditEntry) bool { return true })},
			{name: "by store", query: store.Query{StoreID: "s1"}, want: expect(func(e *auditv1.AuditEntry) bool { return e.StoreId == "s1" })},
			{name: "by actor", query: store.Query{Actor: "bob"}, want: expect(func(e *auditv1.AuditEntry) bool { return e.Actor == "bob" })},
			{name: "by action", query: store.Query{Action: "ready"}, want: expect(func(e *auditv1.AuditEntry) bool { return e.Action == "ready" })},
			{name: "by owner and action", query: store.Query{StoreOwner: "alice", Action: "create"}, want: expect(func(e *auditv1.AuditEntry) bool { return e.StoreOwner == "alice" && e.Action == "create" })},
			{name: "start inclusive, end exclusive", query: store.Query{Start: start, End: end}, want: expect(func(e *auditv1.AuditEntry) bool {
				return !e.Time.AsTime().Before(start) && e.Time.AsTime().Before(end)
			})},
			{name: "no match", query: store.Query{StoreID: "nope"}, want: nil},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				var got []string
				var after *store.Cursor
				for page := 0; ; page++ {
					q := tt.query
					q.Limit, q.After = 10, after
					entries, next, err := s.List(ctx, q)
					if err != nil {
						t.Fatal(err)
					}
					if len(entries) > 10 || (next != nil && len(entries) != 10) {
						t.Fatalf("page %d has %d entries and next %v, want 10 before the last page", page, len(entries), next)
					}
					for _, e := range entries {
						got = append(got, e.Id)
					}
					if next == nil {
						break
					}
					after = next
				}
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("listed ids, paging by 10 (-want +got):\n%s", diff)
				}
			})
		}
	})
}

func TestConcurrentAppendsOfOneEventInsertOnce(t *testing.T) {
	databasetest.Each(t, func(t *testing.T, url string) {
		s := open(t, url)
		const n = 8
		results := make(chan error, n)
		inserts := make(chan bool, n)
		for range n {
			go func() {
				inserted, err := s.Append(context.Background(), entry("same", "s1", "alice", "alice", "create", t0))
				inserts <- inserted
				results <- err
			}()
		}
		count := 0
		for range n {
			if err := <-results; err != nil {
				t.Error(err)
			}
			if <-inserts {
				count++
			}
		}
		if count != 1 {
			t.Errorf("%d concurrent Appends reported an insert, want 1", count)
		}
	})
}
