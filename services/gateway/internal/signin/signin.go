// Package signin signs dashboard users in with an OpenID Connect issuer.
// The gateway runs the authorization code flow as a confidential client,
// with state, nonce and PKCE kept in a short-lived HttpOnly cookie. At the
// end the api exchanges the issuer's tokens for a session token
// (UserService.SignIn), and the browser receives it in the fragment of its
// redirect to the dashboard, "/#session=<token>", which never reaches a
// server. A failed sign-in ends at "/#signin_error=<message>".
package signin

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
	"google.golang.org/grpc/status"

	storev1 "github.com/storeprov/storeprov/gen/storeprov/store/v1"
)

// Paths the handler serves.
const (
	ConfigPath   = "/auth/config"
	LoginPath    = "/auth/login"
	CallbackPath = "/auth/callback"
)

// cookieName holds the state of one sign-in between login and callback.
const cookieName = "storeprov_signin"

// Config describes the issuer and this client. An empty Issuer disables
// sign-in: the config endpoint says so and the others are not served.
type Config struct {
	Issuer       string
	ClientID     string
	ClientSecret string
	// RedirectURL is this gateway's callback as registered at the issuer,
	// such as https://stores.example.com/auth/callback.
	RedirectURL string
	// ProviderName is what the sign-in button calls the issuer.
	ProviderName string
	// Scopes requested besides openid; email and profile by default.
	Scopes []string
}

// Validate checks c and says what to fix.
func (c Config) Validate() error {
	if c.Issuer == "" {
		return nil
	}
	if c.ClientID == "" || c.ClientSecret == "" {
		return errors.New("--oidc-issuer needs --oidc-client-id and a client secret (--oidc-client-secret-file or $STOREPROV_OIDC_CLIENT_SECRET)")
	}
	u, err := url.Parse(c.RedirectURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != CallbackPath {
		return fmt.Errorf("--oidc-redirect-url %q: want this gateway's URL ending in %s, as registered at the issuer", c.RedirectURL, CallbackPath)
	}
	return nil
}

// Handler serves the sign-in endpoints.
type Handler struct {
	cfg      Config
	redirect *url.URL
	users    storev1.UserServiceClient
	log      *slog.Logger

	mu       sync.Mutex
	provider *oidc.Provider
}

// New returns a handler that calls users.SignIn; cfg must be valid.
func New(cfg Config, users storev1.UserServiceClient, log *slog.Logger) *Handler {
	if len(cfg.Scopes) == 0 {
		cfg.Scopes = []string{"email", "profile"}
	}
	if cfg.ProviderName == "" {
		cfg.ProviderName = "single sign-on"
	}
	redirect, _ := url.Parse(cfg.RedirectURL)
	return &Handler{cfg: cfg, redirect: redirect, users: users, log: log}
}

// Register adds the handler's endpoints to mux.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET "+ConfigPath, h.config)
	if h.cfg.Issuer != "" {
		mux.HandleFunc("GET "+LoginPath, h.login)
		mux.HandleFunc("GET "+CallbackPath, h.callback)
	}
}

// config tells the dashboard whether to offer sign-in and where it starts.
func (h *Handler) config(w http.ResponseWriter, _ *http.Request) {
	type oidcConfig struct {
		Enabled      bool   `json:"enabled"`
		ProviderName string `json:"providerName,omitempty"`
		LoginURL     string `json:"loginUrl,omitempty"`
	}
	c := oidcConfig{}
	if h.cfg.Issuer != "" {
		c = oidcConfig{Enabled: true, ProviderName: h.cfg.ProviderName, LoginURL: LoginPath}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(map[string]oidcConfig{"oidc": c})
}

// flow is what the callback must find again: it lives in the cookie.
type flow struct {
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
}

func (h *Handler) login(w http.ResponseWriter, r *http.Request) {
	// The cookie must be set on the host the issuer sends the browser back
	// to: start again there when the dashboard was opened under another name.
	if r.Host != h.redirect.Host {
		http.Redirect(w, r, h.redirect.Scheme+"://"+h.redirect.Host+LoginPath, http.StatusFound)
		return
	}
	oauth, err := h.oauth(r.Context())
	if err != nil {
		h.fail(w, r, "The identity provider cannot be reached; try again in a moment.", err)
		return
	}
	f := flow{State: rand.Text(), Nonce: rand.Text(), Verifier: oauth2.GenerateVerifier()}
	value, _ := json.Marshal(f)
	http.SetCookie(w, h.cookie(base64.RawURLEncoding.EncodeToString(value), 10*time.Minute))
	http.Redirect(w, r, oauth.AuthCodeURL(f.State, oidc.Nonce(f.Nonce), oauth2.S256ChallengeOption(f.Verifier)), http.StatusFound)
}

func (h *Handler) callback(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if e := q.Get("error"); e != "" {
		why := q.Get("error_description")
		if why == "" {
			why = e
		}
		h.fail(w, r, "The identity provider did not sign you in: "+why, nil)
		return
	}
	f, ok := h.flowOf(r)
	if !ok {
		h.fail(w, r, "The sign-in expired or was started in another browser; sign in again.", nil)
		return
	}
	if subtle.ConstantTimeCompare([]byte(f.State), []byte(q.Get("state"))) != 1 {
		h.fail(w, r, "The sign-in could not be verified (its state does not match); sign in again.", nil)
		return
	}
	ctx := r.Context()
	oauth, err := h.oauth(ctx)
	if err != nil {
		h.fail(w, r, "The identity provider cannot be reached; try again in a moment.", err)
		return
	}
	tok, err := oauth.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(f.Verifier))
	if err != nil {
		h.fail(w, r, "The identity provider did not accept the sign-in; sign in again.", err)
		return
	}
	rawID, _ := tok.Extra("id_token").(string)
	idToken, err := h.verifier().Verify(ctx, rawID)
	if err != nil {
		h.fail(w, r, "The identity provider's answer could not be verified; sign in again.", err)
		return
	}
	if subtle.ConstantTimeCompare([]byte(idToken.Nonce), []byte(f.Nonce)) != 1 {
		h.fail(w, r, "The sign-in could not be verified (its nonce does not match); sign in again.", nil)
		return
	}
	session, err := h.users.SignIn(ctx, &storev1.SignInRequest{IdToken: rawID, AccessToken: tok.AccessToken})
	if err != nil {
		h.fail(w, r, "The platform refused the sign-in: "+status.Convert(err).Message(), err)
		return
	}
	h.log.Info("signed in", "user", session.GetUser().GetName())
	http.SetCookie(w, h.cookie("", -1))
	http.Redirect(w, r, "/#session="+url.QueryEscape(session.GetToken()), http.StatusSeeOther)
}

// fail ends a sign-in on the dashboard's sign-in page with message.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, message string, cause error) {
	h.log.Warn("sign-in failed", "reason", message, "err", cause)
	http.SetCookie(w, h.cookie("", -1))
	http.Redirect(w, r, "/#signin_error="+url.QueryEscape(message), http.StatusSeeOther)
}

func (h *Handler) cookie(value string, maxAge time.Duration) *http.Cookie {
	return &http.Cookie{
		Name: cookieName, Value: value, Path: "/auth/", MaxAge: int(maxAge.Seconds()),
		HttpOnly: true, Secure: h.redirect.Scheme == "https",
		// Lax: the issuer's redirect back is a top-level navigation from another site.
		SameSite: http.SameSiteLaxMode,
	}
}

func (h *Handler) flowOf(r *http.Request) (flow, bool) {
	var f flow
	c, err := r.Cookie(cookieName)
	if err != nil {
		return f, false
	}
	b, err := base64.RawURLEncoding.DecodeString(c.Value)
	if err != nil || json.Unmarshal(b, &f) != nil || f.State == "" || f.Nonce == "" || f.Verifier == "" {
		return f, false
	}
	return f, true
}

// discover fetches the issuer's discovery document once it can: the
// gateway starts whether or not the issuer is up.
func (h *Handler) discover(ctx context.Context) (*oidc.Provider, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.provider == nil {
		p, err := oidc.NewProvider(ctx, h.cfg.Issuer)
		if err != nil {
			return nil, err
		}
		h.provider = p
	}
	return h.provider, nil
}

func (h *Handler) oauth(ctx context.Context) (*oauth2.Config, error) {
	p, err := h.discover(ctx)
	if err != nil {
		return nil, err
	}
	return &oauth2.Config{
		ClientID: h.cfg.ClientID, ClientSecret: h.cfg.ClientSecret, RedirectURL: h.cfg.RedirectURL,
		Endpoint: p.Endpoint(), Scopes: append([]string{oidc.ScopeOpenID}, h.cfg.Scopes...),
	}, nil
}

// verifier is only called after oauth succeeded, so the provider is known.
func (h *Handler) verifier() *oidc.IDTokenVerifier {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.provider.Verifier(&oidc.Config{ClientID: h.cfg.ClientID})
}
