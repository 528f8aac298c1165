package engine

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	records       *prometheus.CounterVec
	flushes       prometheus.Counter
	stateWrites   *prometheus.CounterVec
	notifications *prometheus.CounterVec
	sendFailures  *prometheus.CounterVec
	firing        *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
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
			Help: "Alert messages by sender and outcome (delivered, retried, given_up, stale).",
		}, []string{"sender", "outcome"}),
		sendFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_notifier_send_failures_total",
			Help: "Failed sends by sender and HTTP status (0: no answer); permanent ones (invalid_payload, revoked hook) are also audited.",
		}, []string{"sender", "status", "permanent"}),
		firing: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "switchyard_notifier_alerts_firing",
			Help: "Alerts firing now, by rule.",
		}, []string{"rule"}),
	}
	if reg != nil {
		reg.MustRegister(m.records, m.flushes, m.stateWrites, m.notifications, m.sendFailures, m.firing)
	}
	return m
}
