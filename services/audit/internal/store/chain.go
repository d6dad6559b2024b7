package store

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"time"

	entdialect "entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"

	auditv1 "github.com/storeprov/storeprov/gen/storeprov/audit/v1"
	"github.com/storeprov/storeprov/services/audit/internal/ent"
	"github.com/storeprov/storeprov/services/audit/internal/ent/auditchain"
	"github.com/storeprov/storeprov/services/audit/internal/ent/auditentry"
)

// The hash chain
//
// Every entry stores prev_hash, the hash of the entry committed before it
// (empty for the first entry ever), and hash = SHA-256 over a version tag,
// prev_hash and the entry's content (content.hash). The one row of
// audit_chains holds the head (hash and sequence of the newest entry) and
// the checkpoint (hash and sequence of the last entry retention deleted,
// which the first kept entry links to). Appends and retention lock that
// row, so the chain grows one entry at a time in commit order, and an
// entry and the head that names it are committed together.
//
// Verify recomputes every kept entry's hash and checks every link, from
// the checkpoint to the head: an entry edited in place, deleted, inserted
// or reordered breaks it at the first entry concerned. It cannot detect a
// rewrite of the whole table and of audit_chains with every hash
// recomputed; a head hash kept outside the database (Verify's knownHash)
// does.

// chainID is the id of the one row of audit_chains.
const chainID = 1

// verifyPage is how many entries Verify and Prune read at a time.
const verifyPage = 500

// Errors of the chain.
var (
	// ErrChainMissing means the row of audit_chains is gone: the database
	// was changed outside the audit service. Nothing is recorded until an
	// operator restores it.
	ErrChainMissing = errors.New("the audit chain's state (the row of audit_chains with id 1) is missing: the audit database was changed outside the audit service; restore it from a backup")
	// ErrChainBroken means Prune found entries it was about to delete that
	// do not verify; it deleted none of them, so the evidence stays.
	ErrChainBroken = errors.New("audit chain broken")
)

// hashVersion tags the encoding content.hash uses; a new encoding gets a
// new tag.
const hashVersion = "storeprov.audit.v1"

// content is what an entry's hash covers: every stored field but the
// sequence (which the links cover) and the hashes themselves.
type content struct {
	EventID    string
	LeaseToken uint64
	Action     string
	Actor      string
	StoreID    string
	StoreOwner string
	Time       time.Time
	Detail     string
	RecordedAt time.Time
}

func contentOf(r *ent.AuditEntry) content {
	return content{
		EventID:    r.EventID,
		LeaseToken: r.LeaseToken,
		Action:     r.Action,
		Actor:      r.Actor,
		StoreID:    r.StoreID,
		StoreOwner: r.StoreOwner,
		Time:       normalize(r.Time),
		Detail:     r.Detail,
		RecordedAt: normalize(r.RecordedAt),
	}
}

// hash returns the hex SHA-256 of the entry after the entry whose hash is
// prev. Each field is written with its length first, so no two different
// entries encode alike.
func (c content) hash(prev string) string {
	h := sha256.New()
	for _, f := range []string{
		hashVersion, prev, c.EventID, strconv.FormatUint(c.LeaseToken, 10), c.Action, c.Actor,
		c.StoreID, c.StoreOwner, formatTime(c.Time), c.Detail, formatTime(c.RecordedAt),
	} {
		writeField(h, f)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func writeField(h hash.Hash, f string) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(f)))
	h.Write(n[:])
	h.Write([]byte(f))
}

// formatTime writes a stored time the same way whatever the dialect
// returned it as.
func formatTime(t time.Time) string { return normalize(t).Format("2006-01-02T15:04:05.000000Z") }

// inChain runs f in a transaction holding the chain's lock, with the
// chain's state as of that lock. On PostgreSQL the lock is the row's
// SELECT … FOR UPDATE; SQLite runs one writing transaction at a time
// (database.Open begins them IMMEDIATE), so the transaction is the lock.
func (s *Store) inChain(ctx context.Context, f func(tx *ent.Tx, chain *ent.AuditChain) error) error {
	tx, err := s.client.Tx(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	q := tx.AuditChain.Query().Where(auditchain.ID(chainID))
	if s.db.Dialect == entdialect.Postgres {
		q.ForUpdate()
	}
	chain, err := q.Only(ctx)
	switch {
	case ent.IsNotFound(err):
		return ErrChainMissing
	case err != nil:
		return fmt.Errorf("cannot lock the audit chain: %w", err)
	}
	if err := f(tx, chain); err != nil {
		return err
	}
	return tx.Commit()
}

// seal chains the entries recorded before the chain existed (migration
// 0002 leaves them without hashes), in sequence order, once: when the
// chain is still empty. Afterwards an entry without a hash is not sealed
// but reported by Verify.
func (s *Store) seal(ctx context.Context) error {
	err := s.inChain(ctx, func(tx *ent.Tx, chain *ent.AuditChain) error {
		if chain.HeadSequence != 0 || chain.CheckpointSequence != 0 {
			return nil
		}
		rows, err := tx.AuditEntry.Query().Order(auditentry.ByID()).All(ctx)
		if err != nil || len(rows) == 0 {
			return err
		}
		prev := ""
		for _, r := range rows {
			h := contentOf(r).hash(prev)
			q, args := entsql.Dialect(s.db.Dialect).Update(auditentry.Table).
				Set(auditentry.FieldPrevHash, prev).
				Set(auditentry.FieldHash, h).
				Where(entsql.EQ(auditentry.FieldID, r.ID)).
				Query()
			if _, err := tx.ExecContext(ctx, q, args...); err != nil {
				return err
			}
			prev = h
		}
		return tx.AuditChain.UpdateOneID(chainID).SetHeadHash(prev).SetHeadSequence(rows[len(rows)-1].ID).Exec(ctx)
	})
	if err != nil {
		return fmt.Errorf("cannot chain the audit entries recorded before the hash chain: %w", err)
	}
	return nil
}

// walker checks entries one after the other from a starting link.
type walker struct {
	prevHash string
	prevSeq  int
	checked  int64
	// known is the hash looked for; found tells whether it was seen.
	known string
	found bool
}

// check verifies r after the entries walked so far and advances, or
// returns what is wrong with r.
func (w *walker) check(r *ent.AuditEntry, checkpointSeq int) *auditv1.ChainBreak {
	entry := toProto(r)
	if r.ID <= checkpointSeq {
		return &auditv1.ChainBreak{
			Kind: auditv1.ChainBreak_KIND_LINK, Sequence: int64(r.ID), Entry: entry,
			Message: fmt.Sprintf("entry %d (event %s) is at or before the checkpoint (entry %d): retention deleted every entry up to there, so it was inserted afterwards, outside the audit service",
				r.ID, r.EventID, checkpointSeq),
		}
	}
	if got := contentOf(r).hash(r.PrevHash); got != r.Hash {
		return &auditv1.ChainBreak{
			Kind: auditv1.ChainBreak_KIND_CONTENT, Sequence: int64(r.ID), Entry: entry,
			Message: fmt.Sprintf("entry %d (event %s) does not match its hash: its content or hash was changed after it was recorded (stored hash %q, content hashes to %s)",
				r.ID, r.EventID, r.Hash, got),
		}
	}
	if r.PrevHash != w.prevHash {
		before := fmt.Sprintf("entry %d", w.prevSeq)
		switch {
		case w.prevSeq == 0:
			before = "the start of the chain"
		case w.checked == 0:
			before = fmt.Sprintf("the checkpoint (entry %d, the last retention deleted)", w.prevSeq)
		}
		gap := ""
		if r.ID > w.prevSeq+1 {
			gap = fmt.Sprintf(" (sequences %d to %d are missing)", w.prevSeq+1, r.ID-1)
		}
		return &auditv1.ChainBreak{
			Kind: auditv1.ChainBreak_KIND_LINK, Sequence: int64(r.ID), Entry: entry,
			Message: fmt.Sprintf("entry %d (event %s) does not link to %s: entries between them were deleted%s, or %s was rewritten",
				r.ID, r.EventID, before, gap, before),
		}
	}
	w.prevHash, w.prevSeq = r.Hash, r.ID
	w.checked++
	if w.known != "" && r.Hash == w.known {
		w.found = true
	}
	return nil
}

// page returns up to verifyPage entries after sequence after, in order.
func page(ctx context.Context, c *ent.AuditEntryClient, after int) ([]*ent.AuditEntry, error) {
	return c.Query().Where(auditentry.IDGT(after)).Order(auditentry.ByID()).Limit(verifyPage).All(ctx)
}

// maxVerifyRestarts bounds how often Verify starts over because retention
// moved the checkpoint while it walked.
const maxVerifyRestarts = 3

// Verify walks the chain from the checkpoint to the head and reports the
// first entry whose content does not match its hash or that does not link
// to the entry before it, or that the kept chain is intact. knownHash,
// when not empty, is a hash taken earlier and kept elsewhere: the report
// is intact only when the chain still contains it. Entries appended while
// Verify runs are verified too; when retention moves the checkpoint, it
// starts over. An error means the database could not be read.
func (s *Store) Verify(ctx context.Context, knownHash string) (*auditv1.VerifyAuditEntriesResponse, error) {
	for range maxVerifyRestarts {
		resp, restart, err := s.verify(ctx, knownHash)
		if err != nil || !restart {
			return resp, err
		}
	}
	return nil, fmt.Errorf("retention moved the audit chain's checkpoint %d times during verification; retry later", maxVerifyRestarts)
}

// verify is one walk of Verify; restart is true when the checkpoint moved
// during it.
func (s *Store) verify(ctx context.Context, knownHash string) (_ *auditv1.VerifyAuditEntriesResponse, restart bool, _ error) {
	start, err := s.chain(ctx)
	if err != nil {
		return nil, false, err
	}
	resp := &auditv1.VerifyAuditEntriesResponse{
		CheckpointHash:     start.CheckpointHash,
		CheckpointSequence: int64(start.CheckpointSequence),
	}
	w := &walker{prevHash: start.CheckpointHash, prevSeq: start.CheckpointSequence, known: knownHash}
	w.found = knownHash != "" && knownHash == start.CheckpointHash
	// Broken reports brk unless the checkpoint moved meanwhile, in which
	// case the walk read a prefix retention was deleting.
	broken := func(brk *auditv1.ChainBreak) (*auditv1.VerifyAuditEntriesResponse, bool, error) {
		now, err := s.chain(ctx)
		if err != nil {
			return nil, false, err
		}
		if now.CheckpointSequence != start.CheckpointSequence {
			return nil, true, nil
		}
		resp.CheckedEntries, resp.HeadHash, resp.HeadSequence = w.checked, now.HeadHash, int64(now.HeadSequence)
		resp.FirstBreak = brk
		return resp, false, nil
	}
	// Walk from sequence 0: an entry left at or before the checkpoint is
	// a break too.
	after := 0
	for {
		read := 0
		for {
			rows, err := page(ctx, s.client.AuditEntry, after)
			if err != nil {
				return nil, false, fmt.Errorf("cannot read audit entries after %d: %w", after, err)
			}
			for _, r := range rows {
				if brk := w.check(r, start.CheckpointSequence); brk != nil {
					return broken(brk)
				}
				after = r.ID
			}
			read += len(rows)
			if len(rows) < verifyPage {
				break
			}
		}
		head, err := s.chain(ctx)
		if err != nil {
			return nil, false, err
		}
		if head.CheckpointSequence != start.CheckpointSequence {
			return nil, true, nil
		}
		if head.HeadSequence > w.prevSeq && read > 0 {
			continue // entries appended while this pass read: read them too
		}
		if head.HeadSequence != w.prevSeq || head.HeadHash != w.prevHash {
			newest := fmt.Sprintf("the newest entry is %d", w.prevSeq)
			if w.checked == 0 {
				newest = "no entry is kept after the checkpoint"
			}
			return broken(&auditv1.ChainBreak{
				Kind: auditv1.ChainBreak_KIND_HEAD, Sequence: int64(w.prevSeq),
				Message: fmt.Sprintf("the chain's head is entry %d (hash %s) but %s (hash %s): entries at the end were deleted, or the head was changed",
					head.HeadSequence, head.HeadHash, newest, w.prevHash),
			})
		}
		resp.CheckedEntries, resp.HeadHash, resp.HeadSequence = w.checked, head.HeadHash, int64(head.HeadSequence)
		if knownHash != "" && !w.found {
			return broken(&auditv1.ChainBreak{
				Kind: auditv1.ChainBreak_KIND_KNOWN_HASH_MISSING,
				Message: fmt.Sprintf("no kept entry has the known hash %s: the entries up to it were rewritten, or retention deleted it (the kept chain starts after entry %d)",
					knownHash, start.CheckpointSequence),
			})
		}
		resp.Intact = true
		return resp, false, nil
	}
}

// chain reads the chain's state without locking it.
func (s *Store) chain(ctx context.Context) (*ent.AuditChain, error) {
	c, err := s.client.AuditChain.Get(ctx, chainID)
	switch {
	case ent.IsNotFound(err):
		return nil, ErrChainMissing
	case err != nil:
		return nil, fmt.Errorf("cannot read the audit chain: %w", err)
	}
	return c, nil
}

// Prune deletes the entries recorded before cutoff, oldest first, and
// moves the checkpoint to the last one deleted, so that the kept chain
// still verifies. It stops at the first entry recorded at or after cutoff:
// only a prefix of the chain is ever deleted. Each batch is checked before
// it is deleted, in the same transaction: a batch that does not verify is
// kept whole and Prune returns an error wrapping ErrChainBroken, so
// retention never erases evidence of tampering. deleted counts the entries
// deleted before any error.
func (s *Store) Prune(ctx context.Context, cutoff time.Time) (deleted int, err error) {
	cutoff = normalize(cutoff)
	for {
		n, more := 0, false
		err := s.inChain(ctx, func(tx *ent.Tx, chain *ent.AuditChain) error {
			rows, err := page(ctx, tx.AuditEntry, chain.CheckpointSequence)
			if err != nil {
				return fmt.Errorf("cannot read audit entries after %d: %w", chain.CheckpointSequence, err)
			}
			w := &walker{prevHash: chain.CheckpointHash, prevSeq: chain.CheckpointSequence}
			for _, r := range rows {
				if !normalize(r.RecordedAt).Before(cutoff) {
					break
				}
				if brk := w.check(r, chain.CheckpointSequence); brk != nil {
					return fmt.Errorf("%w: %s; the entries after %d are kept: run verify and investigate", ErrChainBroken, brk.GetMessage(), chain.CheckpointSequence)
				}
			}
			if w.checked == 0 {
				return nil
			}
			if _, err := tx.AuditEntry.Delete().
				Where(auditentry.IDGT(chain.CheckpointSequence), auditentry.IDLTE(w.prevSeq)).
				Exec(ctx); err != nil {
				return fmt.Errorf("cannot delete audit entries up to %d: %w", w.prevSeq, err)
			}
			n = int(w.checked)
			more = n == len(rows) && len(rows) == verifyPage
			return tx.AuditChain.UpdateOneID(chainID).
				SetCheckpointHash(w.prevHash).
				SetCheckpointSequence(w.prevSeq).
				Exec(ctx)
		})
		if err != nil {
			return deleted, err
		}
		deleted += n
		if !more {
			return deleted, nil
		}
	}
}
