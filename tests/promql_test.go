package tests

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// promql checks PromQL expressions (from the dashboard and the alert rules)
// against what the services export: every metric they select is exported
// (or recorded by a rule, or made by Prometheus itself), every label they
// match or group by exists on it, and every label value they name exactly
// (outcome="retryable", a regular expression listing values) is one that a
// series has.
type promql struct {
	exported *exportedMetrics
	// recorded are names the rules record; their labels are not checked.
	recorded map[string]bool
}

// prometheusSeries are series Prometheus makes itself, with their labels.
var prometheusSeries = map[string][]string{
	"up":               {"job", "instance"},
	"ALERTS":           nil, // labels of the alert rules: not checked
	"ALERTS_FOR_STATE": nil,
}

// targetLabels are added by Prometheus to every scraped series.
var targetLabels = []string{"job", "instance"}

// grafanaVariables stand for Grafana's interval variables in a query, so
// that it parses.
var grafanaVariables = strings.NewReplacer("$__rate_interval", "5m", "${__rate_interval}", "5m",
	"$__interval", "1m", "${__interval}", "1m", "$__range", "1h", "${__range}", "1h")

var promqlParser = parser.NewParser(parser.Options{})

// check returns the problems of one expression; where names it.
func (q *promql) check(where, expr string) []string {
	e, err := promqlParser.ParseExpr(grafanaVariables.Replace(expr))
	if err != nil {
		return []string{fmt.Sprintf("%s: %q does not parse: %v", where, expr, err)}
	}
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, where+": "+fmt.Sprintf(format, args...)) }
	parser.Inspect(e, func(node parser.Node, _ []parser.Node) error {
		switch n := node.(type) {
		case *parser.VectorSelector:
			q.checkSelector(n, add)
		case *parser.AggregateExpr:
			if len(n.Grouping) > 0 && !n.Without {
				have, known := q.labelsUnder(n.Expr)
				for _, l := range n.Grouping {
					if known && !have[l] {
						add("%s groups by %q, a label none of its series has", n, l)
					}
				}
			}
		}
		return nil
	})
	return problems
}

// checkSelector checks a selector's metric name and matchers.
func (q *promql) checkSelector(vs *parser.VectorSelector, add func(string, ...any)) {
	name := vs.Name
	for _, m := range vs.LabelMatchers {
		if m.Name != labels.MetricName || name != "" {
			continue
		}
		if m.Type == labels.MatchEqual {
			name = m.Value
			continue
		}
		// A pattern of names: it must select something.
		if !slices.ContainsFunc(q.names(), m.Matches) {
			add("%s selects no metric that the services export", vs)
		}
		return
	}
	if q.recorded[name] {
		return
	}
	if lbls, ok := prometheusSeries[name]; ok {
		for _, m := range vs.LabelMatchers {
			if lbls != nil && m.Name != labels.MetricName && !slices.Contains(lbls, m.Name) {
				add("%s matches label %q, which %s does not have", vs, m.Name, name)
			}
		}
		return
	}
	have, ok := q.exported.series[name]
	if !ok {
		add("metric %s is not exported by any service (nor recorded by a rule)", name)
		return
	}
	for _, m := range vs.LabelMatchers {
		if m.Name == labels.MetricName || slices.Contains(targetLabels, m.Name) {
			continue
		}
		values, ok := have[m.Name]
		if !ok {
			add("%s matches label %q, which %s does not have", vs, m.Name, name)
			continue
		}
		for _, v := range namedValues(m) {
			if !values[v] {
				add("%s: no series of %s has %s=%q (it has %s)", vs, name, m.Name, v, strings.Join(slices.Sorted(maps.Keys(values)), ", "))
			}
		}
	}
}

// literalAlternation is a regular expression that only lists values.
var literalAlternation = regexp.MustCompile(`^[A-Za-z0-9_.+-]+(\|[A-Za-z0-9_.+-]+)*$`)

// namedValues are the label values a matcher names exactly: its value, or
// the alternatives of a regular expression that only lists values. Values
// with Grafana variables name nothing.
func namedValues(m *labels.Matcher) []string {
	switch {
	case strings.Contains(m.Value, "$") || m.Value == "":
		return nil
	case m.Type == labels.MatchEqual || m.Type == labels.MatchNotEqual:
		return []string{m.Value}
	case (m.Type == labels.MatchRegexp || m.Type == labels.MatchNotRegexp) && literalAlternation.MatchString(m.Value) && !strings.Contains(m.Value, "."):
		return strings.Split(m.Value, "|")
	}
	return nil
}

// labelsUnder are the labels the series selected under e can have, with
// the labels label_replace adds; known is false when e selects a recorded
// series or one of Prometheus's own, whose labels are not known here.
func (q *promql) labelsUnder(e parser.Expr) (have map[string]bool, known bool) {
	have, known = map[string]bool{}, true
	for _, l := range targetLabels {
		have[l] = true
	}
	parser.Inspect(e, func(node parser.Node, _ []parser.Node) error {
		switch n := node.(type) {
		case *parser.VectorSelector:
			if q.recorded[n.Name] || n.Name == "" {
				known = false
			}
			if _, ok := prometheusSeries[n.Name]; ok {
				known = false
			}
			if _, ok := q.exported.series[n.Name]; !ok {
				known = false // reported as not exported
			}
			for l := range q.exported.series[n.Name] {
				have[l] = true
			}
		case *parser.Call:
			if n.Func.Name == "label_replace" && len(n.Args) > 1 {
				if s, ok := n.Args[1].(*parser.StringLiteral); ok {
					have[s.Val] = true
				}
			}
		}
		return nil
	})
	return have, known
}

// names are the series names the services export, sorted.
func (q *promql) names() []string { return slices.Sorted(maps.Keys(q.exported.series)) }

// grafanaQuery turns a Grafana Prometheus template variable query into the
// PromQL it runs: label_values(selector, label) selects selector (and
// needs label on it), query_result(expr) runs expr. label is "" when the
// query names none.
func grafanaQuery(query string) (expr, label string, err error) {
	query = strings.TrimSpace(query)
	switch {
	case strings.HasPrefix(query, "label_values(") && strings.HasSuffix(query, ")"):
		args := strings.TrimSuffix(strings.TrimPrefix(query, "label_values("), ")")
		i := strings.LastIndex(args, ",")
		if i < 0 {
			return "", "", fmt.Errorf("label_values(%s) without a selector selects every series: name one", args)
		}
		return strings.TrimSpace(args[:i]), strings.TrimSpace(args[i+1:]), nil
	case strings.HasPrefix(query, "query_result(") && strings.HasSuffix(query, ")"):
		return strings.TrimSuffix(strings.TrimPrefix(query, "query_result("), ")"), "", nil
	}
	return query, "", nil
}
