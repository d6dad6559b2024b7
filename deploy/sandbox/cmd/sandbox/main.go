// Command sandbox starts, stops and serves the sandbox Kubernetes cluster:
//
//	sandbox up        start (or reuse) the cluster
//	sandbox down      remove the cluster and its state
//	sandbox provision run the hostPath volume provisioner (started by up)
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/sig-storage-lib-external-provisioner/v13/controller"

	"github.com/storeprov/storeprov/deploy/sandbox/internal/cluster"
	"github.com/storeprov/storeprov/deploy/sandbox/internal/hostpath"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: sandbox up|down|provision [--dir DIR] [--nodes N]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	cfg := cluster.Config{Log: os.Stderr}
	fs.StringVar(&cfg.Dir, "dir", ".cache/sandbox", "directory holding the sandbox's binaries and state")
	fs.IntVar(&cfg.Nodes, "nodes", 3, "number of fake nodes")
	_ = fs.Parse(os.Args[2:])
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		fatal(err)
	}
	cfg.Dir = dir

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch os.Args[1] {
	case "up":
		err = cluster.Up(ctx, cfg)
	case "down":
		err = cluster.Down(ctx, cfg)
	case "provision":
		err = provision(ctx, cfg)
	default:
		err = fmt.Errorf("unknown command %q: use up, down or provision", os.Args[1])
	}
	if err != nil {
		fatal(err)
	}
}

func provision(ctx context.Context, cfg cluster.Config) error {
	rc, err := clientcmd.BuildConfigFromFlags("", cfg.KubeconfigPath())
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	p := &hostpath.Provisioner{Root: filepath.Join(cfg.Dir, "volumes")}
	pc := controller.NewProvisionController(ctx, cs, hostpath.Name, p, controller.LeaderElection(false))
	pc.Run(ctx)
	return nil
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "sandbox:", err)
	os.Exit(1)
}
