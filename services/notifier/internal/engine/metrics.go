package engine

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/services/notifier/internal/rules"
	"github.com/switchyard/switchyard/services/notifier/internal/sender"
)

// Outcomes of alert messages: the outcome label of
// switchyard_notifier_notifications_total.
const (
	outcomeDelivered = "delivered"
	outcomeRetried   = "retried"
	outcomeGivenUp   = "given_up"
	outcomeStale     = "stale"
	// outcomeRecovered: lost from NOTIFICATIONS and made again.
	outcomeRecovered = "recovered"
)

type metrics struct {
	records       *prometheus.CounterVec
	flushes       prometheus.Counter
	stateWrites   *prometheus.CounterVec
	notifications *prometheus.CounterVec
	sendFailures  *prometheus.CounterVec
	firing        *prometheus.GaugeVec
	// auditorPending and auditorOldestAge are the auditor's durable
	// consumer on AUDIT as the notifier last read it: the AuditLag rule's
	// view that needs no auditor running, exported for Prometheus rules.
	auditorPending   prometheus.Gauge
	auditorOldestAge prometheus.Gauge
}

// newMetrics makes the metrics, every series of them at 0 (for each of
// senders, each known label value): a counter that appears only with its
// first increment hides that increment from rate() and increase(), so
// alert expressions would miss the first failure.
func newMetrics(reg prometheus.Registerer, senders []string) *metrics {
	m := &metrics{
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_notifier_records_total",
			Help: "Audit records read, by kind (attempt, dead_letter, circuit, backlog, rejected, lag, other).",
		}, []string{"kind"}),
		flushes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchyard_notifier_flushes_total",
			Help: "Batches of audit records merged into the rule state and acknowledged.",
		}),
		stateWrites: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_notifier_state_writes_total",
			Help: "Compare-and-set writes to the notifier_state KV bucket, by result (ok, conflict, error).",
		}, []string{"result"}),
		notifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_notifier_notifications_total",
			Help: "Alert messages by sender and outcome (delivered, retried, given_up, stale, recovered).",
		}, []string{"sender", "outcome"}),
		sendFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_notifier_send_failures_total",
			Help: "Failed sends by sender and reason (throttled, network, rate_limited, unavailable: retried; rejected, invalid: permanent, also audited).",
		}, []string{"sender", "reason", "permanent"}),
		firing: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "switchyard_notifier_alerts_firing",
			Help: "Alerts firing now, by rule.",
		}, []string{"rule"}),
		auditorPending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "switchyard_notifier_auditor_consumer_pending",
			Help: "Records the auditor's consumer on AUDIT has not acknowledged, as last read (every 15s); it grows while no auditor runs.",
		}),
		auditorOldestAge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "switchyard_notifier_auditor_consumer_oldest_age_seconds",
			Help: "Age of the oldest record the auditor's consumer on AUDIT has not acknowledged, as last read (0 when none waits).",
		}),
	}
	for _, k := range auditlog.Kinds {
		m.records.WithLabelValues(k)
	}
	for _, r := range []string{"ok", "conflict", "error"} {
		m.stateWrites.WithLabelValues(r)
	}
	for _, s := range senders {
		for _, o := range []string{outcomeDelivered, outcomeRetried, outcomeGivenUp, outcomeStale, outcomeRecovered} {
			m.notifications.WithLabelValues(s, o)
		}
		for _, r := range sender.FailureReasons {
			m.sendFailures.WithLabelValues(s, r.Reason, strconv.FormatBool(r.Permanent))
		}
	}
	for _, r := range rules.Names {
		m.firing.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.records, m.flushes, m.stateWrites, m.notifications, m.sendFailures, m.firing, m.auditorPending, m.auditorOldestAge)
	}
	return m
}
