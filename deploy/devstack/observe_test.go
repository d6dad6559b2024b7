package devstack

import "testing"

// The lines are as the services write them (package serve's JSON logs):
// a renamed message or attribute fails here, not in a stack that waits
// forever.
func TestObserveReadsTheAdminAddressAndPullingFromTheLog(t *testing.T) {
	tests := []struct {
		name        string
		lines       []string
		wantAddr    string
		wantPulling bool
	}{
		{
			name: "orchestrator",
			lines: []string{
				`{"time":"2026-11-29T10:14:26.4Z","level":"INFO","msg":"metrics server listening","service":"orchestrator","addr":"127.0.0.1:46251"}`,
				`{"time":"2026-11-29T10:14:27.1Z","level":"INFO","msg":"worker pulling commands","service":"orchestrator","stream":"STOREPROV_COMMANDS"}`,
			},
			wantAddr: "127.0.0.1:46251", wantPulling: true,
		},
		{
			name: "api",
			lines: []string{
				`{"time":"2026-11-29T10:14:26.4Z","level":"INFO","msg":"metrics server listening","service":"api","addr":"127.0.0.1:39875"}`,
				`{"time":"2026-11-29T10:14:26.4Z","level":"INFO","msg":"api serving","service":"api","grpc":"127.0.0.1:9090","metrics":"127.0.0.1:39875"}`,
			},
			wantAddr: "127.0.0.1:39875",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p process
			for _, l := range tt.lines {
				p.observe(l)
			}
			if got, _ := p.metricsAddr.Load().(string); got != tt.wantAddr {
				t.Errorf("metrics address = %q, want %q", got, tt.wantAddr)
			}
			if got := p.pulling.Load(); got != tt.wantPulling {
				t.Errorf("pulling = %v, want %v", got, tt.wantPulling)
			}
		})
	}
}
