package reconcile

import (
	"testing"

	"helm.sh/helm/v3/pkg/release"

	"github.com/storeprov/storeprov/services/orchestrator/internal/helmaction"
)

// TestDetermineReleaseDecidesTheAction is the release step's state table:
// each history, against the spec, is one state, and the state alone
// picks Ensure's action.
func TestDetermineReleaseDecidesTheAction(t *testing.T) {
	spec := helmaction.Spec{Chart: "wordpress-store", ChartVersion: "0.2.0", Values: map[string]any{"a": 1}}
	rev := func(n int, status release.Status, version string, values map[string]any) helmaction.Release {
		return helmaction.Release{Revision: n, Status: status, Chart: "wordpress-store", ChartVersion: version, Values: values,
			Description: "revision " + string(status)}
	}
	same := map[string]any{"a": 1}
	kept := &UpgradeFailure{Generation: 3, Reason: "UpgradeRolledBack"}
	for _, tc := range []struct {
		name       string
		history    []helmaction.Release
		kept       *UpgradeFailure
		generation int64
		want       releaseKind
	}{
		{"no revision: install", nil, nil, 1, releaseAbsent},
		{"an install cut short: unlock", []helmaction.Release{rev(1, release.StatusPendingInstall, "0.2.0", same)}, nil, 1, releaseLocked},
		{"an upgrade cut short: unlock", []helmaction.Release{rev(1, release.StatusSuperseded, "0.2.0", same), rev(2, release.StatusPendingUpgrade, "0.2.0", same)}, nil, 2, releaseLocked},
		{"a rollback cut short: unlock", []helmaction.Release{rev(1, release.StatusSuperseded, "0.2.0", same), rev(2, release.StatusPendingRollback, "0.2.0", same)}, nil, 2, releaseLocked},
		{"only failed installs: reinstall", []helmaction.Release{rev(1, release.StatusFailed, "0.2.0", same), rev(2, release.StatusFailed, "0.2.0", same)}, nil, 1, releaseBroken},
		{"an uninstall cut short: reinstall", []helmaction.Release{rev(1, release.StatusUninstalling, "0.2.0", same)}, nil, 1, releaseBroken},
		{"deployed, same chart and values: in sync", []helmaction.Release{rev(1, release.StatusDeployed, "0.2.0", same)}, nil, 1, releaseInSync},
		{"deployed, other values: upgrade", []helmaction.Release{rev(1, release.StatusDeployed, "0.2.0", map[string]any{"a": 2})}, nil, 2, releaseOutOfSync},
		{"deployed, other chart version: upgrade", []helmaction.Release{rev(1, release.StatusDeployed, "0.1.0", same)}, nil, 2, releaseOutOfSync},
		{"last upgrade failed: upgrade", []helmaction.Release{rev(1, release.StatusSuperseded, "0.2.0", same), rev(2, release.StatusFailed, "0.2.0", same)}, nil, 2, releaseOutOfSync},
		{"upgrade of this generation rolled back: keep", []helmaction.Release{rev(1, release.StatusSuperseded, "0.1.0", same), rev(2, release.StatusDeployed, "0.1.0", same)}, kept, 3, releaseKept},
		{"an older generation's rollback: upgrade", []helmaction.Release{rev(1, release.StatusSuperseded, "0.1.0", same), rev(2, release.StatusDeployed, "0.1.0", same)}, kept, 4, releaseOutOfSync},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := determineRelease(tc.history, spec, tc.kept, tc.generation)
			if got.kind != tc.want {
				t.Errorf("determineRelease = %s (%s), want %s", got.kind, got.why, tc.want)
			}
			if (got.kind == releaseAbsent) != (got.last == nil) {
				t.Errorf("last = %v for %s: only an absent release has no last revision", got.last, got.kind)
			}
		})
	}
}
