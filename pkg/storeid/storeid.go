// Package storeid makes, checks and spells the names a store is known by:
// its id, the namespace that holds everything it owns, and the host it is
// served at. The api makes ids with New; the orchestrator refuses, with
// Validate, an id that could not name a namespace and a host before it
// touches the cluster. Nothing else builds these names.
package storeid

import (
	"crypto/rand"
	"errors"
	"fmt"
)

// MaxLen is the longest valid id, in bytes: the namespace "store-" + id
// stays within the 63 characters of a Kubernetes name and a DNS label.
const MaxLen = 40

// ErrInvalid means an id cannot name a store: Validate's errors wrap it,
// and say what is wrong.
var ErrInvalid = errors.New("invalid store id")

// namespacePrefix starts the name of every store's namespace, and the
// first label of its host (the charts' store.host helper spells the same).
const namespacePrefix = "store-"

// New returns a new random id: 8 characters, a lowercase letter and then
// lowercase letters and digits. It is a DNS label, short enough for the
// namespace and host names, and reveals nothing about how many stores
// exist.
func New() string {
	const letters = "abcdefghijklmnopqrstuvwxyz"
	const alnum = letters + "0123456789"
	b := make([]byte, 8)
	_, _ = rand.Read(b) // never fails: crypto/rand panics rather than return an error
	id := make([]byte, len(b))
	id[0] = letters[int(b[0])%len(letters)]
	for i := 1; i < len(b); i++ {
		id[i] = alnum[int(b[i])%len(alnum)]
	}
	return string(id)
}

// Validate returns nil when id can name a store's namespace and host: 1 to
// MaxLen lowercase ASCII letters, digits and '-', neither first nor last.
// Every id New makes is valid. Otherwise it returns an error wrapping
// ErrInvalid that quotes the id and says what to use instead.
func Validate(id string) error {
	if id == "" || len(id) > MaxLen {
		return fmt.Errorf("%w %q: must be 1 to %d characters", ErrInvalid, id, MaxLen)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' && i > 0 && i < len(id)-1
		if !ok {
			return fmt.Errorf("%w %q: use lowercase letters, digits and inner '-'", ErrInvalid, id)
		}
	}
	return nil
}

// Namespace returns the name of the namespace that holds everything of
// store id: store-<id>. It does not validate id; call Validate first
// wherever the id comes from outside.
func Namespace(id string) string { return namespacePrefix + id }

// Host returns the host name store id is served at under baseDomain:
// store-<id>.<baseDomain>, as the store charts name their ingress host. It
// does not validate id.
func Host(id, baseDomain string) string { return Namespace(id) + "." + baseDomain }

// URL returns the address store id is served at under baseDomain:
// http://store-<id>.<baseDomain>. It does not validate id.
func URL(id, baseDomain string) string { return "http://" + Host(id, baseDomain) }
