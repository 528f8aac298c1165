package runner

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchyard/switchyard/services/dispatcher/internal/delivery"
)

type metrics struct {
	attempts       *prometheus.CounterVec
	duration       *prometheus.HistogramVec
	inflight       *prometheus.GaugeVec
	deadLetters    *prometheus.CounterVec
	rateLimited    *prometheus.CounterVec
	pending        *prometheus.GaugeVec
	ackPending     *prometheus.GaugeVec
	maxAckPending  *prometheus.GaugeVec
	oldestAge      *prometheus.GaugeVec
	backlogFull    *prometheus.GaugeVec
	circuitState   *prometheus.GaugeVec
	circuitChanges *prometheus.CounterVec
	reconciled     *prometheus.CounterVec
	// consumerRecreated counts destination consumers found deleted and
	// recreated.
	consumerRecreated *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	byDest := []string{"destination"}
	gauge := func(name, help string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, byDest)
	}
	m := &metrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_dispatcher_attempts_total",
			Help: "Delivery attempts by destination and outcome (delivered, retryable, permanent).",
		}, []string{"destination", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "switchyard_dispatcher_attempt_duration_seconds",
			Help:    "Duration of delivery attempts, request to response.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, byDest),
		inflight: gauge("switchyard_dispatcher_inflight_requests", "HTTP requests in flight per destination."),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_dispatcher_dead_letters_total",
			Help: "Deliveries given up and dead-lettered, per destination (by the dispatcher or its advisory reconciler).",
		}, byDest),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_dispatcher_rate_limited_seconds_total",
			Help: "Time the destination's fetch loop waited for its rate limit.",
		}, byDest),
		pending:       gauge("switchyard_dispatcher_consumer_pending", "Events matching the destination not yet delivered once (consumer num_pending)."),
		ackPending:    gauge("switchyard_dispatcher_consumer_ack_pending", "Events delivered but not finished: in flight or waiting for a retry (num_ack_pending)."),
		maxAckPending: gauge("switchyard_dispatcher_consumer_max_ack_pending", "The consumer's max_ack_pending: at it, no new event is delivered."),
		oldestAge:     gauge("switchyard_dispatcher_oldest_pending_age_seconds", "Age of the oldest event the destination has not finished."),
		backlogFull:   gauge("switchyard_dispatcher_consumer_full", "1 while num_ack_pending has reached max_ack_pending."),
		circuitState:  gauge("switchyard_dispatcher_circuit_state", "Circuit breaker state: 0 closed, 1 open, 2 half-open."),
		circuitChanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_dispatcher_circuit_changes_total",
			Help: "Circuit breaker state changes made by this replica, by new state.",
		}, []string{"destination", "to"}),
		reconciled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_dispatcher_reconciled_advisories_total",
			Help: "MAX_DELIVERIES and MSG_TERMINATED advisories reconciled, by kind and result.",
		}, []string{"kind", "result"}),
		consumerRecreated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_dispatcher_consumer_recreated_total",
			Help: "Times this replica found the destination's consumer deleted and recreated it.",
		}, byDest),
	}
	if reg != nil {
		reg.MustRegister(m.attempts, m.duration, m.inflight, m.deadLetters, m.rateLimited, m.pending, m.ackPending,
			m.maxAckPending, m.oldestAge, m.backlogFull, m.circuitState, m.circuitChanges, m.reconciled, m.consumerRecreated)
	}
	return m
}

func (m *metrics) observe(destination string, r delivery.Result) {
	outcome := "delivered"
	switch {
	case r.Retryable():
		outcome = "retryable"
	case !r.Delivered():
		outcome = "permanent"
	}
	m.attempts.WithLabelValues(destination, outcome).Inc()
	m.duration.WithLabelValues(destination).Observe(r.Duration.Seconds())
}
