package store_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	auditv1 "github.com/storeprov/storeprov/gen/storeprov/audit/v1"
	"github.com/storeprov/storeprov/pkg/database"
	"github.com/storeprov/storeprov/pkg/database/databasetest"
	"github.com/storeprov/storeprov/pkg/lifecycle"
	"github.com/storeprov/storeprov/services/audit/internal/store"
)

// sql runs a statement on the audit database at url behind the store's
// back, as someone with write access to the database would. Placeholders
// are written ? and rebound for PostgreSQL.
func sql(t *testing.T, url, query string, args ...any) int64 {
	t.Helper()
	db, err := database.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if db.Dialect == "postgres" {
		for i := 1; strings.Contains(query, "?"); i++ {
			query = strings.Replace(query, "?", "$"+strconv.Itoa(i), 1)
		}
	}
	res, err := db.ExecContext(context.Background(), query, args...)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// clock is a settable clock for recorded_at.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// seedChain appends n entries, e1…en, recorded a minute apart from t0,
// and returns them as listed (with sequence and hash).
func seedChain(t *testing.T, s *store.Store, c *clock, n int) []*auditv1.AuditEntry {
	t.Helper()
	for i := 1; i <= n; i++ {
		c.Set(t0.Add(time.Duration(i) * time.Minute))
		id := fmt.Sprintf("e%d", i)
		if _, err := s.Append(context.Background(), entry(id, "s1", "alice", "alice", lifecycle.ActionCreate, t0)); err != nil {
			t.Fatal(err)
		}
	}
	all, _, err := s.List(context.Background(), store.Query{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return all
}

func openWithClock(t *testing.T, url string) (*store.Store, *clock) {
	t.Helper()
	s := open(t, url)
	c := &clock{now: t0}
	s.SetClock(c.Now)
	return s, c
}

func verify(t *testing.T, s *store.Store, known string) *auditv1.VerifyAuditEntriesResponse {
	t.Helper()
	resp, err := s.Verify(context.Background(), known)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// brk is what a test expects of a break: its kind, the sequence it names,
// and a phrase of its message.
type brk struct {
	Kind     auditv1.ChainBreak_Kind
	Sequence int64
	Phrase   string
}

func checkBreak(t *testing.T, resp *auditv1.VerifyAuditEntriesResponse, want brk) {
	t.Helper()
	if resp.GetIntact() {
		t.Fatalf("verify says the chain is intact, want a break %+v: %v", want, resp)
	}
	got := brk{Kind: resp.GetFirstBreak().GetKind(), Sequence: resp.GetFirstBreak().GetSequence(), Phrase: want.Phrase}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("first break (-want +got):\n%s\nmessage: %s", diff, resp.GetFirstBreak().GetMessage())
	}
	if !strings.Contains(resp.GetFirstBreak().GetMessage(), want.Phrase) {
		t.Errorf("break message %q does not say %q", resp.GetFirstBreak().GetMessage(), want.Phrase)
	}
}

func TestVerifyAnUntouchedChainIsIntact(t *testing.T) {
	databasetest.Each(t, func(t *testing.T, url string) {
		s, c := openWithClock(t, url)
		empty := verify(t, s, "")
		if !empty.GetIntact() || empty.GetCheckedEntries() != 0 || empty.GetHeadHash() != "" {
			t.Errorf("verify of an empty log = %v, want intact with nothing checked", empty)
		}
		all := seedChain(t, s, c, 5)
		got := verify(t, s, all[2].GetHash())
		want := &auditv1.VerifyAuditEntriesResponse{Intact: true, CheckedEntries: 5, HeadHash: all[4].GetHash(), HeadSequence: all[4].GetSequence()}
		if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
			t.Errorf("verify (-want +got):\n%s", diff)
		}
		for i, e := range all {
			if e.GetSequence() != int64(i+1) || len(e.GetHash()) != 64 {
				t.Errorf("entry %d has sequence %d and hash %q, want %d and 64 hex digits", i, e.GetSequence(), e.GetHash(), i+1)
			}
		}
	})
}

func TestVerifyNamesTheEntryEditedInTheDatabase(t *testing.T) {
	tests := []struct {
		name   string
		reason string
		edit   string
		args   []any
		want   brk
	}{
		{
			name: "detail rewritten", reason: "the content no longer hashes to the stored hash",
			edit: "UPDATE audit_entries SET detail = ? WHERE id = 3", args: []any{"nothing happened"},
			want: brk{Kind: auditv1.ChainBreak_KIND_CONTENT, Sequence: 3, Phrase: "entry 3 (event e3) does not match its hash"},
		},
		{
			name: "actor rewritten", reason: "every field is covered",
			edit: "UPDATE audit_entries SET actor = ? WHERE id = 2", args: []any{"mallory"},
			want: brk{Kind: auditv1.ChainBreak_KIND_CONTENT, Sequence: 2, Phrase: "entry 2 (event e2)"},
		},
		{
			name: "hash rewritten", reason: "the stored hash must match too",
			edit: "UPDATE audit_entries SET hash = ? WHERE id = 4", args: []any{strings.Repeat("0", 64)},
			want: brk{Kind: auditv1.ChainBreak_KIND_CONTENT, Sequence: 4, Phrase: "entry 4 (event e4) does not match its hash"},
		},
		{
			name: "link rewritten", reason: "an entry pointed at another predecessor no longer hashes either",
			edit: "UPDATE audit_entries SET prev_hash = ? WHERE id = 2", args: []any{""},
			want: brk{Kind: auditv1.ChainBreak_KIND_CONTENT, Sequence: 2, Phrase: "entry 2 (event e2)"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			databasetest.Each(t, func(t *testing.T, url string) {
				s, c := openWithClock(t, url)
				seedChain(t, s, c, 5)
				if n := sql(t, url, tt.edit, tt.args...); n != 1 {
					t.Fatalf("the edit changed %d rows, want 1", n)
				}
				checkBreak(t, verify(t, s, ""), tt.want)
			})
		})
	}
}

func TestVerifyNamesTheEntryAfterOneRewrittenWithItsHashRecomputed(t *testing.T) {
	databasetest.Each(t, func(t *testing.T, url string) {
		s, c := openWithClock(t, url)
		all := seedChain(t, s, c, 5)
		forged := all[2]
		forged.Detail = "nothing happened"
		hash := store.HashOf(all[1].GetHash(), forged, t0.Add(3*time.Minute))
		sql(t, url, "UPDATE audit_entries SET detail = ?, hash = ? WHERE id = 3", forged.Detail, hash)
		checkBreak(t, verify(t, s, ""), brk{Kind: auditv1.ChainBreak_KIND_LINK, Sequence: 4, Phrase: "entry 4 (event e4) does not link to entry 3: entries between them were deleted, or entry 3 was rewritten"})
	})
}

func TestVerifyNamesTheBreakWhereAnEntryWasDeleted(t *testing.T) {
	tests := []struct {
		name    string
		reason  string
		deleted string
		want    brk
	}{
		{
			name: "in the middle", reason: "the next entry's link names what is missing", deleted: "id = 3",
			want: brk{Kind: auditv1.ChainBreak_KIND_LINK, Sequence: 4, Phrase: "entry 4 (event e4) does not link to entry 2: entries between them were deleted (sequences 3 to 3 are missing)"},
		},
		{
			name: "the first", reason: "the second entry does not start the chain", deleted: "id = 1",
			want: brk{Kind: auditv1.ChainBreak_KIND_LINK, Sequence: 2, Phrase: "does not link to the start of the chain"},
		},
		{
			name: "the last", reason: "the chain's head names an entry that is gone", deleted: "id = 5",
			want: brk{Kind: auditv1.ChainBreak_KIND_HEAD, Sequence: 4, Phrase: "the chain's head is entry 5"},
		},
		{
			name: "all", reason: "an emptied table still has a head", deleted: "id > 0",
			want: brk{Kind: auditv1.ChainBreak_KIND_HEAD, Sequence: 0, Phrase: "no entry is kept after the checkpoint"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			databasetest.Each(t, func(t *testing.T, url string) {
				s, c := openWithClock(t, url)
				seedChain(t, s, c, 5)
				if n := sql(t, url, "DELETE FROM audit_entries WHERE "+tt.deleted); n == 0 {
					t.Fatal("the delete removed nothing")
				}
				checkBreak(t, verify(t, s, ""), tt.want)
			})
		})
	}
}

func TestAnEntryAppendedAfterATruncatedTailDoesNotHideIt(t *testing.T) {
	databasetest.Each(t, func(t *testing.T, url string) {
		s, c := openWithClock(t, url)
		seedChain(t, s, c, 3)
		sql(t, url, "DELETE FROM audit_entries WHERE id = 3")
		if _, err := s.Append(context.Background(), entry("e4", "s1", "alice", "alice", "ready", t0)); err != nil {
			t.Fatal(err)
		}
		checkBreak(t, verify(t, s, ""), brk{Kind: auditv1.ChainBreak_KIND_LINK, Sequence: 4, Phrase: "sequences 3 to 3 are missing"})
	})
}

func TestVerifyWithAKnownHash(t *testing.T) {
	databasetest.Each(t, func(t *testing.T, url string) {
		s, c := openWithClock(t, url)
		all := seedChain(t, s, c, 3)
		if got := verify(t, s, all[1].GetHash()); !got.GetIntact() {
			t.Errorf("verify with the hash of entry 2 = %v, want intact", got)
		}
		checkBreak(t, verify(t, s, strings.Repeat("ab", 32)), brk{Kind: auditv1.ChainBreak_KIND_KNOWN_HASH_MISSING, Phrase: "no kept entry has the known hash"})
	})
}

func TestRetentionKeepsTheRestVerifiable(t *testing.T) {
	databasetest.Each(t, func(t *testing.T, url string) {
		ctx := context.Background()
		s, c := openWithClock(t, url)
		all := seedChain(t, s, c, 6) // recorded at t0+1m … t0+6m
		deleted, err := s.Prune(ctx, t0.Add(3*time.Minute+30*time.Second))
		if err != nil || deleted != 3 {
			t.Fatalf("Prune = %d, %v; want 3, nil", deleted, err)
		}
		got := verify(t, s, "")
		want := &auditv1.VerifyAuditEntriesResponse{
			Intact: true, CheckedEntries: 3,
			CheckpointHash: all[2].GetHash(), CheckpointSequence: 3,
			HeadHash: all[5].GetHash(), HeadSequence: 6,
		}
		if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
			t.Errorf("verify after retention (-want +got):\n%s", diff)
		}
		kept, _, err := s.List(ctx, store.Query{Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(all[3:], kept, protocmp.Transform()); diff != "" {
			t.Errorf("kept entries (-want +got):\n%s", diff)
		}
		if deleted, err := s.Prune(ctx, t0.Add(3*time.Minute+30*time.Second)); err != nil || deleted != 0 {
			t.Errorf("Prune again = %d, %v; want 0, nil", deleted, err)
		}

		// The chain goes on from its head, and a known hash at the
		// checkpoint is still accepted.
		c.Set(t0.Add(7 * time.Minute))
		if _, err := s.Append(ctx, entry("e7", "s1", "alice", "alice", "ready", t0)); err != nil {
			t.Fatal(err)
		}
		if got := verify(t, s, all[2].GetHash()); !got.GetIntact() || got.GetCheckedEntries() != 4 {
			t.Errorf("verify after an append = %v, want intact with 4 entries", got)
		}

		// Deleting everything leaves an intact, empty kept chain.
		if deleted, err := s.Prune(ctx, t0.Add(time.Hour)); err != nil || deleted != 4 {
			t.Fatalf("Prune of everything = %d, %v; want 4, nil", deleted, err)
		}
		if got := verify(t, s, ""); !got.GetIntact() || got.GetCheckedEntries() != 0 || got.GetCheckpointSequence() != 7 || got.GetHeadSequence() != 7 {
			t.Errorf("verify after deleting everything = %v, want intact, nothing checked, checkpoint and head at 7", got)
		}

		// A row deleted right after the checkpoint is still a break.
		for i := 8; i <= 9; i++ {
			c.Set(t0.Add(time.Duration(i) * time.Minute))
			if _, err := s.Append(ctx, entry(fmt.Sprintf("e%d", i), "s1", "alice", "alice", "ready", t0)); err != nil {
				t.Fatal(err)
			}
		}
		sql(t, url, "DELETE FROM audit_entries WHERE id = 8")
		checkBreak(t, verify(t, s, ""), brk{Kind: auditv1.ChainBreak_KIND_LINK, Sequence: 9, Phrase: "does not link to the checkpoint (entry 7"})
	})
}

func TestRetentionInManyBatches(t *testing.T) {
	s, c := openWithClock(t, databasetest.SQLite(t))
	ctx := context.Background()
	const n = 1234 // more than two of Prune's batches
	for i := 1; i <= n; i++ {
		c.Set(t0.Add(time.Duration(i) * time.Second))
		if _, err := s.Append(ctx, entry(fmt.Sprintf("e%d", i), "s1", "alice", "alice", "ready", t0)); err != nil {
			t.Fatal(err)
		}
	}
	deleted, err := s.Prune(ctx, t0.Add(1200*time.Second+time.Millisecond))
	if err != nil || deleted != 1200 {
		t.Fatalf("Prune = %d, %v; want 1200, nil", deleted, err)
	}
	if got := verify(t, s, ""); !got.GetIntact() || got.GetCheckedEntries() != n-1200 || got.GetCheckpointSequence() != 1200 {
		t.Errorf("verify = %v, want intact with %d entries after checkpoint 1200", got, n-1200)
	}
}

func TestRetentionNeverDeletesABrokenChain(t *testing.T) {
	databasetest.Each(t, func(t *testing.T, url string) {
		ctx := context.Background()
		s, c := openWithClock(t, url)
		seedChain(t, s, c, 4)
		sql(t, url, "UPDATE audit_entries SET detail = ? WHERE id = 2", "rewritten")
		deleted, err := s.Prune(ctx, t0.Add(time.Hour))
		if !errors.Is(err, store.ErrChainBroken) || deleted != 0 {
			t.Fatalf("Prune = %d, %v; want 0, ErrChainBroken", deleted, err)
		}
		if !strings.Contains(err.Error(), "entry 2 (event e2)") {
			t.Errorf("Prune's error %q does not name entry 2", err)
		}
		kept, _, err := s.List(ctx, store.Query{Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		if len(kept) != 4 {
			t.Errorf("%d entries kept, want all 4", len(kept))
		}
		checkBreak(t, verify(t, s, ""), brk{Kind: auditv1.ChainBreak_KIND_CONTENT, Sequence: 2, Phrase: "entry 2 (event e2)"})
	})
}

func TestTwoFailuresInOneGenerationAreBothKept(t *testing.T) {
	databasetest.Each(t, func(t *testing.T, url string) {
		ctx := context.Background()
		s := open(t, url)
		id := lifecycle.AuditEventID("s1", 1, lifecycle.ActionFailure)
		failure := func(token uint64, detail string) *auditv1.AuditEntry {
			e := entry(id, "s1", "alice", lifecycle.SystemActor, lifecycle.ActionFailure, t0)
			e.LeaseToken, e.Detail = token, detail
			return e
		}
		steps := []struct {
			entry        *auditv1.AuditEntry
			wantInserted bool
		}{
			{failure(7, "Timeout: first attempt"), true},
			{failure(7, "Timeout: first attempt"), false}, // redelivered under the same lease
			{failure(12, "CrashLoopBackOff: second attempt"), true},
		}
		for i, st := range steps {
			inserted, err := s.Append(ctx, st.entry)
			if err != nil || inserted != st.wantInserted {
				t.Fatalf("Append %d = %v, %v; want %v, nil", i, inserted, err, st.wantInserted)
			}
		}
		got, _, err := s.List(ctx, store.Query{StoreID: "s1", Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		want := []*auditv1.AuditEntry{steps[0].entry, steps[2].entry}
		if diff := cmp.Diff(want, got, protocmp.Transform(), ignoreChain); diff != "" {
			t.Errorf("entries (-want +got):\n%s", diff)
		}
		if resp := verify(t, s, ""); !resp.GetIntact() || resp.GetCheckedEntries() != 2 {
			t.Errorf("verify = %v, want intact with 2 entries", resp)
		}
	})
}

func TestConcurrentAppendsFormOneChain(t *testing.T) {
	databasetest.Each(t, func(t *testing.T, url string) {
		// Two stores on one database, as two replicas of the audit service.
		stores := []*store.Store{open(t, url), open(t, url)}
		const writers, each = 8, 15
		var wg sync.WaitGroup
		errs := make(chan error, writers*each)
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range each {
					// Every event twice: duplicates must not join the chain.
					for range 2 {
						if _, err := stores[w%2].Append(context.Background(), entry(fmt.Sprintf("w%d-%d", w, i), "s1", "alice", "alice", "ready", t0)); err != nil {
							errs <- err
						}
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if got := verify(t, stores[0], ""); !got.GetIntact() || got.GetCheckedEntries() != writers*each {
			t.Errorf("verify = %v, want intact with %d entries", got, writers*each)
		}
	})
}

// onlyInit is the migrations up to the one that added the chain.
func onlyInit() fs.FS {
	m := fstest.MapFS{}
	for _, dialect := range []string{"sqlite3", "postgres"} {
		name := "migrations/" + dialect + "/0001_init.sql"
		body, err := fs.ReadFile(store.Migrations(), name)
		if err != nil {
			panic(err)
		}
		m[name] = &fstest.MapFile{Data: body}
	}
	return m
}

func TestEntriesRecordedBeforeTheChainAreChainedAtStart(t *testing.T) {
	databasetest.Each(t, func(t *testing.T, url string) {
		databasetest.Migrated(t, url, onlyInit())
		for i := 1; i <= 3; i++ {
			sql(t, url, "INSERT INTO audit_entries (event_id, action, actor, store_id, store_owner, time, detail, recorded_at) VALUES (?, 'create', 'alice', 's1', 'alice', ?, 'old', ?)",
				fmt.Sprintf("old%d", i), t0, t0.Add(time.Duration(i)*time.Second))
		}
		s := open(t, url)
		if got := verify(t, s, ""); !got.GetIntact() || got.GetCheckedEntries() != 3 || got.GetHeadSequence() != 3 {
			t.Fatalf("verify after the upgrade = %v, want intact with 3 entries", got)
		}
		if _, err := s.Append(context.Background(), entry("new", "s1", "alice", "alice", "ready", t0)); err != nil {
			t.Fatal(err)
		}
		s.Close()
		s = open(t, url) // sealing again must change nothing
		if got := verify(t, s, ""); !got.GetIntact() || got.GetCheckedEntries() != 4 {
			t.Errorf("verify after reopening = %v, want intact with 4 entries", got)
		}
	})
}

func TestAppendWithoutTheChainRowRecordsNothing(t *testing.T) {
	databasetest.Each(t, func(t *testing.T, url string) {
		s := open(t, url)
		sql(t, url, "DELETE FROM audit_chains")
		inserted, err := s.Append(context.Background(), entry("e1", "s1", "alice", "alice", "create", t0))
		if inserted || !errors.Is(err, store.ErrChainMissing) {
			t.Errorf("Append = %v, %v; want false, ErrChainMissing", inserted, err)
		}
		if _, err := s.Verify(context.Background(), ""); !errors.Is(err, store.ErrChainMissing) {
			t.Errorf("Verify error = %v, want ErrChainMissing", err)
		}
	})
}
