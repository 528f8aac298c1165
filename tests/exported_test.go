package tests

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/svcboot"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
	"github.com/switchyard/switchyard/pkg/testing/pgtest"
	"github.com/switchyard/switchyard/pkg/testing/waitfor"
	"github.com/switchyard/switchyard/services/auditor"
	"github.com/switchyard/switchyard/services/dispatcher"
	"github.com/switchyard/switchyard/services/ingress"
	"github.com/switchyard/switchyard/services/notifier"
)

// processes are the four services, each started as its main starts it
// (svcboot: its own NATS connection, Prometheus registry with the Go and
// process collectors, and ops handler), in this test process.
type processes struct {
	// Ops are the ops servers (/metrics) by service name.
	Ops     map[string]*httptest.Server
	Ingress *httptest.Server
}

// observedConfig is a demo-like configuration: a webhook source, a polled
// source (ORDERS_URL, by default an address nobody answers), a publish API
// key, a destination that fails once then delivers, one that always fails
// (a dead letter after its second attempt), one that refuses its
// credentials, and alerts sent to Slack at once. ${…} are filled in by
// startProcesses.
const observedConfig = `
nats:
  url: ${NATS_URL}
database_url: ${DATABASE_URL}
ops:
  listen: 127.0.0.1:0
ingress:
  listen: 127.0.0.1:0
  api_keys:
    - {name: orders, key: orders-publish-key-0001}
auditor:
  listen: 127.0.0.1:0
sources:
  - name: shop
    scheme: standard-webhooks
    secrets: ["` + vectorSecret + `"]
  - name: orders-api
    poll:
      url: ${ORDERS_URL:-http://127.0.0.1:9/orders}
      interval: 1s
      allow_private_network: true
      items: $.orders
      id: $.id
destinations:
  - name: warehouse
    url: ${WAREHOUSE_URL}
    subjects: ["webhooks.shop.>", "events.order.>"]
    timeout: 500ms
    retry: {backoff: [1s], max_attempts: 3}
    allow_private_network: true
  - name: crm
    url: ${CRM_URL}
    subjects: ["events.order.>"]
    timeout: 500ms
    retry: {backoff: [1s], max_attempts: 2}
    allow_private_network: true
  - name: erp
    url: ${ERP_URL}
    subjects: ["events.order.>"]
    timeout: 500ms
    retry: {backoff: [1s], max_attempts: 2}
    allow_private_network: true
alerts:
  slack_webhook_url: ${SLACK_URL}
  group_wait: 100ms
  evaluation_interval: 200ms
`

// startProcesses runs the four services with observedConfig until the test
// ends. vars fills the configuration's ${…} besides NATS_URL and
// DATABASE_URL.
func startProcesses(t *testing.T, vars map[string]string) *processes {
	t.Helper()
	ns := natstest.Start(t)
	env := map[string]string{"NATS_URL": ns.URL, "DATABASE_URL": pgtest.Schema(t)}
	for k, v := range vars {
		env[k] = v
	}
	cfg, err := config.Parse([]byte(observedConfig), func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	})
	if err != nil {
		t.Fatalf("test configuration: %v", err)
	}
	p := &processes{Ops: map[string]*httptest.Server{}}
	// What each service's main builds (services/<name>/cmd/<name>/run.go),
	// except that servers listen on httptest's ports.
	builds := map[string]func(ctx context.Context, env *svcboot.Env) (func(context.Context) error, error){
		"ingress": func(ctx context.Context, env *svcboot.Env) (func(context.Context) error, error) {
			ic := ingress.FromConfig(env.Config, env.Log, env.Registry)
			var err error
			if ic.Tracing, err = env.Tracing("ingress"); err != nil {
				return nil, err
			}
			ing, err := ingress.New(env.JS, auditlog.NewEmitter(env.JS, "ingress"), ic)
			if err != nil {
				return nil, err
			}
			if err := ing.Provision(ctx); err != nil {
				return nil, err
			}
			p.Ingress = httptest.NewServer(ing.Handler())
			t.Cleanup(p.Ingress.Close)
			return func(ctx context.Context) error {
				err := ing.Poll(ctx)
				cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				return errors.Join(err, ing.Close(cctx))
			}, nil
		},
		"dispatcher": func(ctx context.Context, env *svcboot.Env) (func(context.Context) error, error) {
			dc := dispatcher.FromConfig(env.Config, env.Log, env.Registry)
			dc.Tuning = dispatcher.Tuning{FetchWait: 250 * time.Millisecond, ShutdownGrace: 2 * time.Second}
			var err error
			if dc.Tracing, err = env.Tracing("dispatcher"); err != nil {
				return nil, err
			}
			d, err := dispatcher.New(env.JS, auditlog.NewEmitter(env.JS, "dispatcher"), dc)
			if err != nil {
				return nil, err
			}
			return d.Run, d.Provision(ctx)
		},
		"notifier": func(_ context.Context, env *svcboot.Env) (func(context.Context) error, error) {
			n, err := notifier.New(env.JS, auditlog.NewEmitter(env.JS, "notifier"), notifier.FromConfig(env.Config, env.Log, env.Registry))
			if err != nil {
				return nil, err
			}
			return n.Run, nil
		},
		"auditor": func(_ context.Context, env *svcboot.Env) (func(context.Context) error, error) {
			ac := auditor.FromConfig(env.Config, env.Log, env.Registry)
			var err error
			if ac.Tracing, err = env.Tracing("auditor"); err != nil {
				return nil, err
			}
			a, err := auditor.New(env.JS, auditlog.NewEmitter(env.JS, "auditor"), ac)
			if err != nil {
				return nil, err
			}
			t.Cleanup(func() { _ = a.Close() })
			return a.RunWriter, nil
		},
	}
	ctx := context.Background()
	for _, name := range []string{"auditor", "dispatcher", "notifier", "ingress"} {
		senv, err := svcboot.Start(ctx, cfg, svcboot.Options{Name: name, LogOutput: testLog{t, name}})
		if err != nil {
			t.Fatalf("start %s: %v", name, err)
		}
		t.Cleanup(senv.Close)
		run, err := builds[name](ctx, senv)
		if err != nil {
			t.Fatalf("build %s: %v", name, err)
		}
		natstest.Go(t, name, run)
		p.Ops[name] = httptest.NewServer(senv.OpsHandler())
		t.Cleanup(p.Ops[name].Close)
	}
	return p
}

// testLog writes a process's log lines to the test log.
type testLog struct {
	t    *testing.T
	name string
}

func (w testLog) Write(b []byte) (int, error) {
	defer func() { _ = recover() }() // a line after the test ended
	w.t.Log(w.name + ": " + strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}

// scrape reads a process's /metrics.
func scrape(t *testing.T, ops *httptest.Server) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(ops.URL + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s: status %d", ops.URL, resp.StatusCode)
	}
	dec := expfmt.NewDecoder(resp.Body, expfmt.ResponseFormat(resp.Header))
	families := map[string]*dto.MetricFamily{}
	for {
		var mf dto.MetricFamily
		if err := dec.Decode(&mf); errors.Is(err, io.EOF) {
			return families
		} else if err != nil {
			t.Fatalf("decode %s/metrics: %v", ops.URL, err)
		}
		families[mf.GetName()] = &mf
	}
}

// value is the sum of a family's series whose labels include want.
func value(families map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	var sum float64
	for _, m := range families[name].GetMetric() {
		match := true
		for k, v := range want {
			if !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool { return l.GetName() == k && l.GetValue() == v }) {
				match = false
			}
		}
		if match {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue() + float64(m.GetHistogram().GetSampleCount())
		}
	}
	return sum
}

// exportedMetrics is what the processes export: each family with the
// process that exports it, and the label values of every series name a
// query can select (a histogram's _bucket, _sum and _count).
type exportedMetrics struct {
	families map[string]exportedFamily
	// series: name → label → values.
	series map[string]map[string]map[string]bool
}

type exportedFamily struct {
	process string
	mf      *dto.MetricFamily
}

func newExportedMetrics() *exportedMetrics {
	return &exportedMetrics{families: map[string]exportedFamily{}, series: map[string]map[string]map[string]bool{}}
}

// add records a process's families.
func (e *exportedMetrics) add(process string, families map[string]*dto.MetricFamily) {
	for name, mf := range families {
		if _, ok := e.families[name]; !ok || strings.HasPrefix(name, "switchyard_"+process) {
			e.families[name] = exportedFamily{process: process, mf: mf}
		}
		names := []string{name}
		var extra map[string]string // a label of one of the names only
		switch mf.GetType() {
		case dto.MetricType_HISTOGRAM:
			names = []string{name + "_bucket", name + "_sum", name + "_count"}
			extra = map[string]string{name + "_bucket": "le"}
		case dto.MetricType_SUMMARY:
			names = []string{name, name + "_sum", name + "_count"}
			extra = map[string]string{name: "quantile"}
		}
		for _, n := range names {
			labels := e.series[n]
			if labels == nil {
				labels = map[string]map[string]bool{}
				e.series[n] = labels
			}
			if l, ok := extra[n]; ok && labels[l] == nil {
				labels[l] = map[string]bool{}
			}
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if labels[l.GetName()] == nil {
						labels[l.GetName()] = map[string]bool{}
					}
					labels[l.GetName()][l.GetValue()] = true
				}
			}
		}
	}
}

// labelNames are the label names of a family's series, sorted (a
// histogram's le is not one: it names a bucket of a series).
func labelNames(mf *dto.MetricFamily) []string {
	var names []string
	for _, m := range mf.GetMetric() {
		for _, l := range m.GetLabel() {
			if !slices.Contains(names, l.GetName()) {
				names = append(names, l.GetName())
			}
		}
	}
	slices.Sort(names)
	return names
}

// typeName is a family's type as the README and Prometheus write it.
func typeName(mf *dto.MetricFamily) string {
	return strings.ToLower(mf.GetType().String())
}

// waitScraped waits until cond holds for a process's metrics.
func waitScraped(t *testing.T, ops *httptest.Server, what string, cond func(map[string]*dto.MetricFamily) bool) {
	t.Helper()
	waitfor.True(t, what, func() bool { return cond(scrape(t, ops)) })
}
