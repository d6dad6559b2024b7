// Package auth is who a caller is and how its bearer token is checked: the
// Principal that handlers read from their context, the Authenticator that
// resolves a token (the api's users and tokens, or the audit service asking
// the api), and Check, which the gRPC servers of package rpc run on every
// call that needs a token.
package auth

import (
	"context"
	"errors"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Principal is an authenticated caller.
type Principal struct {
	// Name of the user; the actor in the audit log.
	Name  string
	Admin bool
}

// Authenticator resolves a bearer token to its user. It returns an error
// wrapping ErrUnauthenticated when the token is not accepted; the wrapping
// error's text, if any, tells the caller why.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (Principal, error)
}

// AuthenticatorFunc adapts a function to Authenticator.
type AuthenticatorFunc func(ctx context.Context, token string) (Principal, error)

// Authenticate calls f.
func (f AuthenticatorFunc) Authenticate(ctx context.Context, token string) (Principal, error) {
	return f(ctx, token)
}

// ErrUnauthenticated means the bearer token is missing or unknown.
var ErrUnauthenticated = errors.New("unauthenticated")

type principalKey struct{}

// PrincipalFrom returns the caller that the server's interceptor
// authenticated. ok is false for unauthenticated methods.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// WithPrincipal returns a context carrying p: the server's interceptor
// calls it after Check, and tests of handlers call it instead.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// BearerToken returns the token of the incoming "authorization: Bearer …"
// metadata.
func BearerToken(ctx context.Context) (string, bool) {
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get("authorization") {
		if token, ok := strings.CutPrefix(v, "Bearer "); ok && token != "" {
			return strings.TrimSpace(token), true
		}
	}
	return "", false
}

// Check authenticates the bearer token of the incoming call with a. Its
// errors are gRPC status errors, ready to return to the caller:
// Unauthenticated when the token is missing or a does not accept it (with
// a's reason, when it gives one), Unavailable when a could not check it
// (the caller may retry).
func Check(ctx context.Context, a Authenticator) (Principal, error) {
	token, ok := BearerToken(ctx)
	if !ok {
		return Principal{}, status.Error(codes.Unauthenticated, `missing API token: send the header "Authorization: Bearer <token>"`)
	}
	p, err := a.Authenticate(ctx, token)
	if errors.Is(err, ErrUnauthenticated) {
		msg := "invalid API token: it is unknown or was revoked; create a new one with storectl token create"
		if err != ErrUnauthenticated { //nolint:errorlint // wrapped, it says why the token was refused
			msg = strings.TrimPrefix(err.Error(), ErrUnauthenticated.Error()+": ")
		}
		return Principal{}, status.Error(codes.Unauthenticated, msg)
	}
	if err != nil {
		return Principal{}, status.Errorf(codes.Unavailable, "cannot check API token: %v", err)
	}
	return p, nil
}
