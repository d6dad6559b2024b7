package reconcile

import (
	"flag"
	"io"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/storeprov/storeprov/services/orchestrator/internal/helmaction"
)

func TestOrderCheckFlagTakesThreeModes(t *testing.T) {
	tests := []struct {
		args    []string
		want    OrderCheck
		wantErr string
	}{
		{args: nil, want: OrderCheckNever},
		{args: []string{"--order-check=install"}, want: OrderCheckInstall},
		{args: []string{"--order-check", "always"}, want: OrderCheckAlways},
		{args: []string{"--order-check=never"}, want: OrderCheckNever},
		{args: []string{"--order-check=sometimes"},
			wantErr: `invalid value "sometimes" for flag -order-check: "sometimes" is not an order check mode: use never, install or always`},
	}
	for _, tt := range tests {
		var o Options
		fs := flag.NewFlagSet("orchestrator", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		o.BindFlags(fs)
		err := fs.Parse(tt.args)
		if tt.wantErr != "" {
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("%v: error %v, want %s", tt.args, err, tt.wantErr)
			}
			continue
		}
		if err != nil || o.OrderCheck != tt.want {
			t.Errorf("%v: --order-check = %q, %v; want %q", tt.args, o.OrderCheck, err, tt.want)
		}
	}
	if got := New(nil, nil, Options{}).Options.OrderCheck; got != OrderCheckNever {
		t.Errorf("New with zero options: order check %q, want never", got)
	}
}

func TestOrderCheckRunsOnTheInstallsAndUpgradesItsModeNames(t *testing.T) {
	tests := []struct {
		mode                          OrderCheck
		enabled, firstInstall, served bool
	}{
		{mode: "", enabled: false, firstInstall: false, served: false},
		{mode: OrderCheckNever, enabled: false, firstInstall: false, served: false},
		{mode: OrderCheckInstall, enabled: true, firstInstall: true, served: false},
		{mode: OrderCheckAlways, enabled: true, firstInstall: true, served: true},
	}
	for _, tt := range tests {
		if got := tt.mode.Enabled(); got != tt.enabled {
			t.Errorf("%q.Enabled() = %v, want %v", tt.mode, got, tt.enabled)
		}
		if got := tt.mode.runs(false); got != tt.firstInstall {
			t.Errorf("%q: a store never READY runs the check: %v, want %v", tt.mode, got, tt.firstInstall)
		}
		if got := tt.mode.runs(true); got != tt.served {
			t.Errorf("%q: an upgrade of a store READY once runs the check: %v, want %v", tt.mode, got, tt.served)
		}
	}
}

// Turning the order check on or off is no reason to upgrade a store;
// any other change of its values is.
func TestReleaseDiffersIgnoringWhetherItRanTheOrderCheck(t *testing.T) {
	deployed := helmaction.Release{Revision: 1, Chart: "medusa-store", ChartVersion: "0.4.0", Values: map[string]any{
		"storeId": "s1", "orderCheck": map[string]any{"enabled": true},
	}}
	tests := []struct {
		name   string
		values map[string]any
		differ bool
	}{
		{name: "the check off", values: map[string]any{"storeId": "s1", "orderCheck": map[string]any{"enabled": false}}},
		{name: "no order check value", values: map[string]any{"storeId": "s1"}},
		{name: "the check's other values changed", differ: true,
			values: map[string]any{"storeId": "s1", "orderCheck": map[string]any{"enabled": true, "backoffLimit": 0}}},
		{name: "another value changed", differ: true,
			values: map[string]any{"storeId": "s1", "title": "Corner Shop", "orderCheck": map[string]any{"enabled": true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := helmaction.Spec{Chart: "medusa-store", ChartVersion: "0.4.0", Values: tt.values}
			if got := differs(deployed, spec); (got != "") != tt.differ {
				t.Errorf("differs = %q, want a difference: %v", got, tt.differ)
			}
		})
	}
	if diff := cmp.Diff(map[string]any{"enabled": true}, deployed.Values["orderCheck"]); diff != "" {
		t.Errorf("differs changed the release's values (-want +got):\n%s", diff)
	}
}
