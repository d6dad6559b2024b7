package e2e

import (
	"context"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/storeprov/storeprov/deploy/devstack"
	"github.com/storeprov/storeprov/pkg/devidp"
)

// devSignIn is the development OpenID provider of the sign-in tests.
var devSignIn = &devstack.DevSignIn{
	Users: []devidp.User{
		{Subject: "e2e-alice", Username: "alice", Password: "alice-pw", Email: "alice@shop.test", Name: "Alice"},
		{Subject: "e2e-bob", Username: "bob", Password: "bob-pw", Email: "bob@shop.test", Name: "Bob"},
	},
	AdminEmails: []string{"alice@shop.test"},
}

// TestSignInThroughGateway signs in the way the dashboard does: the
// gateway's /auth/login, the provider's login form, the gateway's callback,
// which hands a session token to the dashboard in the URL fragment. The
// token works on the REST API until it signs out. Failed sign-ins end on
// the dashboard with a message.
func TestSignInThroughGateway(t *testing.T) {
	c := configs(t)[0]
	c.signIn = devSignIn
	s := startStack(t, c)
	rest := &restClient{t: t, base: s.GatewayURL}
	ctx := context.Background()

	var cfg struct {
		OIDC struct {
			Enabled      bool
			ProviderName string
			LoginURL     string
		}
	}
	rest.do("GET", "/auth/config", "", 200, &cfg)
	if !cfg.OIDC.Enabled || cfg.OIDC.ProviderName != "Development IdP" || cfg.OIDC.LoginURL != "/auth/login" {
		t.Fatalf("/auth/config: %+v; want sign-in enabled at /auth/login", cfg.OIDC)
	}

	// browser is a cookie-keeping client that does not follow redirects.
	browser := func() *http.Client {
		jar, _ := cookiejar.New(nil)
		return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	// land follows the gateway's callback and returns the dashboard fragment it redirects to.
	land := func(b *http.Client, callback string) url.Values {
		t.Helper()
		resp, err := b.Get(callback)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc := resp.Header.Get("Location")
		if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "/#") {
			t.Fatalf("callback: %s to %q; want 303 to the dashboard", resp.Status, loc)
		}
		fragment, err := url.ParseQuery(strings.TrimPrefix(loc, "/#"))
		if err != nil {
			t.Fatal(err)
		}
		return fragment
	}

	alice := browser()
	callback, err := s.IdP.Login(ctx, alice, s.GatewayURL+"/auth/login", "alice", "alice-pw")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(callback.String(), s.GatewayURL+"/auth/callback?") {
		t.Fatalf("the provider sent the browser to %s; want the gateway's callback", callback)
	}
	session := land(alice, callback.String()).Get("session")
	if !strings.HasPrefix(session, "sp_") {
		t.Fatalf("the callback gave no session token")
	}
	var me struct {
		Name  string
		Admin bool
	}
	rest.token = session
	rest.do("GET", "/v1/users/me", "", 200, &me)
	if me.Name != "alice" || !me.Admin {
		t.Errorf("/v1/users/me with the session: %+v; want alice, an admin", me)
	}
	rest.do("GET", "/v1/stores", "", 200, nil)

	// The same code and flow cannot be replayed: the cookie is gone.
	if f := land(alice, callback.String()); !strings.Contains(f.Get("signin_error"), "sign in again") {
		t.Errorf("a replayed callback: %v; want a signin_error", f)
	}

	var out struct{ Revoked bool }
	rest.do("POST", "/v1/users/me:signOut", "{}", 200, &out)
	if !out.Revoked {
		t.Error("signing out revoked nothing")
	}
	if code, body := rest.raw("GET", "/v1/users/me", "", session); code != http.StatusUnauthorized {
		t.Errorf("the session token after signing out: %d %s; want 401", code, body)
	}
	// Signing out with an API token leaves it valid.
	rest.token = s.Token
	rest.do("POST", "/v1/users/me:signOut", "{}", 200, &out)
	if out.Revoked {
		t.Error("signing out with the admin's API token revoked it")
	}
	rest.do("GET", "/v1/users/me", "", 200, nil)

	// bob is not an admin.
	bob := browser()
	if callback, err = s.IdP.Login(ctx, bob, s.GatewayURL+"/auth/login", "bob", "bob-pw"); err != nil {
		t.Fatal(err)
	}
	rest.token = land(bob, callback.String()).Get("session")
	rest.do("GET", "/v1/users/me", "", 200, &me)
	if me.Name != "bob" || me.Admin {
		t.Errorf("bob: %+v; want bob, not an admin", me)
	}

	// Failed sign-ins end on the dashboard with a message.
	b := browser()
	resp, err := b.Get(s.GatewayURL + "/auth/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	authorize, _ := url.Parse(resp.Header.Get("Location"))
	if q := authorize.Query(); resp.StatusCode != http.StatusFound || !strings.HasPrefix(authorize.String(), s.IdP.Issuer) ||
		q.Get("code_challenge_method") != "S256" || q.Get("nonce") == "" || q.Get("state") == "" {
		t.Fatalf("/auth/login: %s to %s; want the provider's authorization endpoint with PKCE, nonce and state", resp.Status, authorize)
	}
	if f := land(b, s.GatewayURL+"/auth/callback?code=x&state=forged"); !strings.Contains(f.Get("signin_error"), "state does not match") {
		t.Errorf("a forged state: %v", f)
	}
	if f := land(browser(), s.GatewayURL+"/auth/callback?error=access_denied&error_description=The+user+cancelled"); f.Get("signin_error") != "The identity provider did not sign you in: The user cancelled" {
		t.Errorf("a refusal by the provider: %v", f)
	}
	if f := land(browser(), s.GatewayURL+"/auth/callback?code=x&state=y"); !strings.Contains(f.Get("signin_error"), "another browser") {
		t.Errorf("a callback without the sign-in cookie: %v", f)
	}
	// A dashboard opened as localhost signs in on the registered host.
	port := strconv.Itoa(mustPort(t, s.GatewayURL))
	resp, err = browser().Get("http://localhost:" + port + "/auth/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); loc != s.GatewayURL+"/auth/login" {
		t.Errorf("/auth/login on localhost redirects to %q; want %s/auth/login", loc, s.GatewayURL)
	}
}

func mustPort(t *testing.T, rawURL string) int {
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	p, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatal(err)
	}
	return p
}
