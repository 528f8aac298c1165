package server

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchyard/switchyard/pkg/config"
)

type metrics struct {
	requests          *prometheus.CounterVec
	duration          *prometheus.HistogramVec
	published         *prometheus.CounterVec
	syncPublishes     *prometheus.CounterVec
	idempotencyErrors *prometheus.CounterVec
	auditErrors       *prometheus.CounterVec
	unaudited         *prometheus.CounterVec
	// bytesInFlight, bytesInFlightLimit and overloaded are the bound on
	// request body bytes held at once (admission.go).
	bytesInFlight      prometheus.Gauge
	bytesInFlightLimit prometheus.Gauge
	overloaded         *prometheus.CounterVec
}

// Label values known in advance. Every series with them is created at
// start, so that an alert sees 0 rather than no data until the first
// increment.
var (
	// webhookOutcomes are the outcome label values of a source's requests.
	webhookOutcomes = []string{
		"accepted", "duplicate", "suspected_replay", "rate_limited", "body_too_large", "malformed", "unavailable",
		"missing_signature", "stale_timestamp", "malformed_signature", "missing_credentials", "bad_credentials", "bad_signature",
		outcomeOverloaded,
		// A source with a contract (the series exist for every source,
		// at 0, so that the MalformedPayloads rule sees them).
		statusQuarantined, outcomeInvalid,
	}
	apiOutcomes       = []string{statusAccepted, statusDuplicate, statusQuarantined, statusRejected, statusUnavailable}
	idempotencyOps    = []string{"lookup", "record"}
	auditErrorReasons = []string{"dropped", "failed"}
)

// unauthenticatedKey is the api_key label of publish API requests without a
// valid key.
const unauthenticatedKey = "_unauthenticated"

func newMetrics(reg prometheus.Registerer, sources []config.Source, keys []config.IngressAPIKey) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_ingress_requests_total",
			Help: "Webhook requests by source and outcome (accepted, duplicate, quarantined, invalid_payload, bad_signature, rate_limited, ...).",
		}, []string{"source", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "switchyard_ingress_request_duration_seconds",
			Help:    "Time from request start to answer, including the JetStream PubAck.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5},
		}, []string{"source"}),
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_ingress_api_events_total",
			Help: "Events sent to the publish API by API key and outcome (accepted, duplicate, quarantined, rejected, unavailable).",
		}, []string{"api_key", "outcome"}),
		syncPublishes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_ingress_sync_publishes_total",
			Help: "Synchronous publishes (POST /v1/events?wait=) by API key and how their wait ended: completed (every destination answered) or pending (202).",
		}, []string{"api_key", "outcome"}),
		idempotencyErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_ingress_idempotency_errors_total",
			Help: "Idempotency record lookups or writes that failed (op=lookup|record); each may let a late redelivery be stored twice.",
		}, []string{"op"}),
		auditErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_ingress_audit_errors_total",
			Help: "Audit records not stored: dropped (too many in flight) or failed.",
		}, []string{"reason"}),
		unaudited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_ingress_rejections_unaudited_total",
			Help: "Refused requests over ingress.rejection_audit, not audited one by one but counted in a summary record, by source (_api: the publish API, _unknown: unknown sources).",
		}, []string{"source"}),
		bytesInFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "switchyard_ingress_body_bytes_in_flight",
			Help: "Request body bytes ingress holds now (webhooks and the publish API): each request's Content-Length from before its body is read until it is answered.",
		}),
		bytesInFlightLimit: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "switchyard_ingress_body_bytes_in_flight_limit",
			Help: "The bound on request body bytes held at once (ingress.max_bytes_in_flight).",
		}),
		overloaded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_ingress_overloaded_total",
			Help: "Requests answered 503 with Retry-After because their body did not fit in ingress.max_bytes_in_flight, by route (webhooks, api).",
		}, []string{"route"}),
	}
	m.overloaded.WithLabelValues(routeWebhooks)
	m.overloaded.WithLabelValues(routeAPI)
	for _, src := range sources {
		if src.IsPolled() {
			continue // package poll counts its rounds
		}
		for _, o := range webhookOutcomes {
			m.requests.WithLabelValues(src.Name, o)
		}
		if src.Scheme == "slack" {
			m.requests.WithLabelValues(src.Name, "handshake")
		}
		m.duration.WithLabelValues(src.Name)
		m.unaudited.WithLabelValues(src.Name)
	}
	m.requests.WithLabelValues(unknownSource, "unknown_source")
	m.duration.WithLabelValues(unknownSource)
	for _, k := range keys {
		for _, o := range apiOutcomes {
			m.published.WithLabelValues(k.Name, o)
		}
		m.syncPublishes.WithLabelValues(k.Name, syncCompleted)
		m.syncPublishes.WithLabelValues(k.Name, syncPending)
	}
	m.published.WithLabelValues(unauthenticatedKey, statusRejected)
	for _, op := range idempotencyOps {
		m.idempotencyErrors.WithLabelValues(op)
	}
	for _, r := range auditErrorReasons {
		m.auditErrors.WithLabelValues(r)
	}
	m.unaudited.WithLabelValues(apiSource)
	m.unaudited.WithLabelValues(unknownSource)
	if reg != nil {
		reg.MustRegister(m.requests, m.duration, m.published, m.syncPublishes, m.idempotencyErrors, m.auditErrors, m.unaudited,
			m.bytesInFlight, m.bytesInFlightLimit, m.overloaded)
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
	m.requests.WithLabelValues(unknownSource, "unknown_source").Inc()
	m.duration.WithLabelValues(unknownSource).Observe(d.Seconds())
}
