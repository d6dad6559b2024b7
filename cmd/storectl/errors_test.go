package main

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestErrorsSayWhatWasWrong(t *testing.T) {
	_, token := newUser(t, "mistaken")
	provisioning := createStore(t, token, "--name", "Busy Shop").GetId()
	tests := []struct {
		name, reason string
		token        string
		args         []string
		want         string
	}{
		{
			name: "empty store name", reason: "a store needs a name",
			args: []string{"create"},
			want: "storectl: store.display_name: is required: give the store a name of 1 to 63 characters (InvalidArgument)\n",
		},
		{
			name: "store name too long", reason: "display names have at most 63 characters",
			args: []string{"create", "--name", strings.Repeat("x", 64)},
			want: "storectl: store.display_name: is 64 characters long: use at most 63 (InvalidArgument)\n",
		},
		{
			name: "store name with a control character", reason: "display names are printable",
			args: []string{"create", "--name", "Tab\tShop"},
			want: "storectl: store.display_name: contains control characters: use printable characters only (InvalidArgument)\n",
		},
		{
			name: "request id with a space", reason: "request ids are printable ASCII without spaces",
			args: []string{"create", "--name", "Shop", "--request-id", "my order"},
			want: "storectl: request_id: may hold only printable ASCII characters without spaces, such as a UUID (InvalidArgument)\n",
		},
		{
			name: "unknown engine", reason: "storectl knows the engines and refuses others before it calls the api",
			args: []string{"create", "--name", "Shop", "--engine", "magento"},
			want: "storectl: unknown engine \"magento\": use woocommerce or medusa\n",
		},
		{
			name: "missing store", reason: "a store id nobody has",
			args: []string{"get", "nosuchid"},
			want: "storectl: store not found: no store \"nosuchid\" (NotFound)\n",
		},
		{
			name: "retry of a store that has not failed", reason: "only FAILED stores are retried",
			args: []string{"retry", provisioning},
			want: "storectl: store is in the wrong phase: store " + provisioning + " is PROVISIONING; only a FAILED store can be retried (FailedPrecondition)\n",
		},
		{
			name: "missing token", reason: "revoking a token id nobody has",
			args: []string{"token", "revoke", "nosuchtoken"},
			want: "storectl: token not found: \"nosuchtoken\" is not a token id: use an id from the token list (NotFound)\n",
		},
		{
			name: "unknown API token", reason: "a token the api never issued",
			token: "sp_nosuchtoken",
			args:  []string{"list"},
			want:  "storectl: invalid API token: it is unknown or was revoked; create a new one with storectl token create (Unauthenticated)\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			as := token
			if tt.token != "" {
				as = tt.token
			}
			r := storectl(t, as, tt.args...)
			if diff := cmp.Diff(result{stderr: tt.want, code: 1}, r, cmp.AllowUnexported(result{})); diff != "" {
				t.Errorf("storectl %s, %s (-want +got):\n%s", strings.Join(tt.args, " "), tt.reason, diff)
			}
		})
	}
}

func TestNoTokenSaysWhereToGetOne(t *testing.T) {
	s := startStack(t)
	t.Setenv("STOREPROV_TOKEN", "")
	// Nor a .cache/dev/token of make dev.
	t.Chdir(t.TempDir())
	var stdout, stderr strings.Builder
	code := run([]string{"--api", s.APIAddr, "list"}, &stdout, &stderr)
	want := result{stderr: "storectl: no API token: pass --token, set STOREPROV_TOKEN, or run make dev, which writes .cache/dev/token\n", code: 1}
	if diff := cmp.Diff(want, result{stdout.String(), stderr.String(), code}, cmp.AllowUnexported(result{})); diff != "" {
		t.Errorf("storectl list with no token (-want +got):\n%s", diff)
	}
}
