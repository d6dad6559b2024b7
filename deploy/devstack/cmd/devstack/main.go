// Command devstack runs the whole platform locally for `make dev`: the
// sandbox cluster must already run (make sandbox-up); NATS is embedded
// unless --nats-url is given; databases are SQLite files unless
// PostgreSQL URLs are given. Ctrl-C stops everything.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/storeprov/storeprov/deploy/devstack"
	"github.com/storeprov/storeprov/pkg/devidp"
)

func main() {
	cfg := devstack.Config{Logs: os.Stdout}
	flag.StringVar(&cfg.Root, "root", ".", "repository root")
	flag.StringVar(&cfg.DataDir, "data-dir", ".cache/dev", "databases, NATS data and the admin token")
	flag.StringVar(&cfg.BinDir, "bin-dir", ".cache/bin", "where the service binaries are built")
	flag.StringVar(&cfg.Kubeconfig, "kubeconfig", ".cache/sandbox/kubeconfig", "cluster the orchestrators manage")
	flag.StringVar(&cfg.NATSURL, "nats-url", os.Getenv("STOREPROV_NATS_URL"), "external NATS ($STOREPROV_NATS_URL); empty embeds one")
	flag.IntVar(&cfg.NATSPort, "nats-port", 14222, "port of the embedded NATS server")
	flag.StringVar(&cfg.APIDatabaseURL, "database-url", os.Getenv("STOREPROV_DATABASE_URL"), "api database ($STOREPROV_DATABASE_URL); empty: SQLite in --data-dir")
	flag.StringVar(&cfg.AuditDatabaseURL, "audit-database-url", os.Getenv("STOREPROV_AUDIT_DATABASE_URL"), "audit database ($STOREPROV_AUDIT_DATABASE_URL); empty: SQLite in --data-dir")
	flag.IntVar(&cfg.GatewayPort, "port", 3000, "port of the dashboard and REST API")
	flag.IntVar(&cfg.APIPort, "api-port", 9090, "gRPC port of the api")
	flag.IntVar(&cfg.AuditPort, "audit-port", 9092, "gRPC port of the audit service")
	flag.IntVar(&cfg.Orchestrators, "orchestrators", 2, "orchestrator worker processes")
	idpPort := flag.Int("idp-port", 5556, "port of the development OpenID provider the dashboard can sign in with (0: none)")
	flag.Parse()
	if *idpPort != 0 {
		cfg.SignIn = &devstack.DevSignIn{Port: *idpPort, Users: devUsers, AdminEmails: []string{"alice@example.com"}, AllowedDomains: []string{"example.com"}}
	}
	for _, p := range []*string{&cfg.Root, &cfg.DataDir, &cfg.BinDir, &cfg.Kubeconfig} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			fatal(err)
		}
		*p = abs
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Println("devstack: building the services…")
	if err := devstack.Build(ctx, cfg.Root, cfg.BinDir); err != nil {
		fatal(err)
	}
	s, err := devstack.Start(ctx, cfg)
	if err != nil {
		fatal(err)
	}
	fmt.Printf(`
storeprov is running. Ctrl-C stops it.

  dashboard and REST  %s   (OpenAPI: %s/openapi.json)
  api gRPC            %s   (grpcurl -plaintext %s list)
  audit gRPC          %s
  NATS                %s%s
  admin token         %s   (also in %s)
%s
  export STOREPROV_TOKEN=$(cat %s)
  %s/storectl create --name "Corner Shop" --engine woocommerce
  curl -H "Authorization: Bearer $STOREPROV_TOKEN" %s/v1/stores

`, s.GatewayURL, s.GatewayURL, s.APIAddr, s.APIAddr, s.AuditAddr, s.NATSURL, natsHelp(cfg), s.Token,
		filepath.Join(cfg.DataDir, devstack.TokenFile), signInHelp(s), filepath.Join(cfg.DataDir, devstack.TokenFile), cfg.BinDir, s.GatewayURL)
	<-ctx.Done()
	fmt.Println("devstack: stopping…")
	s.Stop()
}

// devUsers can sign in to the dashboard through the development OpenID
// provider; it listens on 127.0.0.1 only.
var devUsers = []devidp.User{
	{Subject: "dev-alice", Username: "alice", Password: "alice", Email: "alice@example.com", Name: "Alice (admin)"},
	{Subject: "dev-bob", Username: "bob", Password: "bob", Email: "bob@example.com", Name: "Bob"},
}

func signInHelp(s *devstack.Stack) string {
	if s.IdP == nil {
		return ""
	}
	return fmt.Sprintf("  sign-in (OpenID)    %s   users alice/alice (admin) and bob/bob\n", s.IdP.Issuer)
}

// natsHelp says where the embedded server's users find their passwords.
func natsHelp(cfg devstack.Config) string {
	if cfg.NATSURL != "" {
		return ""
	}
	return "   (users api, orchestrator, audit; passwords in " + filepath.Join(cfg.DataDir, devstack.NATSAuthFile) + ")"
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "devstack:", err)
	os.Exit(1)
}
