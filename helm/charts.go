// Package charts embeds the store Helm charts, so that the orchestrator
// installs exactly the charts it was built with: no chart repository and no
// chart file on disk at run time.
//
// FS holds one directory per chart, named like the chart (WordPress,
// Medusa, Platform), dot files included. To load a chart, read the files
// under its directory and pass them to loader.LoadFiles (helm.sh/helm/v3/
// pkg/chart/loader) with names relative to that directory, e.g. "Chart.yaml"
// and "templates/ingress.yaml". Files under ci/ are values files for the
// chart tests; a loaded chart carries them as inert chart files.
//
// The store charts (WordPress, Medusa) install a store into a namespace the
// orchestrator prepared: they read credentials only from the Secrets
// store-database and store-admin (values existingSecret.database and
// existingSecret.admin), label every pod with storeprov.dev/tier (web or
// database) for the namespace's NetworkPolicies, and fit the standard plan's
// ResourceQuota and LimitRange. Both require the values storeId and
// baseDomain; the store is served at store-<storeId>.<baseDomain>.
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
	// Platform is the storeprov control plane itself (api, audit, gateway,
	// orchestrator, NATS, optional PostgreSQL, the orchestrator's RBAC). It
	// is not a store chart: the orchestrator never installs it; it is
	// embedded so that tests render the same files the release ships.
	Platform = "platform"
)

// FS holds the chart directories WordPress, Medusa and Platform.
//
//go:embed all:wordpress-store all:medusa-store all:platform
var FS embed.FS
