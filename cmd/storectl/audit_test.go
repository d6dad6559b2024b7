package main

import (
	"bytes"
	"context"
	"net"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	auditv1 "github.com/storeprov/storeprov/gen/storeprov/audit/v1"
)

// verifier answers VerifyAuditEntries with resp, or err, and keeps the
// request and token it got.
type verifier struct {
	auditv1.UnimplementedAuditServiceServer
	resp  *auditv1.VerifyAuditEntriesResponse
	err   error
	req   *auditv1.VerifyAuditEntriesRequest
	token string
}

func (v *verifier) VerifyAuditEntries(ctx context.Context, req *auditv1.VerifyAuditEntriesRequest) (*auditv1.VerifyAuditEntriesResponse, error) {
	v.req = req
	if md, ok := metadata.FromIncomingContext(ctx); ok && len(md.Get("authorization")) > 0 {
		v.token = md.Get("authorization")[0]
	}
	return v.resp, v.err
}

func serve(t *testing.T, v *verifier) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	auditv1.RegisterAuditServiceServer(srv, v)
	go func() { _ = srv.Serve(lis) }() // returns once the test stops the server
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

func TestAuditVerify(t *testing.T) {
	tests := []struct {
		name      string
		resp      *auditv1.VerifyAuditEntriesResponse
		err       error
		args      []string
		wantOut   []string
		wantError string
	}{
		{
			name:    "intact",
			resp:    &auditv1.VerifyAuditEntriesResponse{Intact: true, CheckedEntries: 3, HeadSequence: 3, HeadHash: "abc"},
			args:    []string{"--known-hash", "def"},
			wantOut: []string{"intact: 3 entries checked, from the first entry ever to entry 3", "head hash: abc"},
		},
		{
			name: "broken after retention",
			resp: &auditv1.VerifyAuditEntriesResponse{
				CheckedEntries: 1, CheckpointSequence: 10, CheckpointHash: "cp",
				FirstBreak: &auditv1.ChainBreak{Kind: auditv1.ChainBreak_KIND_CONTENT, Sequence: 12, Message: "entry 12 (event e12) does not match its hash",
					Entry: &auditv1.AuditEntry{Id: "e12", Action: "ready", Detail: "edited"}},
			},
			wantOut:   []string{"BROKEN (content) at entry 12, after 1 intact entries from checkpoint 10", "entry 12 (event e12) does not match its hash", `event e12`, `"edited"`},
			wantError: "broken at entry 12",
		},
		{
			name:      "not an admin",
			err:       status.Error(codes.PermissionDenied, "only an admin may verify the audit log"),
			wantError: "only an admin may verify the audit log (PermissionDenied)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := &verifier{resp: tt.resp, err: tt.err}
			addr := serve(t, v)
			var out bytes.Buffer
			cmd := newRootCommand(&out)
			cmd.SetArgs(append([]string{"--audit", addr, "--token", "sp_test", "audit", "verify"}, tt.args...))
			err := cmd.Execute()
			if tt.wantError == "" && err != nil || tt.wantError != "" && (err == nil || !strings.Contains(err.Error(), tt.wantError)) {
				t.Errorf("error = %v, want one saying %q", err, tt.wantError)
			}
			for _, want := range tt.wantOut {
				if !strings.Contains(out.String(), want) {
					t.Errorf("output does not say %q:\n%s", want, out.String())
				}
			}
			if v.token != "Bearer sp_test" {
				t.Errorf("token sent = %q, want Bearer sp_test", v.token)
			}
			if len(tt.args) > 1 && v.req.GetKnownHash() != tt.args[1] {
				t.Errorf("known_hash sent = %q, want %q", v.req.GetKnownHash(), tt.args[1])
			}
		})
	}
}

func newAuditEntry() *auditv1.AuditEntry { return &auditv1.AuditEntry{} }

func TestAuditListsWhatAUserDid(t *testing.T) {
	user, token := newUser(t, "audited")
	st := createStore(t, token, "--name", "Audited Shop")
	mustRun(t, token, "delete", st.GetId())

	entries := waitForAudit(t, token, st.GetId(), "create", "delete")
	for _, e := range entries {
		if e.GetActor() != user || e.GetStoreId() != st.GetId() {
			t.Errorf("audit entry %s of %q on store %q; want %q on %q", e.GetAction(), e.GetActor(), e.GetStoreId(), user, st.GetId())
		}
	}

	if got := actions(runJSON(t, token, newAuditEntry, "audit", "--store", st.GetId(), "--action", "delete")); !slices.Equal(got, []string{"delete"}) {
		t.Errorf("audit --action delete shows actions %v, want [delete]", got)
	}
	table := mustRun(t, token, "audit", "--store", st.GetId(), "--since", "1h")
	lines := strings.Split(strings.TrimSpace(table), "\n")
	if len(lines) != 3 || strings.Join(strings.Fields(lines[0]), " ") != "TIME ACTION ACTOR STORE DETAIL" || !strings.Contains(lines[1], user) {
		t.Errorf("audit --since 1h prints no table of a header and two entries by %s:\n%s", user, table)
	}
}

func TestAuditVerifyFindsARealLogIntact(t *testing.T) {
	_, token := newUser(t, "verified")
	waitForAudit(t, token, createStore(t, token, "--name", "Verified Shop").GetId(), "create")

	out := mustRun(t, adminToken(t), "audit", "verify")
	m := regexp.MustCompile(`^intact: ([0-9]+) entries checked, from the first entry ever to entry [0-9]+\nhead hash: ([0-9a-f]{64})\n$`).FindStringSubmatch(out)
	if m == nil || m[1] == "0" {
		t.Fatalf("audit verify printed:\n%s\nwant an intact chain of at least one entry and its head hash", out)
	}
	mustRun(t, adminToken(t), "audit", "verify", "--known-hash", m[2])
}

// waitForAudit waits until audit --store storeID, as the holder of token,
// lists entries of the actions want, in that order, and returns them; the
// audit service records what the api publishes a moment later.
func waitForAudit(t *testing.T, token, storeID string, want ...string) []*auditv1.AuditEntry {
	t.Helper()
	var entries []*auditv1.AuditEntry
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		entries = runJSON(t, token, newAuditEntry, "audit", "--store", storeID)
		if slices.Equal(actions(entries), want) || time.Now().After(deadline) {
			break
		}
	}
	if diff := cmp.Diff(want, actions(entries)); diff != "" {
		t.Fatalf("audit --store %s, actions (-want +got):\n%s", storeID, diff)
	}
	return entries
}

// actions are the actions of entries, in their order.
func actions(entries []*auditv1.AuditEntry) []string {
	var out []string
	for _, e := range entries {
		out = append(out, e.GetAction())
	}
	return out
}
