package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/storeprov/storeprov/pkg/database"
)

// The identity and abuse guarantees, tried on the running platform as an
// operator about to put it on the internet would: tokens expire and are
// listed and revoked, the gateway refuses oversized bodies and throttles
// bogus tokens, and the audit chain shows an edited row.
func TestIdentityAndAbuseThroughREST(t *testing.T) {
	c := configs(t)[len(configs(t))-1] // PostgreSQL when configured
	auditDB := c.auditDB
	s := startStack(t, c)
	if auditDB == "" {
		auditDB = "sqlite://" + s.DataDir() + "/audit.db"
	}
	admin := &restClient{t: t, base: s.GatewayURL, token: s.Token}

	// Tokens: minted with a lifetime, listed with their expiry, revoked at once.
	var minted struct {
		Token string
		Info  struct {
			ID         string
			ExpireTime string
		}
	}
	admin.do("POST", "/v1/tokens", `{"user":"erin","description":"ci","ttl":"3600s"}`, 200, &minted)
	erin := &restClient{t: t, base: s.GatewayURL, token: minted.Token}
	erin.do("GET", "/v1/stores", "", 200, nil)
	var list struct {
		Tokens []struct{ ID, Description, ExpireTime string }
	}
	admin.do("GET", "/v1/tokens?user=erin", "", 200, &list)
	if len(list.Tokens) != 1 || list.Tokens[0].ID != minted.Info.ID || list.Tokens[0].ExpireTime == "" {
		t.Errorf("erin's tokens = %+v, want the one minted, with its expiry", list.Tokens)
	}
	if exp, err := time.Parse(time.RFC3339, minted.Info.ExpireTime); err != nil || time.Until(exp) > time.Hour+time.Minute {
		t.Errorf("token expires at %q (%v), want within the hour asked for", minted.Info.ExpireTime, err)
	}
	erin.do("DELETE", "/v1/tokens/"+minted.Info.ID, "", 200, nil)
	if code, body := erin.raw("GET", "/v1/stores", "", minted.Token); code != 401 {
		t.Errorf("revoked token = %d %s, want 401", code, body)
	}

	// A 2 MiB body is refused before it reaches the api; the gateway serves on.
	big := `{"displayName":"` + strings.Repeat("x", 2<<20) + `","engine":"ENGINE_MEDUSA"}`
	if code, body := admin.raw("POST", "/v1/stores", big, s.Token); code != 413 || !strings.Contains(string(body), "message") {
		t.Errorf("2 MiB body = %d %.200s, want 413 with a JSON error", code, body)
	}
	admin.do("GET", "/v1/stores", "", 200, nil)

	// Bogus tokens from one address end in 429s with Retry-After.
	throttled, retryAfter := 0, ""
	for i := range 200 {
		req, err := http.NewRequest("GET", s.GatewayURL+"/v1/stores", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", fmt.Sprintf("Bearer sp_bogus%d", i))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == 429 {
			throttled++
			retryAfter = resp.Header.Get("Retry-After")
		}
	}
	if throttled < 150 || retryAfter == "" {
		t.Errorf("200 bogus-token requests: %d answered 429 (Retry-After %q), want most of them", throttled, retryAfter)
	}
	admin.do("GET", "/v1/stores", "", 200, nil)

	// The audit chain is intact, then names the row edited in its database.
	var created store
	admin.do("POST", "/v1/stores", `{"displayName":"Chained","engine":"ENGINE_MEDUSA"}`, 200, &created)
	admin.waitAudit(created.ID, "create")
	var verify struct {
		Intact     bool
		FirstBreak struct {
			Kind     string
			Sequence string
		}
	}
	admin.do("GET", "/v1/auditEntries:verify", "", 200, &verify)
	if !verify.Intact {
		t.Fatalf("audit chain of a fresh platform is not intact: %+v", verify)
	}
	db, err := database.Open(context.Background(), auditDB)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var seq int64
	if err := db.QueryRow("SELECT id FROM audit_entries WHERE store_id = '" + created.ID + "' AND action = 'create'").Scan(&seq); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("UPDATE audit_entries SET detail = 'nothing happened' WHERE id = " + fmt.Sprint(seq)); err != nil {
		t.Fatal(err)
	}
	admin.do("GET", "/v1/auditEntries:verify", "", 200, &verify)
	if verify.Intact || verify.FirstBreak.Kind != "KIND_CONTENT" || verify.FirstBreak.Sequence != fmt.Sprint(seq) {
		b, _ := json.Marshal(verify)
		t.Errorf("verify after editing entry %d = %s, want a content break there", seq, b)
	}
}
