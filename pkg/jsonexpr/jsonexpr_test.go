package jsonexpr

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

const page = `{"data": {"orders": [
	{"id": 1001, "type": "order.created", "total": 12.50, "meta": {"x-y": "a"}},
	{"id": "1002", "type": "order.paid", "total": 99999999999999999999, "status": "draft"}
]}, "next": "c-2"}`

func TestExpressions(t *testing.T) {
	t.Parallel()
	doc, err := Decode([]byte(page))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		src  string
		want []string // each value as JSON
	}{
		{"$.next", []string{`"c-2"`}},
		{"$.data.orders[*].id", []string{`1001`, `"1002"`}},
		{"$['data'][\"orders\"][0].meta['x-y']", []string{`"a"`}},
		{"$.data.orders[-1].total", []string{`99999999999999999999`}},
		{"$.data.orders.*.type", []string{`"order.created"`, `"order.paid"`}},
		{"$.missing", []string{`null`}},
		{"$", []string{strings.Join(strings.Fields(`{"data":{"orders":[{"id":1001,"meta":{"x-y":"a"},"total":12.50,"type":"order.created"},{"id":"1002","status":"draft","total":99999999999999999999,"type":"order.paid"}]},"next":"c-2"}`), "")}},
		{`.data.orders[] | select(.status != "draft") | .id`, []string{`1001`}},
		{`"\(.data.orders[0].id):\(.next)"`, []string{`"1001:c-2"`}},
		{`$ENV | length`, []string{`0`}}, // the process environment stays out
	} {
		e, err := Compile(tt.src)
		if err != nil {
			t.Errorf("Compile(%q): %v", tt.src, err)
			continue
		}
		all, err := e.All(context.Background(), doc)
		if err != nil {
			t.Errorf("%s: %v", tt.src, err)
			continue
		}
		var got []string
		for _, v := range all {
			b, err := Encode(v)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, string(b))
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s = %v, want %v", tt.src, got, tt.want)
		}
	}
}

func TestFirstAndText(t *testing.T) {
	t.Parallel()
	doc, _ := Decode([]byte(`{"a": [null, 7, "x"], "b": true, "c": {"d": 1}}`))
	for _, tt := range []struct {
		src    string
		want   string
		isText bool
		found  bool
	}{
		{"$.a[*]", "7", true, true},
		{"$.b", "true", true, true},
		{"$.c", "", false, true},
		{"$.nothing", "", false, false},
		{".a[0]", "", false, false},
	} {
		v, found, err := MustCompile(t, tt.src).First(context.Background(), doc)
		if err != nil || found != tt.found {
			t.Errorf("First(%s) = %v %v %v", tt.src, v, found, err)
			continue
		}
		s, ok := Text(v)
		if s != tt.want || ok != tt.isText {
			t.Errorf("Text(First(%s)) = %q %v, want %q %v", tt.src, s, ok, tt.want, tt.isText)
		}
	}
}

func MustCompile(t *testing.T, src string) *Expr {
	t.Helper()
	e, err := Compile(src)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestCompileErrors(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ src, want string }{
		{"", "empty expression"},
		{"   ", "empty expression"},
		{"$..id", `JSON path "$..id": recursive descent`},
		{"$.a[", `JSON path "$.a[": unclosed [`},
		{"$[x]", `JSON path "$[x]"`},
		{"$.a.", `JSON path "$.a.": empty name`},
		{`$['a\'b']`, "quotes or backslashes"},
		{"$a", `gojq expression "$a"`}, // an undefined variable
		{".a |", `gojq expression ".a |"`},
		{"[.a", `gojq expression "[.a"`},
	} {
		if _, err := Compile(tt.src); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Compile(%q) = %v, want an error with %q", tt.src, err, tt.want)
		}
	}
}

func TestEvaluationBounded(t *testing.T) {
	t.Parallel()
	_, err := MustCompile(t, "range(0; 1000000)").All(context.Background(), nil)
	if !errors.Is(err, ErrTooManyValues) {
		t.Errorf("a million values: %v, want ErrTooManyValues", err)
	}
	if _, err := MustCompile(t, "error(\"boom\")").All(context.Background(), nil); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("error(): %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := MustCompile(t, "[range(0; 100000000)] | length").All(ctx, nil); err == nil {
		t.Error("a cancelled evaluation went on")
	}
}

func TestDecode(t *testing.T) {
	t.Parallel()
	if _, err := Decode([]byte(`{"a":1} {"b":2}`)); err == nil {
		t.Error("two documents accepted")
	}
	v, err := Decode([]byte(` 12345678901234567890 `))
	if err != nil || v.(json.Number).String() != "12345678901234567890" {
		t.Errorf("big number: %v %v", v, err)
	}
}

// FuzzCompile: any configured text either fails to compile with an error,
// or compiles to an expression that evaluates without panicking.
func FuzzCompile(f *testing.F) {
	doc, _ := Decode([]byte(page))
	f.Fuzz(func(t *testing.T, src string) {
		e, err := Compile(src)
		if err != nil {
			return
		}
		if IsPath(strings.TrimSpace(src)) {
			_, _ = e.All(context.Background(), doc)
		}
	})
}
