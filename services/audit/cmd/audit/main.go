// Command audit runs the audit service: it records the platform's audit
// events from NATS JetStream in its own database and answers
// storeprov.audit.v1.AuditService over gRPC. `audit -h` lists the flags.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/storeprov/storeprov/services/audit/internal/app"
)

func main() {
	var opts app.Options
	fs := flag.NewFlagSet("audit", flag.ExitOnError)
	opts.BindFlags(fs)
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	_ = fs.Parse(os.Args[1:])

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "audit: --log-level %q: %v\n", *logLevel, err)
		os.Exit(2)
	}
	opts.Logger = slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := app.Run(ctx, opts)
	stop()
	if err != nil {
		opts.Logger.Error("audit service failed", "error", err)
		os.Exit(1)
	}
}
