package worker

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/storeprov/storeprov/pkg/rpc"
)

// Metrics are the worker's Prometheus collectors.
type Metrics struct {
	// Reconciles counts handled command deliveries by action (provision,
	// delete, unknown) and result (done, stale, failed, exhausted, retry,
	// later, requeued, rejected).
	Reconciles *prometheus.CounterVec
	// Duration observes Reconcile calls, by action.
	Duration *prometheus.HistogramVec
	// InFlight is the number of commands being handled now.
	InFlight prometheus.Gauge
	// LeaseConflicts counts commands that found their store's lease held
	// by another worker.
	LeaseConflicts prometheus.Counter
}

// NewMetrics creates the collectors and registers them with reg. When reg
// already has them (a second worker in one process), those are reused.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Reconciles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "storeprov_orchestrator_reconciles_total",
			Help: "Command deliveries handled, by action and result.",
		}, []string{"action", "result"}),
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "storeprov_orchestrator_reconcile_duration_seconds",
			Help:    "Time to reconcile a store, by action.",
			Buckets: []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300},
		}, []string{"action"}),
		InFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "storeprov_orchestrator_commands_in_flight",
			Help: "Commands being handled now.",
		}),
		LeaseConflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "storeprov_orchestrator_lease_conflicts_total",
			Help: "Commands that found their store leased by another worker.",
		}),
	}
	m.Reconciles = rpc.Register(reg, m.Reconciles)
	m.Duration = rpc.Register(reg, m.Duration)
	m.InFlight = rpc.Register(reg, m.InFlight)
	m.LeaseConflicts = rpc.Register(reg, m.LeaseConflicts)
	return m
}
