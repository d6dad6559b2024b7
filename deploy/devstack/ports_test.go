package devstack

import "testing"

// TestFreePortsAreDistinct: the api and the audit service were once given
// the same port, since each listener closed before the next was opened.
func TestFreePortsAreDistinct(t *testing.T) {
	for range 50 {
		a, b, c, fixed := 0, 0, 0, 4242
		if err := freePorts(&a, &b, &c, &fixed); err != nil {
			t.Fatal(err)
		}
		if a == b || b == c || a == c || a == 0 || fixed != 4242 {
			t.Fatalf("ports %d, %d, %d and the fixed %d; want three distinct free ports and 4242 kept", a, b, c, fixed)
		}
	}
}
