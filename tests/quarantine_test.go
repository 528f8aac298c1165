package tests

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/signing"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
	"github.com/switchyard/switchyard/pkg/testing/slacktest"
	"github.com/switchyard/switchyard/pkg/testing/waitfor"
	"github.com/switchyard/switchyard/services/ingress"
)

// The malformed Shopify order, end to end: the order breaks the source's
// contract, so it is accepted (202), quarantined and alerted
// (MalformedPayloads), and not delivered; a valid order after it is
// delivered and resolves the alert; once the schema is fixed the
// quarantined order is released with its id and delivered once, and
// releasing it again sends nothing.
func TestMalformedShopifyOrder(t *testing.T) {
	const secret = "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"
	warehouse := newPartner(t, always(http.StatusOK))
	slack := slacktest.New(t)
	schema := filepath.Join(t.TempDir(), "order.schema.json")
	writeSchema := func(text string) {
		t.Helper()
		if err := os.WriteFile(schema, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// The schema as first written: every order has an email.
	writeSchema(`{"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object", "required": ["id", "email"],
		"properties": {"id": {"type": "integer"}, "email": {"type": "string"}}}`)
	cfg := config.Config{
		Sources: []config.Source{{Name: "shop", Scheme: "shopify", Secrets: []config.Secret{secret},
			Contract: &config.Contract{Schemas: map[string]string{"orders/create": schema}}}},
		Destinations: []config.Destination{destination("warehouse", warehouse.URL, []string{"webhooks.shop.>"}, 3)},
	}
	cfg.Alerts.Rules.MalformedPayloads.ResolveAfter = config.Duration(time.Second)
	sys := startSystem(t, options{Config: cfg, SlackURL: slack.WebhookURL()})

	post := func(id, body string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, sys.Ingress.URL+"/webhooks/shop", bytes.NewReader([]byte(body)))
		if err != nil {
			t.Fatal(err)
		}
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write([]byte(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(signing.HeaderShopifyHmac, base64.StdEncoding.EncodeToString(mac.Sum(nil)))
		req.Header.Set(signing.HeaderShopifyWebhookID, id)
		req.Header.Set(signing.HeaderShopifyTopic, "orders/create")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		return resp.StatusCode, b.String()
	}

	// A guest checkout: the order has no email.
	const malformed = `{"id": 1001, "total_price": "42.00"}`
	if code, body := post("order-1001", malformed); code != http.StatusAccepted || !strings.Contains(body, `"quarantined"`) {
		t.Fatalf("malformed order: %d %s, want 202 quarantined", code, body)
	}
	firing := waitfor.Value(t, "the MalformedPayloads alert", func() (slacktest.Message, bool) {
		for _, m := range slack.Accepted() {
			if strings.Contains(string(m.Raw), "MalformedPayloads") || strings.Contains(m.Text, "broke its contract") {
				return m, true
			}
		}
		return slacktest.Message{}, false
	})
	for _, want := range []string{"FIRING", "shop", "shop:order-1001", "missing property 'email'"} {
		if !strings.Contains(string(firing.Raw), want) {
			t.Errorf("the alert lacks %q: %s", want, firing.Raw)
		}
	}

	// A valid order flows: delivered, and the alert resolves. The
	// malformed one was never delivered.
	if code, body := post("order-1002", `{"id": 1002, "email": "jon@example.com"}`); code != http.StatusAccepted {
		t.Fatalf("valid order: %d %s", code, body)
	}
	waitfor.True(t, "the valid order delivered", func() bool { return len(warehouse.got("shop:order-1002")) == 1 })
	waitfor.True(t, "the resolved message", func() bool {
		for _, m := range slack.Accepted() {
			if strings.Contains(string(m.Raw), "RESOLVED") && strings.Contains(string(m.Raw), "shop") {
				return true
			}
		}
		return false
	})
	if n := len(warehouse.got("shop:order-1001")); n != 0 {
		t.Fatalf("the malformed order was delivered %d times before its release", n)
	}

	// The schema is fixed (guest checkouts have no email); the order is
	// released with its original id and delivered once.
	writeSchema(`{"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}, "email": {"type": "string"}}}`)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := ingress.NewReleaser(ctx, sys.JS, cfg.WithDefaults(), "test")
	if err != nil {
		t.Fatal(err)
	}
	qs, err := ingress.ListQuarantined(ctx, sys.JS, "shop", 0)
	if err != nil || len(qs) != 1 || qs[0].EventID != "shop:order-1001" {
		t.Fatalf("quarantine: %v %+v", err, qs)
	}
	res, err := r.Release(ctx, qs[0])
	if err != nil || res.Outcome != ingress.Released {
		t.Fatalf("release: %v %+v", err, res)
	}
	got := waitfor.Value(t, "the released order delivered", func() ([]*recorded, bool) {
		rs := warehouse.got("shop:order-1001")
		return rs, len(rs) > 0
	})
	if string(got[0].body) != malformed {
		t.Errorf("delivered %s, want the order as the partner sent it", got[0].body)
	}
	// Releasing the same copy again (a retry after a crash) sends nothing.
	if res, err := r.Release(ctx, qs[0]); err != nil || res.Outcome != ingress.AlreadyStored {
		t.Fatalf("second release: %v %+v", err, res)
	}
	if qs, err := ingress.ListQuarantined(ctx, sys.JS, "", 0); err != nil || len(qs) != 0 {
		t.Fatalf("quarantine after the release: %v %d", err, len(qs))
	}
	waitfor.True(t, "the warehouse consumer to settle", func() bool { return sys.settled(t, "warehouse") })
	if n := len(warehouse.got("shop:order-1001")); n != 1 {
		t.Errorf("the released order was delivered %d times, want once", n)
	}
	if n := len(natstest.StreamMsgs(t, sys.JS, natsx.StreamEvents, "webhooks.shop.>")); n != 2 {
		t.Errorf("EVENTS holds %d shop events, want 2", n)
	}
}
