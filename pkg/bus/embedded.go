package bus

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// EmbeddedOptions configure RunEmbedded.
type EmbeddedOptions struct {
	// Dir holds JetStream's data.
	Dir string
	// Host and Port to listen on; port -1 picks a free one.
	Host string
	Port int
	// Topology gives the role users their permissions.
	Topology Topology
	// Passwords holds the password of each role's user, named as the
	// role. Every role needs one: the server has no anonymous access.
	Passwords map[Role]string
	// Superusers are more users, name → password, who may use every
	// subject: a test's own connection. Services never use one.
	Superusers map[string]string
}

// RunEmbedded starts an in-process NATS server with JetStream, where each
// role signs in with its password and gets Topology.Permissions; no one
// else may connect. The caller must Shutdown it.
func RunEmbedded(o EmbeddedOptions) (*server.Server, error) {
	var users []*server.User
	for _, role := range Roles() {
		password := o.Passwords[role]
		if password == "" {
			return nil, fmt.Errorf("embedded NATS server: no password for the %s user: give every role of %v one", role, Roles())
		}
		p := o.Topology.Permissions(role)
		users = append(users, &server.User{Username: string(role), Password: password, Permissions: &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: p.Publish},
			Subscribe: &server.SubjectPermission{Allow: p.Subscribe},
		}})
	}
	for role := range o.Passwords {
		if !slices.Contains(Roles(), role) {
			return nil, fmt.Errorf("embedded NATS server: unknown role %q: want one of %v", role, Roles())
		}
	}
	for name, password := range o.Superusers {
		if slices.Contains(Roles(), Role(name)) || password == "" {
			return nil, errors.New("embedded NATS server: a superuser needs a password and a name that is not a role's")
		}
		users = append(users, &server.User{Username: name, Password: password})
	}
	opts := &server.Options{
		ServerName: "storeprov-embedded",
		Host:       o.Host,
		Port:       o.Port,
		JetStream:  true,
		StoreDir:   o.Dir,
		Users:      users,
		NoLog:      true,
		NoSigs:     true,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("cannot create embedded NATS server: %w", err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("embedded NATS server did not start within 10s")
	}
	return s, nil
}
