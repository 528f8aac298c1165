package mapping

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/cel-go/cel"
)

// A filter run without cost tracking (its worst case estimated at compile
// time within staticCostBound) costs no more than estimated, give or take
// a few units, on the events that cost the most: bodies, headers and
// envelope fields of a megabyte, a list of 10,000 items.
func TestStaticCostBound(t *testing.T) {
	t.Parallel()
	e, err := filterEnv()
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("é", 1<<19)
	items := strings.Repeat(`"`+big[:64]+`",`, 10_000)
	body := `{"s":"` + big + `","n":1e300,"a":[` + items + `1],"shipping_address":{"country_code":"` + big + `"}}`
	in := NewInput(Event{ID: big, Type: big, Source: big, Subject: big, Header: map[string][]string{"X-A": {big}}, Body: []byte(body)})
	in.parse()
	for _, src := range []string{
		`data.shipping_address.country_code in ["DE", "FR", "NL"] && type == "orders/create"`,
		`data.s == "abc" || data.s.startsWith("abc") || data.s.endsWith("x")`,
		`size(data.s) > 3 && size(data.a) > 3 && data.n > 2`,
		`data.s in ["a", "b"] || headers["x-a"] == "x" || id != "y"`,
		`has(data.shipping_address.country_code) && data.a[0] == "x"`,
		`type.startsWith("orders/") ? data.s == "z" : headers["x-a"] in ["x", "y"]`,
	} {
		ast, iss := e.Compile(src)
		if iss.Err() != nil {
			t.Fatal(iss.Err())
		}
		est, err := e.EstimateCost(ast, unknownSizes{})
		if err != nil || est.Max > staticCostBound {
			t.Fatalf("%s: estimate %v, %v: want one within %d", src, est, err, staticCostBound)
		}
		prg, err := e.Program(ast, cel.EvalOptions(cel.OptTrackCost))
		if err != nil {
			t.Fatal(err)
		}
		_, det, err := prg.Eval((*activation)(in))
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		if got := *det.ActualCost(); got > 2*est.Max+10 {
			t.Fatalf("%s: cost %d, estimated at most %d", src, got, est.Max)
		}
	}
}

// What depends on the event's sizes keeps CEL's cost limit: 200 searches
// of a 100,000-character string cost about 2,000,000.
func TestCostLimitStopsAFilter(t *testing.T) {
	t.Parallel()
	a := make([]string, 200)
	for i := range a {
		a[i] = strconv.Itoa(i)
	}
	m, err := Compile(Spec{Filter: `data.a.all(x, !data.s.contains("z"))`, Timeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	body := `{"s":"` + strings.Repeat("x", 100_000) + `","a":[` + strings.Join(a, ",") + `]}`
	_, err = m.Filter(context.Background(), NewInput(Event{Body: []byte(body)}))
	var me *Error
	if !errors.As(err, &me) || me.Stage != StageFilter || !strings.Contains(err.Error(), "cost limit exceeded") {
		t.Fatalf("error %v, want the filter's cost limit", err)
	}
}
