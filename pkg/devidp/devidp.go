// Package devidp runs an OpenID Connect provider for development and tests,
// so that sign-in works on one machine without an identity service: the
// OpenID-certified provider of github.com/zitadel/oidc with its example
// in-memory storage and plain login form, and the users and clients given
// here. `make dev` starts one; the sign-in tests drive its real protocol.
//
// It is not for production: passwords are compared in plain text, nothing
// survives a restart, and the example storage also knows a built-in
// service client. Bind it to a loopback address.
package devidp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"time"

	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"
)

// User is someone who can sign in.
type User struct {
	// Subject is the stable "sub" claim.
	Subject  string
	Username string
	Password string
	// Email is returned verified, unless EmailUnverified.
	Email           string
	EmailUnverified bool
	Name            string
	// Groups, when set, are returned in the "groups" claim of the ID
	// token and of the userinfo endpoint.
	Groups []string
}

// Client is a registered relying party, authenticated with its secret.
type Client struct {
	ID, Secret   string
	RedirectURIs []string
}

// Config describes a provider.
type Config struct {
	// Addr to listen on; "127.0.0.1:0" picks a free port.
	Addr    string
	Users   []User
	Clients []Client
}

// Server is a running provider.
type Server struct {
	// Issuer is the provider's URL, "http://<addr>", and its issuer claim.
	Issuer string
	srv    *http.Server
	done   chan struct{}
}

// Start listens on c.Addr and serves until Close.
func Start(c Config) (*Server, error) {
	if len(c.Users) == 0 || len(c.Clients) == 0 {
		return nil, errors.New("devidp: give at least one user and one client")
	}
	lis, err := net.Listen("tcp", c.Addr)
	if err != nil {
		return nil, fmt.Errorf("devidp: cannot listen on %s: %w", c.Addr, err)
	}
	issuer := "http://" + lis.Addr().String()
	users := userStore{}
	groups := map[string][]string{}
	for _, u := range c.Users {
		users[u.Subject] = &storage.User{
			ID: u.Subject, Username: u.Username, Password: u.Password,
			FirstName: u.Name, Email: u.Email, EmailVerified: !u.EmailUnverified,
			PreferredLanguage: language.English,
		}
		if len(u.Groups) > 0 {
			groups[u.Subject] = u.Groups
		}
	}
	clients := map[string]*storage.Client{}
	for _, cl := range c.Clients {
		clients[cl.ID] = storage.WebClient(cl.ID, cl.Secret, cl.RedirectURIs...)
	}
	mux := http.NewServeMux()
	store := groupStorage{Storage: storage.NewStorageWithClients(users, clients), groups: groups}
	mux.Handle("/", exampleop.SetupServer(issuer, store, nil, false))
	// Browsers ask for one; a 404 would be an error in their consoles.
	mux.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	s := &Server{Issuer: issuer, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(lis)
	}()
	return s, nil
}

// Close stops the provider.
func (s *Server) Close() error {
	err := s.srv.Close()
	<-s.done
	return err
}

// Login signs username in the way a browser does: it follows the redirects
// from startURL (a relying party's login URL, or the provider's authorization
// URL) to the provider's login form, submits it, and follows the redirects
// back. It returns the first URL outside the provider that the provider
// redirects to: the relying party's callback with its code and state, or
// with an error. client keeps the relying party's cookies; nil means a
// new cookie jar.
func (s *Server) Login(ctx context.Context, client *http.Client, startURL, username, password string) (*url.URL, error) {
	issuer, err := url.Parse(s.Issuer)
	if err != nil {
		return nil, err
	}
	c := http.Client{Transport: http.DefaultTransport}
	if client != nil {
		c = *client
	}
	if c.Jar == nil {
		c.Jar, _ = cookiejar.New(nil)
	}
	var callback *url.URL
	visited := false
	c.CheckRedirect = func(req *http.Request, _ []*http.Request) error {
		if req.URL.Host == issuer.Host {
			visited = true
			return nil
		}
		if visited {
			callback = req.URL
			return http.ErrUseLastResponse
		}
		return nil
	}
	do := func(req *http.Request) (*http.Response, error) {
		resp, err := c.Do(req)
		if err != nil {
			return nil, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp, nil
	}

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, startURL, nil)
	if err != nil {
		return nil, err
	}
	resp, err := do(req) //nolint:bodyclose // do drained and closed it
	if err != nil {
		return nil, err
	}
	if callback != nil {
		return callback, nil
	}
	id := resp.Request.URL.Query().Get("authRequestID")
	if resp.Request.URL.Host != issuer.Host || id == "" {
		return nil, fmt.Errorf("devidp: %s led to %s (%s), not to the login form", startURL, resp.Request.URL, resp.Status)
	}
	form := url.Values{"id": {id}, "username": {username}, "password": {password}}
	req, err = http.NewRequestWithContext(ctx, http.MethodPost, s.Issuer+"/login/username", strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if _, err := do(req); err != nil { //nolint:bodyclose // do drained and closed it
		return nil, err
	}
	if callback == nil {
		return nil, fmt.Errorf("devidp: the provider did not accept %q with that password", username)
	}
	return callback, nil
}

// groupStorage adds the users' groups to the example storage's claims.
type groupStorage struct {
	*storage.Storage
	groups map[string][]string
}

// SetUserinfoFromRequest fills the claims of an ID token.
func (s groupStorage) SetUserinfoFromRequest(ctx context.Context, info *oidc.UserInfo, req op.IDTokenRequest, scopes []string) error {
	if err := s.Storage.SetUserinfoFromRequest(ctx, info, req, scopes); err != nil {
		return err
	}
	if g := s.groups[req.GetSubject()]; g != nil {
		info.AppendClaims("groups", g)
	}
	return nil
}

// SetUserinfoFromToken fills the userinfo endpoint's answer.
func (s groupStorage) SetUserinfoFromToken(ctx context.Context, info *oidc.UserInfo, tokenID, subject, origin string) error {
	if err := s.Storage.SetUserinfoFromToken(ctx, info, tokenID, subject, origin); err != nil {
		return err
	}
	if subject == "" {
		subject = info.Subject
	}
	if g := s.groups[subject]; g != nil {
		info.AppendClaims("groups", g)
	}
	return nil
}

// userStore serves Config.Users to the example storage.
type userStore map[string]*storage.User

func (u userStore) GetUserByID(id string) *storage.User { return u[id] }

func (u userStore) GetUserByUsername(name string) *storage.User {
	for _, user := range u {
		if user.Username == name {
			return user
		}
	}
	return nil
}

// ExampleClientID names the example storage's built-in service user.
func (userStore) ExampleClientID() string { return storage.ServiceUserID }
