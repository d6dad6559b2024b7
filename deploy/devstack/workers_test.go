package devstack

import "testing"

func TestWorkerSlotMapsALeaseHolderToItsOrchestrator(t *testing.T) {
	s := &Stack{orchestrators: make([]*process, 2)}
	tests := []struct {
		holder string
		slot   int
		ok     bool
	}{
		{"orchestrator-1-run1", 0, true},
		{"orchestrator-2-run7", 1, true},
		{"orchestrator-3-run3", 0, false},
		{"orchestrator-0-run1", 0, false},
		{"host-abc123", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		slot, ok := s.WorkerSlot(tt.holder)
		if slot != tt.slot || ok != tt.ok {
			t.Errorf("WorkerSlot(%q) = %d, %v; want %d, %v", tt.holder, slot, ok, tt.slot, tt.ok)
		}
	}
}
