package worker

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/storeprov/storeprov/pkg/metrics"
	"github.com/storeprov/storeprov/services/orchestrator/internal/phase"
)

// Metrics are the worker's Prometheus collectors.
type Metrics struct {
	// Reconciles counts handled command deliveries by action (provision,
	// delete, unknown) and result (done, stale, failed, exhausted, retry,
	// later, requeued, rejected).
	Reconciles *prometheus.CounterVec
	// Duration observes Reconcile calls, by action.
	Duration *prometheus.HistogramVec
	// Phases observe where a command's time goes, by phase (the names of
	// package phase: lease, observe, guardrails, render, install, upgrade,
	// rollback, uninstall, readiness, delete_namespace, publish) and
	// action. Phases nest as their spans do: render is part of install or
	// upgrade; a phase that failed is observed too.
	Phases *prometheus.HistogramVec
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
		Phases: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "storeprov_orchestrator_phase_duration_seconds",
			Help:    "Time spent in each phase of a command (lease, observe, guardrails, render, install, upgrade, rollback, uninstall, readiness, delete_namespace, publish), by action; render is part of install and upgrade.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300},
		}, []string{"phase", "action"}),
		InFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "storeprov_orchestrator_commands_in_flight",
			Help: "Commands being handled now.",
		}),
		LeaseConflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "storeprov_orchestrator_lease_conflicts_total",
			Help: "Commands that found their store leased by another worker.",
		}),
	}
	m.Reconciles = metrics.Register(reg, m.Reconciles)
	m.Duration = metrics.Register(reg, m.Duration)
	m.Phases = metrics.Register(reg, m.Phases)
	m.InFlight = metrics.Register(reg, m.InFlight)
	m.LeaseConflicts = metrics.Register(reg, m.LeaseConflicts)
	return m
}

// phases reports the phases of a command of action to m.Phases.
func (m *Metrics) phases(action string) phase.Observer {
	return phase.ObserverFunc(func(name phase.Name, d time.Duration) {
		m.Phases.WithLabelValues(string(name), action).Observe(d.Seconds())
	})
}
