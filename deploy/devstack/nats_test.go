package devstack

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/storeprov/storeprov/pkg/bus"
)

func TestNATSPasswordsAreMadeOnceAndKeptPrivate(t *testing.T) {
	path := filepath.Join(t.TempDir(), NATSAuthFile)
	first, err := natsPasswords(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, role := range bus.Roles() {
		if len(first[role]) < 20 {
			t.Errorf("password of %s = %q, want a long random one", role, first[role])
		}
	}
	if first[bus.RoleAPI] == first[bus.RoleAudit] {
		t.Error("two roles share a password")
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := info.Mode().Perm(); mode != 0o600 {
		t.Errorf("%s has mode %o, want 600", path, mode)
	}
	again, err := natsPasswords(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, role := range bus.Roles() {
		if again[role] != first[role] {
			t.Errorf("password of %s changed on restart", role)
		}
	}
}

func TestNATSPasswordsRefuseAnIncompleteFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), NATSAuthFile)
	if err := os.WriteFile(path, []byte(`{"api": "a", "audit": "b"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := natsPasswords(path); err == nil || !strings.Contains(err.Error(), "no password for orchestrator: delete it") {
		t.Fatalf("natsPasswords = %v, want an error naming the missing role and the fix", err)
	}
}
