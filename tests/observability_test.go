package tests

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"go.yaml.in/yaml/v3"

	"github.com/switchyard/switchyard/pkg/testing/slacktest"
	"github.com/switchyard/switchyard/pkg/testing/waitfor"
)

// The files under deployments/observability (the Grafana dashboard, the
// Prometheus alert rules) and the README's metric reference are checked
// against what the services really export, scraped after real traffic.

var (
	observability  = filepath.Join(repoRoot, "deployments/observability")
	rulesDir       = filepath.Join(observability, "prometheus/rules")
	dashboardPath  = filepath.Join(observability, "grafana/dashboards/switchyard.json")
	readmePath     = filepath.Join(repoRoot, "README.md")
	runbookURLBase = "https://github.com/switchyard/switchyard/blob/main/README.md#"
)

// promtoolInstall says how to get promtool.
const promtoolInstall = "run `make promtool` (it extracts promtool from Debian's prometheus package into ./bin, " +
	"without installing or starting a server), or `apt-get install -y prometheus` as root"

// findPromtool returns promtool from PATH or ./bin; the test fails without
// it: the rules must be checked.
func findPromtool(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("promtool"); err == nil {
		return p
	}
	p, err := filepath.Abs(filepath.Join(repoRoot, "bin/promtool"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("promtool is not on PATH nor in ./bin: %s", promtoolInstall)
	}
	return p
}

// The alert rules are valid (promtool check rules), pass their unit tests
// (promtool test rules: each rule fires over its threshold, not under it,
// and resolves as the notifier's does), and the Prometheus configuration
// example loads them.
func TestAlertRulesPassPromtool(t *testing.T) {
	promtool := findPromtool(t)
	for _, c := range []struct {
		dir  string
		args []string
	}{
		{rulesDir, []string{"check", "rules", "switchyard.rules.yml"}},
		{rulesDir, []string{"test", "rules", "switchyard.rules.test.yml"}},
		{filepath.Join(observability, "prometheus"), []string{"check", "config", "prometheus.yml"}},
	} {
		cmd := exec.Command(promtool, c.args...)
		cmd.Dir = c.dir
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "SUCCESS") {
			t.Errorf("promtool %s (in %s): %v\n%s", strings.Join(c.args, " "), c.dir, err, out)
		}
	}
}

// alertRules is switchyard.rules.yml.
type alertRules struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Record      string            `yaml:"record"`
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func loadAlertRules(t *testing.T) alertRules {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(rulesDir, "switchyard.rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var r alertRules
	if err := yaml.Unmarshal(raw, &r); err != nil {
		t.Fatalf("switchyard.rules.yml: %v", err)
	}
	return r
}

// Every notifier rule (the README's Alerts table) has a Prometheus alert
// of the same name, and every alert says what it is and where its runbook
// is, with a severity the notifier uses and the labels of its rule.
func TestAlertRulesMirrorTheNotifiersRules(t *testing.T) {
	readme := readFile(t, readmePath)
	notifierRules := readmeAlertRules(t, readme)
	anchors := headingAnchors(readme)
	alerts := map[string]bool{}
	for _, g := range loadAlertRules(t).Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			alerts[r.Alert] = true
			labels, ok := notifierRules[r.Alert]
			if !ok {
				t.Errorf("alert %s is not one of the notifier's rules (README, Alerts): %v", r.Alert, slices.Sorted(maps.Keys(notifierRules)))
				continue
			}
			if s := r.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("alert %s: severity %q, want warning or critical", r.Alert, s)
			}
			for _, l := range labels {
				// by (l), or a recorded series of level l (l:metric:ops).
				if !strings.Contains(r.Expr, "by ("+l) && !strings.Contains(r.Expr, l+":") {
					t.Errorf("alert %s: the notifier's rule has label %s; the expression does not aggregate by it", r.Alert, l)
				}
			}
			for _, a := range []string{"summary", "description", "runbook_url"} {
				if r.Annotations[a] == "" {
					t.Errorf("alert %s has no %s annotation", r.Alert, a)
				}
			}
			anchor, ok := strings.CutPrefix(r.Annotations["runbook_url"], runbookURLBase)
			if !ok || !anchors[anchor] {
				t.Errorf("alert %s: runbook_url %q is not a section of README.md (%s<anchor>)", r.Alert, r.Annotations["runbook_url"], runbookURLBase)
			}
		}
	}
	for rule := range notifierRules {
		if !alerts[rule] {
			t.Errorf("the notifier's rule %s has no Prometheus alert in switchyard.rules.yml", rule)
		}
	}
}

// The dashboard, the alert rules and the README's metric reference name
// what the services export: the four services run as separate processes
// would (each its own registry and /metrics), with real traffic (webhooks,
// published events, a delivery after a retry, dead letters, a refused
// credential, an alert sent to Slack), and every process is scraped.
func TestObservabilityFilesNameExportedMetrics(t *testing.T) {
	warehouse := newPartner(t, func(attempt int) int {
		if attempt == 1 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	crm := newPartner(t, always(http.StatusInternalServerError))
	erp := newPartner(t, always(http.StatusUnauthorized))
	slack := slacktest.New(t)
	ordersAPI := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`{"orders": [{"id": 1}, {"id": 2}]}`))
	}))
	t.Cleanup(ordersAPI.Close)
	p := startProcesses(t, map[string]string{
		"WAREHOUSE_URL": warehouse.URL, "CRM_URL": crm.URL, "ERP_URL": erp.URL, "SLACK_URL": slack.WebhookURL(),
		"ORDERS_URL": ordersAPI.URL,
	})

	sw := mustStandard(t)
	post := func(path, body string, header map[string]string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, p.Ingress.URL+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	body := `{"type":"order.paid","data":{"id":42}}`
	now := time.Now()
	for _, c := range []struct {
		what, path string
		header     map[string]string
		want       int
	}{
		{"signed webhook", "/webhooks/shop", map[string]string{"webhook-id": "msg_1", "webhook-timestamp": fmt.Sprint(now.Unix()),
			"webhook-signature": sw.Sign("msg_1", now, []byte(body))}, http.StatusAccepted},
		{"forged webhook", "/webhooks/shop", map[string]string{"webhook-id": "msg_2", "webhook-timestamp": fmt.Sprint(now.Unix()),
			"webhook-signature": "v1,Zm9yZ2Vk"}, http.StatusUnauthorized},
		{"published event", "/v1/events", map[string]string{"Authorization": "Bearer orders-publish-key-0001",
			"Idempotency-Key": "order-42-paid"}, http.StatusAccepted},
		{"event without a key", "/v1/events", map[string]string{"Idempotency-Key": "order-43-paid"}, http.StatusUnauthorized},
	} {
		if got := post(c.path, body, c.header); got != c.want {
			t.Fatalf("%s: status %d, want %d", c.what, got, c.want)
		}
	}
	// The deliveries settle: the warehouse's after a retry, crm's as a dead
	// letter after two attempts, erp's refused credentials at once; the
	// notifier sends the dead letters' alert.
	waitScraped(t, p.Ops["dispatcher"], "deliveries, a retry and dead letters", func(m map[string]*dto.MetricFamily) bool {
		return value(m, "switchyard_dispatcher_attempts_total", map[string]string{"destination": "warehouse", "outcome": "delivered"}) == 2 &&
			value(m, "switchyard_dispatcher_attempts_total", map[string]string{"destination": "warehouse", "outcome": "retryable"}) == 2 &&
			value(m, "switchyard_dispatcher_dead_letters_total", map[string]string{"destination": "crm"}) == 1 &&
			value(m, "switchyard_dispatcher_auth_dead_letters_total", map[string]string{"destination": "erp"}) == 1 &&
			m["switchyard_dispatcher_consumer_ack_pending"] != nil
	})
	waitfor.True(t, "an alert in Slack", func() bool { return len(slack.Accepted()) > 0 })
	waitScraped(t, p.Ops["notifier"], "the alert counted as delivered", func(m map[string]*dto.MetricFamily) bool {
		return value(m, "switchyard_notifier_notifications_total", map[string]string{"outcome": "delivered"}) > 0
	})
	waitScraped(t, p.Ops["auditor"], "audit records written", func(m map[string]*dto.MetricFamily) bool {
		return value(m, "switchyard_auditor_written_total", map[string]string{"stream": "AUDIT"}) > 0
	})
	waitScraped(t, p.Ops["ingress"], "the refusals counted, and a poll round", func(m map[string]*dto.MetricFamily) bool {
		return value(m, "switchyard_ingress_requests_total", map[string]string{"source": "shop", "outcome": "bad_signature"}) == 1 &&
			value(m, "switchyard_ingress_api_events_total", map[string]string{"api_key": "_unauthenticated"}) == 1 &&
			value(m, "switchyard_poll_items_total", map[string]string{"source": "orders-api", "result": "new"}) == 2
	})

	exported := newExportedMetrics()
	for name, ops := range p.Ops {
		exported.add(name, scrape(t, ops))
	}
	rules := loadAlertRules(t)
	q := &promql{exported: exported, recorded: map[string]bool{}}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				q.recorded[r.Record] = true
			}
		}
	}

	t.Run("dashboard", func(t *testing.T) {
		exprs := dashboardQueries(t)
		if len(exprs) < 30 {
			t.Fatalf("found %d queries in the dashboard; the extraction is broken", len(exprs))
		}
		for _, e := range exprs {
			for _, problem := range q.check(e.where, e.expr) {
				t.Error(problem)
			}
		}
	})

	t.Run("alert rules", func(t *testing.T) {
		n := 0
		for _, g := range rules.Groups {
			for _, r := range g.Rules {
				n++
				for _, problem := range q.check("rule "+r.Record+r.Alert, r.Expr) {
					t.Error(problem)
				}
			}
		}
		if n < 10 {
			t.Fatalf("found %d rules; the file is not read", n)
		}
	})

	t.Run("README metric reference", func(t *testing.T) {
		documented := readmeMetrics(t, readFile(t, readmePath))
		for _, name := range slices.Sorted(maps.Keys(exported.families)) {
			f := exported.families[name]
			if !strings.HasPrefix(name, "switchyard_") {
				continue
			}
			want := readmeMetric{Type: typeName(f.mf), Labels: labelNames(f.mf)}
			got, ok := documented[name]
			switch {
			case !ok:
				t.Errorf("README Metrics: add a row for `%s` (%s, labels %s), exported by the %s", name, want.Type, want.labelText(), f.process)
			case got.Type != want.Type:
				t.Errorf("README Metrics: `%s` is a %s, the table says %s", name, want.Type, got.Type)
			case !slices.Equal(got.Labels, want.Labels):
				t.Errorf("README Metrics: `%s` has labels %s, the table says %s", name, want.labelText(), got.labelText())
			}
		}
		for name := range documented {
			if _, ok := exported.families[name]; !ok {
				t.Errorf("README Metrics: remove the row for `%s`: no service exports it", name)
			}
		}
	})
}

// query is one PromQL expression of the dashboard.
type query struct{ where, expr string }

// dashboardQueries are the dashboard's PromQL: its panels' targets and
// its template variables' queries. It also checks what every Switchyard
// dashboard needs: a Prometheus data source variable that every panel
// uses, and the destination and source variables.
func dashboardQueries(t *testing.T) []query {
	t.Helper()
	var d struct {
		SchemaVersion int `json:"schemaVersion"`
		UID           string
		Templating    struct {
			List []struct {
				Name  string          `json:"name"`
				Type  string          `json:"type"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
		Panels []dashboardPanel `json:"panels"`
	}
	if err := json.Unmarshal([]byte(readFile(t, dashboardPath)), &d); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	if d.SchemaVersion < 39 {
		t.Errorf("dashboard schemaVersion %d, want 39 or newer", d.SchemaVersion)
	}
	var qs []query
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
		switch v.Type {
		case "datasource":
			var ds string
			if err := json.Unmarshal(v.Query, &ds); err != nil || ds != "prometheus" {
				t.Errorf("variable %s: data source type %s, want prometheus", v.Name, v.Query)
			}
		case "query":
			var text string
			if json.Unmarshal(v.Query, &text) != nil {
				var obj struct{ Query string }
				if err := json.Unmarshal(v.Query, &obj); err != nil {
					t.Fatalf("variable %s: query %s: %v", v.Name, v.Query, err)
				}
				text = obj.Query
			}
			expr, label, err := grafanaQuery(text)
			if err != nil {
				t.Errorf("variable %s: %v", v.Name, err)
				continue
			}
			qs = append(qs, query{"variable " + v.Name, expr})
			if label != "" {
				// The label must be on the series selected: grouping by it
				// checks that.
				qs = append(qs, query{"variable " + v.Name, fmt.Sprintf("count by (%s) (%s)", label, expr)})
			}
		}
	}
	for name, typ := range map[string]string{"datasource": "datasource", "destination": "query", "source": "query"} {
		if vars[name] != typ {
			t.Errorf("dashboard variable %s: type %q, want %s", name, vars[name], typ)
		}
	}
	var walk func(panels []dashboardPanel)
	ids := map[int]bool{}
	walk = func(panels []dashboardPanel) {
		for _, p := range panels {
			if ids[p.ID] {
				t.Errorf("panel %q: id %d is used twice", p.Title, p.ID)
			}
			ids[p.ID] = true
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if p.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q: data source %q, want ${datasource}", p.Title, p.Datasource.UID)
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				qs = append(qs, query{fmt.Sprintf("panel %q", p.Title), tg.Expr})
			}
		}
	}
	walk(d.Panels)
	return qs
}

type dashboardPanel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Panels []dashboardPanel `json:"panels"`
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// readmeMetric is a row of the README's metric reference.
type readmeMetric struct {
	Type   string
	Labels []string
}

func (m readmeMetric) labelText() string {
	if len(m.Labels) == 0 {
		return "none"
	}
	return strings.Join(m.Labels, ", ")
}

// metricRow is a row of a metrics table: | `name` | type | `label`, … | meaning |.
var metricRow = regexp.MustCompile("^\\| `(switchyard_[a-z0-9_]+)` \\| ([a-z]+) \\| ([^|]*) \\|")

// readmeMetrics reads the tables of the README's Metrics section.
func readmeMetrics(t *testing.T, readme string) map[string]readmeMetric {
	t.Helper()
	section := markdownSection(t, readme, "### Metrics")
	out := map[string]readmeMetric{}
	for _, line := range strings.Split(section, "\n") {
		if !strings.HasPrefix(line, "| `switchyard_") {
			continue
		}
		m := metricRow.FindStringSubmatch(line)
		if m == nil {
			t.Errorf("README Metrics: row %q is not | `name` | type | labels | meaning |", line)
			continue
		}
		var labels []string
		for _, l := range strings.Split(m[3], ",") {
			if l = strings.Trim(strings.TrimSpace(l), "`"); l != "" && l != "—" {
				labels = append(labels, l)
			}
		}
		slices.Sort(labels)
		if _, dup := out[m[1]]; dup {
			t.Errorf("README Metrics: `%s` has two rows", m[1])
		}
		out[m[1]] = readmeMetric{Type: m[2], Labels: labels}
	}
	return out
}

// readmeAlertRules reads the rules of the README's Alerts table, with
// their labels.
func readmeAlertRules(t *testing.T, readme string) map[string][]string {
	t.Helper()
	row := regexp.MustCompile("^\\| `([A-Za-z]+)` \\| ([a-z, ]+) \\|")
	out := map[string][]string{}
	for _, line := range strings.Split(markdownSection(t, readme, "## Alerts"), "\n") {
		if m := row.FindStringSubmatch(line); m != nil {
			var labels []string
			// "destination or source": the rule is labelled with either.
			for _, l := range strings.FieldsFunc(strings.ReplaceAll(m[2], " or ", ","), func(r rune) bool { return r == ',' }) {
				if l = strings.TrimSpace(l); l != "none" {
					labels = append(labels, l)
				}
			}
			out[m[1]] = labels
		}
	}
	if len(out) < 8 {
		t.Fatalf("README Alerts table: %d rules read, want the notifier's 8", len(out))
	}
	return out
}

// markdownSection is the text from a heading to the next heading of the
// same or a higher level.
func markdownSection(t *testing.T, doc, heading string) string {
	t.Helper()
	i := strings.Index(doc, "\n"+heading+"\n")
	if i < 0 {
		t.Fatalf("README.md has no %q section", heading)
	}
	rest := doc[i+len(heading)+2:]
	level := strings.Split(heading, " ")[0]
	for j := 1; j <= len(level); j++ {
		if k := strings.Index(rest, "\n"+strings.Repeat("#", j)+" "); k >= 0 {
			rest = rest[:k]
		}
	}
	return rest
}
