package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/switchyard/switchyard/pkg/config"
)

const mappingYAML = minimalYAML + `    filter: 'data.shipping_address.country_code in ["DE", "FR"]'
    transform:
      file: maps/crm.jq
      headers:
        X-Order: "{{ .data.name }}"
      path: /orders/{{ .data.id }}
`

// transform.file is read relative to the configuration file, and the
// bounds get their defaults.
func TestTransformFileRelativeToTheConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "maps"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "maps", "crm.jq"), []byte("{ref: .name}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "switchyard.yaml"), []byte(mappingYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(filepath.Join(dir, "switchyard.yaml"), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	d := c.Destinations[0]
	spec := d.MappingSpec()
	if spec.Transform != "{ref: .name}\n" || spec.Filter == "" || spec.Path != "/orders/{{ .data.id }}" {
		t.Errorf("spec %+v", spec)
	}
	if d.Transform.Timeout != config.DefaultTransformTimeout || d.Transform.MaxOutput != config.DefaultTransformMaxOutput {
		t.Errorf("bounds %s %d, want the defaults", d.Transform.Timeout, d.Transform.MaxOutput)
	}
}

// An invalid expression stops the configuration with the destination and
// the expression named.
func TestMappingValidation(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, yaml, field, problem string
	}{
		{"typo in the filter", `    filter: 'typ == "order"'`, "destinations[0].filter",
			`destination "crm": CEL expression "typ == \"order\"": ERROR: <input>:1:1: undeclared reference to 'typ'`},
		{"filter not a bool", `    filter: 'type + "x"'`, "destinations[0].filter", "not a bool"},
		{"bad program", "    transform:\n      jq: '{a: .b'", "destinations[0].transform.jq", `destination "crm": gojq program "{a: .b": unexpected EOF`},
		{"missing file", "    transform:\n      file: nowhere.jq", "destinations[0].transform.file", `destination "crm": open nowhere.jq`},
		{"both", "    transform:\n      jq: .\n      file: nowhere.jq", "destinations[0].transform", "set jq or file, not both"},
		{"reserved header", "    transform:\n      headers: {Idempotency-Key: x}", "destinations[0].transform.headers.Idempotency-Key", "cannot be templated"},
		{"bad path", "    transform:\n      path: 'orders/{{.data.id}}'", "destinations[0].transform.path", "must start with /"},
		{"timeout", "    transform:\n      timeout: 1m", "destinations[0].transform.timeout", "between 0 and 10s"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			_, err := config.Parse([]byte(minimalYAML+c.yaml+"\n"), noEnv)
			checkErr(t, err, config.ErrInvalid, c.field, c.problem)
		})
	}
}

func TestMappingErrorIsOneLineToStart(t *testing.T) {
	t.Parallel()
	_, err := config.Parse([]byte(minimalYAML+"    filter: 'data.a ='\n"), noEnv)
	if err == nil || !strings.Contains(err.Error(), `destinations[0].filter: destination "crm": CEL expression "data.a ="`) {
		t.Fatalf("error %v", err)
	}
}
