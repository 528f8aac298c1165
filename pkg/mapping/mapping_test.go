package mapping_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/pkg/mapping"
)

func mustCompile(t *testing.T, s mapping.Spec) *mapping.Mapping {
	t.Helper()
	m, err := mapping.Compile(s)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return m
}

func read(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The filter of the issue: EU orders to one destination, the rest to
// another, over the parsed body (numbers as the partner wrote them).
func TestFilterSplitsEUOrders(t *testing.T) {
	t.Parallel()
	const eu = `data.shipping_address.country_code in ["AT","BE","DE","ES","FR","IE","IT","NL","PL","PT"]`
	euDest := mustCompile(t, mapping.Spec{Filter: eu})
	rest := mustCompile(t, mapping.Spec{Filter: "!(" + eu + ")"})
	big := mustCompile(t, mapping.Spec{Filter: `type == "orders/create" && data.line_items.exists(i, i.quantity >= 2) && headers["x-shop"] == "eu-shop"`})
	cases := []struct {
		body       string
		eu, others bool
	}{
		{`{"shipping_address":{"country_code":"DE"}}`, true, false},
		{`{"shipping_address":{"country_code":"US"}}`, false, true},
	}
	for _, c := range cases {
		in := mapping.NewInput(mapping.Event{Body: []byte(c.body)})
		gotEU, err := euDest.Filter(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		gotRest, err := rest.Filter(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		if gotEU != c.eu || gotRest != c.others {
			t.Errorf("%s: eu=%v rest=%v, want %v %v", c.body, gotEU, gotRest, c.eu, c.others)
		}
	}
	in := mapping.NewInput(mapping.Event{Type: "orders/create", Header: map[string][]string{"X-Shop": {"eu-shop"}}, Body: read(t, "shopify_order.in.json")})
	if keep, err := big.Filter(context.Background(), in); err != nil || !keep {
		t.Errorf("filter over type, headers and a list of the body = %v, %v; want true", keep, err)
	}
}

func TestFilterNumbersCompareAsNumbers(t *testing.T) {
	t.Parallel()
	m := mustCompile(t, mapping.Spec{Filter: `data.total > 100 && data.qty == 3`})
	for body, want := range map[string]bool{`{"total": 100.5, "qty": 3}`: true, `{"total": 99, "qty": 3}`: false, `{"total": 12345678901234567890, "qty": 3}`: true} {
		got, err := m.Filter(context.Background(), mapping.NewInput(mapping.Event{Body: []byte(body)}))
		if err != nil || got != want {
			t.Errorf("%s: %v, %v; want %v", body, got, err, want)
		}
	}
}

// An invalid expression is refused at compile with the part and the
// expression named.
func TestCompileErrorsNameThePart(t *testing.T) {
	t.Parallel()
	cases := []struct {
		spec  mapping.Spec
		stage mapping.Stage
		want  string
	}{
		{mapping.Spec{Filter: `data.country = "DE"`}, mapping.StageFilter, `filter "data.country = \"DE\""`},
		{mapping.Spec{Filter: `typ == "x"`}, mapping.StageFilter, "undeclared reference to 'typ'"},
		{mapping.Spec{Filter: `type + "x"`}, mapping.StageFilter, "not a bool"},
		{mapping.Spec{Transform: `{a: .b`}, mapping.StageTransform, `transform "{a: .b"`},
		{mapping.Spec{Transform: `$nope`}, mapping.StageTransform, "variable not defined: $nope"},
		{mapping.Spec{Path: `orders/{{.data.id}}`}, mapping.StagePath, "must start with /"},
		{mapping.Spec{Path: `/orders/{{.data.id`}, mapping.StagePath, "{{ without }}"},
		{mapping.Spec{Path: `/a%zz/{{.data.id}}`}, mapping.StagePath, "not an escaped URL path"},
		{mapping.Spec{Headers: map[string]string{"Authorization": "x"}}, mapping.StageHeader, "cannot be templated"},
		{mapping.Spec{Headers: map[string]string{"X-Order": "{{ .data[ }}"}}, mapping.StageHeader, "header X-Order"},
	}
	for _, c := range cases {
		_, err := mapping.Compile(c.spec)
		var me *mapping.Error
		if !errors.As(err, &me) || me.Stage != c.stage || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want stage %s containing %q", c.spec, err, c.stage, c.want)
		}
	}
}

// The Shopify order reshaped into the marketplace's format, checked against
// the fixture.
func TestTransformShopifyOrderToMarketplace(t *testing.T) {
	t.Parallel()
	m := mustCompile(t, mapping.Spec{
		Transform: string(read(t, "marketplace.jq")),
		Headers:   map[string]string{"X-Order-Ref": "{{ .data.name }}", "X-Lines": "{{ .body.items | length }}"},
		Path:      "/orders/{{ .body.external_id }}/{{.data.name}}",
	})
	out, err := m.Apply(context.Background(), mapping.NewInput(mapping.Event{Source: "shop", Body: read(t, "shopify_order.in.json")}))
	if err != nil {
		t.Fatal(err)
	}
	if d := mapping.Diff(indentJSON(t, read(t, "shopify_order.out.json")), indentJSON(t, out.Body)); d != "" {
		t.Errorf("the transformed body differs from the fixture:\n%s", d)
	}
	if out.ContentType != "application/json" {
		t.Errorf("content type %q", out.ContentType)
	}
	if got := out.Header.Get("X-Order-Ref"); got != "#1001" {
		t.Errorf("X-Order-Ref = %q", got)
	}
	if got := out.Header.Get("X-Lines"); got != "2" {
		t.Errorf("X-Lines = %q", got)
	}
	if want := "/orders/820982911946154508/%231001"; out.Path != want {
		t.Errorf("path %q, want %q (values path-escaped, the 64-bit id exact)", out.Path, want)
	}
	if v := m.Version(); len(v) != 12 {
		t.Errorf("version %q", v)
	}
}

func indentJSON(t *testing.T, b []byte) []byte {
	t.Helper()
	dir := t.TempDir()
	// The fixture runner's normalisation, through its files.
	if err := os.WriteFile(filepath.Join(dir, "x.in.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	res, err := mapping.RunFixtures(context.Background(), mustCompile(t, mapping.Spec{Transform: "."}), dir)
	if err != nil || len(res) != 1 || res[0].Err != nil {
		t.Fatalf("normalise: %v %+v", err, res)
	}
	return res[0].Got
}

func TestApplyErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		spec    mapping.Spec
		body    string
		stage   mapping.Stage
		wantErr error
		want    string
	}{
		{"runtime error", mapping.Spec{Transform: `.items[] | .price * 2`}, `{"items": "x"}`, mapping.StageTransform, nil, "cannot iterate over"},
		{"not JSON", mapping.Spec{Transform: `.`}, `<xml/>`, mapping.StageTransform, mapping.ErrNotJSON, "not JSON"},
		{"two values", mapping.Spec{Transform: `.a, .b`}, `{}`, mapping.StageTransform, nil, "more than one value"},
		{"no value", mapping.Spec{Transform: `empty`}, `{}`, mapping.StageTransform, nil, "no value"},
		{"too large", mapping.Spec{Transform: `[range(1000)]`, MaxOutput: 100}, `{}`, mapping.StageTransform, mapping.ErrOutputTooLarge, "max_output 100"},
		{"time bound", mapping.Spec{Transform: `[range(1e12)] | length`, Timeout: 20 * time.Millisecond}, `{}`, mapping.StageTransform, mapping.ErrTimeout, "timeout"},
		{"missing placeholder", mapping.Spec{Path: `/orders/{{.data.order_id}}`}, `{"id": 1}`, mapping.StagePath, nil, `path ".data.order_id": no value`},
		{"object placeholder", mapping.Spec{Headers: map[string]string{"X-A": `{{.data}}`}}, `{"id": 1}`, mapping.StageHeader, nil, "not a string"},
		{"control characters", mapping.Spec{Headers: map[string]string{"X-A": `{{.data.a}}`}}, `{"a": "x\r\nEvil: 1"}`, mapping.StageHeader, nil, "control characters"},
		{"filter error", mapping.Spec{Filter: `data.region == "eu"`}, `{"id": 1}`, mapping.StageFilter, nil, "no such key"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			m := mustCompile(t, c.spec)
			in := mapping.NewInput(mapping.Event{Body: []byte(c.body)})
			_, err := m.Filter(context.Background(), in)
			if err == nil {
				_, err = m.Apply(context.Background(), in)
			}
			var me *mapping.Error
			if !errors.As(err, &me) || me.Stage != c.stage || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want stage %s containing %q", err, c.stage, c.want)
			}
			if c.wantErr != nil && !errors.Is(err, c.wantErr) {
				t.Fatalf("error %v is not %v", err, c.wantErr)
			}
		})
	}
}

// Without a transformation program the stored body goes out unchanged,
// and a filter over the envelope works on bodies that are not JSON.
func TestPassThrough(t *testing.T) {
	t.Parallel()
	m := mustCompile(t, mapping.Spec{Filter: `source == "erp"`, Headers: map[string]string{"X-Type": "{{.type}}"}})
	in := mapping.NewInput(mapping.Event{Type: "a.b", Source: "erp", Body: []byte("<xml/>")})
	keep, err := m.Filter(context.Background(), in)
	if err != nil || !keep {
		t.Fatalf("filter: %v %v", keep, err)
	}
	out, err := m.Apply(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	if string(out.Body) != "<xml/>" || out.ContentType != "" || out.Header.Get("X-Type") != "a.b" {
		t.Errorf("out %+v", out)
	}
}

func TestVersionFollowsTheProgram(t *testing.T) {
	t.Parallel()
	a := mustCompile(t, mapping.Spec{Transform: ".a"})
	b := mustCompile(t, mapping.Spec{Transform: ".b"})
	a2 := mustCompile(t, mapping.Spec{Transform: ".a", Filter: `type == "x"`})
	if a.Version() == b.Version() || a.Version() != a2.Version() {
		t.Errorf("versions %q %q %q: the program names the version, the filter does not", a.Version(), b.Version(), a2.Version())
	}
	if v := mustCompile(t, mapping.Spec{Filter: "true"}).Version(); v != "" {
		t.Errorf("a filter alone has version %q", v)
	}
}

func TestRunFixtures(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, s string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("ok.in.json", `{"a": 1, "b": 2}`)
	write("ok.out.json", `{"sum":3}`)
	write("bad.in.json", `{"a": 1, "b": 5}`)
	write("bad.out.json", `{"sum": 3}`)
	write("new.in.json", `{"a": 0, "b": 0}`)
	write("skip.in.json", `{"a": 0, "b": 0}`)
	write("skip.event.json", `{"type": "ignored"}`)
	m := mustCompile(t, mapping.Spec{Filter: `type != "ignored"`, Transform: `{sum: (.a + .b)}`})
	res, err := mapping.RunFixtures(context.Background(), m, dir)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]mapping.FixtureResult{}
	for _, r := range res {
		got[filepath.Base(r.Name)] = r
	}
	if len(got) != 4 || !got["ok"].OK() || !got["skip"].OK() || !got["skip"].Filtered {
		t.Fatalf("results %+v", res)
	}
	if d := got["bad"].Diff; !strings.Contains(d, `-   "sum": 3`) || !strings.Contains(d, `+   "sum": 6`) {
		t.Errorf("diff of bad:\n%s", d)
	}
	if d := got["new"].Diff; !strings.Contains(d, "no new.out.json") {
		t.Errorf("diff of new:\n%s", d)
	}
}

// The time bound stops a filter that CEL's cost limit lets run long (about
// 90,000 comparisons, a fifth of the limit), with the same error as a
// transformation's.
func TestFilterStopsAtTheTimeBound(t *testing.T) {
	t.Parallel()
	a := make([]string, 300)
	for i := range a {
		a[i] = strconv.Itoa(i)
	}
	m := mustCompile(t, mapping.Spec{Filter: `data.a.all(x, data.a.all(y, x != -1))`, Timeout: 5 * time.Millisecond})
	_, err := m.Filter(context.Background(), mapping.NewInput(mapping.Event{Body: []byte(`{"a":[` + strings.Join(a, ",") + `]}`)}))
	var me *mapping.Error
	if !errors.As(err, &me) || me.Stage != mapping.StageFilter || !errors.Is(err, mapping.ErrTimeout) {
		t.Fatalf("error %v, want the filter's %v", err, mapping.ErrTimeout)
	}
}

// Evaluations share deadlines (bound.go): one that ran out of time leaves
// none behind that would stop the next.
func TestEvaluationAfterATimeoutRuns(t *testing.T) {
	t.Parallel()
	m := mustCompile(t, mapping.Spec{Transform: `if .loop then [range(1e12)] | length else {ok: true} end`, Timeout: 20 * time.Millisecond})
	for range 3 {
		if _, err := m.Apply(context.Background(), mapping.NewInput(mapping.Event{Body: []byte(`{"loop": true}`)})); !errors.Is(err, mapping.ErrTimeout) {
			t.Fatalf("looping program: %v, want %v", err, mapping.ErrTimeout)
		}
		out, err := m.Apply(context.Background(), mapping.NewInput(mapping.Event{Body: []byte(`{"loop": false}`)}))
		if err != nil || string(out.Body) != `{"ok":true}` {
			t.Fatalf("after a timeout: %q, %v", out.Body, err)
		}
	}
}

// The caller's context ending (a shutdown) does not cut an evaluation off:
// the event would fail for no fault of its own. The time bound still holds.
func TestCallerCancellationDoesNotCutAnEvaluation(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	m := mustCompile(t, mapping.Spec{Filter: `data.ok`, Transform: `{ok}`, Timeout: 20 * time.Millisecond})
	in := mapping.NewInput(mapping.Event{Body: []byte(`{"ok": true}`)})
	if keep, err := m.Filter(ctx, in); !keep || err != nil {
		t.Fatalf("filter: %v, %v", keep, err)
	}
	if out, err := m.Apply(ctx, in); err != nil || string(out.Body) != `{"ok":true}` {
		t.Fatalf("apply: %q, %v", out.Body, err)
	}
	loop := mustCompile(t, mapping.Spec{Transform: `[range(1e12)] | length`, Timeout: 20 * time.Millisecond})
	if _, err := loop.Apply(ctx, in); !errors.Is(err, mapping.ErrTimeout) {
		t.Fatalf("looping program: %v, want %v", err, mapping.ErrTimeout)
	}
}
