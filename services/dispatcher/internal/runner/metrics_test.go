package runner

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/switchyard/switchyard/pkg/config"
)

// Every series whose labels the configuration names exists at 0 from the
// start, so that rate() and increase() in alert rules see the first
// increment; the destination's timeout is exported for the latency rule.
func TestMetricsExistFromTheStart(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m := newMetrics(reg, []config.Destination{
		{Name: "erp", Timeout: config.Duration(5 * time.Second)},
		{Name: "crm", Timeout: config.Duration(800 * time.Millisecond)},
	})
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	// Series per destination of each family that has the label.
	want := map[string]int{
		"switchyard_dispatcher_attempts_total":             3,
		"switchyard_dispatcher_attempt_duration_seconds":   1,
		"switchyard_dispatcher_inflight_requests":          1,
		"switchyard_dispatcher_dead_letters_total":         1,
		"switchyard_dispatcher_rate_limited_seconds_total": 1,
		"switchyard_dispatcher_circuit_state":              1,
		"switchyard_dispatcher_circuit_changes_total":      3,
		"switchyard_dispatcher_consumer_recreated_total":   1,
		"switchyard_dispatcher_auth_failures_total":        1,
		"switchyard_dispatcher_auth_dead_letters_total":    1,
		"switchyard_dispatcher_timeout_seconds":            1,
		"switchyard_dispatcher_filtered_total":             1,
		"switchyard_dispatcher_mapping_failures_total":     4,
	}
	got := map[string]map[string]int{}
	for _, f := range families {
		for _, s := range f.GetMetric() {
			for _, l := range s.GetLabel() {
				if l.GetName() == "destination" {
					if got[f.GetName()] == nil {
						got[f.GetName()] = map[string]int{}
					}
					got[f.GetName()][l.GetValue()]++
				}
			}
		}
	}
	for name, n := range want {
		for _, dest := range []string{"erp", "crm"} {
			if got[name][dest] != n {
				t.Errorf("%s{destination=%q}: %d series at start, want %d", name, dest, got[name][dest], n)
			}
		}
	}
	if n := testutil.CollectAndCount(m.reconciled); n != 4 {
		t.Errorf("switchyard_dispatcher_reconciled_advisories_total: %d series at start, want 4 (every kind and result)", n)
	}
	if v := testutil.ToFloat64(m.timeout.WithLabelValues("crm")); v != 0.8 {
		t.Errorf("timeout of crm = %v, want 0.8", v)
	}
}
