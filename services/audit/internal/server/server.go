// Package server answers storeprov.audit.v1.AuditService over gRPC: it
// validates requests, restricts what a caller may see, and turns the log's
// keyset cursors into opaque page tokens. It is the one place where the
// audit log's errors become gRPC status codes.
package server

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	auditv1 "github.com/storeprov/storeprov/gen/storeprov/audit/v1"
	"github.com/storeprov/storeprov/pkg/auth"
	"github.com/storeprov/storeprov/services/audit/internal/store"
)

// Page sizes of ListAuditEntries.
const (
	// DefaultPageSize applies when the request sets none.
	DefaultPageSize = 100
	// MaxPageSize caps larger requests.
	MaxPageSize = 1000
)

// Log is the part of the audit log the server reads.
type Log interface {
	// List returns up to q.Limit entries matching q, oldest first, and the
	// cursor of the last one when more follow.
	List(ctx context.Context, q store.Query) ([]*auditv1.AuditEntry, *store.Cursor, error)
	// Verify walks the hash chain and reports its first break, or that it
	// is intact (and contains knownHash, when set).
	Verify(ctx context.Context, knownHash string) (*auditv1.VerifyAuditEntriesResponse, error)
}

// Server implements auditv1.AuditServiceServer. Callers must have been
// authenticated by the rpc interceptor: a request without a principal is
// refused.
type Server struct {
	auditv1.UnimplementedAuditServiceServer
	log    Log
	logger *slog.Logger
}

// New returns a server reading log. A nil logger means slog.Default().
func New(log Log, logger *slog.Logger) *Server {
	if logger == nil {
		logger = slog.Default()
	}
	return &Server{log: log, logger: logger}
}

// ListAuditEntries returns the entries matching every filter set in req,
// oldest first. Admins see every entry; other users only the entries of
// stores they own, whatever the filters say. A malformed request fails
// with InvalidArgument naming the field at fault.
func (s *Server) ListAuditEntries(ctx context.Context, req *auditv1.ListAuditEntriesRequest) (*auditv1.ListAuditEntriesResponse, error) {
	p, ok := auth.PrincipalFrom(ctx)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, `missing API token: send the header "Authorization: Bearer <token>"`)
	}
	if !p.Admin && p.Name == "" {
		// An empty owner filter would show every store.
		return nil, status.Error(codes.PermissionDenied, "the API token names no user: only an admin may read the whole audit log")
	}
	q, err := query(req, p)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	entries, next, err := s.log.List(ctx, q)
	if err != nil {
		if ctx.Err() != nil {
			return nil, status.FromContextError(ctx.Err()).Err()
		}
		s.logger.ErrorContext(ctx, "cannot list audit entries", "error", err)
		return nil, status.Error(codes.Unavailable, "the audit log cannot be read right now; retry later")
	}
	resp := &auditv1.ListAuditEntriesResponse{Entries: entries}
	if next != nil {
		resp.NextPageToken = encodeToken(pageToken{Time: next.Time, ID: next.ID, Filter: fingerprint(q)})
	}
	return resp, nil
}

// VerifyAuditEntries checks the whole kept hash chain; only admins may,
// since the answer names entries of every store. A known_hash that is not
// 64 hex digits fails with InvalidArgument; a chain that does not verify
// is a successful answer with intact false and the first break.
func (s *Server) VerifyAuditEntries(ctx context.Context, req *auditv1.VerifyAuditEntriesRequest) (*auditv1.VerifyAuditEntriesResponse, error) {
	p, ok := auth.PrincipalFrom(ctx)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, `missing API token: send the header "Authorization: Bearer <token>"`)
	}
	if !p.Admin {
		return nil, status.Error(codes.PermissionDenied, "only an admin may verify the audit log: it reads the entries of every store")
	}
	known := strings.ToLower(strings.TrimSpace(req.GetKnownHash()))
	if known != "" {
		if b, err := hex.DecodeString(known); err != nil || len(b) != sha256.Size {
			return nil, status.Errorf(codes.InvalidArgument, "known_hash %q is not a SHA-256 in hex: pass the head_hash of an earlier verification (64 hex digits), or nothing", req.GetKnownHash())
		}
	}
	resp, err := s.log.Verify(ctx, known)
	if err != nil {
		if ctx.Err() != nil {
			return nil, status.FromContextError(ctx.Err()).Err()
		}
		s.logger.ErrorContext(ctx, "cannot verify the audit log", "error", err)
		if errors.Is(err, store.ErrChainMissing) {
			return nil, status.Error(codes.DataLoss, err.Error())
		}
		return nil, status.Error(codes.Unavailable, "the audit log cannot be verified right now; retry later")
	}
	if !resp.GetIntact() {
		s.logger.WarnContext(ctx, "audit chain verification found a break", "kind", resp.GetFirstBreak().GetKind().String(),
			"sequence", resp.GetFirstBreak().GetSequence(), "message", resp.GetFirstBreak().GetMessage())
	}
	return resp, nil
}

// query translates req, as seen by p, into a query of the log.
func query(req *auditv1.ListAuditEntriesRequest, p auth.Principal) (store.Query, error) {
	q := store.Query{StoreID: req.GetStoreId(), Actor: req.GetActor(), Action: req.GetAction()}
	if !p.Admin {
		q.StoreOwner = p.Name
	}
	if t := req.GetStartTime(); t != nil {
		if err := t.CheckValid(); err != nil {
			return q, fmt.Errorf("start_time is not a valid timestamp: %w", err)
		}
		q.Start = t.AsTime()
	}
	if t := req.GetEndTime(); t != nil {
		if err := t.CheckValid(); err != nil {
			return q, fmt.Errorf("end_time is not a valid timestamp: %w", err)
		}
		q.End = t.AsTime()
	}
	if !q.Start.IsZero() && !q.End.IsZero() && q.End.Before(q.Start) {
		return q, fmt.Errorf("end_time %s is before start_time %s: end_time must be at or after start_time",
			q.End.Format(time.RFC3339Nano), q.Start.Format(time.RFC3339Nano))
	}
	switch size := req.GetPageSize(); {
	case size < 0:
		return q, fmt.Errorf("page_size %d is negative: use 0 for the default of %d, or up to %d", size, DefaultPageSize, MaxPageSize)
	case size == 0:
		q.Limit = DefaultPageSize
	default:
		q.Limit = min(int(size), MaxPageSize)
	}
	if raw := req.GetPageToken(); raw != "" {
		tok, err := decodeToken(raw)
		if err != nil {
			return q, fmt.Errorf("page_token is not one this service issued: pass the next_page_token of the previous response unchanged")
		}
		if tok.Filter != fingerprint(q) {
			return q, fmt.Errorf("page_token belongs to a request with other filters: repeat that request's store_id, actor, action, start_time and end_time with the token")
		}
		q.After = &store.Cursor{Time: tok.Time, ID: tok.ID}
	}
	return q, nil
}

// pageToken is the position after which the next page starts, and the
// filters it was issued for: a token applies to the query it came from.
type pageToken struct {
	Time   time.Time `json:"t"`
	ID     int       `json:"i"`
	Filter string    `json:"f"`
}

func encodeToken(t pageToken) string {
	b, err := json.Marshal(t)
	if err != nil {
		panic(fmt.Sprintf("cannot encode page token: %v", err)) // a struct of a time, an int and a string always encodes
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeToken(s string) (pageToken, error) {
	var t pageToken
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return t, err
	}
	if err := json.Unmarshal(b, &t); err != nil {
		return t, err
	}
	if t.Time.IsZero() || t.ID <= 0 || t.Filter == "" {
		return t, fmt.Errorf("incomplete page token")
	}
	return t, nil
}

// fingerprint identifies the filters of q, not its position or size.
func fingerprint(q store.Query) string {
	var start, end string
	if !q.Start.IsZero() {
		start = q.Start.UTC().Format(time.RFC3339Nano)
	}
	if !q.End.IsZero() {
		end = q.End.UTC().Format(time.RFC3339Nano)
	}
	b, _ := json.Marshal([]string{q.StoreID, q.Actor, q.Action, q.StoreOwner, start, end})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}
