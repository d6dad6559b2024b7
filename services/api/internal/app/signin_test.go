package app_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	storev1 "github.com/storeprov/storeprov/gen/storeprov/store/v1"
	"github.com/storeprov/storeprov/pkg/bus/bustest"
	"github.com/storeprov/storeprov/pkg/database/databasetest"
	"github.com/storeprov/storeprov/pkg/devidp"
	"github.com/storeprov/storeprov/services/api/internal/app"
)

const callbackURL = "http://127.0.0.1:1/auth/callback"

// startIdP runs an OpenID provider knowing alice and bob, and the clients
// "storeprov" (the platform's) and "other".
func startIdP(t *testing.T) *devidp.Server {
	t.Helper()
	idp, err := devidp.Start(devidp.Config{
		Addr: "127.0.0.1:0",
		Users: []devidp.User{
			{Subject: "u-alice", Username: "alice", Password: "alice-pw", Email: "alice@shop.test", Name: "Alice"},
			{Subject: "u-bob", Username: "Bob.Builder", Password: "bob-pw", Email: "bob@shop.test", Name: "Bob"},
		},
		Clients: []devidp.Client{
			{ID: "storeprov", Secret: "platform-secret", RedirectURIs: []string{callbackURL}},
			{ID: "other", Secret: "other-secret", RedirectURIs: []string{callbackURL}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { idp.Close() })
	return idp
}

// issuerTokens signs username in at idp as client and returns the ID token
// and access token of the code exchange, as the gateway would.
func issuerTokens(t *testing.T, idp *devidp.Server, client, secret, username, password string) (idToken, accessToken string) {
	t.Helper()
	ctx := context.Background()
	provider, err := oidc.NewProvider(ctx, idp.Issuer)
	if err != nil {
		t.Fatal(err)
	}
	cfg := oauth2.Config{ClientID: client, ClientSecret: secret, Endpoint: provider.Endpoint(), RedirectURL: callbackURL, Scopes: []string{oidc.ScopeOpenID, "email", "profile"}}
	verifier := oauth2.GenerateVerifier()
	callback, err := idp.Login(ctx, nil, cfg.AuthCodeURL("state", oauth2.S256ChallengeOption(verifier)), username, password)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := cfg.Exchange(ctx, callback.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	idToken, _ = tok.Extra("id_token").(string)
	if idToken == "" {
		t.Fatal("the issuer returned no ID token")
	}
	return idToken, tok.AccessToken
}

func TestSignInWithOpenIDConnect(t *testing.T) {
	idp := startIdP(t)
	bustest.Each(t, func(t *testing.T, nats *bustest.Env) {
		databasetest.Each(t, func(t *testing.T, dbURL string) {
			e := startAPI(t, dbURL, nats, func(o *app.Options) {
				o.OIDC = app.OIDCOptions{Issuer: idp.Issuer, ClientID: "storeprov", AdminEmails: " Alice@Shop.test ,", SessionTTL: time.Hour}
			})
			signIn := func(username, password string) *storev1.SignInResponse {
				t.Helper()
				id, access := issuerTokens(t, idp, "storeprov", "platform-secret", username, password)
				resp, err := e.users.SignIn(context.Background(), &storev1.SignInRequest{IdToken: id, AccessToken: access})
				if err != nil {
					t.Fatalf("SignIn %s: %v", username, err)
				}
				return resp
			}

			// First sign-in creates the user; an admin because of the email list.
			alice := signIn("alice", "alice-pw")
			if u := alice.GetUser(); u.GetName() != "alice" || !u.GetAdmin() || u.GetStoreQuota() != 5 {
				t.Errorf("alice's user: %v; want alice, admin, quota 5", u)
			}
			if left := time.Until(alice.GetExpireTime().AsTime()); left < 59*time.Minute || left > time.Hour {
				t.Errorf("session expires in %s; want the 1h TTL", left)
			}
			me, err := e.users.GetCurrentUser(e.as(alice.GetToken()), &storev1.GetCurrentUserRequest{})
			if err != nil || me.GetName() != "alice" || !me.GetAdmin() {
				t.Fatalf("GetCurrentUser with the session token: %v, %v", me, err)
			}
			if _, err := e.stores.ListStores(e.as(alice.GetToken()), &storev1.ListStoresRequest{}); err != nil {
				t.Errorf("ListStores with the session token: %v", err)
			}
			// Signing in again is the same user, with a second session.
			again := signIn("alice", "alice-pw")
			if again.GetUser().GetName() != "alice" || again.GetToken() == alice.GetToken() {
				t.Errorf("second sign-in: user %q, same token %v; want alice with a new token", again.GetUser().GetName(), again.GetToken() == alice.GetToken())
			}

			// A name already taken by a token user is not taken over.
			if _, err := e.users.CreateToken(e.admin(), &storev1.CreateTokenRequest{User: "bob-builder"}); err != nil {
				t.Fatal(err)
			}
			bob := signIn("Bob.Builder", "bob-pw")
			if n := bob.GetUser().GetName(); !strings.HasPrefix(n, "bob-builder-") || len(n) != len("bob-builder-")+6 || bob.GetUser().GetAdmin() {
				t.Errorf("bob's user: %v; want bob-builder-<6 hex>, not admin", bob.GetUser())
			}

			// Signing out revokes the session token only.
			out, err := e.users.SignOut(e.as(alice.GetToken()), &storev1.SignOutRequest{})
			if err != nil || !out.GetRevoked() {
				t.Fatalf("SignOut: %v, %v; want revoked", out, err)
			}
			_, err = e.users.GetCurrentUser(e.as(alice.GetToken()), &storev1.GetCurrentUserRequest{})
			if status.Code(err) != codes.Unauthenticated {
				t.Errorf("a signed-out session token: %v; want Unauthenticated", err)
			}
			if _, err := e.users.GetCurrentUser(e.as(again.GetToken()), &storev1.GetCurrentUserRequest{}); err != nil {
				t.Errorf("alice's other session ended with the first: %v", err)
			}
			out, err = e.users.SignOut(e.admin(), &storev1.SignOutRequest{})
			if err != nil || out.GetRevoked() {
				t.Errorf("SignOut with an API token: %v, %v; want nothing revoked", out, err)
			}
			if _, err := e.users.GetCurrentUser(e.admin(), &storev1.GetCurrentUserRequest{}); err != nil {
				t.Errorf("the API token stopped working after SignOut: %v", err)
			}

			// Tokens that do not check out.
			id, access := issuerTokens(t, idp, "other", "other-secret", "alice", "alice-pw")
			// alice's header and signature around bob's claims.
			aliceID, _ := issuerTokens(t, idp, "storeprov", "platform-secret", "alice", "alice-pw")
			bobID, _ := issuerTokens(t, idp, "storeprov", "platform-secret", "Bob.Builder", "bob-pw")
			a, b := strings.Split(aliceID, "."), strings.Split(bobID, ".")
			tampered := a[0] + "." + b[1] + "." + a[2]
			for _, c := range []struct {
				name string
				req  *storev1.SignInRequest
				code codes.Code
				says string
			}{
				{"no ID token", &storev1.SignInRequest{}, codes.InvalidArgument, "id_token"},
				{"not a JWT", &storev1.SignInRequest{IdToken: "sp_not-a-jwt"}, codes.Unauthenticated, "ID token was refused"},
				{"bad signature", &storev1.SignInRequest{IdToken: tampered}, codes.Unauthenticated, "signature"},
				{"another client's", &storev1.SignInRequest{IdToken: id, AccessToken: access}, codes.Unauthenticated, "audience"},
			} {
				_, err := e.users.SignIn(context.Background(), c.req)
				if status.Code(err) != c.code || !strings.Contains(status.Convert(err).Message(), c.says) {
					t.Errorf("%s: %v; want %s saying %q", c.name, err, c.code, c.says)
				}
			}
		})
	})
}

func TestSignInIsRefusedWhenNotConfigured(t *testing.T) {
	bustest.Each(t, func(t *testing.T, nats *bustest.Env) {
		databasetest.Each(t, func(t *testing.T, dbURL string) {
			e := startAPI(t, dbURL, nats)
			_, err := e.users.SignIn(context.Background(), &storev1.SignInRequest{IdToken: "x.y.z"})
			if status.Code(err) != codes.FailedPrecondition || !strings.Contains(status.Convert(err).Message(), "--oidc-issuer") {
				t.Errorf("SignIn without an issuer: %v; want FailedPrecondition naming --oidc-issuer", err)
			}
		})
	})
}

func TestBadSignInOptionsAreRefused(t *testing.T) {
	for _, c := range []struct {
		oidc app.OIDCOptions
		says string
	}{
		{app.OIDCOptions{ClientID: "x"}, "need --oidc-issuer"},
		{app.OIDCOptions{Issuer: "accounts.example.com", ClientID: "x", SessionTTL: time.Hour}, "want the issuer's URL"},
		{app.OIDCOptions{Issuer: "https://accounts.example.com", SessionTTL: time.Hour}, "needs --oidc-client-id"},
		{app.OIDCOptions{Issuer: "https://accounts.example.com", ClientID: "x", SessionTTL: time.Second}, "--oidc-session-ttl"},
	} {
		err := app.Run(context.Background(), app.Options{DatabaseURL: "sqlite://" + t.TempDir() + "/api.db", OIDC: c.oidc})
		if err == nil || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%+v: %v; want an error saying %q", c.oidc, err, c.says)
		}
	}
}

func TestSignInAdmitsOnlyAllowedDomainsAndGroups(t *testing.T) {
	idp, err := devidp.Start(devidp.Config{
		Addr: "127.0.0.1:0",
		Users: []devidp.User{
			{Subject: "u-alice", Username: "alice", Password: "pw", Email: "alice@shop.test"},
			{Subject: "u-mallory", Username: "mallory", Password: "pw", Email: "mallory@freemail.test"},
			{Subject: "u-eve", Username: "eve", Password: "pw", Email: "eve@shop.test", EmailUnverified: true},
			{Subject: "u-gary", Username: "gary", Password: "pw", Email: "gary@contractor.test", Groups: []string{"staff", "ops"}},
		},
		Clients: []devidp.Client{{ID: "storeprov", Secret: "platform-secret", RedirectURIs: []string{callbackURL}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { idp.Close() })
	bustest.Each(t, func(t *testing.T, nats *bustest.Env) {
		databasetest.Each(t, func(t *testing.T, dbURL string) {
			limited := func(claim string) func(*app.Options) {
				return func(o *app.Options) {
					o.OIDC = app.OIDCOptions{Issuer: idp.Issuer, ClientID: "storeprov", SessionTTL: time.Hour,
						AllowedDomains: "Shop.test", AllowedGroups: "ops", GroupsClaim: claim}
				}
			}
			e := startAPI(t, dbURL, nats, limited("groups"))
			other := startAPI(t, dbURL, nats, limited("roles"))
			for _, c := range []struct {
				api      *apiEnv
				username string
				code     codes.Code
				says     string
			}{
				{e, "alice", codes.OK, ""},
				{e, "gary", codes.OK, ""},
				{e, "mallory", codes.PermissionDenied, "mallory@freemail.test: sign-in is open to verified emails of shop.test and to members of the groups ops"},
				{e, "eve", codes.PermissionDenied, "not verified"},
				// The groups are read from the claim the api is told to.
				{other, "gary", codes.PermissionDenied, "gary@contractor.test"},
			} {
				id, access := issuerTokens(t, idp, "storeprov", "platform-secret", c.username, "pw")
				resp, err := c.api.users.SignIn(context.Background(), &storev1.SignInRequest{IdToken: id, AccessToken: access})
				if status.Code(err) != c.code || !strings.Contains(status.Convert(err).Message(), c.says) {
					t.Errorf("%s signing in: %v; want %s saying %q", c.username, err, c.code, c.says)
				}
				if c.code == codes.OK && resp.GetUser().GetName() != c.username {
					t.Errorf("%s signing in: user %v", c.username, resp.GetUser())
				}
			}
			if _, err := e.users.UpdateUser(e.admin(), &storev1.UpdateUserRequest{Name: "mallory", Admin: proto.Bool(false)}); status.Code(err) != codes.NotFound {
				t.Errorf("a refused sign-in left a user mallory: %v", err)
			}
		})
	})
}

// TestTokensForSignInUsersNeedAnAdminAndSayWhoseAccount is the deploy-bot
// case: a person signs in under a name an admin later asks a token for.
func TestTokensForSignInUsersNeedAnAdminAndSayWhoseAccount(t *testing.T) {
	idp, err := devidp.Start(devidp.Config{
		Addr: "127.0.0.1:0",
		Users: []devidp.User{
			{Subject: "u-alice", Username: "alice", Password: "pw", Email: "alice@shop.test"},
			{Subject: "u-bot", Username: "deploy-bot", Password: "pw", Email: "deploy-bot@shop.test"},
		},
		Clients: []devidp.Client{{ID: "storeprov", Secret: "platform-secret", RedirectURIs: []string{callbackURL}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { idp.Close() })
	bustest.Each(t, func(t *testing.T, nats *bustest.Env) {
		databasetest.Each(t, func(t *testing.T, dbURL string) {
			withAdmins := func(emails string) func(*app.Options) {
				return func(o *app.Options) {
					o.OIDC = app.OIDCOptions{Issuer: idp.Issuer, ClientID: "storeprov", SessionTTL: time.Hour, AllowedDomains: "shop.test", AdminEmails: emails}
				}
			}
			e := startAPI(t, dbURL, nats, withAdmins("alice@shop.test"))
			signIn := func(api *apiEnv, username string) *storev1.SignInResponse {
				t.Helper()
				id, access := issuerTokens(t, idp, "storeprov", "platform-secret", username, "pw")
				resp, err := api.users.SignIn(context.Background(), &storev1.SignInRequest{IdToken: id, AccessToken: access})
				if err != nil {
					t.Fatalf("SignIn %s: %v", username, err)
				}
				return resp
			}

			// Someone signs in first as deploy-bot: they may mint tokens for
			// themselves (bounded by --token-max-ttl, with their rights
			// read on every call), never for another user.
			bot := signIn(e, "deploy-bot")
			own, err := e.users.CreateToken(e.as(bot.GetToken()), &storev1.CreateTokenRequest{})
			if err != nil || own.GetUser().GetName() != "deploy-bot" {
				t.Errorf("a signed-in user minting its own API token = %v, %v", own, err)
			}
			_, err = e.users.CreateToken(e.as(bot.GetToken()), &storev1.CreateTokenRequest{User: "ci"})
			wantCode(t, "a signed-in user minting a token for someone else", err, codes.PermissionDenied, "only an admin")

			resp, err := e.users.CreateToken(e.admin(), &storev1.CreateTokenRequest{User: "deploy-bot"})
			if err != nil {
				t.Fatal(err)
			}
			if u := resp.GetUser(); resp.GetUserCreated() || !u.GetSignIn() || u.GetOidcIssuer() != idp.Issuer || u.GetName() != "deploy-bot" {
				t.Errorf("a token for deploy-bot: user %v, created %v; want the existing sign-in account of %s", u, resp.GetUserCreated(), idp.Issuer)
			}
			_, err = e.users.CreateToken(e.admin(), &storev1.CreateTokenRequest{User: "deploy-bot", Admin: true})
			wantCode(t, "admin for the sign-in user", err, codes.InvalidArgument, "storectl user set")
			if me, _ := e.users.GetCurrentUser(e.as(bot.GetToken()), &storev1.GetCurrentUserRequest{}); me.GetAdmin() {
				t.Error("deploy-bot became an admin")
			}

			// alice, an admin by her email, mints an API token from her
			// session and signs out: the token keeps her rights, no more.
			alice := signIn(e, "alice")
			minted, err := e.users.CreateToken(e.as(alice.GetToken()), &storev1.CreateTokenRequest{Description: "from a session"})
			if err != nil {
				t.Fatalf("alice, an admin, minting her own token: %v", err)
			}
			if _, err := e.users.SignOut(e.as(alice.GetToken()), &storev1.SignOutRequest{}); err != nil {
				t.Fatal(err)
			}
			if me, err := e.users.GetCurrentUser(e.as(minted.GetToken()), &storev1.GetCurrentUserRequest{}); err != nil || !me.GetAdmin() {
				t.Fatalf("alice's API token while she is an admin: %v, %v", me, err)
			}
			// Her email leaves the admin list (a replica started without it):
			// her next sign-in demotes her, and her API token with her.
			demoting := startAPI(t, dbURL, nats, withAdmins(""))
			signIn(demoting, "alice")
			me, err := e.users.GetCurrentUser(e.as(minted.GetToken()), &storev1.GetCurrentUserRequest{})
			if err != nil || me.GetAdmin() {
				t.Errorf("alice's API token after her demotion: %v, %v; want not admin", me, err)
			}
			_, err = e.users.ListTokens(e.as(minted.GetToken()), &storev1.ListTokensRequest{User: "deploy-bot"})
			wantCode(t, "a demoted user's token listing another user's tokens", err, codes.PermissionDenied, "only an admin")
		})
	})
}
