package main

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"

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
	go srv.Serve(lis)
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
