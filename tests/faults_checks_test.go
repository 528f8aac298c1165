package tests

import (
	"testing"
	"time"
)

// TestFaultChecksCatchBrokenInvariants feeds the fault matrix's checks
// made-up evidence, so that a check that can never fail does not pass the
// matrix unnoticed.
func TestFaultChecksCatchBrokenInvariants(t *testing.T) {
	t.Parallel()
	t0 := time.Now()
	req := func(key string, attempt int, at time.Time) partnerRequest {
		return partnerRequest{dest: faultDest, key: key, attempt: attempt, at: at, status: 204}
	}
	recorded := map[attemptKey]attemptRow{
		{"a", faultDest, 1}: {status: 204},
		// Never reached the partner: excluded.
		{"b", faultDest, 1}: {status: 0, err: `Post "http://127.0.0.1:1/erp": dial tcp 127.0.0.1:1: connect: connection refused`},
		// A timeout reached it: the partner must have it.
		{"c", faultDest, 1}: {status: 0, err: "context deadline exceeded"},
	}
	reqs := []partnerRequest{req("a", 1, t0), req("d", 1, t0)}

	a := agreeAudit(reqs, recorded, nil, time.Second)
	if a.ok() || len(a.unaudited) != 1 || a.unaudited[0].key != "d" || len(a.unseen) != 1 || a.refused != 1 || a.unauditedKilled != 0 {
		t.Errorf("without kills: %+v; want d unaudited, c unseen, b refused", a)
	}
	// A kill 500 ms after d: d's record may have died with its dispatcher.
	a = agreeAudit(reqs, recorded, []time.Time{t0.Add(500 * time.Millisecond)}, time.Second)
	if len(a.unaudited) != 0 || a.unauditedKilled != 1 {
		t.Errorf("kill just after the request: %+v; want it allowed and counted", a)
	}
	// A kill 5 s after d explains nothing (timeout 1 s).
	a = agreeAudit(reqs, recorded, []time.Time{t0.Add(5 * time.Second)}, time.Second)
	if len(a.unaudited) != 1 || a.unauditedKilled != 0 {
		t.Errorf("kill long after the request: %+v; want it unaudited", a)
	}

	const pd, dl = "PartnerDown erp", "DeliveryDeadLettered erp"
	for _, c := range []struct {
		name   string
		got    map[string][]string
		want   map[string]int
		broken bool
	}{
		{"two episodes", map[string][]string{pd: {"[FIRING]", "[RESOLVED]", "[FIRING]", "[RESOLVED]"}}, map[string]int{pd: 2}, false},
		{"updates between", map[string][]string{pd: {"[FIRING]", "[UPDATE]", "[STILL FIRING]", "[RESOLVED]"}}, map[string]int{pd: 1}, false},
		{"nothing expected, nothing sent", nil, nil, false},
		{"one episode short", map[string][]string{pd: {"[FIRING]", "[RESOLVED]"}}, map[string]int{pd: 2}, true},
		{"paged twice in one episode", map[string][]string{pd: {"[FIRING]", "[FIRING]", "[RESOLVED]"}}, map[string]int{pd: 1}, true},
		{"never resolved", map[string][]string{pd: {"[FIRING]"}}, map[string]int{pd: 1}, true},
		{"not paged", nil, map[string]int{pd: 1}, true},
		{"an alert not expected", map[string][]string{dl: {"[FIRING]", "[RESOLVED]"}}, nil, true},
	} {
		if p := episodeProblems(c.got, c.want); (len(p) > 0) != c.broken {
			t.Errorf("%s: problems %q; want broken = %v", c.name, p, c.broken)
		}
	}
}
