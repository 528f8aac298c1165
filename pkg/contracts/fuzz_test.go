package contracts_test

import (
	"testing"
	"unicode/utf8"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/contracts"
)

// FuzzValidate feeds partners' bodies (untrusted) to a check: it never
// panics, and what it reports stays bounded, valid UTF-8 and fit for the
// header it travels in.
func FuzzValidate(f *testing.F) {
	set, err := contracts.Compile(config.Config{
		Sources: []config.Source{{Name: "shop", Scheme: "shopify", Contract: &config.Contract{Default: orderSchema}}},
	}.WithDefaults())
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{
		`{"id": 1, "email": "a@b.c", "line_items": [{"sku": "A", "quantity": 1}]}`,
		`{"id": "x", "line_items": [{"quantity": -1}]}`,
		`{"id": 1e400, "email": "\ud800", "line_items": []}`,
		`[`, ``, `null`, "{\"a\":\"\xff\"}", `{"line_items": [{"sku": {"~/": 1}}]}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		vs := set.Validate(contracts.Source("shop"), "orders/create", "application/json", body)
		if len(vs) > contracts.MaxViolations {
			t.Fatalf("%d violations", len(vs))
		}
		for _, v := range vs {
			if !utf8.ValidString(v.Path) || !utf8.ValidString(v.Message) || len(v.Message) > contracts.MaxMessage+4 || len(v.Path) > contracts.MaxPath+4 {
				t.Fatalf("violation not bounded or not UTF-8: %q", v)
			}
		}
		if h := contracts.EncodeViolations(vs); len(h) > contracts.MaxViolationsHeader {
			t.Fatalf("header of %d bytes", len(h))
		}
	})
}
