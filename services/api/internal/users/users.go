// Package users keeps the api's users and their bearer tokens: API tokens,
// and session tokens from OpenID Connect sign-ins. A token is shown once
// when it is issued and stored only as its SHA-256 hash.
package users

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/storeprov/storeprov/pkg/rpc"
	"github.com/storeprov/storeprov/services/api/internal/ent"
	enttoken "github.com/storeprov/storeprov/services/api/internal/ent/token"
	entuser "github.com/storeprov/storeprov/services/api/internal/ent/user"
)

// TokenPrefix starts every token, so that leaked tokens are easy to find.
const TokenPrefix = "sp_"

// BootstrapAdmin is the user created on first start.
const BootstrapAdmin = "admin"

var (
	// ErrForbidden means the caller may not act for another user.
	ErrForbidden = errors.New("permission denied")
	// ErrInvalid means a user name or setting is not allowed; the message
	// says what is.
	ErrInvalid = errors.New("invalid user")
)

// Service issues and checks tokens.
type Service struct {
	Client *ent.Client
	// DefaultStoreQuota applies to users created without one.
	DefaultStoreQuota int32
}

// Authenticate returns the user a token belongs to, or an error wrapping
// rpc.ErrUnauthenticated.
func (s *Service) Authenticate(ctx context.Context, token string) (rpc.Principal, error) {
	if !strings.HasPrefix(token, TokenPrefix) {
		return rpc.Principal{}, rpc.ErrUnauthenticated
	}
	t, err := s.Client.Token.Query().Where(enttoken.Hash(hash(token))).WithUser().Only(ctx)
	if ent.IsNotFound(err) {
		return rpc.Principal{}, rpc.ErrUnauthenticated
	}
	if err != nil {
		return rpc.Principal{}, fmt.Errorf("cannot look up token: %w", err)
	}
	if t.ExpireTime != nil && !time.Now().Before(*t.ExpireTime) {
		return rpc.Principal{}, fmt.Errorf("%w: the session token expired at %s; sign in again", rpc.ErrUnauthenticated, t.ExpireTime.UTC().Format(time.RFC3339))
	}
	return rpc.Principal{Name: t.Edges.User.Name, Admin: t.Edges.User.Admin}, nil
}

// Get returns a user by name.
func (s *Service) Get(ctx context.Context, name string) (*ent.User, error) {
	return s.Client.User.Query().Where(entuser.Name(name)).Only(ctx)
}

// NewUser describes a user created by CreateToken.
type NewUser struct {
	Name       string
	Admin      bool
	StoreQuota int32
}

// CreateToken issues a token for user u.Name, creating the user with u's
// settings if it does not exist. Only an admin may issue tokens for
// someone else or create users; it returns ErrForbidden otherwise.
func (s *Service) CreateToken(ctx context.Context, caller rpc.Principal, u NewUser, description string) (string, *ent.User, error) {
	if u.Name == "" {
		u.Name = caller.Name
	}
	if !caller.Admin && u.Name != caller.Name {
		return "", nil, fmt.Errorf("%w: only an admin may issue tokens for another user", ErrForbidden)
	}
	if err := ValidateName(u.Name); err != nil {
		return "", nil, err
	}
	if u.StoreQuota < 0 {
		return "", nil, fmt.Errorf("%w: store_quota is %d: use 0 for the default or a positive number", ErrInvalid, u.StoreQuota)
	}
	tx, err := s.Client.Tx(ctx)
	if err != nil {
		return "", nil, err
	}
	defer tx.Rollback()
	user, err := tx.User.Query().Where(entuser.Name(u.Name)).Only(ctx)
	if ent.IsNotFound(err) {
		quota := u.StoreQuota
		if quota == 0 {
			quota = s.DefaultStoreQuota
		}
		user, err = tx.User.Create().SetName(u.Name).SetAdmin(u.Admin).SetStoreQuota(quota).Save(ctx)
	}
	if err != nil {
		return "", nil, fmt.Errorf("cannot create user %s: %w", u.Name, err)
	}
	token := newToken()
	if err := tx.Token.Create().SetHash(hash(token)).SetDescription(description).SetUser(user).Exec(ctx); err != nil {
		return "", nil, fmt.Errorf("cannot store token: %w", err)
	}
	return token, user, tx.Commit()
}

// Bootstrap creates the first admin and returns its token when the
// database has no user yet; otherwise, or when another replica did it
// first, it returns "".
func (s *Service) Bootstrap(ctx context.Context) (string, error) {
	n, err := s.Client.User.Query().Count(ctx)
	if err != nil || n > 0 {
		return "", err
	}
	token, _, err := s.CreateToken(ctx, rpc.Principal{Name: BootstrapAdmin, Admin: true},
		NewUser{Name: BootstrapAdmin, Admin: true}, "generated on first start")
	if ent.IsConstraintError(err) {
		return "", nil // another api replica, starting at the same time, created it
	}
	return token, err
}

// ValidateName checks a user name: a DNS label, since it appears in labels.
func ValidateName(name string) error {
	if name == "" || len(name) > 63 {
		return fmt.Errorf("%w: name %q must be 1 to 63 characters", ErrInvalid, name)
	}
	for i, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' && i > 0 && i < len(name)-1) {
			return fmt.Errorf("%w: name %q is not a DNS label: use lowercase letters, digits and '-'", ErrInvalid, name)
		}
	}
	return nil
}

// newToken returns a new random bearer token.
func newToken() string {
	return TokenPrefix + strings.ToLower(rand.Text()) + strings.ToLower(rand.Text())
}

func hash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}
