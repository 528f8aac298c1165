package server

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	requests          *prometheus.CounterVec
	duration          *prometheus.HistogramVec
	published         *prometheus.CounterVec
	idempotencyErrors *prometheus.CounterVec
	auditErrors       *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_ingress_requests_total",
			Help: "Webhook requests by source and outcome (accepted, duplicate, bad_signature, rate_limited, ...).",
		}, []string{"source", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "switchyard_ingress_request_duration_seconds",
			Help:    "Time from request start to answer, including the JetStream PubAck.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5},
		}, []string{"source"}),
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_ingress_api_events_total",
			Help: "Events sent to the publish API by API key and outcome (accepted, duplicate, rejected, unavailable).",
		}, []string{"api_key", "outcome"}),
		idempotencyErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_ingress_idempotency_errors_total",
			Help: "Idempotency record lookups or writes that failed (op=lookup|record); each may let a late redelivery be stored twice.",
		}, []string{"op"}),
		auditErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_ingress_audit_errors_total",
			Help: "Audit records not stored: dropped (too many in flight) or failed.",
		}, []string{"reason"}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.duration, m.published, m.idempotencyErrors, m.auditErrors)
	}
	return m
}

// sourceMetrics are one source's series, resolved once.
type sourceMetrics struct {
	name     string
	requests *prometheus.CounterVec
	duration prometheus.Observer
	outcomes sync.Map // outcome -> prometheus.Counter
}

func (m *metrics) forSource(name string) *sourceMetrics {
	return &sourceMetrics{name: name, requests: m.requests, duration: m.duration.WithLabelValues(name)}
}

func (s *sourceMetrics) observe(outcome string, d time.Duration) {
	c, ok := s.outcomes.Load(outcome)
	if !ok {
		c, _ = s.outcomes.LoadOrStore(outcome, s.requests.WithLabelValues(s.name, outcome))
	}
	c.(prometheus.Counter).Inc()
	s.duration.Observe(d.Seconds())
}

// observeUnknownSource counts a request for a source that does not exist.
// Label values come from configuration only; the unknown name is the
// caller's and would let anyone grow the metric.
func (m *metrics) observeUnknownSource(d time.Duration) {
	m.requests.WithLabelValues("_unknown", "unknown_source").Inc()
	m.duration.WithLabelValues("_unknown").Observe(d.Seconds())
}
