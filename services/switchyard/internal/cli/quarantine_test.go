package cli_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/signing"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
	"github.com/switchyard/switchyard/pkg/topology"
	"github.com/switchyard/switchyard/services/ingress"
	"github.com/switchyard/switchyard/services/switchyard/internal/cli"
)

// A malformed Shopify order goes to quarantine through the real ingress;
// `quarantine list` and `show` name it and its violation; `release` with
// the schema unchanged keeps it (and fails), and after the schema is fixed
// publishes it to EVENTS under its original id and removes it.
func TestQuarantineListShowRelease(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ns := natstest.Start(t)
	_, js := ns.Connect(t)

	dir := t.TempDir()
	schema := filepath.Join(dir, "order.schema.json")
	write := func(path, text string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(schema, `{"type": "object", "required": ["id", "email"]}`)
	const secret = "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"
	file := filepath.Join(dir, "switchyard.yaml")
	write(file, "nats:\n  url: "+ns.URL+`
sources:
  - name: shop
    scheme: shopify
    secrets: ["`+secret+`"]
    contract:
      schemas:
        orders/create: order.schema.json
`)
	cfg, err := config.Load(file, os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	ing, err := ingress.New(js, auditlog.NewEmitter(js, "ingress"), ingress.FromConfig(cfg, slog.New(slog.DiscardHandler), nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := ing.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ing.Close(context.Background()) })

	body := `{"id": 1001, "total_price": "10.00"}`
	req := httptest.NewRequest(http.MethodPost, "/webhooks/shop", strings.NewReader(body))
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(body))
	req.Header.Set(signing.HeaderShopifyHmac, base64.StdEncoding.EncodeToString(mac.Sum(nil)))
	req.Header.Set(signing.HeaderShopifyWebhookID, "wh-1001")
	req.Header.Set(signing.HeaderShopifyTopic, "orders/create")
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	ing.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusAccepted || !strings.Contains(rec.Body.String(), "quarantined") {
		t.Fatalf("webhook answered %d %s", rec.Code, rec.Body)
	}

	run := func(args ...string) (string, error) {
		t.Helper()
		var out bytes.Buffer
		err := cli.Execute(ctx, append([]string{"quarantine", "--config", file}, args...), &out, &out)
		return out.String(), err
	}
	mustRun := func(args ...string) string {
		t.Helper()
		out, err := run(args...)
		if err != nil {
			t.Fatalf("quarantine %v: %v\n%s", args, err, out)
		}
		return out
	}

	out := mustRun("list")
	if !strings.Contains(out, "shop:wh-1001") || !strings.Contains(out, "orders/create") || !strings.Contains(out, "missing property 'email'") {
		t.Errorf("list:\n%s", out)
	}
	out = mustRun("show", "1")
	for _, want := range []string{"shop:wh-1001", "webhooks.shop.orders_create", "/: missing property 'email'", body} {
		if !strings.Contains(out, want) {
			t.Errorf("show does not say %q:\n%s", want, out)
		}
	}
	if _, err := run("show", "99"); !errors.Is(err, ingress.ErrNotQuarantined) {
		t.Errorf("show 99: %v, want ErrNotQuarantined", err)
	}

	// The schema is unchanged: the order stays.
	out, err = run("release", "--all")
	if !errors.Is(err, cli.ErrStillInvalid) || !strings.Contains(out, "still breaks its contract") {
		t.Fatalf("release before the fix: %v\n%s", err, out)
	}
	if n := len(natstest.StreamMsgs(t, js, topology.StreamQuarantine, ">")); n != 1 {
		t.Fatalf("QUARANTINE has %d messages after a refused release, want 1", n)
	}

	// The schema is fixed: email is optional.
	write(schema, `{"type": "object", "required": ["id"]}`)
	out = mustRun("release", "--source", "shop")
	if !strings.Contains(out, "1 released") {
		t.Errorf("release:\n%s", out)
	}
	evs := natstest.StreamMsgs(t, js, natsx.StreamEvents, "webhooks.>")
	if len(evs) != 1 || evs[0].Subject != "webhooks.shop.orders_create" || evs[0].Header.Get(nats.MsgIdHdr) != "shop:wh-1001" ||
		string(evs[0].Data) != body || evs[0].Header.Get("Switchyard-Violations") != "" {
		t.Fatalf("EVENTS after the release: %d messages %+v", len(evs), evs)
	}
	if n := len(natstest.StreamMsgs(t, js, topology.StreamQuarantine, ">")); n != 0 {
		t.Errorf("QUARANTINE has %d messages after the release", n)
	}
	if out := mustRun("list"); !strings.Contains(out, "nothing in quarantine") {
		t.Errorf("list after the release:\n%s", out)
	}
	recs := natstest.StreamMsgs(t, js, natsx.StreamAudit, "audit.released.shop")
	if len(recs) != 1 {
		t.Fatalf("%d release records", len(recs))
	}
	// The partner sends the order again: a duplicate now.
	rec = httptest.NewRecorder()
	req = httptest.NewRequest(http.MethodPost, "/webhooks/shop", strings.NewReader(body))
	req.Header.Set(signing.HeaderShopifyHmac, base64.StdEncoding.EncodeToString(mac.Sum(nil)))
	req.Header.Set(signing.HeaderShopifyWebhookID, "wh-1001")
	req.Header.Set(signing.HeaderShopifyTopic, "orders/create")
	ing.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "duplicate") {
		t.Errorf("the order again after its release: %d %s, want 200 duplicate", rec.Code, rec.Body)
	}
}

// check-config compiles the contracts' schemas as ingress would: an
// invalid one fails it, naming the field and the file.
func TestCheckConfigCompilesSchemas(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "order.json"), []byte(`{"type": "objekt"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "switchyard.yaml")
	if err := os.WriteFile(file, []byte(`
sources:
  - name: shop
    scheme: shopify
    secrets: ["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"]
    contract: {default: order.json}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err := cli.Execute(context.Background(), []string{"check-config", "--config", file}, &out, &out)
	if err == nil || !strings.Contains(err.Error(), "sources[0].contract.default") || !strings.Contains(err.Error(), filepath.Join(dir, "order.json")) {
		t.Fatalf("check-config = %v, want the invalid schema named", err)
	}
}
