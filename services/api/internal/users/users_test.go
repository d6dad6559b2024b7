package users

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/storeprov/storeprov/pkg/auth"
	"github.com/storeprov/storeprov/pkg/database/databasetest"
	"github.com/storeprov/storeprov/services/api/internal/ent"
	"github.com/storeprov/storeprov/services/api/internal/ent/schema"
)

func TestNameFor(t *testing.T) {
	for _, c := range []struct{ preferred, email, want string }{
		{"alice", "", "alice"},
		{"", "Alice.Smith@corp.example", "alice-smith"},
		{"Bob.Builder", "bob@x", "bob-builder"},
		{"--Zoë  O'Neil--", "", "zo-o-neil"},
		{"ünïcode", "", "n-code"},
		{"", "", "user"},
		{"@@@", "", "user"},
		{strings.Repeat("a", 80), "", strings.Repeat("a", 55)},
	} {
		got := nameFor(c.preferred, c.email)
		if got != c.want {
			t.Errorf("nameFor(%q, %q) = %q; want %q", c.preferred, c.email, got, c.want)
		}
		if err := ValidateName(got); err != nil {
			t.Errorf("nameFor(%q, %q) = %q: %v", c.preferred, c.email, got, err)
		}
	}
}

func TestSessionTokensExpire(t *testing.T) {
	databasetest.Each(t, func(t *testing.T, url string) {
		ctx := context.Background()
		db := databasetest.Migrated(t, url, schema.Migrations)
		s := &Service{Client: ent.NewClient(ent.Driver(db.Driver)), DefaultStoreQuota: 3}
		id := Identity{Key: "https://issuer.test#carol", Name: "carol"}

		expired, _, _, err := s.SignIn(ctx, id, -time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.Authenticate(ctx, expired)
		if !errors.Is(err, auth.ErrUnauthenticated) || !strings.Contains(err.Error(), "expired") {
			t.Errorf("an expired session token: %v; want unauthenticated saying it expired", err)
		}
		// The next sign-in sweeps it away.
		live, u, _, err := s.SignIn(ctx, id, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if u.Name != "carol" || u.StoreQuota != 3 {
			t.Errorf("user %+v; want carol with the default quota 3", u)
		}
		if _, err := s.Authenticate(ctx, expired); err != auth.ErrUnauthenticated { //nolint:errorlint // the plain sentinel: no reason given for an unknown token
			t.Errorf("the expired token after the sweep: %v; want plain ErrUnauthenticated (unknown)", err)
		}
		if p, err := s.Authenticate(ctx, live); err != nil || p.Name != "carol" {
			t.Errorf("the live session token: %+v, %v", p, err)
		}
	})
}

func TestSignInUsersAreKeyedByIssuerAndSubject(t *testing.T) {
	databasetest.Each(t, func(t *testing.T, url string) {
		ctx := context.Background()
		db := databasetest.Migrated(t, url, schema.Migrations)
		s := &Service{Client: ent.NewClient(ent.Driver(db.Driver)), DefaultStoreQuota: 3}
		signIn := func(id Identity) *ent.User {
			t.Helper()
			_, u, _, err := s.SignIn(ctx, id, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			return u
		}
		first := signIn(Identity{Key: "https://a.test#42", Name: "deploy-bot"})
		// The same person under a new display name is the same user.
		renamed := signIn(Identity{Key: "https://a.test#42", Name: "someone-else"})
		// The same subject at another issuer, and another subject with the
		// same name, are other people.
		otherIssuer := signIn(Identity{Key: "https://b.test#42", Name: "deploy-bot"})
		otherSubject := signIn(Identity{Key: "https://a.test#43", Name: "deploy-bot"})
		if renamed.ID != first.ID || renamed.Name != "deploy-bot" {
			t.Errorf("a renamed person: user %d %q; want %d deploy-bot", renamed.ID, renamed.Name, first.ID)
		}
		for _, u := range []*ent.User{otherIssuer, otherSubject} {
			if u.ID == first.ID || !strings.HasPrefix(u.Name, "deploy-bot-") {
				t.Errorf("another identity named deploy-bot: user %d %q; want a new user deploy-bot-<hex>", u.ID, u.Name)
			}
		}
		if got := Issuer(otherIssuer); got != "https://b.test" {
			t.Errorf("Issuer = %q; want https://b.test", got)
		}
		// A token asked for by name is for the existing sign-in user, and
		// says so; only an admin gets one for someone else.
		if own, err := s.CreateToken(ctx, auth.Principal{Name: "deploy-bot"}, TokenRequest{}); err != nil || own.User.ID != first.ID {
			t.Errorf("deploy-bot minting its own API token: %+v, %v; want its own account's", own, err)
		}
		if _, err := s.CreateToken(ctx, auth.Principal{Name: "deploy-bot"}, TokenRequest{User: "root"}); !errors.Is(err, ErrForbidden) {
			t.Errorf("deploy-bot minting a token for root: %v; want ErrForbidden", err)
		}
		issued, err := s.CreateToken(ctx, auth.Principal{Name: "root", Admin: true}, TokenRequest{User: "deploy-bot"})
		if err != nil || issued.UserCreated || issued.User.ID != first.ID || Issuer(issued.User) != "https://a.test" {
			t.Errorf("an admin's token for deploy-bot: %+v, %v; want the sign-in user of https://a.test", issued, err)
		}
	})
}
