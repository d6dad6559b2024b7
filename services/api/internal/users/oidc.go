package users

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/storeprov/storeprov/pkg/auth"
	"github.com/storeprov/storeprov/services/api/internal/ent"
	enttoken "github.com/storeprov/storeprov/services/api/internal/ent/token"
	entuser "github.com/storeprov/storeprov/services/api/internal/ent/user"
)

var (
	// ErrSignInDisabled means no OpenID Connect issuer is configured.
	ErrSignInDisabled = errors.New("OpenID Connect sign-in is not configured: start the api with --oidc-issuer and --oidc-client-id")
	// ErrIssuerUnavailable means the issuer's discovery document or keys
	// could not be fetched; signing in again later may work.
	ErrIssuerUnavailable = errors.New("the OpenID Connect issuer cannot be reached")
	// ErrNotAdmitted means the issuer vouched for the person, but sign-in
	// is limited to other domains or groups.
	ErrNotAdmitted = errors.New("sign-in is not open to this account")
)

// DefaultGroupsClaim is the claim that lists a person's groups, unless
// OIDC.GroupsClaim says otherwise.
const DefaultGroupsClaim = "groups"

// OIDC checks sign-ins at one OpenID Connect issuer. The zero value is
// disabled.
type OIDC struct {
	// Issuer is the issuer URL; empty disables sign-in.
	Issuer string
	// ClientID is the audience the ID tokens must be issued for.
	ClientID string
	// AdminEmails are verified email addresses whose users are admins;
	// every sign-in sets a user's admin flag from this list.
	AdminEmails []string
	// SessionTTL is how long a session token is accepted.
	SessionTTL time.Duration
	// AllowedDomains and AllowedGroups admit a person whose verified
	// email is in one of the domains, or who is in one of the groups (the
	// GroupsClaim claim); when both are empty, anyone the issuer signs in
	// is admitted.
	AllowedDomains []string
	AllowedGroups  []string
	// GroupsClaim names the claim of the ID token (or the userinfo
	// endpoint) that lists the person's groups; empty means
	// DefaultGroupsClaim.
	GroupsClaim string

	mu       sync.Mutex
	provider *oidc.Provider
}

// Identity is who signed in, as the issuer says.
type Identity struct {
	// Key is "<issuer>#<subject>", stable for the person.
	Key string
	// Name is the user name to give a new user: a DNS label made of the
	// preferred username or the email's local part.
	Name  string
	Admin bool
}

// Enabled reports whether sign-in is configured.
func (o *OIDC) Enabled() bool { return o != nil && o.Issuer != "" }

// discover fetches the issuer's discovery document once it can.
func (o *OIDC) discover(ctx context.Context) (*oidc.Provider, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.provider != nil {
		return o.provider, nil
	}
	p, err := oidc.NewProvider(ctx, o.Issuer)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrIssuerUnavailable, err)
	}
	o.provider = p
	return p, nil
}

// Verify checks idToken (signature, issuer, audience, expiry) and reads the
// person's claims from it, then from the userinfo endpoint with
// accessToken when the ID token has neither a preferred username nor an
// email, or lacks the groups claim that AllowedGroups needs. It returns an
// error wrapping auth.ErrUnauthenticated when a token does not check out,
// and ErrNotAdmitted when the person is outside AllowedDomains and
// AllowedGroups.
func (o *OIDC) Verify(ctx context.Context, idToken, accessToken string) (Identity, error) {
	if !o.Enabled() {
		return Identity{}, ErrSignInDisabled
	}
	p, err := o.discover(ctx)
	if err != nil {
		return Identity{}, err
	}
	tok, err := p.Verifier(&oidc.Config{ClientID: o.ClientID}).Verify(ctx, idToken)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: the ID token was refused: %v", auth.ErrUnauthenticated, err)
	}
	c := claims{groupsClaim: o.groupsClaim()}
	if err := tok.Claims(&c); err != nil {
		return Identity{}, fmt.Errorf("%w: the ID token's claims cannot be read: %v", auth.ErrUnauthenticated, err)
	}
	needGroups := len(o.AllowedGroups) > 0 && c.Groups == nil
	if (c.PreferredUsername == "" && c.Email == "" || needGroups) && accessToken != "" {
		info, err := p.UserInfo(ctx, oauth2.StaticTokenSource(&oauth2.Token{AccessToken: accessToken, TokenType: "Bearer"}))
		if err != nil {
			return Identity{}, fmt.Errorf("%w: the userinfo endpoint refused the access token: %v", auth.ErrUnauthenticated, err)
		}
		if info.Subject != tok.Subject {
			return Identity{}, fmt.Errorf("%w: the userinfo endpoint answered for another subject", auth.ErrUnauthenticated)
		}
		var more claims
		more.groupsClaim = c.groupsClaim
		if err := info.Claims(&more); err != nil {
			return Identity{}, fmt.Errorf("%w: the userinfo claims cannot be read: %v", auth.ErrUnauthenticated, err)
		}
		c.merge(more)
	}
	email := strings.ToLower(c.Email)
	verified := c.EmailVerified && email != ""
	if err := o.admit(email, verified, c.Groups); err != nil {
		return Identity{}, err
	}
	return Identity{
		Key:   tok.Issuer + "#" + tok.Subject,
		Name:  nameFor(c.PreferredUsername, email),
		Admin: verified && slices.Contains(o.AdminEmails, email),
	}, nil
}

func (o *OIDC) groupsClaim() string {
	if o.GroupsClaim != "" {
		return o.GroupsClaim
	}
	return DefaultGroupsClaim
}

// admit returns nil when the person may sign in: no restriction is
// configured, the verified email's domain is allowed, or one of groups is.
func (o *OIDC) admit(email string, verified bool, groups []string) error {
	if len(o.AllowedDomains) == 0 && len(o.AllowedGroups) == 0 {
		return nil
	}
	if _, domain, ok := strings.Cut(email, "@"); ok && verified && slices.Contains(o.AllowedDomains, domain) {
		return nil
	}
	for _, g := range groups {
		if slices.Contains(o.AllowedGroups, g) {
			return nil
		}
	}
	var open []string
	if len(o.AllowedDomains) > 0 {
		open = append(open, "verified emails of "+strings.Join(o.AllowedDomains, ", "))
	}
	if len(o.AllowedGroups) > 0 {
		open = append(open, "members of the groups "+strings.Join(o.AllowedGroups, ", "))
	}
	who := email
	switch {
	case email == "":
		who = "an account without an email"
	case !verified:
		who += " (not verified by the issuer)"
	}
	return fmt.Errorf("%w: %s: sign-in is open to %s; ask an admin to admit you", ErrNotAdmitted, who, strings.Join(open, " and to "))
}

type claims struct {
	PreferredUsername string `json:"preferred_username"`
	Email             string `json:"email"`
	EmailVerified     bool   `json:"email_verified"`
	// Groups is the groupsClaim claim: a list of strings, or one string.
	Groups      []string `json:"-"`
	groupsClaim string
}

// UnmarshalJSON reads the standard claims and the groups claim, whatever
// it is named.
func (c *claims) UnmarshalJSON(b []byte) error {
	type standard claims
	var std standard
	if err := json.Unmarshal(b, &std); err != nil {
		return err
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	name := c.groupsClaim
	*c = claims(std)
	c.groupsClaim = name
	g, ok := raw[name]
	if !ok || string(g) == "null" {
		return nil
	}
	var one string
	if json.Unmarshal(g, &one) == nil {
		c.Groups = []string{one}
		return nil
	}
	if err := json.Unmarshal(g, &c.Groups); err != nil {
		return fmt.Errorf("claim %q is neither a string nor a list of strings", name)
	}
	if c.Groups == nil {
		c.Groups = []string{}
	}
	return nil
}

// merge fills what c lacks from more, claims of the userinfo endpoint.
func (c *claims) merge(more claims) {
	if c.PreferredUsername == "" {
		c.PreferredUsername = more.PreferredUsername
	}
	if c.Email == "" {
		c.Email, c.EmailVerified = more.Email, more.EmailVerified
	}
	if c.Groups == nil {
		c.Groups = more.Groups
	}
}

// nameFor makes a user name, a DNS label, of what the issuer calls the
// person: "Alice.Smith@corp" becomes "alice-smith".
func nameFor(preferredUsername, email string) string {
	raw := preferredUsername
	if raw == "" {
		raw = email
	}
	raw, _, _ = strings.Cut(strings.ToLower(raw), "@")
	var b strings.Builder
	for _, r := range raw {
		switch {
		case r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
			b.WriteRune(r)
		case b.Len() > 0 && !strings.HasSuffix(b.String(), "-"):
			b.WriteByte('-')
		}
	}
	// Room for the "-xxxxxx" that tells two people of one name apart.
	name := strings.Trim(b.String()[:min(b.Len(), 55)], "-")
	if name == "" {
		return "user"
	}
	return name
}

// SignIn exchanges a verified identity for a session token, creating the
// user on its first sign-in. A new user takes id.Name, or id.Name with a
// suffix made from its identity when another user has that name.
func (s *Service) SignIn(ctx context.Context, id Identity, ttl time.Duration) (string, *ent.User, time.Time, error) {
	tx, err := s.Client.Tx(ctx)
	if err != nil {
		return "", nil, time.Time{}, err
	}
	defer func() { _ = tx.Rollback() }() // after Commit, a no-op
	user, err := tx.User.Query().Where(entuser.OidcIdentity(id.Key)).Only(ctx)
	switch {
	case ent.IsNotFound(err):
		name := id.Name
		if taken, err := tx.User.Query().Where(entuser.Name(name)).Exist(ctx); err != nil {
			return "", nil, time.Time{}, err
		} else if taken {
			sum := sha256.Sum256([]byte(id.Key))
			name += "-" + hex.EncodeToString(sum[:3])
		}
		user, err = tx.User.Create().SetName(name).SetOidcIdentity(id.Key).SetAdmin(id.Admin).SetStoreQuota(s.DefaultStoreQuota).Save(ctx)
		if err != nil {
			return "", nil, time.Time{}, fmt.Errorf("cannot create user %s: %w", name, err)
		}
	case err != nil:
		return "", nil, time.Time{}, err
	case user.Admin != id.Admin:
		if user, err = user.Update().SetAdmin(id.Admin).Save(ctx); err != nil {
			return "", nil, time.Time{}, err
		}
	}
	now := time.Now()
	// Expired sessions are of no use to anyone: sweep them while here.
	if _, err := tx.Token.Delete().Where(enttoken.KindEQ(enttoken.KindSession), enttoken.ExpireTimeLT(now)).Exec(ctx); err != nil {
		return "", nil, time.Time{}, err
	}
	token, expires := newToken(), now.Add(ttl)
	err = tx.Token.Create().SetHash(hash(token)).SetKind(enttoken.KindSession).SetExpireTime(expires).
		SetDescription("signed in with OpenID Connect").SetUser(user).Exec(ctx)
	if err != nil {
		return "", nil, time.Time{}, fmt.Errorf("cannot store session token: %w", err)
	}
	return token, user, expires, tx.Commit()
}

// SignOut revokes token when it is a session token and reports whether it
// was one.
func (s *Service) SignOut(ctx context.Context, token string) (bool, error) {
	n, err := s.Client.Token.Delete().Where(enttoken.Hash(hash(token)), enttoken.KindEQ(enttoken.KindSession)).Exec(ctx)
	return n > 0, err
}
