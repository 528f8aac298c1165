package cli_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/switchyard/switchyard/services/switchyard/internal/cli"
)

// mappingTestdata is pkg/mapping's fixture: a Shopify order and the
// marketplace mapping.
var mappingTestdata = filepath.Join("..", "..", "..", "..", "pkg", "mapping", "testdata")

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

const transformConfig = `
destinations:
  - name: marketplace
    url: https://marketplace.example.com/api
    subjects: ["webhooks.shop.>"]
    filter: 'type != "orders/test"'
    transform:
      file: maps/marketplace.jq
      path: /orders/{{ .body.external_id }}
  - name: crm
    url: https://crm.example.com/hooks
    subjects: ["events.order.>"]
`

// `switchyard transform test` runs the destinations' transformations over
// testdata/<destination>/*.in.json, passes the fixtures whose output
// matches, shows a diff and fails for the others, and --update rewrites
// them.
func TestTransformTestCommand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "switchyard.yaml")
	writeFile(t, cfg, transformConfig)
	copyFile(t, filepath.Join(mappingTestdata, "marketplace.jq"), filepath.Join(dir, "maps", "marketplace.jq"))
	fixtures := filepath.Join(dir, "testdata", "marketplace")
	copyFile(t, filepath.Join(mappingTestdata, "shopify_order.in.json"), filepath.Join(fixtures, "order.in.json"))
	copyFile(t, filepath.Join(mappingTestdata, "shopify_order.out.json"), filepath.Join(fixtures, "order.out.json"))
	writeFile(t, filepath.Join(fixtures, "order.event.json"), `{"type": "orders/create", "source": "shop"}`)
	copyFile(t, filepath.Join(mappingTestdata, "shopify_order.in.json"), filepath.Join(fixtures, "test-order.in.json"))
	writeFile(t, filepath.Join(fixtures, "test-order.event.json"), `{"type": "orders/test", "source": "shop"}`)

	run := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := cli.Execute(context.Background(), append([]string{"-c", cfg, "transform", "test"}, args...), &out, &out)
		return out.String(), err
	}
	out, err := run()
	if err != nil {
		t.Fatalf("transform test: %v\n%s", err, out)
	}
	for _, want := range []string{"ok   order (path /orders/820982911946154508)", "ok   test-order (left out by the filter)", "2 passed, 0 failed"} {
		if !strings.Contains(out, want) {
			t.Errorf("the output does not say %q:\n%s", want, out)
		}
	}

	// A mapping change that alters the output fails with a diff.
	copyFile(t, filepath.Join(mappingTestdata, "shopify_order.in.json"), filepath.Join(fixtures, "changed.in.json"))
	writeFile(t, filepath.Join(fixtures, "changed.event.json"), `{"source": "shop"}`)
	writeFile(t, filepath.Join(fixtures, "changed.out.json"), strings.Replace(mustRead(t, filepath.Join(mappingTestdata, "shopify_order.out.json")), `"#1001"`, `"1001"`, 1))
	out, err = run()
	if !errors.Is(err, cli.ErrFixturesFailed) {
		t.Fatalf("transform test with a wrong fixture: %v\n%s", err, out)
	}
	for _, want := range []string{"FAIL changed", `-   "reference": "1001",`, `+   "reference": "#1001",`, "2 passed, 1 failed"} {
		if !strings.Contains(out, want) {
			t.Errorf("the output does not say %q:\n%s", want, out)
		}
	}

	// --update writes what the transformation makes.
	if out, err = run("--update"); err != nil {
		t.Fatalf("transform test --update: %v\n%s", err, out)
	}
	if out, err = run("--destination", "marketplace"); err != nil || !strings.Contains(out, "3 passed, 0 failed") {
		t.Fatalf("after --update: %v\n%s", err, out)
	}
	if _, err = run("--destination", "nope"); !errors.Is(err, cli.ErrUnknownDestination) {
		t.Errorf("unknown destination: %v", err)
	}
}

// A transformation that fails on a fixture fails the command with the
// reason.
func TestTransformTestReportsAFailingTransformation(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "switchyard.yaml")
	writeFile(t, cfg, `
destinations:
  - name: erp
    url: https://erp.example.com/api
    subjects: ["events.order.>"]
    transform:
      jq: '{lines: [.line_items[] | .sku]}'
`)
	writeFile(t, filepath.Join(dir, "testdata", "erp", "bad.in.json"), `{"line_items": 3}`)
	var out bytes.Buffer
	err := cli.Execute(context.Background(), []string{"-c", cfg, "transform", "test"}, &out, &out)
	if !errors.Is(err, cli.ErrFixturesFailed) || !strings.Contains(out.String(), "FAIL bad: transform") || !strings.Contains(out.String(), "cannot iterate over") {
		t.Fatalf("error %v, output:\n%s", err, out.String())
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// An invalid filter stops the program at start (every command loads the
// configuration first) with the destination and the expression named.
func TestInvalidFilterStopsTheStart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "switchyard.yaml")
	writeFile(t, cfg, `
destinations:
  - name: eu-orders
    url: https://erp.example.com/api
    subjects: ["events.order.>"]
    filter: 'data.shipping_address.country_code = "DE"'
`)
	for _, cmd := range [][]string{{"check-config"}, {"run"}} {
		var out bytes.Buffer
		err := cli.Execute(context.Background(), append([]string{"-c", cfg}, cmd...), &out, &out)
		if err == nil || !strings.Contains(err.Error(), `destinations[0].filter: destination "eu-orders": CEL expression "data.shipping_address.country_code = \"DE\""`) {
			t.Errorf("%v: %v", cmd, err)
		}
	}
}
