package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	auditv1 "github.com/storeprov/storeprov/gen/storeprov/audit/v1"
	"github.com/storeprov/storeprov/pkg/database"
	"github.com/storeprov/storeprov/pkg/database/databasetest"
)

// tamper runs statement on the database at url behind the service's back.
func tamper(t *testing.T, url, statement string) {
	t.Helper()
	db, err := database.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(context.Background(), statement); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyReportsAnIntactChainThenTheEditedEntry(t *testing.T) {
	databasetest.Each(t, func(t *testing.T, url string) {
		c, log := start(t, url)
		seed(t, log, 6)
		before, err := c.VerifyAuditEntries(as("admin-token"), &auditv1.VerifyAuditEntriesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if !before.GetIntact() || before.GetCheckedEntries() != 6 || before.GetHeadSequence() != 6 {
			t.Fatalf("verify of an untouched log = %v, want intact with 6 entries", before)
		}

		tamper(t, url, "UPDATE audit_entries SET detail = 'nothing to see' WHERE event_id = 'e03'")
		after, err := c.VerifyAuditEntries(as("admin-token"), &auditv1.VerifyAuditEntriesRequest{KnownHash: strings.ToUpper(before.GetHeadHash())})
		if err != nil {
			t.Fatal(err)
		}
		brk := after.GetFirstBreak()
		if after.GetIntact() || brk.GetKind() != auditv1.ChainBreak_KIND_CONTENT || brk.GetEntry().GetId() != "e03" || brk.GetEntry().GetDetail() != "nothing to see" {
			t.Errorf("verify after editing e03 = %v, want a content break naming e03 as it is now stored", after)
		}
	})
}

func TestOnlyAdminsVerify(t *testing.T) {
	c, log := start(t, databasetest.SQLite(t))
	seed(t, log, 2)
	for _, token := range []string{"alice-token", "nobody"} {
		_, err := c.VerifyAuditEntries(as(token), &auditv1.VerifyAuditEntriesRequest{})
		if code := status.Code(err); code != codes.PermissionDenied {
			t.Errorf("%s: code = %v (%v), want PermissionDenied", token, code, err)
		}
	}
	_, err := c.VerifyAuditEntries(context.Background(), &auditv1.VerifyAuditEntriesRequest{})
	if code := status.Code(err); code != codes.Unauthenticated {
		t.Errorf("without a token: code = %v (%v), want Unauthenticated", code, err)
	}
}

func TestVerifyRefusesAKnownHashThatIsNotOne(t *testing.T) {
	c, _ := start(t, databasetest.SQLite(t))
	for _, known := range []string{"abc", strings.Repeat("z", 64), strings.Repeat("a", 66)} {
		_, err := c.VerifyAuditEntries(as("admin-token"), &auditv1.VerifyAuditEntriesRequest{KnownHash: known})
		st := status.Convert(err)
		if st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "known_hash") {
			t.Errorf("known_hash %q: error = %v; want InvalidArgument naming known_hash", known, err)
		}
	}
}

func TestVerifyWithoutTheChainStateIsDataLoss(t *testing.T) {
	url := databasetest.SQLite(t)
	c, _ := start(t, url)
	tamper(t, url, "DELETE FROM audit_chains")
	_, err := c.VerifyAuditEntries(as("admin-token"), &auditv1.VerifyAuditEntriesRequest{})
	if code := status.Code(err); code != codes.DataLoss {
		t.Errorf("code = %v (%v), want DataLoss", code, err)
	}
}

// TestVerifyOverREST calls GET /v1/auditEntries:verify through the
// generated grpc-gateway handler, as the gateway serves it.
func TestVerifyOverREST(t *testing.T) {
	c, log := start(t, databasetest.SQLite(t))
	seed(t, log, 3)
	mux := runtime.NewServeMux()
	if err := auditv1.RegisterAuditServiceHandlerClient(context.Background(), mux, c); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(mux)
	defer srv.Close()
	get := func(token string) (int, map[string]any) {
		req, err := http.NewRequest(http.MethodGet, srv.URL+"/v1/auditEntries:verify", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatalf("body %q is not JSON: %v", body, err)
		}
		return resp.StatusCode, m
	}
	if code, body := get("admin-token"); code != http.StatusOK || body["intact"] != true || body["checkedEntries"] != "3" {
		t.Errorf("admin: %d %v, want 200 with intact and 3 checked entries", code, body)
	}
	if code, _ := get("alice-token"); code != http.StatusForbidden {
		t.Errorf("alice: %d, want 403", code)
	}
}
