// Command orchestrator consumes provisioning commands from NATS JetStream
// and converges each store in Kubernetes: its namespace and guardrails,
// then its Helm release (installed with the Helm Go SDK) until its
// workloads are ready, publishing status and audit events. Run several replicas: they share
// the work and fence each store with a lease.
//
//	orchestrator --kubeconfig ~/.kube/config --nats-url nats://127.0.0.1:4222
//
// `orchestrator -h` lists every flag.
package main

import (
	"context"
	"flag"
	"os"
	"os/signal"
	"syscall"

	"github.com/storeprov/storeprov/services/orchestrator/internal/app"
)

func main() {
	var opts app.Options
	fs := flag.NewFlagSet("orchestrator", flag.ExitOnError)
	opts.BindFlags(fs)
	_ = fs.Parse(os.Args[1:])

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := app.Run(ctx, opts)
	stop()
	opts.ExitOnError("orchestrator", err)
}
