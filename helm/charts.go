// Package charts embeds the store Helm charts, so that the orchestrator
// installs exactly the charts it was built with: no chart repository and no
// chart file on disk at run time.
//
// FS holds one directory per chart, named like the chart (WordPress,
// Medusa, Platform), dot files included. Files gives a chart's files for
// loader.LoadFiles (helm.sh/helm/v3/pkg/chart/loader). Files under ci/ are
// values files for the chart tests; a loaded chart carries them as inert
// chart files.
//
// The store charts (WordPress, Medusa) install a store into a namespace the
// orchestrator prepared: they read credentials only from the Secrets
// store-database and store-admin (values existingSecret.database and
// existingSecret.admin), label every pod with storeprov.dev/tier (web or
// database) for the namespace's NetworkPolicies, and fit the standard plan's
// ResourceQuota and LimitRange. Both require the values storeId and
// baseDomain; the store is served at store-<storeId>.<baseDomain>. Each
// declares what a store's owner may override in TenantSchemaFile, read as
// a TenantPolicy, and passes every text from values or the store to a
// container's env, command or args through its envText helper, so that
// the kubelet expands none of it.
//
// A store chart may have an order check (HasOrderCheck): a Job of
// component ComponentOrderCheck, run when the value orderCheck.enabled is
// true, that places a storefront order and cancels it through the web
// tier's Service, and on failure exits 1 with "order check failed at
// <step>: <detail>" as its termination message. Its pods are labelled
// LabelComponent=ComponentOrderCheck, and the web tier's server listens on
// the container port named WebPortName, so that the namespace's
// NetworkPolicies can let the one reach the other.
package charts

import (
	"embed"
	"fmt"
	"io/fs"
	"strings"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
)

// Names of the embedded charts, which are also their directories in FS.
const (
	// WordPress is a WooCommerce store: MariaDB, WordPress and a wp-cli
	// setup Job named <prefix>-setup-<revision>, and
	// <prefix>-order-check-<revision> when orderCheck.enabled.
	WordPress = "wordpress-store"
	// Medusa is a Medusa store: PostgreSQL, Redis, the Medusa server and the
	// Jobs <prefix>-migrate-<revision> and <prefix>-setup-<revision> (the
	// admin user, then the seed that makes the store able to sell), and
	// <prefix>-order-check-<revision> when orderCheck.enabled.
	Medusa = "medusa-store"
	// Platform is the storeprov control plane itself (api, audit, gateway,
	// orchestrator, NATS, optional PostgreSQL, the orchestrator's RBAC). It
	// is not a store chart: the orchestrator never installs it; it is
	// embedded so that tests render the same files the release ships.
	Platform = "platform"
)

// Labels, values and ports of the store charts' order check.
const (
	// LabelComponent names the component of every object and pod of a
	// store chart.
	LabelComponent = "app.kubernetes.io/component"
	// ComponentOrderCheck is the component of the order-check Job and of
	// its pods.
	ComponentOrderCheck = "order-check"
	// WebPortName is the name of the container port the web tier's server
	// listens on (WordPress 80, Medusa 9000).
	WebPortName = "http"
	// orderCheckValue is the top-level value of the order check; its key
	// enabled turns it on.
	orderCheckValue = "orderCheck"
)

// HasOrderCheck reports whether ch has an order check, which its values
// turn on with orderCheck.enabled; a chart without one (an older chart
// version) declares no such value, and its schema refuses it.
func HasOrderCheck(ch *chart.Chart) bool {
	v, ok := ch.Values[orderCheckValue].(map[string]any)
	if !ok {
		return false
	}
	_, ok = v["enabled"]
	return ok
}

// FS holds the chart directories WordPress, Medusa and Platform.
//
//go:embed all:wordpress-store all:medusa-store all:platform
var FS embed.FS

// Files returns the files of the embedded chart name, named relative to its
// directory ("Chart.yaml", "templates/ingress.yaml"), as loader.LoadFiles
// takes them. Each call returns new buffers.
func Files(name string) ([]*loader.BufferedFile, error) {
	var files []*loader.BufferedFile
	err := fs.WalkDir(FS, name, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(FS, p)
		if err != nil {
			return err
		}
		files = append(files, &loader.BufferedFile{Name: strings.TrimPrefix(p, name+"/"), Data: data})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("cannot read embedded chart %s: %w", name, err)
	}
	return files, nil
}

// Version returns the version of the embedded chart name, as its
// Chart.yaml declares it.
func Version(name string) (string, error) {
	data, err := fs.ReadFile(FS, name+"/Chart.yaml")
	if err != nil {
		return "", fmt.Errorf("no embedded chart %q: %w", name, err)
	}
	ch, err := loader.LoadFiles([]*loader.BufferedFile{{Name: "Chart.yaml", Data: data}})
	if err != nil {
		return "", fmt.Errorf("cannot read embedded chart %s: %w", name, err)
	}
	return ch.Metadata.Version, nil
}
