package server

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_ingress_requests_total",
			Help: "Webhook requests by source and outcome (accepted, duplicate, bad_signature, ...).",
		}, []string{"source", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "switchyard_ingress_request_duration_seconds",
			Help:    "Time from request start to answer, including the JetStream PubAck.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5},
		}, []string{"source"}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.duration)
	}
	return m
}

func (m *metrics) observe(source, outcome string, d time.Duration) {
	if outcome == "unknown_source" {
		// Label values come from configuration only; an unknown name is
		// the caller's and would let anyone grow the metric.
		source = "_unknown"
	}
	m.requests.WithLabelValues(source, outcome).Inc()
	m.duration.WithLabelValues(source).Observe(d.Seconds())
}
