package runner

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/mapping"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/dispatcher/internal/backlog"
	"github.com/switchyard/switchyard/services/dispatcher/internal/breaker"
	"github.com/switchyard/switchyard/services/dispatcher/internal/delivery"
	"github.com/switchyard/switchyard/services/dispatcher/internal/reconcile"
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
	// authFailures and authDeadLetters count attempts, and dead letters,
	// refused for the destination's credentials (the CredentialsFailing
	// rule's input).
	authFailures    *prometheus.CounterVec
	authDeadLetters *prometheus.CounterVec
	// timeout is each destination's configured HTTP timeout: the
	// PartnerLatencyHigh rule compares the p95 with a share of it.
	timeout *prometheus.GaugeVec
	// filtered counts events a destination's filter left out (acked
	// without an attempt); mappingFailures the events dead-lettered
	// because the filter or the transformation failed, by stage;
	// transformInfo names the transformation version each destination
	// runs.
	filtered        *prometheus.CounterVec
	mappingFailures *prometheus.CounterVec
	transformInfo   *prometheus.GaugeVec
}

// Outcomes of attempts: the outcome label of
// switchyard_dispatcher_attempts_total.
const (
	outcomeDelivered = "delivered"
	outcomeRetryable = "retryable"
	outcomePermanent = "permanent"
)

// Label values known in advance, besides the destinations.
var (
	attemptOutcomes = []string{outcomeDelivered, outcomeRetryable, outcomePermanent}
	mappingStages   = []mapping.Stage{mapping.StageFilter, mapping.StageTransform, mapping.StageHeader, mapping.StagePath}
	// reconciledKinds and reconciledResults: every pair occurs.
	reconciledKinds   = []string{"max_deliveries", "terminated"}
	reconciledResults = []string{"dead_lettered", "already_dead_lettered"}
)

// newMetrics makes the metrics. Every counter series whose labels are known
// from the configuration exists at 0 from the start: a series that appears
// only with its first increment hides that increment from rate() and
// increase(), so an alert on it would miss the first dead letter. The
// backlog gauges appear with the first measurement, at Run.
func newMetrics(reg prometheus.Registerer, dests []config.Destination) *metrics {
	byDest := []string{"destination"}
	gauge := func(name, help string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, byDest)
	}
	counter := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, byDest)
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
		inflight:      gauge("switchyard_dispatcher_inflight_requests", "HTTP requests in flight per destination."),
		deadLetters:   counter("switchyard_dispatcher_dead_letters_total", "Deliveries given up and dead-lettered, per destination (by the dispatcher or its advisory reconciler)."),
		rateLimited:   counter("switchyard_dispatcher_rate_limited_seconds_total", "Time the destination's fetch loop waited for its rate limit."),
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
		consumerRecreated: counter("switchyard_dispatcher_consumer_recreated_total", "Times this replica found the destination's consumer deleted and recreated it."),
		authFailures:      counter("switchyard_dispatcher_auth_failures_total", "Attempts refused for the destination's credentials: 401 or 403, or the OAuth2 token endpoint refusing the client."),
		authDeadLetters:   counter("switchyard_dispatcher_auth_dead_letters_total", "Dead letters whose last attempt was refused for the destination's credentials."),
		timeout:           gauge("switchyard_dispatcher_timeout_seconds", "The destination's configured HTTP timeout (destinations[].timeout)."),
		filtered:          counter("switchyard_dispatcher_filtered_total", "Events the destination's filter left out: acknowledged without an attempt."),
		mappingFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_dispatcher_mapping_failures_total",
			Help: "Events dead-lettered because the destination's filter or transformation failed, by stage (filter, transform, header, path).",
		}, []string{"destination", "stage"}),
		transformInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "switchyard_dispatcher_transform_info",
			Help: "1 for the transformation version each destination runs: a short hash of its program and templates, none without a transformation.",
		}, []string{"destination", "version"}),
	}
	for _, d := range dests {
		name := d.Name
		for _, o := range attemptOutcomes {
			m.attempts.WithLabelValues(name, o)
		}
		m.duration.WithLabelValues(name)
		m.inflight.WithLabelValues(name)
		m.deadLetters.WithLabelValues(name)
		m.rateLimited.WithLabelValues(name)
		for _, to := range []switchyardv1.CircuitState{switchyardv1.CircuitState_CIRCUIT_STATE_CLOSED,
			switchyardv1.CircuitState_CIRCUIT_STATE_OPEN, switchyardv1.CircuitState_CIRCUIT_STATE_HALF_OPEN} {
			m.circuitChanges.WithLabelValues(name, breaker.StateName(to))
		}
		// Closed until the breaker's state is read (Provision), and for
		// good when the breaker is disabled.
		m.circuitState.WithLabelValues(name)
		m.consumerRecreated.WithLabelValues(name)
		m.authFailures.WithLabelValues(name)
		m.authDeadLetters.WithLabelValues(name)
		m.timeout.WithLabelValues(name).Set(d.Timeout.D().Seconds())
		m.filtered.WithLabelValues(name)
		for _, st := range mappingStages {
			m.mappingFailures.WithLabelValues(name, string(st))
		}
	}
	for _, k := range reconciledKinds {
		for _, r := range reconciledResults {
			m.reconciled.WithLabelValues(k, r)
		}
	}
	if reg != nil {
		reg.MustRegister(m.attempts, m.duration, m.inflight, m.deadLetters, m.rateLimited, m.pending, m.ackPending,
			m.maxAckPending, m.oldestAge, m.backlogFull, m.circuitState, m.circuitChanges, m.reconciled, m.consumerRecreated,
			m.authFailures, m.authDeadLetters, m.timeout, m.filtered, m.mappingFailures, m.transformInfo)
	}
	return m
}

// breakerMetrics are the circuit breakers' share.
func (m *metrics) breakerMetrics() breaker.Metrics {
	return breaker.Metrics{State: m.circuitState, Changes: m.circuitChanges}
}

// backlogMetrics are the backlog reporters' share.
func (m *metrics) backlogMetrics() backlog.Metrics {
	return backlog.Metrics{Pending: m.pending, AckPending: m.ackPending, MaxAckPending: m.maxAckPending, OldestAge: m.oldestAge, Full: m.backlogFull}
}

// reconcileMetrics are the advisory reconciler's share.
func (m *metrics) reconcileMetrics() reconcile.Metrics {
	return reconcile.Metrics{Reconciled: m.reconciled, DeadLetters: m.deadLetters}
}

// outcomeOf names an attempt's outcome as the metrics and spans do.
func outcomeOf(r delivery.Result) string {
	switch {
	case r.Retryable():
		return outcomeRetryable
	case !r.Delivered():
		return outcomePermanent
	}
	return outcomeDelivered
}

func (m *metrics) observe(destination string, r delivery.Result) {
	outcome := outcomeOf(r)
	m.attempts.WithLabelValues(destination, outcome).Inc()
	m.duration.WithLabelValues(destination).Observe(r.Duration.Seconds())
	if r.AuthFailure() {
		m.authFailures.WithLabelValues(destination).Inc()
	}
}
