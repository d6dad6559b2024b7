// Package apiauth authenticates the audit service's callers by asking the
// api who their bearer token belongs to (storeprov.store.v1.UserService/
// GetCurrentUser), and remembers the answer for a short while so that a
// page-through of the audit log costs the api one call.
package apiauth

import (
	"context"
	"crypto/sha256"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	storev1 "github.com/storeprov/storeprov/gen/storeprov/store/v1"
	"github.com/storeprov/storeprov/pkg/auth"
)

// Defaults of Options.
const (
	DefaultTTL        = 30 * time.Second
	DefaultMaxEntries = 10000
)

// Options tune an Authenticator. Zero values mean the defaults.
type Options struct {
	// TTL is how long a resolved token is trusted without asking the api
	// again; a revoked token keeps working for at most this long.
	TTL time.Duration
	// MaxEntries bounds the cache.
	MaxEntries int
	// Now is the clock; tests move it.
	Now func() time.Time
}

// Authenticator is an auth.Authenticator backed by the api's UserService.
// It is safe for concurrent use.
type Authenticator struct {
	users storev1.UserServiceClient
	opts  Options

	mu    sync.Mutex
	cache map[[sha256.Size]byte]cached
}

type cached struct {
	principal auth.Principal
	expires   time.Time
}

// New returns an Authenticator asking users.
func New(users storev1.UserServiceClient, opts Options) *Authenticator {
	if opts.TTL <= 0 {
		opts.TTL = DefaultTTL
	}
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = DefaultMaxEntries
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Authenticator{users: users, opts: opts, cache: map[[sha256.Size]byte]cached{}}
}

// Authenticate returns the user token belongs to. It fails with an error
// wrapping auth.ErrUnauthenticated when the api does not know the token;
// any other error means the api could not be asked, and the caller may
// retry. Only successful answers are cached, keyed by the token's hash.
func (a *Authenticator) Authenticate(ctx context.Context, token string) (auth.Principal, error) {
	key := sha256.Sum256([]byte(token))
	now := a.opts.Now()
	a.mu.Lock()
	c, ok := a.cache[key]
	a.mu.Unlock()
	if ok && now.Before(c.expires) {
		return c.principal, nil
	}
	// A fresh outgoing context: only the caller's token is forwarded.
	out := metadata.NewOutgoingContext(ctx, metadata.Pairs("authorization", "Bearer "+token))
	user, err := a.users.GetCurrentUser(out, &storev1.GetCurrentUserRequest{})
	if status.Code(err) == codes.Unauthenticated {
		return auth.Principal{}, fmt.Errorf("%w: %s", auth.ErrUnauthenticated, status.Convert(err).Message())
	}
	if err != nil {
		return auth.Principal{}, fmt.Errorf("cannot ask the api who the token belongs to: %w", err)
	}
	p := auth.Principal{Name: user.GetName(), Admin: user.GetAdmin()}
	a.store(key, cached{principal: p, expires: now.Add(a.opts.TTL)}, now)
	return p, nil
}

func (a *Authenticator) store(key [sha256.Size]byte, c cached, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.cache) >= a.opts.MaxEntries {
		for k, v := range a.cache {
			if !now.Before(v.expires) {
				delete(a.cache, k)
			}
		}
	}
	// Still full of live entries: drop arbitrary ones, which costs those
	// callers one more call to the api.
	for k := range a.cache {
		if len(a.cache) < a.opts.MaxEntries {
			break
		}
		delete(a.cache, k)
	}
	a.cache[key] = c
}

// Len returns how many tokens are cached.
func (a *Authenticator) Len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.cache)
}
