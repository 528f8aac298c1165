package runner

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchyard/switchyard/services/dispatcher/internal/delivery"
)

type metrics struct {
	attempts    *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	inflight    *prometheus.GaugeVec
	deadLetters *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_dispatcher_attempts_total",
			Help: "Delivery attempts by destination and outcome (delivered, retryable, permanent).",
		}, []string{"destination", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "switchyard_dispatcher_attempt_duration_seconds",
			Help:    "Duration of delivery attempts, request to response.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"destination"}),
		inflight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "switchyard_dispatcher_inflight_requests",
			Help: "HTTP requests in flight per destination.",
		}, []string{"destination"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_dispatcher_dead_letters_total",
			Help: "Deliveries given up and dead-lettered, per destination.",
		}, []string{"destination"}),
	}
	if reg != nil {
		reg.MustRegister(m.attempts, m.duration, m.inflight, m.deadLetters)
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
