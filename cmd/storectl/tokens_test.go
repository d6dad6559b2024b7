package main

import (
	"regexp"
	"strings"
	"testing"

	storev1 "github.com/storeprov/storeprov/gen/storeprov/store/v1"
)

func newToken() *storev1.Token { return &storev1.Token{} }

func TestTokenCreateListRevoke(t *testing.T) {
	admin := adminToken(t)
	name, _ := newUser(t, "holder")

	out := mustRun(t, admin, "token", "create", "--user", name, "--description", "deploy bot", "--ttl", "1h")
	m := regexp.MustCompile(`^token (\S+) for ` + name + `, an existing account \(admin: false, store quota: 5\), expires [0-9-]+ [0-9:]+\nit is shown only once:\n(\S+)\n$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("token create printed:\n%s\nwant the token's id, user, account, expiry and the token itself", out)
	}
	id, token := m[1], m[2]
	if got, want := mustRun(t, token, "whoami"), name+" (admin: false, store quota: 5)\n"; got != want {
		t.Errorf("whoami with the new token printed %q, want %q", got, want)
	}

	listed := runJSON(t, admin, newToken, "token", "list", "--user", name)
	if !hasToken(listed, id, "deploy bot") {
		t.Errorf("token list --user %s does not show token %s (deploy bot): %v", name, id, listed)
	}
	if own := runJSON(t, token, newToken, "token", "list"); !hasToken(own, id, "deploy bot") {
		t.Errorf("token list by the user does not show its token %s: %v", id, own)
	}
	table := mustRun(t, token, "token", "list")
	if header := strings.Join(strings.Fields(strings.SplitN(table, "\n", 2)[0]), " "); header != "ID USER KIND DESCRIPTION CREATED EXPIRES LAST USED" || !strings.Contains(table, id) {
		t.Errorf("token list prints no table with token %s:\n%s", id, table)
	}

	if got, want := mustRun(t, admin, "token", "revoke", id), "revoked token "+id+" of "+name+" (deploy bot)\n"; got != want {
		t.Errorf("token revoke printed %q, want %q", got, want)
	}
	r := storectl(t, token, "whoami")
	if r.code != 1 || !strings.HasPrefix(r.stderr, "storectl: ") || !strings.Contains(r.stderr, "(Unauthenticated)") {
		t.Errorf("whoami with a revoked token: exit status %d, stderr %q; want 1 and Unauthenticated", r.code, r.stderr)
	}
	if listed := runJSON(t, admin, newToken, "token", "list", "--user", name); hasToken(listed, id, "deploy bot") {
		t.Errorf("token list --user %s still shows the revoked token %s: %v", name, id, listed)
	}
}

func hasToken(tokens []*storev1.Token, id, description string) bool {
	for _, tok := range tokens {
		if tok.GetId() == id && tok.GetDescription() == description {
			return true
		}
	}
	return false
}
