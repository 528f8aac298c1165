package config_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/switchyard/switchyard/pkg/config"
)

const contractYAML = `
sources:
  - name: shop
    scheme: standard-webhooks
    secrets: ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]
    contract:
      schemas:
        orders/create: schemas/order.json
      default: /etc/switchyard/any.json
ingress:
  api_keys:
    - name: billing
      key: "0123456789abcdef0123"
      contract:
        default: invoice.json
        on_invalid: reject
destinations:
  - name: crm
    url: https://crm.example.com/hooks
    subjects: ["events.order.>"]
`

// Load makes relative schema paths relative to the configuration file and
// applies on_invalid's default.
func TestLoadResolvesContractPaths(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "switchyard.yaml")
	if err := os.WriteFile(path, []byte(contractYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(path, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	src := c.Sources[0].Contract
	if got, want := src.Schemas["orders/create"], filepath.Join(dir, "schemas/order.json"); got != want {
		t.Errorf("schemas[orders/create] = %q, want %q", got, want)
	}
	if src.Default != "/etc/switchyard/any.json" {
		t.Errorf("an absolute default moved: %q", src.Default)
	}
	if src.OnInvalid != config.OnInvalidQuarantine {
		t.Errorf("on_invalid = %q, want the default quarantine", src.OnInvalid)
	}
	key := c.Ingress.APIKeys[0].Contract
	if key.Default != filepath.Join(dir, "invoice.json") || key.OnInvalid != config.OnInvalidReject {
		t.Errorf("api key contract = %+v", key)
	}
	if c.Sources[0].Contract.SchemaFiles()[0] != "/etc/switchyard/any.json" {
		t.Errorf("SchemaFiles = %v", src.SchemaFiles())
	}
}

// A polled source's items are checked against its contract (and
// quarantined when they break it).
func TestPolledSourceTakesAContract(t *testing.T) {
	t.Parallel()
	c, err := config.Parse([]byte(`
sources:
  - name: feed
    poll: {url: "https://api.example.com/items", interval: 1m, items: "$.items", id: "$.id", type: "$.type"}
    contract: {default: a.json}
`), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if ct := c.Sources[0].Contract; ct == nil || ct.OnInvalid != config.OnInvalidQuarantine {
		t.Errorf("contract %+v, want one that quarantines", ct)
	}
}

func TestContractValidation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, yaml, field, problem string
	}{
		{"on_invalid", `
sources:
  - name: shop
    scheme: shopify
    secrets: ["s3cret-s3cret-s3cret"]
    contract: {default: a.json, on_invalid: bounce}
`, "sources[0].contract.on_invalid", "must be quarantine or reject"},
		{"empty file", `
sources:
  - name: shop
    scheme: shopify
    secrets: ["s3cret-s3cret-s3cret"]
    contract: {schemas: {orders/create: ""}}
`, `sources[0].contract.schemas["orders/create"]`, "needs a schema file"},
		{"key on_invalid", `
ingress:
  api_keys:
    - name: billing
      key: "0123456789abcdef0123"
      contract: {on_invalid: drop}
`, "ingress.api_keys[0].contract.on_invalid", "must be quarantine or reject"},
		{"polled", `
sources:
  - name: feed
    poll: {url: "https://api.example.com/items", interval: 1m, items: "$.items", id: "$.id", type: "$.type"}
    contract: {default: a.json, on_invalid: reject}
`, "sources[0].contract.on_invalid", "cannot be reject for a polled source"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := config.Parse([]byte(tt.yaml), noEnv)
			checkErr(t, err, config.ErrInvalid, tt.field, tt.problem)
		})
	}
}
