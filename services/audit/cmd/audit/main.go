// Command audit runs the audit service: it records the platform's audit
// events from NATS JetStream in its own database and answers
// storeprov.audit.v1.AuditService over gRPC. `audit -h` lists the flags.
package main

import (
	"context"
	"flag"
	"os"
	"os/signal"
	"syscall"

	"github.com/storeprov/storeprov/services/audit/internal/app"
)

func main() {
	var opts app.Options
	fs := flag.NewFlagSet("audit", flag.ExitOnError)
	opts.BindFlags(fs)
	_ = fs.Parse(os.Args[1:])

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := app.Run(ctx, opts)
	stop()
	opts.ExitOnError("audit", err)
}
