package storeid_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/storeprov/storeprov/pkg/storeid"
)

func TestValidateRefusesWhatCannotNameANamespace(t *testing.T) {
	tests := []struct {
		name   string
		id     string
		reason string // empty: valid
	}{
		{name: "an id as the api makes it", id: "k3x9q2ab"},
		{name: "one letter", id: "a"},
		{name: "digits first", id: "9shop"},
		{name: "inner dash", id: "my-shop"},
		{name: "the longest", id: strings.Repeat("a", storeid.MaxLen)},
		{name: "empty", id: "", reason: "must be 1 to 40 characters"},
		{name: "too long", id: strings.Repeat("a", storeid.MaxLen+1), reason: "must be 1 to 40 characters"},
		{name: "uppercase", id: "Shop", reason: "use lowercase letters"},
		{name: "a dot would add a DNS label", id: "a.b", reason: "use lowercase letters"},
		{name: "dot-dot", id: "..", reason: "use lowercase letters"},
		{name: "slash", id: "a/b", reason: "use lowercase letters"},
		{name: "path traversal", id: "../kube-system", reason: "use lowercase letters"},
		{name: "leading dash", id: "-shop", reason: "use lowercase letters"},
		{name: "trailing dash", id: "shop-", reason: "use lowercase letters"},
		{name: "space", id: "my shop", reason: "use lowercase letters"},
		{name: "underscore", id: "my_shop", reason: "use lowercase letters"},
		{name: "unicode letter", id: "café", reason: "use lowercase letters"},
		{name: "unicode lookalike of a", id: "shоp", reason: "use lowercase letters"}, // Cyrillic о
		{name: "NUL byte", id: "shop\x00", reason: "use lowercase letters"},
		{name: "newline", id: "shop\n", reason: "use lowercase letters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := storeid.Validate(tt.id)
			if tt.reason == "" {
				if err != nil {
					t.Fatalf("Validate(%q) = %v, want nil", tt.id, err)
				}
				return
			}
			if !errors.Is(err, storeid.ErrInvalid) {
				t.Fatalf("Validate(%q) = %v, want an error wrapping ErrInvalid", tt.id, err)
			}
			if !strings.Contains(err.Error(), tt.reason) {
				t.Errorf("Validate(%q) = %q, want it to say %q", tt.id, err, tt.reason)
			}
		})
	}
}

func TestNewMakesValidDistinctIDs(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := storeid.New()
		if len(id) != 8 {
			t.Errorf("New() = %q, want 8 characters", id)
		}
		if id[0] < 'a' || id[0] > 'z' {
			t.Errorf("New() = %q, want a letter first", id)
		}
		if err := storeid.Validate(id); err != nil {
			t.Errorf("New() made an id Validate refuses: %v", err)
		}
		if seen[id] {
			t.Errorf("New() returned %q twice", id)
		}
		seen[id] = true
	}
}

func TestNamesOfAStore(t *testing.T) {
	type names struct{ Namespace, Host, URL string }
	got := names{
		Namespace: storeid.Namespace("k3x9q2ab"),
		Host:      storeid.Host("k3x9q2ab", "127.0.0.1.nip.io"),
		URL:       storeid.URL("k3x9q2ab", "127.0.0.1.nip.io"),
	}
	want := names{
		Namespace: "store-k3x9q2ab",
		Host:      "store-k3x9q2ab.127.0.0.1.nip.io",
		URL:       "http://store-k3x9q2ab.127.0.0.1.nip.io",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("names of store k3x9q2ab (-want +got):\n%s", diff)
	}
	if n := storeid.Namespace(strings.Repeat("a", storeid.MaxLen)); len(n) > 63 {
		t.Errorf("the namespace of the longest id is %d characters, more than Kubernetes' 63", len(n))
	}
}
