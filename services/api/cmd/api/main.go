// Command api serves the public StoreService and UserService over gRPC.
// It keeps stores, users and API tokens in its database and hands
// provisioning to the orchestrator through NATS JetStream.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/storeprov/storeprov/services/api/internal/app"
)

func main() {
	var opts app.Options
	opts.BindFlags(flag.CommandLine)
	flag.Parse()
	opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil)).With("service", "api")

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := app.Run(ctx, opts); err != nil {
		fmt.Fprintln(os.Stderr, "api:", err)
		os.Exit(1)
	}
}
