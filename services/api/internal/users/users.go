// Package users keeps the api's users and their bearer tokens: API tokens,
// and session tokens from OpenID Connect sign-ins. A token is shown once
// when it is issued and stored only as its SHA-256 hash; every token
// expires, and may be revoked by its id. A user's admin flag is read on
// every call, never kept in a token.
package users

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/storeprov/storeprov/pkg/auth"
	"github.com/storeprov/storeprov/services/api/internal/ent"
	enttoken "github.com/storeprov/storeprov/services/api/internal/ent/token"
	entuser "github.com/storeprov/storeprov/services/api/internal/ent/user"
)

// TokenPrefix starts every token, so that leaked tokens are easy to find.
const TokenPrefix = "sp_"

// BootstrapAdmin is the user created on first start.
const BootstrapAdmin = "admin"

// DefaultTokenMaxTTL is the longest an API token lasts, and how long it
// lasts when no TTL is asked for, unless Service.TokenMaxTTL says otherwise.
const DefaultTokenMaxTTL = 90 * 24 * time.Hour

// lastUseResolution is how often, at most, a token's last use is written:
// a token in constant use costs one write a minute, not one per call.
const lastUseResolution = time.Minute

var (
	// ErrForbidden means the caller may not act for another user.
	ErrForbidden = errors.New("permission denied")
	// ErrInvalid means a user name or setting, or a token's ttl or
	// description, is not allowed; the message says what is.
	ErrInvalid = errors.New("invalid request")
	// ErrUserNotFound means no user has the name.
	ErrUserNotFound = errors.New("user not found")
	// ErrTokenNotFound means no token has the id, or the caller may not see
	// it.
	ErrTokenNotFound = errors.New("token not found")
)

// Service issues and checks tokens.
type Service struct {
	Client *ent.Client
	// DefaultStoreQuota applies to users created without one.
	DefaultStoreQuota int32
	// TokenMaxTTL is the longest an API token lasts and its default
	// lifetime; 0 means DefaultTokenMaxTTL.
	TokenMaxTTL time.Duration
}

func (s *Service) maxTTL() time.Duration {
	if s.TokenMaxTTL > 0 {
		return s.TokenMaxTTL
	}
	return DefaultTokenMaxTTL
}

// ExpireTime is when t stops being accepted. API tokens issued before
// tokens had an expiry expire TokenMaxTTL after they were created.
func (s *Service) ExpireTime(t *ent.Token) time.Time {
	if t.ExpireTime != nil {
		return *t.ExpireTime
	}
	return t.CreateTime.Add(s.maxTTL())
}

// Authenticate returns the user a token belongs to, with the user's admin
// flag as it is now, or an error wrapping auth.ErrUnauthenticated. It
// records the token's last use, at most once a minute per token.
func (s *Service) Authenticate(ctx context.Context, token string) (auth.Principal, error) {
	if !strings.HasPrefix(token, TokenPrefix) {
		return auth.Principal{}, auth.ErrUnauthenticated
	}
	t, err := s.Client.Token.Query().Where(enttoken.Hash(hash(token))).WithUser().Only(ctx)
	if ent.IsNotFound(err) {
		return auth.Principal{}, auth.ErrUnauthenticated
	}
	if err != nil {
		return auth.Principal{}, fmt.Errorf("cannot look up token: %w", err)
	}
	now := time.Now()
	if expires := s.ExpireTime(t); !now.Before(expires) {
		if t.Kind == enttoken.KindSession {
			return auth.Principal{}, fmt.Errorf("%w: the session token expired at %s; sign in again", auth.ErrUnauthenticated, expires.UTC().Format(time.RFC3339))
		}
		return auth.Principal{}, fmt.Errorf("%w: the API token expired at %s; ask for a new one (storectl token create)", auth.ErrUnauthenticated, expires.UTC().Format(time.RFC3339))
	}
	if t.LastUseTime == nil || now.Sub(*t.LastUseTime) >= lastUseResolution {
		// Best effort: a call is not refused because its token's last use
		// could not be written. The condition lets one replica of several
		// write it.
		_ = s.Client.Token.Update().
			Where(enttoken.ID(t.ID), enttoken.Or(enttoken.LastUseTimeIsNil(), enttoken.LastUseTimeLT(now.Add(-lastUseResolution)))).
			SetLastUseTime(now).Exec(ctx)
	}
	return auth.Principal{Name: t.Edges.User.Name, Admin: t.Edges.User.Admin}, nil
}

// Get returns a user by name, or an error wrapping ErrUserNotFound.
func (s *Service) Get(ctx context.Context, name string) (*ent.User, error) {
	u, err := s.Client.User.Query().Where(entuser.Name(name)).Only(ctx)
	if ent.IsNotFound(err) {
		return nil, fmt.Errorf("%w: %s", ErrUserNotFound, name)
	}
	return u, err
}

// TokenRequest asks CreateToken for a token.
type TokenRequest struct {
	// User the token is for; empty means the caller.
	User string
	// Admin and StoreQuota set up a user the call creates; for a user who
	// exists they are refused (UpdateUser changes them).
	Admin      bool
	StoreQuota int32
	// Description says what the token is for.
	Description string
	// TTL is how long the token lasts: 0 means the longest allowed.
	TTL time.Duration
}

// Issued is a token CreateToken issued.
type Issued struct {
	// Secret is the bearer token, shown once.
	Secret string
	Token  *ent.Token
	// User is whose account the token acts for; UserCreated says whether
	// the call created it.
	User        *ent.User
	UserCreated bool
}

// maxDescription is the longest token description, in bytes.
const maxDescription = 200

// CreateToken issues an API token for r.User, creating the user with r's
// settings if it does not exist. Only an admin may issue tokens for
// someone else, create users, or issue tokens for a user who signs in with
// OpenID Connect; it returns ErrForbidden otherwise. Admin or StoreQuota
// for a user who exists, or a TTL longer than TokenMaxTTL, are ErrInvalid.
func (s *Service) CreateToken(ctx context.Context, caller auth.Principal, r TokenRequest) (Issued, error) {
	if r.User == "" {
		r.User = caller.Name
	}
	if !caller.Admin && r.User != caller.Name {
		return Issued{}, fmt.Errorf("%w: only an admin may issue tokens for another user", ErrForbidden)
	}
	if err := ValidateName(r.User); err != nil {
		return Issued{}, err
	}
	if r.StoreQuota < 0 {
		return Issued{}, fmt.Errorf("%w: store_quota is %d: use 0 for the default or a positive number", ErrInvalid, r.StoreQuota)
	}
	if len(r.Description) > maxDescription {
		return Issued{}, fmt.Errorf("%w: description is %d bytes: keep it to %d", ErrInvalid, len(r.Description), maxDescription)
	}
	switch {
	case r.TTL < 0:
		return Issued{}, fmt.Errorf("%w: ttl is %s: give a positive duration, or none for the longest allowed (%s)", ErrInvalid, r.TTL, s.maxTTL())
	case r.TTL > s.maxTTL():
		return Issued{}, fmt.Errorf("%w: ttl %s is longer than tokens may last here (%s, the api's --token-max-ttl): ask for %s or less", ErrInvalid, r.TTL, s.maxTTL(), s.maxTTL())
	case r.TTL == 0:
		r.TTL = s.maxTTL()
	}
	tx, err := s.Client.Tx(ctx)
	if err != nil {
		return Issued{}, err
	}
	defer func() { _ = tx.Rollback() }() // after Commit, a no-op
	created := false
	user, err := tx.User.Query().Where(entuser.Name(r.User)).Only(ctx)
	switch {
	case ent.IsNotFound(err):
		quota := r.StoreQuota
		if quota == 0 {
			quota = s.DefaultStoreQuota
		}
		user, err = tx.User.Create().SetName(r.User).SetAdmin(r.Admin).SetStoreQuota(quota).Save(ctx)
		if err != nil {
			return Issued{}, fmt.Errorf("cannot create user %s: %w", r.User, err)
		}
		created = true
	case err != nil:
		return Issued{}, fmt.Errorf("cannot look up user %s: %w", r.User, err)
	case r.Admin || r.StoreQuota != 0:
		return Issued{}, fmt.Errorf("%w: user %s exists: admin and store_quota set up a new user only; change them with `storectl user set %s --admin=… --store-quota=…`", ErrInvalid, r.User, r.User)
	}
	secret := newToken()
	t, err := tx.Token.Create().SetHash(hash(secret)).SetDescription(r.Description).
		SetExpireTime(time.Now().Add(r.TTL)).SetUser(user).Save(ctx)
	if err != nil {
		return Issued{}, fmt.Errorf("cannot store token: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return Issued{}, err
	}
	t.Edges.User = user
	return Issued{Secret: secret, Token: t, User: user, UserCreated: created}, nil
}

// ListTokens returns user's tokens that have not expired, newest first;
// empty user means the caller. Only an admin may list another user's
// (ErrForbidden).
func (s *Service) ListTokens(ctx context.Context, caller auth.Principal, user string) ([]*ent.Token, error) {
	if user == "" {
		user = caller.Name
	}
	if !caller.Admin && user != caller.Name {
		return nil, fmt.Errorf("%w: only an admin may list another user's tokens", ErrForbidden)
	}
	if _, err := s.Get(ctx, user); err != nil {
		return nil, err
	}
	all, err := s.Client.Token.Query().Where(enttoken.HasUserWith(entuser.Name(user))).WithUser().
		Order(ent.Desc(enttoken.FieldCreateTime), ent.Desc(enttoken.FieldID)).All(ctx)
	if err != nil {
		return nil, fmt.Errorf("cannot list tokens: %w", err)
	}
	now := time.Now()
	live := all[:0]
	for _, t := range all {
		if now.Before(s.ExpireTime(t)) {
			live = append(live, t)
		}
	}
	return live, nil
}

// RevokeToken deletes the token with the given id, so that its next call
// is refused, and returns what it was. A token that does not exist, or
// that is someone else's when the caller is not an admin, is
// ErrTokenNotFound.
func (s *Service) RevokeToken(ctx context.Context, caller auth.Principal, id string) (*ent.Token, error) {
	n, err := strconv.Atoi(id)
	if err != nil || n <= 0 {
		return nil, fmt.Errorf("%w: %q is not a token id: use an id from the token list", ErrTokenNotFound, id)
	}
	q := s.Client.Token.Query().Where(enttoken.ID(n)).WithUser()
	if !caller.Admin {
		q = q.Where(enttoken.HasUserWith(entuser.Name(caller.Name)))
	}
	t, err := q.Only(ctx)
	if ent.IsNotFound(err) {
		return nil, fmt.Errorf("%w: %s", ErrTokenNotFound, id)
	}
	if err != nil {
		return nil, err
	}
	if err := s.Client.Token.DeleteOneID(t.ID).Exec(ctx); ent.IsNotFound(err) {
		return nil, fmt.Errorf("%w: %s", ErrTokenNotFound, id)
	} else if err != nil {
		return nil, fmt.Errorf("cannot revoke token %s: %w", id, err)
	}
	return t, nil
}

// UserChange is what UpdateUser changes; nil fields are left as they are.
type UserChange struct {
	Admin      *bool
	StoreQuota *int32
}

// UpdateUser changes a user's admin flag or store quota. Only an admin may
// (ErrForbidden); an unknown user is ErrUserNotFound; a quota below 1, no
// change at all, or demoting the last admin are ErrInvalid. Tokens read
// the user's admin flag on every call, so a demotion holds for all of
// them at once.
func (s *Service) UpdateUser(ctx context.Context, caller auth.Principal, name string, c UserChange) (*ent.User, error) {
	if !caller.Admin {
		return nil, fmt.Errorf("%w: only an admin may change users", ErrForbidden)
	}
	if c.Admin == nil && c.StoreQuota == nil {
		return nil, fmt.Errorf("%w: nothing to change: give admin or store_quota", ErrInvalid)
	}
	if c.StoreQuota != nil && *c.StoreQuota < 1 {
		return nil, fmt.Errorf("%w: store_quota is %d: give a positive number", ErrInvalid, *c.StoreQuota)
	}
	tx, err := s.Client.Tx(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { _ = tx.Rollback() }() // after Commit, a no-op
	u, err := tx.User.Query().Where(entuser.Name(name)).Only(ctx)
	if ent.IsNotFound(err) {
		return nil, fmt.Errorf("%w: %s", ErrUserNotFound, name)
	}
	if err != nil {
		return nil, err
	}
	if c.Admin != nil && !*c.Admin && u.Admin {
		others, err := tx.User.Query().Where(entuser.Admin(true), entuser.IDNEQ(u.ID)).Exist(ctx)
		if err != nil {
			return nil, err
		}
		if !others {
			return nil, fmt.Errorf("%w: %s is the only admin: make another user admin first", ErrInvalid, name)
		}
	}
	up := u.Update()
	if c.Admin != nil {
		up.SetAdmin(*c.Admin)
	}
	if c.StoreQuota != nil {
		up.SetStoreQuota(*c.StoreQuota)
	}
	if u, err = up.Save(ctx); err != nil {
		return nil, fmt.Errorf("cannot update user %s: %w", name, err)
	}
	return u, tx.Commit()
}

// Issuer returns the OpenID Connect issuer u signs in with, or "" for a
// user who only has API tokens.
func Issuer(u *ent.User) string {
	if u.OidcIdentity == nil {
		return ""
	}
	// Issuer URLs have no fragment, so the first '#' ends the issuer.
	issuer, _, _ := strings.Cut(*u.OidcIdentity, "#")
	return issuer
}

// Bootstrap creates the first admin when the database has no user yet and
// returns its token: token when given (an operator's secret, such as one
// a Helm chart generated), else a new one. It returns "" when the
// database has users, or when another replica created the admin first.
// The token expires like any API token, after TokenMaxTTL.
func (s *Service) Bootstrap(ctx context.Context, token string) (string, error) {
	if token != "" && (!strings.HasPrefix(token, TokenPrefix) || len(token) < len(TokenPrefix)+32) {
		return "", fmt.Errorf("%w: the first admin's token must start with %q and have at least 32 characters after it", ErrInvalid, TokenPrefix)
	}
	n, err := s.Client.User.Query().Count(ctx)
	if err != nil || n > 0 {
		return "", err
	}
	if token == "" {
		token = newToken()
	}
	tx, err := s.Client.Tx(ctx)
	if err != nil {
		return "", err
	}
	defer func() { _ = tx.Rollback() }() // after Commit, a no-op
	u, err := tx.User.Create().SetName(BootstrapAdmin).SetAdmin(true).SetStoreQuota(s.DefaultStoreQuota).Save(ctx)
	if ent.IsConstraintError(err) {
		return "", nil // another api replica, starting at the same time, created it
	}
	if err != nil {
		return "", fmt.Errorf("cannot create user %s: %w", BootstrapAdmin, err)
	}
	err = tx.Token.Create().SetHash(hash(token)).SetDescription("generated on first start").
		SetExpireTime(time.Now().Add(s.maxTTL())).SetUser(u).Exec(ctx)
	if err != nil {
		return "", fmt.Errorf("cannot store token: %w", err)
	}
	if err := tx.Commit(); ent.IsConstraintError(err) {
		return "", nil
	} else if err != nil {
		return "", err
	}
	return token, nil
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
