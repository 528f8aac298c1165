package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestRunWritesEveryRow runs the whole harness with tiny durations and
// checks the table and bench.json it produces: every section's rows are
// there and well formed. It asserts nothing about the figures' size (that
// is the benchmark's job, not a test's).
func TestRunWritesEveryRow(t *testing.T) {
	out := filepath.Join(t.TempDir(), "bench.json")
	profiles := t.TempDir()
	o, err := parseFlags(flag.NewFlagSet("benchtable", flag.ContinueOnError), []string{
		"-out", out, "-duration", "200ms", "-conns", "8", "-delivery-events", "300",
		"-audit-backlog", "300", "-mem-rates", "200", "-mem-duration", "500ms",
		"-growth-destinations", "1,3", "-growth-deliveries", "30", "-audit-events", "200", "-query-runs", "2",
		"-heap-profiles", profiles,
	})
	if err != nil {
		t.Fatal(err)
	}
	o.OpenRates, o.E2ERates = []int{300}, []int{200}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var table bytes.Buffer
	if err := run(ctx, o, &table); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var rep report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("bench.json: %v\n%s", err, b)
	}
	want := map[string]int{"baselines": 4, "ingress": 5, "delivery": 1, "e2e": 1, "auditor": 1, "memory": 1, "ratio": 2,
		// nats-server and the four services; delivery and ingress per
		// destination count; one per API query.
		"services": 5, "growth": 4, "queries": len(apiQueries)}
	got := map[string]int{}
	for _, r := range rep.Rows {
		got[r.Section]++
		if r.Rate <= 0 {
			t.Errorf("%s / %s: rate %v", r.Section, r.Name, r.Rate)
		}
		if l := r.Latency; l != nil && !(l.P50 > 0 && l.P50 <= l.P99 && l.P99 <= l.P999) {
			t.Errorf("%s / %s: latency quantiles out of order: %+v", r.Section, r.Name, *l)
		}
		if (r.Section == "memory" || r.Section == "services") && r.PeakRSSMiB <= 0 {
			t.Errorf("%s / %s: no peak RSS", r.Section, r.Name)
		}
		if !strings.Contains(table.String(), "| "+r.Section+" | "+r.Name+" |") {
			t.Errorf("the table has no row %s / %s", r.Section, r.Name)
		}
	}
	for s, n := range want {
		if got[s] != n {
			t.Errorf("section %s: %d rows, want %d", s, got[s], n)
		}
	}
	// The all-in-one's heap profiles, taken from its ops listener's
	// /debug/pprof/heap (ops.pprof).
	for _, name := range []string{"all-in-one-200-early.pb.gz", "all-in-one-200-end.pb.gz"} {
		if fi, err := os.Stat(filepath.Join(profiles, name)); err != nil || fi.Size() == 0 {
			t.Errorf("heap profile %s: %v", name, err)
		}
	}
	if rep.Machine.CPUs < 1 || rep.LoadBefore == "" || rep.LoadAfter == "" || rep.Date.IsZero() || len(rep.Skipped) == 0 {
		t.Errorf("report header incomplete: %+v", rep)
	}
}

func TestWebhookBodyCarriesItsSendTime(t *testing.T) {
	at := time.Unix(1_700_000_000, 123456789)
	body := webhookBody(nil, at)
	if len(body) != bodySize {
		t.Fatalf("body is %d bytes, want %d", len(body), bodySize)
	}
	if !json.Valid(body) {
		t.Fatalf("body is not JSON: %s", body)
	}
	got, ok := sentTime(body)
	if !ok || !got.Equal(at) {
		t.Fatalf("sentTime = %v, %v; want %v", got, ok, at)
	}
	if _, ok := sentTime([]byte(`{"type":"order.created"}`)); ok {
		t.Fatal("sentTime found a time in a body without one")
	}
}

func TestLatencyQuantiles(t *testing.T) {
	var ds []time.Duration
	for i := 1000; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	q := latencyQuantiles(ds)
	if q != (quantiles{P50: 501, P99: 991, P999: 1000}) {
		t.Fatalf("quantiles %+v", q)
	}
	if latencyQuantiles(nil) != (quantiles{}) {
		t.Fatal("quantiles of nothing are not zero")
	}
}

func TestParseFlagsDefaults(t *testing.T) {
	for _, tc := range []struct {
		args         []string
		wantDuration time.Duration
		wantOpen     []int
	}{
		{nil, 3 * time.Second, []int{1000, 5000}},
		{[]string{"-long"}, 10 * time.Second, []int{1000, 5000, 10_000}},
	} {
		o, err := parseFlags(flag.NewFlagSet("benchtable", flag.ContinueOnError), tc.args)
		if err != nil {
			t.Fatalf("%q: %v", tc.args, err)
		}
		if o.Duration != tc.wantDuration || !slices.Equal(o.OpenRates, tc.wantOpen) {
			t.Errorf("%q: duration %s, open-loop rates %v; want %s, %v", tc.args, o.Duration, o.OpenRates, tc.wantDuration, tc.wantOpen)
		}
	}
}

func TestParseFlagsRefusesABadCount(t *testing.T) {
	for _, args := range [][]string{
		{"-growth-destinations", "1,0"},
		{"-mem-rates", "x"},
		{"-audit-events", "-1"},
		{"-query-runs", "-2"},
	} {
		if _, err := parseFlags(flag.NewFlagSet("benchtable", flag.ContinueOnError), args); err == nil {
			t.Errorf("%q: no error", args)
		}
	}
}

func TestParseFlagsRefusesUnknownSection(t *testing.T) {
	_, err := parseFlags(flag.NewFlagSet("benchtable", flag.ContinueOnError), []string{"-only", "ingress,egress"})
	if err == nil || !strings.Contains(err.Error(), `"egress"`) {
		t.Fatalf("err = %v, want one naming the unknown section", err)
	}
}
