package silences_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchyard/switchyard/pkg/silences"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
	"github.com/switchyard/switchyard/pkg/testing/waitfor"
	"github.com/switchyard/switchyard/pkg/topology"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
)

func matchers(t *testing.T, ss ...string) []*switchyardv1.SilenceMatcher {
	t.Helper()
	var out []*switchyardv1.SilenceMatcher
	for _, s := range ss {
		m, err := silences.ParseMatcher(s)
		if err != nil {
			t.Fatalf("ParseMatcher(%q): %v", s, err)
		}
		out = append(out, m)
	}
	return out
}

func TestParseMatcher(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{in: "destination=erp", want: "destination=erp"},
		{in: "rule != AuditLag", want: "rule!=AuditLag"},
		{in: `destination=~"erp|crm"`, want: "destination=~erp|crm"},
		{in: "source!~test-.*", want: "source!~test-.*"},
		{in: "severity=", want: "severity="},
		{in: "dest=erp", wantErr: true},
		{in: "destination", wantErr: true},
		{in: "=erp", wantErr: true},
		{in: "destination=~(", wantErr: true},
	}
	for _, tt := range tests {
		m, err := silences.ParseMatcher(tt.in)
		if tt.wantErr {
			if !errors.Is(err, silences.ErrInvalid) {
				t.Errorf("ParseMatcher(%q) = %v, %v; want ErrInvalid", tt.in, m, err)
			}
			continue
		}
		if err != nil || silences.FormatMatcher(m) != tt.want {
			t.Errorf("ParseMatcher(%q) = %v, %v; want %s", tt.in, m, err, tt.want)
		}
	}
}

func TestMatches(t *testing.T) {
	t.Parallel()
	labels := map[string]string{"rule": "PartnerDown", "destination": "erp", "severity": "critical"}
	tests := []struct {
		matchers []string
		want     bool
	}{
		{[]string{"destination=erp"}, true},
		{[]string{"destination=crm"}, false},
		{[]string{"destination=erp", "rule=PartnerDown"}, true},
		{[]string{"destination=erp", "rule=AuditLag"}, false},
		{[]string{"destination!=crm"}, true},
		{[]string{"rule=~Partner.*"}, true},
		{[]string{"rule=~Partner"}, false}, // anchored
		{[]string{"destination!~e.*"}, false},
		{[]string{"source="}, true}, // a missing label is empty
	}
	for _, tt := range tests {
		sil := &switchyardv1.Silence{Matchers: matchers(t, tt.matchers...)}
		if got := silences.Matches(sil, labels); got != tt.want {
			t.Errorf("Matches(%v) = %v, want %v", tt.matchers, got, tt.want)
		}
	}
	if silences.Matches(&switchyardv1.Silence{}, labels) {
		t.Error("a silence without matchers matches")
	}
}

func TestStore(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	ctx := context.Background()
	st, err := silences.Open(ctx, js, topology.Topology{})
	if err != nil {
		t.Fatal(err)
	}
	var now atomic.Pointer[time.Time]
	set := func(tm time.Time) { now.Store(&tm) }
	set(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	st = st.WithClock(func() time.Time { return *now.Load() })
	t0 := *now.Load()

	// Saying what to give is part of the behaviour (the message reaches the
	// operator through the API).
	if _, err := st.Create(ctx, silences.Spec{EndsAt: t0.Add(time.Hour)}); !errors.Is(err, silences.ErrInvalid) || !strings.Contains(err.Error(), "at least one matcher") {
		t.Errorf("Create without matchers = %v", err)
	}
	if _, err := st.Create(ctx, silences.Spec{Matchers: matchers(t, "destination=erp"), EndsAt: t0.Add(-time.Minute)}); !errors.Is(err, silences.ErrInvalid) {
		t.Errorf("Create ending in the past = %v", err)
	}
	if _, err := st.Create(ctx, silences.Spec{Matchers: matchers(t, "destination=erp"), EndsAt: t0.Add(100 * 24 * time.Hour)}); !errors.Is(err, silences.ErrInvalid) {
		t.Errorf("Create for 100 days = %v", err)
	}

	watchCtx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	live, err := st.Watch(watchCtx, natstest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	erp := map[string]string{"rule": "DeliveryDeadLettered", "destination": "erp"}
	sil, err := st.Create(ctx, silences.Spec{Matchers: matchers(t, "destination=erp"), EndsAt: t0.Add(time.Hour), CreatedBy: "alice", Comment: "ERP maintenance"})
	if err != nil {
		t.Fatal(err)
	}
	waitfor.True(t, "the watch sees the silence", func() bool { return live.Muting(erp, t0) == sil.Id })
	if got := live.Muting(map[string]string{"destination": "crm"}, t0); got != "" {
		t.Errorf("crm muted by %s", got)
	}
	if got := live.Muting(erp, t0.Add(2*time.Hour)); got != "" {
		t.Errorf("muted after the silence ended, by %s", got)
	}

	got, err := st.Get(ctx, sil.Id)
	if err != nil || got.CreatedBy != "alice" || silences.State(got, t0) != "active" {
		t.Fatalf("Get = %v, %v", got, err)
	}
	if _, err := st.Get(ctx, "../../etc"); !errors.Is(err, silences.ErrNotFound) {
		t.Errorf("Get(bad id) = %v, want ErrNotFound", err)
	}

	set(t0.Add(10 * time.Minute))
	exp, err := st.Expire(ctx, sil.Id, "bob")
	if err != nil || exp.ExpiredBy != "bob" || silences.State(exp, *now.Load()) != "expired" {
		t.Fatalf("Expire = %v, %v", exp, err)
	}
	waitfor.True(t, "the watch sees the expiry", func() bool { return live.Muting(erp, *now.Load()) == "" })

	list, err := st.List(ctx)
	if err != nil || len(list) != 1 {
		t.Fatalf("List = %v, %v", list, err)
	}
	set(t0.Add(silences.Retention + time.Hour))
	if list, err := st.List(ctx); err != nil || len(list) != 0 {
		t.Errorf("List after retention = %v, %v; want the ended silence removed", list, err)
	}
	if _, err := st.Expire(ctx, sil.Id, "bob"); !errors.Is(err, silences.ErrNotFound) {
		t.Errorf("Expire of a removed silence = %v, want ErrNotFound", err)
	}
}
