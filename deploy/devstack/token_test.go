package devstack

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/storeprov/storeprov/pkg/database/databasetest"
)

// TestTokenFileFollowsTheDatabase: after a run on SQLite and one on
// PostgreSQL in one data directory, the token file once held the
// PostgreSQL admin's token and the next SQLite run refused it.
func TestTokenFileFollowsTheDatabase(t *testing.T) {
	sandbox := os.Getenv("STOREPROV_SANDBOX_DIR")
	pgServer := os.Getenv("STOREPROV_TEST_POSTGRES_URL")
	if sandbox == "" || pgServer == "" {
		t.Fatal("needs the sandbox cluster (STOREPROV_SANDBOX_DIR, make sandbox-up) and PostgreSQL (STOREPROV_TEST_POSTGRES_URL)")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	binDir := t.TempDir()
	if err := Build(context.Background(), root, binDir); err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	pg := databasetest.Postgres(t, pgServer)
	run := func(apiDB string) string {
		t.Helper()
		var logs Logs
		s, err := Start(context.Background(), Config{
			Root: root, DataDir: dataDir, BinDir: binDir, Kubeconfig: filepath.Join(sandbox, "kubeconfig"),
			NATSPort: -1, APIDatabaseURL: apiDB, BusPrefix: "devtoken", Orchestrators: 1, Logs: &logs,
		})
		if err != nil {
			t.Fatalf("stack on %q: %v\n%s", apiDB, err, logs.String())
		}
		defer s.Stop()
		file, err := os.ReadFile(filepath.Join(dataDir, TokenFile))
		if err != nil || strings.TrimSpace(string(file)) != s.Token {
			t.Errorf("%s after a run on %q holds %q (%v); want the running api's %q", TokenFile, apiDB, file, err, s.Token)
		}
		if err := checkToken(s.GatewayURL, strings.TrimSpace(string(file)), TokenFile); err != nil {
			t.Errorf("the token file on %q: %v", apiDB, err)
		}
		return s.Token
	}
	sqlite := run("")
	postgres := run(pg)
	if sqlite == postgres {
		t.Fatal("the SQLite and PostgreSQL databases have the same admin token")
	}
	if again := run(""); again != sqlite {
		t.Errorf("the second SQLite run has token %q; want the first one's", again)
	}
}
