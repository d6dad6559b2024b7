// Package helmaction runs Helm actions on a store's release with the Helm
// Go SDK (never the CLI): install, upgrade, rollback, uninstall, history,
// and the repair of a release a dead worker left pending. Each function
// translates a Spec into one Helm call and decides nothing: which action a
// store needs is package reconcile's choice.
//
// Charts come from a catalog.Catalog: the embedded charts, plus any
// versions the operator added.
//
// Every store has one release, ReleaseName, in its namespace, recorded by
// Helm's Secrets storage driver in that namespace. No action waits for
// workloads (no --wait): the release is recorded as soon as its objects
// are written, so a slow store never holds the release locked, and the
// caller watches readiness with its own deadline.
package helmaction

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/kube"
	"helm.sh/helm/v3/pkg/release"
	"helm.sh/helm/v3/pkg/releaseutil"
	"helm.sh/helm/v3/pkg/storage"
	"helm.sh/helm/v3/pkg/storage/driver"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"

	"github.com/storeprov/storeprov/services/orchestrator/internal/catalog"
	"github.com/storeprov/storeprov/services/orchestrator/internal/phase"
)

// ReleaseName is the name of every store's release in its namespace.
const ReleaseName = "store"

// DefaultMaxHistory is the default of Options.MaxHistory.
const DefaultMaxHistory = 5

// ErrInvalidValues means the values do not fit the chart's schema.
// Retrying cannot help. A chart or version the catalog does not hold is
// catalog.ErrUnknownChart or catalog.ErrVersionUnavailable; overrides the
// chart's tenant policy refuses are a *charts.RefusedError (see Values).
var ErrInvalidValues = errors.New("invalid chart values")

// Options tune a Client.
type Options struct {
	// MaxHistory bounds the revisions kept per release: each is a Secret
	// counted by the namespace's quota. Zero means DefaultMaxHistory.
	MaxHistory int
	// Charts are the charts the client installs; nil means the embedded
	// ones (catalog.Embedded).
	Charts *catalog.Catalog
	// WrapDriver, when set, wraps the release storage driver of every
	// action; tests inject storage faults with it.
	WrapDriver func(driver.Driver) driver.Driver
	// Log receives Helm's debug lines; nil discards them.
	Log *slog.Logger
}

// Client runs Helm actions in store namespaces. It is safe for concurrent
// use, by different stores at once; the caller must not run two actions on
// the same store at once (the reconciler holds the store's lease).
type Client struct {
	config    *rest.Config
	discovery discovery.CachedDiscoveryInterface
	mapper    meta.RESTMapper
	opts      Options
}

// New returns a client of the cluster cfg points at. The API discovery is
// cached for the life of the client and shared by every store.
func New(cfg *rest.Config, opts Options) (*Client, error) {
	cfg = rest.CopyConfig(cfg)
	if cfg.Timeout == 0 {
		// Helm's calls take no context: bound each request instead.
		cfg.Timeout = time.Minute
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("cannot create the discovery client: %w", err)
	}
	cached := memory.NewMemCacheClient(dc)
	mapper := restmapper.NewShortcutExpander(restmapper.NewDeferredDiscoveryRESTMapper(cached), cached, nil)
	if opts.MaxHistory <= 0 {
		opts.MaxHistory = DefaultMaxHistory
	}
	if opts.Charts == nil {
		opts.Charts = catalog.Embedded()
	}
	return &Client{config: cfg, discovery: cached, mapper: mapper, opts: opts}, nil
}

// Spec is the desired release of one store.
type Spec struct {
	// Namespace is the store's namespace, where the release lives.
	Namespace string
	// Chart is charts.WordPress or charts.Medusa.
	Chart string
	// ChartVersion is a version the client's catalog holds; empty means
	// its newest (catalog.Catalog.Newest).
	ChartVersion string
	// Values are the release's values, complete (see Values): an upgrade
	// does not reuse the previous revision's.
	Values map[string]any
}

// Resource names one object of a release's manifest.
type Resource struct {
	Kind string
	Name string
}

// Release is one revision of a store's release.
type Release struct {
	Revision     int
	Status       release.Status
	Description  string
	Chart        string
	ChartVersion string
	// Values are the values the revision was installed with.
	Values map[string]any
	// Resources are the objects of its manifest, sorted by kind and name.
	Resources []Resource
	Updated   time.Time
}

// History returns the revisions of the store's release, oldest first. A
// release or namespace that does not exist has no revisions: nil, nil.
func (c *Client) History(_ context.Context, namespace string) ([]Release, error) {
	cfg, err := c.configuration(namespace)
	if err != nil {
		return nil, err
	}
	rels, err := cfg.Releases.History(ReleaseName)
	if errors.Is(err, driver.ErrReleaseNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cannot read the history of release %s/%s: %w", namespace, ReleaseName, err)
	}
	releaseutil.SortByRevision(rels)
	out := make([]Release, 0, len(rels))
	for _, r := range rels {
		out = append(out, summary(r))
	}
	return out, nil
}

// Install installs the release as revision 1. It replaces a release whose
// revisions are all failed or uninstalled, and fails with Helm's "cannot
// re-use a name" error if one is deployed: use Upgrade then. A release
// whose objects were written but whose install failed is recorded as
// failed; the returned Release is the recorded one when there is one.
//
// It runs as phase.Install, with phase.Render inside.
func (c *Client) Install(ctx context.Context, spec Spec) (_ Release, err error) {
	ctx, p := phase.Start(ctx, phase.Install, specAttributes(spec))
	defer func() { p.End(err) }()
	rendering := startRender(ctx, spec)
	defer func() { rendering.end(err) }()
	cfg, ch, err := c.prepare(spec)
	if err != nil {
		return Release{}, err
	}
	install := action.NewInstall(cfg)
	install.ReleaseName = ReleaseName
	install.Namespace = spec.Namespace
	install.Replace = true
	install.PostRenderer = rendering
	rel, err := install.RunWithContext(ctx, ch, spec.Values)
	if err != nil {
		return summaryOrZero(rel), fmt.Errorf("cannot install release %s/%s: %w", spec.Namespace, ReleaseName, err)
	}
	return recorded(cfg, rel)
}

// recorded returns the summary of rel, which a Helm action returned as
// done, once its storage holds rel's revision with rel's status: Helm only
// logs a failure to record the final status, which would leave the
// revision pending, locked, behind an action that reported success.
func recorded(cfg *action.Configuration, rel *release.Release) (Release, error) {
	stored, err := cfg.Releases.Get(rel.Name, rel.Version)
	if err != nil {
		return Release{}, fmt.Errorf("cannot confirm revision %d of release %s/%s was recorded: %w", rel.Version, rel.Namespace, rel.Name, err)
	}
	if stored.Info.Status != rel.Info.Status {
		return Release{}, fmt.Errorf("revision %d of release %s/%s is recorded as %s, not %s: Helm could not record its outcome; the next attempt settles it",
			rel.Version, rel.Namespace, rel.Name, stored.Info.Status, rel.Info.Status)
	}
	return summary(rel), nil
}

// Upgrade upgrades the release to spec, as a new revision; it fails while
// the last revision is pending (see Unlock). The values replace the
// previous revision's. Helm keeps at most MaxHistory revisions. It runs
// as phase.Upgrade, with phase.Render inside.
func (c *Client) Upgrade(ctx context.Context, spec Spec) (_ Release, err error) {
	ctx, p := phase.Start(ctx, phase.Upgrade, specAttributes(spec))
	defer func() { p.End(err) }()
	rendering := startRender(ctx, spec)
	defer func() { rendering.end(err) }()
	cfg, ch, err := c.prepare(spec)
	if err != nil {
		return Release{}, err
	}
	upgrade := action.NewUpgrade(cfg)
	upgrade.Namespace = spec.Namespace
	upgrade.MaxHistory = c.opts.MaxHistory
	upgrade.ResetValues = true
	upgrade.PostRenderer = rendering
	rel, err := upgrade.RunWithContext(ctx, ReleaseName, ch, spec.Values)
	if err != nil {
		return summaryOrZero(rel), fmt.Errorf("cannot upgrade release %s/%s: %w", spec.Namespace, ReleaseName, err)
	}
	return recorded(cfg, rel)
}

// InstallOrUpgrade installs the release if it has no revision and
// upgrades it otherwise (helm upgrade --install), so that a failed first
// install is upgraded rather than refused with "cannot re-use a name".
func (c *Client) InstallOrUpgrade(ctx context.Context, spec Spec) (Release, error) {
	history, err := c.History(ctx, spec.Namespace)
	if err != nil {
		return Release{}, err
	}
	if len(history) == 0 {
		return c.Install(ctx, spec)
	}
	return c.Upgrade(ctx, spec)
}

// Rollback writes revision's manifest and values back as a new revision
// (helm rollback); it fails while the last revision is pending. It runs
// as phase.Rollback.
func (c *Client) Rollback(ctx context.Context, namespace string, revision int) (_ Release, err error) {
	_, p := phase.Start(ctx, phase.Rollback, trace.WithAttributes(semconv.K8SNamespaceName(namespace), attribute.Int("storeprov.helm.revision", revision)))
	defer func() { p.End(err) }()
	cfg, err := c.configuration(namespace)
	if err != nil {
		return Release{}, err
	}
	rollback := action.NewRollback(cfg)
	rollback.Version = revision
	rollback.MaxHistory = c.opts.MaxHistory
	if err := rollback.Run(ReleaseName); err != nil {
		return Release{}, fmt.Errorf("cannot roll release %s/%s back to revision %d: %w", namespace, ReleaseName, revision, err)
	}
	last, err := cfg.Releases.Last(ReleaseName)
	if err != nil {
		return Release{}, fmt.Errorf("cannot read release %s/%s after its rollback: %w", namespace, ReleaseName, err)
	}
	return summary(last), nil
}

// Uninstall deletes the release's objects and its history. Objects the
// chart keeps (helm.sh/resource-policy: keep) and claims of StatefulSets
// stay; a release that does not exist is not an error. It does not wait
// for the objects to be gone. It runs as phase.Uninstall.
func (c *Client) Uninstall(ctx context.Context, namespace string) (err error) {
	_, p := phase.Start(ctx, phase.Uninstall, trace.WithAttributes(semconv.K8SNamespaceName(namespace)))
	defer func() { p.End(err) }()
	cfg, err := c.configuration(namespace)
	if err != nil {
		return err
	}
	uninstall := action.NewUninstall(cfg)
	uninstall.IgnoreNotFound = true
	uninstall.DeletionPropagation = "background"
	_, err = uninstall.Run(ReleaseName)
	if err != nil && !errors.Is(err, driver.ErrReleaseNotFound) {
		return fmt.Errorf("cannot uninstall release %s/%s: %w", namespace, ReleaseName, err)
	}
	return nil
}

// Unlock repairs a release whose last revision is pending-install,
// pending-upgrade or pending-rollback: the worker running that action
// died, and Helm refuses any other action until the revision is settled.
// It marks the revision failed, so that the next Upgrade proceeds from the
// last deployed revision (or, after a first install, from the failed one).
// It returns the revision it repaired, or nil when nothing was pending.
//
// Only the holder of the store's lease may call it: a pending revision of
// an action still running elsewhere would be marked failed under its feet.
func (c *Client) Unlock(_ context.Context, namespace string) (*Release, error) {
	cfg, err := c.configuration(namespace)
	if err != nil {
		return nil, err
	}
	last, err := cfg.Releases.Last(ReleaseName)
	if errors.Is(err, driver.ErrReleaseNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cannot read release %s/%s: %w", namespace, ReleaseName, err)
	}
	if !last.Info.Status.IsPending() {
		return nil, nil
	}
	was := last.Info.Status
	last.SetStatus(release.StatusFailed, fmt.Sprintf("%s interrupted (the worker stopped before it finished); marked failed by storeprov so that the release can be upgraded", was))
	if err := cfg.Releases.Update(last); err != nil {
		return nil, fmt.Errorf("cannot mark %s revision %d of release %s/%s failed: %w", was, last.Version, namespace, ReleaseName, err)
	}
	s := summary(last)
	return &s, nil
}

// render times phase.Render: from the start of an install or upgrade
// (loading the chart, checking the values, Helm's own checks and
// rendering) until Helm hands the rendered manifests to its post-renderer,
// which it does just before it writes them. As that post-renderer it
// returns the manifests unchanged.
type render struct {
	timing *phase.Timing
	once   sync.Once
}

func startRender(ctx context.Context, spec Spec) *render {
	_, t := phase.Start(ctx, phase.Render, specAttributes(spec))
	return &render{timing: t}
}

// Run implements postrender.PostRenderer: rendering is done.
func (r *render) Run(manifests *bytes.Buffer) (*bytes.Buffer, error) {
	r.end(nil)
	return manifests, nil
}

// end ends the phase, with err when the action ended before rendering was
// done; after Run it does nothing.
func (r *render) end(err error) { r.once.Do(func() { r.timing.End(err) }) }

// specAttributes describe spec on a span.
func specAttributes(spec Spec) trace.SpanStartOption {
	return trace.WithAttributes(semconv.K8SNamespaceName(spec.Namespace),
		attribute.String("storeprov.chart", spec.Chart), attribute.String("storeprov.chart.version", spec.ChartVersion))
}

// Charts returns the catalog the client installs charts from.
func (c *Client) Charts() *catalog.Catalog { return c.opts.Charts }

// prepare loads the spec's chart and checks its values against the
// chart's schema, so that values no revision can take are told apart from
// failures worth retrying.
func (c *Client) prepare(spec Spec) (*action.Configuration, *chart.Chart, error) {
	ch, err := c.opts.Charts.Get(spec.Chart, spec.ChartVersion)
	if err != nil {
		return nil, nil, err
	}
	if err := validate(ch, spec.Values); err != nil {
		return nil, nil, err
	}
	cfg, err := c.configuration(spec.Namespace)
	return cfg, ch, err
}

func validate(ch *chart.Chart, values map[string]any) error {
	coalesced, err := chartutil.CoalesceValues(ch, values)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidValues, err)
	}
	if err := chartutil.ValidateAgainstSchema(ch, coalesced); err != nil {
		return fmt.Errorf("%w for chart %s: %w", ErrInvalidValues, ch.Name(), err)
	}
	return nil
}

// configuration builds the Helm action configuration of one namespace:
// the Secrets storage driver there, and kube clients defaulting to it.
func (c *Client) configuration(namespace string) (*action.Configuration, error) {
	getter := &restClientGetter{config: c.config, discovery: c.discovery, mapper: c.mapper, namespace: namespace}
	cfg := new(action.Configuration)
	if err := cfg.Init(getter, namespace, "secret", c.debugLog); err != nil {
		return nil, fmt.Errorf("cannot configure Helm for namespace %s: %w", namespace, err)
	}
	if kc, ok := cfg.KubeClient.(*kube.Client); ok {
		kc.Namespace = namespace
	}
	if c.opts.WrapDriver != nil {
		cfg.Releases = storage.Init(c.opts.WrapDriver(cfg.Releases.Driver))
		cfg.Releases.Log = c.debugLog
	}
	return cfg, nil
}

func (c *Client) debugLog(format string, v ...any) {
	if c.opts.Log != nil {
		c.opts.Log.Debug(fmt.Sprintf(format, v...), "component", "helm")
	}
}

func summaryOrZero(rel *release.Release) Release {
	if rel == nil || rel.Info == nil {
		return Release{}
	}
	return summary(rel)
}

func summary(rel *release.Release) Release {
	s := Release{Revision: rel.Version, Values: rel.Config, Resources: resources(rel.Manifest)}
	if rel.Info != nil {
		s.Status, s.Description, s.Updated = rel.Info.Status, rel.Info.Description, rel.Info.LastDeployed.Time
	}
	if rel.Chart != nil && rel.Chart.Metadata != nil {
		s.Chart, s.ChartVersion = rel.Chart.Metadata.Name, rel.Chart.Metadata.Version
	}
	return s
}

// resources lists the objects of a rendered manifest.
func resources(manifest string) []Resource {
	var out []Resource
	for _, doc := range releaseutil.SplitManifests(manifest) {
		var head struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil || head.Kind == "" {
			continue
		}
		out = append(out, Resource{Kind: head.Kind, Name: head.Metadata.Name})
	}
	slices.SortFunc(out, func(a, b Resource) int {
		return strings.Compare(a.Kind+"/"+a.Name, b.Kind+"/"+b.Name)
	})
	return out
}
