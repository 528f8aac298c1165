package ingress_test

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/contracts"
	"github.com/switchyard/switchyard/services/ingress"
)

// An invalid schema stops ingress at start, with a message naming the
// field and the file.
func TestNewRefusesAnInvalidSchema(t *testing.T) {
	t.Parallel()
	schema := filepath.Join(t.TempDir(), "order.schema.json")
	if err := os.WriteFile(schema, []byte(`{"type": "object", "required": "email"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := config.Config{Sources: []config.Source{{Name: "shop", Scheme: "shopify", Secrets: []config.Secret{"shpss_0123456789abcdef"},
		Contract: &config.Contract{Schemas: map[string]string{"orders/create": schema}}}}}.WithDefaults()
	_, err := ingress.New(nil, nil, ingress.FromConfig(cfg, slog.New(slog.DiscardHandler), nil))
	if !errors.Is(err, contracts.ErrInvalidSchema) {
		t.Fatalf("New = %v, want ErrInvalidSchema", err)
	}
	for _, want := range []string{`sources[0].contract.schemas["orders/create"]`, schema, "not a valid JSON Schema"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}
