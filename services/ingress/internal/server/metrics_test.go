package server

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestMetricsExistBeforeTheFirstEvent: every series with label values
// known at start exists, at 0, before anything happened, so that an alert
// on it sees 0 rather than no data.
func TestMetricsExistBeforeTheFirstEvent(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	newEnv(t, withAPIKey("orders", testAPIKey), func(c *Config) { c.Registerer = reg })
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			key := f.GetName()
			for _, l := range m.GetLabel() {
				key += " " + l.GetName() + "=" + l.GetValue()
			}
			have[key] = true
			if c := m.GetCounter(); c != nil && c.GetValue() != 0 {
				t.Errorf("%s = %v before any request", key, c.GetValue())
			}
		}
	}
	want := []string{
		"switchyard_ingress_idempotency_errors_total op=lookup",
		"switchyard_ingress_idempotency_errors_total op=record",
		"switchyard_ingress_audit_errors_total reason=dropped",
		"switchyard_ingress_audit_errors_total reason=failed",
		"switchyard_ingress_rejections_unaudited_total source=" + sourceName,
		"switchyard_ingress_rejections_unaudited_total source=_api",
		"switchyard_ingress_rejections_unaudited_total source=_unknown",
		"switchyard_ingress_requests_total outcome=unknown_source source=_unknown",
		"switchyard_ingress_api_events_total api_key=_unauthenticated outcome=rejected",
		"switchyard_ingress_request_duration_seconds source=" + sourceName,
		"switchyard_ingress_request_duration_seconds source=_unknown",
	}
	for _, o := range webhookOutcomes {
		want = append(want, "switchyard_ingress_requests_total outcome="+o+" source="+sourceName)
	}
	for _, o := range apiOutcomes {
		want = append(want, "switchyard_ingress_api_events_total api_key=orders outcome="+o)
	}
	for _, w := range want {
		if !have[w] {
			t.Errorf("no series %s at start", w)
		}
	}
}
