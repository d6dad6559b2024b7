// Package app wires the orchestrator's whole dependency graph in one
// place: chart catalog and Kubernetes client → guardrails and Helm client
// → reconcile steps (guardrails, release) → reconciler; NATS → topology →
// event publisher and lease store → worker; and serve: logs, metrics,
// tracing, the admin server and the lifecycle. cmd/orchestrator runs it from flags; a dev stack or an
// end-to-end test can run it in process.
package app

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"sort"
	"strings"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	charts "github.com/storeprov/storeprov/helm"
	"github.com/storeprov/storeprov/pkg/bus"
	"github.com/storeprov/storeprov/pkg/serve"
	"github.com/storeprov/storeprov/services/orchestrator/internal/catalog"
	"github.com/storeprov/storeprov/services/orchestrator/internal/events"
	"github.com/storeprov/storeprov/services/orchestrator/internal/helmaction"
	"github.com/storeprov/storeprov/services/orchestrator/internal/kube"
	"github.com/storeprov/storeprov/services/orchestrator/internal/lease"
	"github.com/storeprov/storeprov/services/orchestrator/internal/plan"
	"github.com/storeprov/storeprov/services/orchestrator/internal/reconcile"
	"github.com/storeprov/storeprov/services/orchestrator/internal/worker"
)

// Options configure Run. BindFlags registers them as flags; DefaultOptions
// returns their defaults for callers without flags.
type Options struct {
	// Kubeconfig is a kubeconfig file; empty means the in-cluster config.
	Kubeconfig string
	// KubeQPS and KubeBurst rate-limit the Kubernetes client.
	KubeQPS   float64
	KubeBurst int
	// PlansFile is a plans YAML file; empty means the plans shipped with
	// the orchestrator.
	PlansFile string
	// Plan names the plan that sizes every store namespace.
	Plan string
	// IngressNamespaceLabels select the ingress controller's namespace,
	// the only one allowed to reach a store's web tier.
	IngressNamespaceLabels map[string]string
	// AllowInternetEgress lets a store's web tier reach public addresses.
	AllowInternetEgress bool
	// ClusterCIDRs are the cluster's pod and service ranges, closed to a
	// store's internet egress.
	ClusterCIDRs []string
	// StoreValuesFile is a YAML file of chart values every store's release
	// gets (ingress class and TLS, storage class…), under the values of
	// each store's command; empty means none.
	StoreValuesFile string
	// ChartsDir holds more versions of the store charts, besides the
	// embedded ones (see catalog.Load); empty means the embedded ones only.
	ChartsDir string
	// HelmMaxHistory bounds the revisions Helm keeps per store.
	HelmMaxHistory int
	// NATSURL is the NATS server (JetStream enabled).
	NATSURL string
	// NATS signs in to NATSURL as the orchestrator role.
	NATS bus.Credentials
	// BusPrefix and BusReplicas name and size the bus topology.
	BusPrefix   string
	BusReplicas int
	// MetricsAddr is where /metrics, /healthz and /readyz are served;
	// ":0" picks a free port, reported to OnReady and in the log.
	MetricsAddr string

	Worker    worker.Options
	Reconcile reconcile.Options
	// Options are the flags every service has (--log-level,
	// --shutdown-grace, which the worker's grace is, --otlp-endpoint) and
	// the Logger of tests.
	serve.Options

	// RESTConfig, when set, is used instead of Kubeconfig (in-process use,
	// fault injection).
	RESTConfig *rest.Config
	// OnReady, when set, is called once with the bound address, before
	// NATS is waited for.
	OnReady func(Addrs)
}

// Addrs are the addresses the orchestrator listens on.
type Addrs struct {
	// Metrics is host:port of /metrics, /healthz and /readyz.
	Metrics string
}

// BindFlags registers the options' flags on fs and sets their defaults.
func (o *Options) BindFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.Kubeconfig, "kubeconfig", "", "kubeconfig file of the cluster stores go to (default: the in-cluster config)")
	fs.Float64Var(&o.KubeQPS, "kube-qps", 50, "Kubernetes API requests per second")
	fs.IntVar(&o.KubeBurst, "kube-burst", 100, "Kubernetes API request burst")
	fs.StringVar(&o.PlansFile, "plans", "", "plans YAML file sizing store namespaces (default: the plans shipped with the orchestrator)")
	fs.StringVar(&o.Plan, "plan", "standard", "plan applied to every store namespace")
	o.IngressNamespaceLabels = map[string]string{"kubernetes.io/metadata.name": "ingress-nginx"}
	fs.Var((*labels)(&o.IngressNamespaceLabels), "ingress-namespace-labels", "comma-separated key=value labels of the ingress controller's namespace, the only one allowed to reach store web pods")
	fs.BoolVar(&o.AllowInternetEgress, "allow-internet-egress", true, "let store web pods reach public addresses (plugin downloads); private, shared, link-local and loopback ranges stay closed")
	fs.Var((*cidrs)(&o.ClusterCIDRs), "cluster-cidrs", "comma-separated pod and service CIDRs of the cluster, also closed to store internet egress (needed when they lie outside the private ranges)")
	fs.StringVar(&o.StoreValuesFile, "store-values", "", "YAML file of chart values for every store (ingress.className, ingress.tls.enabled, storageClass…); storeId, baseDomain and title are set per store")
	fs.StringVar(&o.ChartsDir, "charts-dir", "", "directory of more store chart versions (chart directories or .tgz packages), read at start, besides the embedded ones; a new store that asks for no version gets the newest, an installed one moves only to a version an upgrade names")
	fs.IntVar(&o.HelmMaxHistory, "helm-max-history", helmaction.DefaultMaxHistory, "release revisions Helm keeps per store (each is a Secret counted by the store's quota)")
	fs.StringVar(&o.NATSURL, "nats-url", "nats://127.0.0.1:4222", "NATS server with JetStream")
	o.NATS.BindFlags(fs, bus.RoleOrchestrator)
	fs.StringVar(&o.BusPrefix, "bus-prefix", bus.Default().Prefix, "prefix of the streams, subjects and buckets of this installation")
	fs.IntVar(&o.BusReplicas, "bus-replicas", 1, "replicas of each stream and bucket (3 for a NATS cluster)")
	fs.StringVar(&o.MetricsAddr, "metrics-addr", ":9094", "address of the /metrics, /healthz and /readyz endpoints (\":0\" picks a free port)")
	o.Worker.BindFlags(fs)
	o.Reconcile.BindFlags(fs)
	o.ShutdownGrace = worker.DefaultShutdownGrace
	o.Options.BindFlags(fs)
}

// DefaultOptions returns the defaults of BindFlags.
func DefaultOptions() Options {
	var o Options
	o.BindFlags(flag.NewFlagSet("orchestrator", flag.ContinueOnError))
	return o
}

// Run builds the orchestrator from opts and runs it until ctx is done:
// it connects to Kubernetes and NATS, serves metrics, /healthz and
// /readyz (ready once connected to NATS with the bus topology ensured),
// ensures the topology (waiting for NATS as long as it takes) and runs the
// worker. On cancellation it stops pulling, lets in-flight commands finish
// for up to --shutdown-grace, hands the rest back, and returns nil. It
// returns an error when the configuration is wrong or a dependency cannot
// be set up.
func Run(ctx context.Context, opts Options) error {
	plans := plan.Default()
	if opts.PlansFile != "" {
		var err error
		if plans, err = plan.Load(opts.PlansFile); err != nil {
			return err
		}
	}
	storePlan, err := plans.Get(opts.Plan)
	if err != nil {
		return err
	}
	storeValues, err := loadValues(opts.StoreValuesFile)
	if err != nil {
		return err
	}
	storeCharts, err := catalog.Load(opts.ChartsDir)
	if err != nil {
		return fmt.Errorf("--charts-dir: %w", err)
	}
	restConfig, err := kubeConfig(opts)
	if err != nil {
		return err
	}
	clientset, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		return fmt.Errorf("cannot create the Kubernetes client: %w", err)
	}
	svc, err := serve.New(ctx, "orchestrator", opts.Options)
	if err != nil {
		return err
	}
	defer svc.Close()
	log := svc.Log

	if opts.Worker.ID == "" {
		opts.Worker.ID = worker.DefaultOptions().ID
	}
	// The worker lets in-flight commands finish for the service's grace.
	opts.Worker.ShutdownGrace = opts.ShutdownGrace
	topology := bus.Topology{Prefix: opts.BusPrefix, Replicas: opts.BusReplicas}
	natsBus, err := svc.ConnectBus(serve.BusConfig{URL: opts.NATSURL, Credentials: opts.NATS, Topology: topology, Role: bus.RoleOrchestrator,
		Name: "storeprov-orchestrator " + opts.Worker.ID})
	if err != nil {
		return err
	}
	defer natsBus.Close()

	guardrails := &kube.Guardrails{
		Client: clientset,
		Plan:   storePlan,
		Network: kube.Network{
			IngressNamespaceLabels: opts.IngressNamespaceLabels,
			AllowInternetEgress:    opts.AllowInternetEgress,
			ClusterCIDRs:           opts.ClusterCIDRs,
			OrderCheck:             opts.Reconcile.OrderCheck.Enabled(),
		},
	}
	helm, err := helmaction.New(restConfig, helmaction.Options{MaxHistory: opts.HelmMaxHistory, Charts: storeCharts, Log: log})
	if err != nil {
		return err
	}
	steps := []reconcile.Step{
		reconcile.GuardrailsStep{Guardrails: guardrails, DeleteTimeout: opts.Reconcile.DeleteTimeout},
		&reconcile.ReleaseStep{Helm: helm, Client: clientset, BaseDomain: opts.Reconcile.BaseDomain, Values: storeValues,
			RollbackTimeout: opts.Reconcile.RollbackTimeout, OrderCheck: opts.Reconcile.OrderCheck, Log: log},
	}
	reconciler := reconcile.New(steps, &events.Publisher{JS: natsBus.JS, Topology: topology}, opts.Reconcile)
	metrics := worker.NewMetrics(svc.Registry)

	metricsAddr, err := svc.ListenAdmin(opts.MetricsAddr, natsBus.Check())
	if err != nil {
		return err
	}
	log.Info("orchestrator started", "worker", opts.Worker.ID, "nats", opts.NATSURL, "prefix", topology.Prefix,
		"plan", opts.Plan, "baseDomain", opts.Reconcile.BaseDomain, "orderCheck", opts.Reconcile.OrderCheck.String(),
		"charts", fmt.Sprintf("%s %v, %s %v", charts.WordPress, storeCharts.Versions(charts.WordPress), charts.Medusa, storeCharts.Versions(charts.Medusa)))
	if opts.OnReady != nil {
		opts.OnReady(Addrs{Metrics: metricsAddr})
	}
	return svc.Run(ctx, serve.Task{Name: "worker", Run: func(ctx context.Context) error {
		// The streams, consumers and buckets, with leases lasting the
		// worker's TTL, and the lease store.
		var leases *lease.Store
		err := natsBus.EnsureTopology(ctx, bus.Options{LeaseTTL: opts.Worker.LeaseTTL}, func(ctx context.Context) (err error) {
			leases, err = lease.Open(ctx, natsBus.JS, topology)
			return err
		})
		if err != nil {
			return nil // stopped before NATS was reachable
		}
		return worker.New(natsBus.JS, topology, reconciler, leases, metrics, log, opts.Worker).Run(ctx)
	}})
}

// loadValues reads the store values file; no file means no values.
func loadValues(path string) (map[string]any, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read --store-values: %w", err)
	}
	var v map[string]any
	if err := yaml.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("--store-values %s is not a YAML map of chart values: %w", path, err)
	}
	return v, nil
}

func kubeConfig(opts Options) (*rest.Config, error) {
	if opts.RESTConfig != nil {
		return rest.CopyConfig(opts.RESTConfig), nil
	}
	var cfg *rest.Config
	var err error
	if opts.Kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", opts.Kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("cannot load kubeconfig %s: %w", opts.Kubeconfig, err)
		}
	} else if cfg, err = rest.InClusterConfig(); err != nil {
		return nil, fmt.Errorf("not running in a cluster (%w): pass --kubeconfig", err)
	}
	cfg.QPS, cfg.Burst = float32(opts.KubeQPS), opts.KubeBurst
	cfg.UserAgent = "storeprov-orchestrator"
	kube.RetryTransient(cfg)
	return cfg, nil
}

// labels is a flag.Value of comma-separated key=value pairs.
type labels map[string]string

func (l *labels) String() string {
	if l == nil {
		return ""
	}
	pairs := make([]string, 0, len(*l))
	for k, v := range *l {
		pairs = append(pairs, k+"="+v)
	}
	sort.Strings(pairs)
	return strings.Join(pairs, ",")
}

func (l *labels) Set(s string) error {
	out := map[string]string{}
	for pair := range strings.SplitSeq(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(pair), "=")
		if !ok || k == "" {
			return fmt.Errorf("%q is not key=value: write labels as k1=v1,k2=v2", pair)
		}
		out[k] = v
	}
	*l = out
	return nil
}

// cidrs is a flag of comma-separated CIDRs, each checked and written in
// its canonical form (10.96.0.0/12).
type cidrs []string

func (c *cidrs) String() string {
	if c == nil {
		return ""
	}
	return strings.Join(*c, ",")
}

func (c *cidrs) Set(s string) error {
	var out []string
	for part := range strings.SplitSeq(s, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		prefix, err := netip.ParsePrefix(part)
		if err != nil {
			return fmt.Errorf("%q is not a CIDR: write ranges as 10.244.0.0/16,10.96.0.0/12", part)
		}
		out = append(out, prefix.Masked().String())
	}
	*c = out
	return nil
}
