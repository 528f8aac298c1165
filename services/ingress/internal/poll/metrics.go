package poll

import (
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	rounds      *prometheus.CounterVec
	items       *prometheus.CounterVec
	lastSuccess *prometheus.GaugeVec
	leaseHeld   *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer, sources []string) *metrics {
	m := &metrics{
		rounds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_poll_rounds_total",
			Help: "Poll rounds of polled sources by source and status (ok, timeout, unavailable, rate_limited, credentials, rejected, bad_answer, store_failed, interrupted).",
		}, []string{"source", "status"}),
		items: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_poll_items_total",
			Help: "Items polled by source and result: new (stored as an event), duplicate (stored before) or quarantined (broke the source's contract).",
		}, []string{"source", "result"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "switchyard_poll_last_success_timestamp_seconds",
			Help: "When the source's last successful poll round ended (Unix seconds), on the replica that ran it; 0 before the first.",
		}, []string{"source"}),
		leaseHeld: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "switchyard_poll_lease_held",
			Help: "1 on the replica that holds the source's lease and polls it, 0 elsewhere.",
		}, []string{"source"}),
	}
	for _, s := range sources {
		for _, st := range Statuses {
			m.rounds.WithLabelValues(s, string(st))
		}
		m.items.WithLabelValues(s, "new")
		m.items.WithLabelValues(s, "duplicate")
		m.items.WithLabelValues(s, "quarantined")
		m.lastSuccess.WithLabelValues(s)
		m.leaseHeld.WithLabelValues(s)
	}
	if reg != nil {
		reg.MustRegister(m.rounds, m.items, m.lastSuccess, m.leaseHeld)
	}
	return m
}

func (m *metrics) observe(r Round) {
	m.rounds.WithLabelValues(r.Source, string(r.Status)).Inc()
	m.items.WithLabelValues(r.Source, "new").Add(float64(r.New))
	m.items.WithLabelValues(r.Source, "duplicate").Add(float64(r.Duplicates))
	m.items.WithLabelValues(r.Source, "quarantined").Add(float64(r.Quarantined))
	if r.Status == StatusOK {
		m.lastSuccess.WithLabelValues(r.Source).Set(float64(r.Started.Add(r.Took).Unix()))
	}
}
