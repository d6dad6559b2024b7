// Command gateway serves the REST API (grpc-gateway over the api and audit
// gRPC services), the OpenAPI document at /openapi.json and the dashboard.
package main

import (
	"context"
	"flag"
	"os"
	"os/signal"
	"syscall"

	"github.com/storeprov/storeprov/services/gateway/dashboard"
	"github.com/storeprov/storeprov/services/gateway/internal/app"
)

func main() {
	var opts app.Options
	opts.BindFlags(flag.CommandLine)
	flag.Parse()
	opts.Static = dashboard.Handler()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := app.Run(ctx, opts)
	stop()
	opts.ExitOnError("gateway", err)
}
