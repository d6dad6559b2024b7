// Command bench runs the benchmarks of package bench on the sandbox
// cluster and prints their table; with --write it also writes
// docs/benchmarks.md and its plot.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/storeprov/storeprov/deploy/bench"
)

func main() {
	root := flag.String("root", ".", "repository root")
	sandbox := flag.String("sandbox-dir", ".cache/sandbox", "the sandbox's directory (kubeconfig, bin/helm, bin/kubectl)")
	form := flag.String("form", "full", "full, or smoke: a few stores, figures meaningless")
	write := flag.String("write", "", "directory to write benchmarks.md and benchmarks.png into (docs/ for make bench)")
	flag.Parse()
	if err := run(*root, *sandbox, *form, *write); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(root, sandbox, form, write string) error {
	f := bench.Full
	switch form {
	case "full":
	case "smoke":
		f = bench.Smoke
	default:
		return fmt.Errorf("--form %q: want full or smoke", form)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logs, err := os.Create(filepath.Join(os.TempDir(), "storeprov-bench.log"))
	if err != nil {
		return err
	}
	defer logs.Close()
	fmt.Printf("bench: the services' logs are in %s\n", logs.Name())
	rep, err := bench.Run(ctx, bench.Config{
		Root: root, BinDir: bench.DefaultBinDir(root),
		Kubeconfig: filepath.Join(sandbox, "kubeconfig"), Helm: filepath.Join(sandbox, "bin", "helm"), Kubectl: filepath.Join(sandbox, "bin", "kubectl"),
		PostgresURL: os.Getenv(bench.PostgresURLEnv), NATSURL: os.Getenv(bench.NATSURLEnv),
		Form: f, Logs: logs, Progress: os.Stdout,
	})
	if err != nil {
		return err
	}
	fmt.Print(rep.Table())
	fmt.Print("\nWhere the time goes (median per span, single-store creates):\n", bench.PhaseTable(rep.Phases))
	for _, t := range rep.Targets() {
		fmt.Println("-", t)
	}
	if write == "" {
		return nil
	}
	png, err := rep.Plot()
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(write, "benchmarks.png"), png, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(write, "benchmarks.md"), []byte(rep.Markdown("benchmarks.png")), 0o644)
}
