package devstack

import (
	"bytes"
	"sync"
)

// Logs keeps the services' output of a stack in memory (Config.Logs), for
// a test's failure message; it is safe for the concurrent writes of the
// stack's processes.
type Logs struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (l *Logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *Logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
