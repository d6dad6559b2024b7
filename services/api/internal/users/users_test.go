package users

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/storeprov/storeprov/pkg/database/databasetest"
	"github.com/storeprov/storeprov/pkg/rpc"
	"github.com/storeprov/storeprov/services/api/internal/ent"
	"github.com/storeprov/storeprov/services/api/internal/stores"
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
		db := databasetest.Migrated(t, url, stores.Migrations)
		s := &Service{Client: ent.NewClient(ent.Driver(db.Driver)), DefaultStoreQuota: 3}
		id := Identity{Key: "https://issuer.test#carol", Name: "carol"}

		expired, _, _, err := s.SignIn(ctx, id, -time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.Authenticate(ctx, expired)
		if !errors.Is(err, rpc.ErrUnauthenticated) || !strings.Contains(err.Error(), "expired") {
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
		if _, err := s.Authenticate(ctx, expired); err != rpc.ErrUnauthenticated {
			t.Errorf("the expired token after the sweep: %v; want plain ErrUnauthenticated (unknown)", err)
		}
		if p, err := s.Authenticate(ctx, live); err != nil || p.Name != "carol" {
			t.Errorf("the live session token: %+v, %v", p, err)
		}
	})
}
