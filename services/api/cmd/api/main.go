// Command api serves the public StoreService and UserService over gRPC.
// It keeps stores, users and API tokens in its database and hands
// provisioning to the orchestrator through NATS JetStream.
package main

import (
	"context"
	"flag"
	"os"
	"os/signal"
	"syscall"

	"github.com/storeprov/storeprov/services/api/internal/app"
)

func main() {
	var opts app.Options
	opts.BindFlags(flag.CommandLine)
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := app.Run(ctx, opts)
	stop()
	opts.ExitOnError("api", err)
}
