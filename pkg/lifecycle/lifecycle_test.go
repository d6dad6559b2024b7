package lifecycle_test

import (
	"testing"

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
