package rules

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/notifier/internal/series"
)

func quarantinedRec(at time.Time, id string) *switchyardv1.AuditRecord {
	return &switchyardv1.AuditRecord{Time: timestamppb.New(at), Detail: &switchyardv1.AuditRecord_PayloadQuarantined{PayloadQuarantined: &switchyardv1.PayloadQuarantined{
		Source: "shop", EventId: id, Violations: []*switchyardv1.Violation{{Path: "", Message: "missing property 'email'"}}}}}
}

func validRec(at time.Time) *switchyardv1.AuditRecord {
	return &switchyardv1.AuditRecord{Time: timestamppb.New(at), Detail: &switchyardv1.AuditRecord_PayloadsValid{PayloadsValid: &switchyardv1.PayloadsValid{Source: "shop", EventId: "shop:ok"}}}
}

// fold merges records into state, one delta per record as replicas would.
func fold(state *switchyardv1.Series, now time.Time, recs ...*switchyardv1.AuditRecord) *switchyardv1.Series {
	for _, r := range recs {
		d := series.New(series.KindSource, "shop")
		series.Apply(d, r, now)
		state = series.Merge(state, d, now, cfg().Limits(series.KindSource, "shop"))
	}
	return state
}

// MalformedPayloads fires on the first malformed payload, counts the run
// for digests, is clear once a valid payload follows (and a new run
// starts counting from there), and is clear after quiet_after without one.
func TestMalformedPayloads(t *testing.T) {
	t.Parallel()
	eval := func(s *switchyardv1.Series, now time.Time) Condition {
		return find(t, Evaluate(cfg(), s, noPrior, now), MalformedPayloads)
	}
	s := fold(nil, t0, quarantinedRec(t0, "shop:1"))
	c := eval(s, t0)
	if !c.Firing || c.Clear || c.Count != 1 || c.Labels["source"] != "shop" || !c.Digest || c.Severity != Warning {
		t.Fatalf("first malformed payload: %+v", c)
	}
	if !strings.Contains(c.Summary, "1 payload from shop broke its contract") || !strings.Contains(c.LinkPath, "key=shop&kind=quarantined") {
		t.Errorf("summary %q, link %q", c.Summary, c.LinkPath)
	}
	s = fold(s, t0.Add(time.Minute), quarantinedRec(t0.Add(time.Minute), "shop:2"), quarantinedRec(t0.Add(time.Minute), "shop:3"))
	if c = eval(s, t0.Add(time.Minute)); !c.Firing || c.Count != 3 || !strings.Contains(c.DigestSummary(2, 3), "2 more payloads from shop") {
		t.Fatalf("three malformed payloads: %+v", c)
	}

	// Valid ones flow again.
	s = fold(s, t0.Add(2*time.Minute), validRec(t0.Add(2*time.Minute)))
	if c = eval(s, t0.Add(2*time.Minute)); c.Firing || !c.Clear || !c.ClearSince.Equal(t0.Add(2*time.Minute)) || c.ResolveAfter != time.Minute {
		t.Fatalf("after a valid payload: %+v", c)
	}

	// A new run counts from one.
	s = fold(s, t0.Add(3*time.Minute), quarantinedRec(t0.Add(3*time.Minute), "shop:4"))
	if c = eval(s, t0.Add(3*time.Minute)); !c.Firing || c.Count != 1 || !c.FirstSeen.Equal(t0.Add(3*time.Minute)) {
		t.Fatalf("a new run: %+v", c)
	}

	// Without valid payloads, quiet_after (1h) clears it.
	later := t0.Add(3*time.Minute + time.Hour)
	if c = eval(s, later); c.Firing || !c.Clear || !c.ClearSince.Equal(later) {
		t.Fatalf("an hour later: %+v", c)
	}
	// And the next malformed payload starts a new run.
	s = fold(s, later.Add(time.Minute), quarantinedRec(later.Add(time.Minute), "shop:5"))
	if c = eval(s, later.Add(time.Minute)); !c.Firing || c.Count != 1 {
		t.Fatalf("after the quiet period: %+v", c)
	}
}

// Replicas' deltas merged in any order give the same run.
func TestMalformedRunMergesDeltas(t *testing.T) {
	t.Parallel()
	a := series.New(series.KindSource, "shop")
	b := series.New(series.KindSource, "shop")
	series.Apply(a, quarantinedRec(t0, "shop:1"), t0)
	series.Apply(b, quarantinedRec(t0.Add(time.Second), "shop:2"), t0.Add(time.Second))
	lim := cfg().Limits(series.KindSource, "shop")
	for _, order := range [][]*switchyardv1.Series{{a, b}, {b, a}} {
		var s *switchyardv1.Series
		for _, d := range order {
			s = series.Merge(s, d, t0.Add(time.Second), lim)
		}
		m := s.GetMalformed()
		if m.GetTotal() != 2 || m.GetTotal()-m.GetRunStartTotal() != 2 || m.GetLastEventId() != "shop:2" || !strings.HasPrefix(m.GetLastError(), "/: missing property") {
			t.Errorf("merged run = %v", m)
		}
	}
}
