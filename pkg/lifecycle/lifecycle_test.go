package lifecycle_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	storev1 "github.com/storeprov/storeprov/gen/storeprov/store/v1"
	"github.com/storeprov/storeprov/pkg/lifecycle"
)

func TestAttemptIDSeparatesLeasesOnly(t *testing.T) {
	id := lifecycle.AuditEventID("s1", 3, lifecycle.ActionFailure)
	tests := []struct {
		name  string
		token uint64
		want  string
	}{
		{name: "no lease keeps the event id", token: 0, want: "audit/s1/3/failure"},
		{name: "a lease is appended", token: 42, want: "audit/s1/3/failure/lease/42"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := lifecycle.AttemptID(id, tt.token); got != tt.want {
				t.Errorf("AttemptID(%q, %d) = %q, want %q", id, tt.token, got, tt.want)
			}
		})
	}
	if lifecycle.AttemptID(id, 7) == lifecycle.AttemptID(id, 8) {
		t.Error("two leases give the same message id")
	}
}

// TestReasonsKeepTheirWireNames pins the strings reasons travel as: the
// dashboard, storectl's users and stored stores read them, so renaming a
// constant must not rename its value.
func TestReasonsKeepTheirWireNames(t *testing.T) {
	got := []lifecycle.Reason{
		lifecycle.ReasonProvisioning, lifecycle.ReasonReady, lifecycle.ReasonDeleting, lifecycle.ReasonDeleted,
		lifecycle.ReasonTimeout, lifecycle.ReasonQuotaExceeded, lifecycle.ReasonCredentialsLost,
		lifecycle.ReasonNamespaceTerminating, lifecycle.ReasonNamespaceStuck, lifecycle.ReasonRetriesExhausted,
		lifecycle.ReasonInvalidSpec, lifecycle.ReasonNamespaceConflict, lifecycle.ReasonValuesRefused,
		lifecycle.ReasonPodsRejected, lifecycle.ReasonUnschedulable, lifecycle.ReasonImagePullBackOff,
		lifecycle.ReasonCrashLoopBackOff, lifecycle.ReasonPVCPending, lifecycle.ReasonSetupJobFailed,
		lifecycle.ReasonOrderCheckFailed, lifecycle.ReasonUpgradeRolledBack, lifecycle.ReasonUpgradeFailed,
		lifecycle.ReasonDriftRepaired, lifecycle.ReasonStoreLost,
	}
	want := []lifecycle.Reason{
		"Provisioning", "Ready", "Deleting", "Deleted",
		"Timeout", "QuotaExceeded", "CredentialsLost",
		"NamespaceTerminating", "NamespaceStuck", "RetriesExhausted",
		"InvalidSpec", "NamespaceConflict", "ValuesRefused",
		"PodsRejected", "Unschedulable", "ImagePullBackOff",
		"CrashLoopBackOff", "PVCPending", "SetupJobFailed",
		"OrderCheckFailed", "UpgradeRolledBack", "UpgradeFailed",
		"DriftRepaired", "StoreLost",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("reasons on the wire (-want +got):\n%s", diff)
	}
	if id := lifecycle.StatusEventID("s1", 2, storev1.Phase_PHASE_FAILED, lifecycle.ReasonTimeout); id != "status/s1/2/PHASE_FAILED/Timeout" {
		t.Errorf("StatusEventID = %q, want status/s1/2/PHASE_FAILED/Timeout", id)
	}
}
