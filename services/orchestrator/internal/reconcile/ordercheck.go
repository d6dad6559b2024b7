package reconcile

import (
	"fmt"
	"maps"
)

// OrderCheck says which installs and upgrades of a store run its chart's
// order check: a Job that places a storefront order and cancels it,
// proof that the store sells (see package charts). A check that fails is
// lifecycle.ReasonOrderCheckFailed, naming the step that failed: a store
// never READY is FAILED; an upgrade of a READY store is rolled back, and
// the store stays READY with reason UpgradeRolledBack. A chart version
// without an order check (one older than the check) is installed as it
// is, whatever the mode.
//
// The mode says what an install or upgrade does, not what a store runs:
// changing it upgrades no store (ReleaseStep compares releases without
// orderCheck.enabled). The zero value is OrderCheckNever.
type OrderCheck string

// Modes of OrderCheck, as the flag --order-check takes them.
const (
	// OrderCheckNever runs no order check: the default, and the sandbox's,
	// whose kwok nodes run no container (every Job's pods "succeed").
	OrderCheckNever OrderCheck = "never"
	// OrderCheckInstall runs it on the installs and upgrades of a store
	// that was never READY: its first install, and the retries of a
	// store whose check failed (each runs a new check Job: see
	// ReleaseStep's repair).
	OrderCheckInstall OrderCheck = "install"
	// OrderCheckAlways runs it on every install and upgrade, the upgrade
	// of a resync that repairs a store included.
	OrderCheckAlways OrderCheck = "always"
)

// String implements flag.Value.
func (o *OrderCheck) String() string {
	if o == nil || *o == "" {
		return string(OrderCheckNever)
	}
	return string(*o)
}

// Set implements flag.Value.
func (o *OrderCheck) Set(s string) error {
	switch m := OrderCheck(s); m {
	case OrderCheckNever, OrderCheckInstall, OrderCheckAlways:
		*o = m
		return nil
	}
	return fmt.Errorf("%q is not an order check mode: use never, install or always", s)
}

// Enabled reports whether some install or upgrade runs the order check:
// the namespaces' NetworkPolicies must then let it reach the store's
// server (kube.Network.OrderCheck).
func (o OrderCheck) Enabled() bool { return o == OrderCheckInstall || o == OrderCheckAlways }

// runs reports whether an install or upgrade of a store runs the order
// check; served means the store was READY once (it has a ready revision).
func (o OrderCheck) runs(served bool) bool {
	return o == OrderCheckAlways || o == OrderCheckInstall && !served
}

// withoutOrderCheck returns normalized values without orderCheck.enabled,
// which says whether an install or upgrade runs the order check rather
// than what the store runs. values is not changed.
func withoutOrderCheck(values map[string]any) map[string]any {
	check, ok := values["orderCheck"].(map[string]any)
	if !ok {
		return values
	}
	out := maps.Clone(values)
	check = maps.Clone(check)
	delete(check, "enabled")
	if len(check) == 0 {
		delete(out, "orderCheck")
	} else {
		out["orderCheck"] = check
	}
	return out
}
