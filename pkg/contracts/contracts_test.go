package contracts_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/contracts"
)

const orderSchema = "testdata/order.schema.json"

func shopConfig(t *testing.T, ct *config.Contract) config.Config {
	t.Helper()
	return config.Config{
		Sources: []config.Source{{Name: "shop", Scheme: "shopify", Contract: ct}, {Name: "plain", Scheme: "github"}},
		Ingress: config.Ingress{APIKeys: []config.IngressAPIKey{{Name: "billing", Contract: &config.Contract{Default: orderSchema}}}},
	}.WithDefaults()
}

func TestValidate(t *testing.T) {
	t.Parallel()
	set, err := contracts.Compile(shopConfig(t, &config.Contract{Schemas: map[string]string{"orders/create": orderSchema}}))
	if err != nil {
		t.Fatal(err)
	}
	valid := `{"id": 1001, "email": "a@example.com", "total_price": "10.00", "line_items": [{"sku": "A-1", "quantity": 2}]}`
	tests := []struct {
		name        string
		owner       contracts.Owner
		eventType   string
		contentType string
		body        string
		want        []string // "path: message" prefixes
	}{
		{"valid order", contracts.Source("shop"), "orders/create", "application/json", valid, nil},
		{"missing email, bad quantity", contracts.Source("shop"), "orders/create", "application/json",
			`{"id": 1001, "line_items": [{"sku": "A-1", "quantity": 0}]}`,
			[]string{"/: missing property 'email'", "/line_items/0/quantity: minimum"}},
		{"wrong type at the root", contracts.Source("shop"), "orders/create", "application/json", `[1, 2]`, []string{"/: got array, want object"}},
		{"not JSON", contracts.Source("shop"), "orders/create", "application/json", `{"id": 1001,`, []string{"/: the body is not well-formed JSON"}},
		{"not JSON, no content type", contracts.Source("shop"), "orders/create", "", `id=1001`, []string{"/: the body is not well-formed JSON"}},
		{"empty body", contracts.Source("shop"), "orders/create", "application/json", ``, []string{"/: the body is empty"}},
		{"trailing data", contracts.Source("shop"), "orders/create", "application/json; charset=utf-8", valid + ` {}`, []string{"/: the body is not well-formed JSON"}},
		{"a type without a schema is only checked for JSON", contracts.Source("shop"), "orders/paid", "application/json", `{"anything": true}`, nil},
		{"a type without a schema, not JSON", contracts.Source("shop"), "orders/paid", "application/json", `nope`, []string{"/: the body is not well-formed JSON"}},
		{"not a JSON content type: not checked", contracts.Source("shop"), "orders/create", "application/x-www-form-urlencoded", `id=1001`, nil},
		{"a source without a contract: nothing checked", contracts.Source("plain"), "push", "application/json", `{not json`, nil},
		{"an unknown owner", contracts.Source("nobody"), "push", "application/json", `{not json`, nil},
		{"an API key's default schema", contracts.APIKey("billing"), "invoice.paid", "application/json", `{"id": "x"}`,
			[]string{"/: missing properties 'email', 'line_items'", "/id: got string, want integer"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := set.Validate(tt.owner, tt.eventType, tt.contentType, []byte(tt.body))
			if len(got) != len(tt.want) {
				t.Fatalf("violations = %v, want %d like %q", got, len(tt.want), tt.want)
			}
			for _, w := range tt.want {
				found := false
				for _, v := range got {
					if strings.HasPrefix(v.String(), w) {
						found = true
					}
				}
				if !found {
					t.Errorf("violations = %q, want one starting %q", got, w)
				}
			}
		})
	}
}

// A payload breaking its schema everywhere reports a bounded list.
func TestValidateBoundsViolations(t *testing.T) {
	t.Parallel()
	set, err := contracts.Compile(shopConfig(t, &config.Contract{Default: orderSchema}))
	if err != nil {
		t.Fatal(err)
	}
	var items []string
	for i := range 500 {
		items = append(items, fmt.Sprintf(`{"sku": %d, "quantity": "%s"}`, i, strings.Repeat("x", 1000)))
	}
	body := `{"id": 1, "email": "a@b.c", "line_items": [` + strings.Join(items, ",") + `]}`
	got := set.Validate(contracts.Source("shop"), "orders/create", "application/json", []byte(body))
	if len(got) != contracts.MaxViolations {
		t.Fatalf("%d violations, want %d", len(got), contracts.MaxViolations)
	}
	for _, v := range got {
		if len(v.Message) > contracts.MaxMessage+len("…") || len(v.Path) > contracts.MaxPath+len("…") {
			t.Errorf("violation not bounded: %d/%d bytes", len(v.Path), len(v.Message))
		}
	}
}

func TestRejects(t *testing.T) {
	t.Parallel()
	set, err := contracts.Compile(shopConfig(t, &config.Contract{Default: orderSchema, OnInvalid: config.OnInvalidReject}))
	if err != nil {
		t.Fatal(err)
	}
	if !set.Rejects(contracts.Source("shop")) || set.Rejects(contracts.APIKey("billing")) || set.Rejects(contracts.Source("plain")) {
		t.Error("Rejects: want true for shop (on_invalid: reject) only")
	}
	if !set.Has(contracts.Source("shop")) || !set.Has(contracts.APIKey("billing")) || set.Has(contracts.Source("plain")) {
		t.Error("Has: want shop and billing")
	}
	var none *contracts.Set
	if none.Has(contracts.Source("shop")) || none.Validate(contracts.Source("shop"), "x", "", []byte("{")) != nil {
		t.Error("a nil Set must check nothing")
	}
}

// An invalid schema stops Compile with an error naming the field and the
// file; so does a missing file and a file that is not JSON.
func TestCompileRefusesInvalidSchemas(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name string
		file string
		want []string
	}{
		{"not a schema", write("bad.json", `{"type": "objekt"}`), []string{`sources[0].contract.schemas["orders/create"]`, "bad.json", "not a valid JSON Schema"}},
		{"bad pattern", write("re.json", `{"type": "string", "pattern": "(["}`), []string{"re.json", "not a valid JSON Schema"}},
		{"not JSON", write("text.json", `type: object`), []string{"text.json", "is not JSON"}},
		{"missing", filepath.Join(dir, "missing.json"), []string{"missing.json", "no such file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := contracts.Compile(shopConfig(t, &config.Contract{Schemas: map[string]string{"orders/create": tt.file}}))
			if !errors.Is(err, contracts.ErrInvalidSchema) {
				t.Fatalf("err = %v, want ErrInvalidSchema", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %q, want it to mention %q", err, w)
				}
			}
		})
	}
}

// A schema may $ref a file next to it.
func TestCompileFollowsRelativeRefs(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "money.json"), []byte(`{"type": "string", "pattern": "^[0-9]+\\.[0-9]{2}$"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	main := filepath.Join(dir, "order.json")
	if err := os.WriteFile(main, []byte(`{"type": "object", "properties": {"total": {"$ref": "money.json"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	set, err := contracts.Compile(shopConfig(t, &config.Contract{Default: main}))
	if err != nil {
		t.Fatal(err)
	}
	got := set.Validate(contracts.Source("shop"), "orders/create", "application/json", []byte(`{"total": "ten"}`))
	if len(got) != 1 || got[0].Path != "/total" {
		t.Errorf("violations = %v, want one at /total", got)
	}
}
