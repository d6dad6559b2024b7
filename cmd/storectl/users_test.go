package main

import (
	"strings"
	"testing"

	storev1 "github.com/storeprov/storeprov/gen/storeprov/store/v1"
)

func newUserMsg() *storev1.User { return &storev1.User{} }

func TestUserSetChangesQuotaAndAdmin(t *testing.T) {
	admin := adminToken(t)
	name, token := newUser(t, "limited")

	if got, want := mustRun(t, admin, "user", "set", name, "--store-quota", "1"), name+" (admin: false, store quota: 1)\n"; got != want {
		t.Errorf("user set --store-quota 1 printed %q, want %q", got, want)
	}
	createStore(t, token, "--name", "Only Shop")
	r := storectl(t, token, "create", "--name", "One Too Many")
	if r.code != 1 || !strings.Contains(r.stderr, "quota") || !strings.Contains(r.stderr, "(ResourceExhausted)") {
		t.Errorf("a create over the quota set: exit status %d, stderr %q; want 1 and a quota error (ResourceExhausted)", r.code, r.stderr)
	}

	mustRun(t, admin, "user", "set", name, "--admin=true")
	if me := runJSON(t, token, newUserMsg, "whoami"); len(me) != 1 || !me[0].GetAdmin() || me[0].GetStoreQuota() != 1 {
		t.Errorf("after user set --admin=true, whoami printed %v; want an admin with store quota 1", me)
	}
	mustRun(t, admin, "user", "set", name, "--admin=false")
	if me := runJSON(t, token, newUserMsg, "whoami"); len(me) != 1 || me[0].GetAdmin() {
		t.Errorf("after user set --admin=false, whoami printed %v; want no admin", me)
	}

	r = storectl(t, token, "user", "set", name, "--store-quota", "100")
	if r.code != 1 || !strings.Contains(r.stderr, "(PermissionDenied)") {
		t.Errorf("user set by a user who is no admin: exit status %d, stderr %q; want 1 and PermissionDenied", r.code, r.stderr)
	}
}
