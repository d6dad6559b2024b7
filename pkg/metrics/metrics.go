// Package metrics is the Prometheus policy every service shares: each
// service has its own registry (NewRegistry), which package serve's admin
// server exports, and collectors are registered with Register, so that
// several servers of one service in one process (tests, the dev stack)
// share them instead of failing.
package metrics

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// NewRegistry returns a Prometheus registry with the Go runtime and
// process collectors, which every service's /metrics has.
func NewRegistry() *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r
}

// Register registers c with reg and returns it, or returns the equal
// collector registered before, so that several servers of one service in a
// process (tests, the dev stack) share their metrics. It panics on any
// other registration error: that is a programming mistake.
func Register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	switch {
	case err == nil:
		return c
	case errors.As(err, &are):
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing
		}
	}
	panic(fmt.Sprintf("cannot register metrics: %v", err))
}
