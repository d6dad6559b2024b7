// Package charts embeds the store Helm charts, so that the orchestrator
// installs exactly the charts it was built with: no chart repository and no
// chart file on disk at run time.
//
// FS holds one directory per chart, named like the chart (WordPress,
// Medusa), dot files included. To load a chart, read the files under its
// directory and pass them to loader.LoadFiles (helm.sh/helm/v3/pkg/chart/
// loader) with names relative to that directory, e.g. "Chart.yaml" and
// "templates/ingress.yaml". Files under ci/ are values files for the chart
// tests; a loaded chart carries them as inert chart files.
//
// The charts install a store into a namespace the orchestrator prepared:
// they read credentials only from the Secrets store-database and store-admin
// (values existingSecret.database and existingSecret.admin), label every pod
// with storeprov.dev/tier (web or database) for the namespace's
// NetworkPolicies, and fit the standard plan's ResourceQuota and LimitRange.
// Both require the values storeId and baseDomain; the store is served at
// store-<storeId>.<baseDomain>.
package charts

import "embed"

// Names of the embedded charts, which are also their directories in FS.
const (
	// WordPress is a WooCommerce store: MariaDB, WordPress and a wp-cli
	// setup Job named <prefix>-setup-<revision>.
	WordPress = "wordpress-store"
	// Medusa is a Medusa store: PostgreSQL, Redis, the Medusa server and the
	// Jobs <prefix>-migrate-<revision> and <prefix>-admin-user-<revision>.
	Medusa = "medusa-store"
)

// FS holds the chart directories WordPress and Medusa.
//
//go:embed all:wordpress-store all:medusa-store
var FS embed.FS
