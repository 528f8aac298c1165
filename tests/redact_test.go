package tests

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/events"
	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/outbound"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
	"github.com/switchyard/switchyard/pkg/testing/oauthtest"
	"github.com/switchyard/switchyard/pkg/testing/slacktest"
	"github.com/switchyard/switchyard/pkg/testing/waitfor"
	"github.com/switchyard/switchyard/services/auditor/auditapi"
)

// TestCredentialsEchoedByThePartnerAreRedacted runs the four services
// against partners that answer 400 with the request's headers echoed back
// (in the body and a response header), one with a static bearer token and
// a static key header, one with OAuth2. None of the credentials may reach
// the synchronous answer, the attempt and dead-letter records, the
// DEAD_LETTERS stream or the Slack alert.
func TestCredentialsEchoedByThePartnerAreRedacted(t *testing.T) {
	const (
		bearer     = "e2e-bearer-5f1c9a77"
		partnerKey = "pk_e2e_9d2e44b1"
		clientSec  = "e2e-client-secret-31"
		apiKey     = "orders-publish-key-echo1"
	)
	echo := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Echo", r.Header.Get("Authorization")+" "+r.Header.Get("X-Partner-Key"))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]any{"error": "bad request", "you_sent": r.Header})
	}
	erp := httptest.NewServer(http.HandlerFunc(echo))
	t.Cleanup(erp.Close)
	crm := httptest.NewServer(http.HandlerFunc(echo))
	t.Cleanup(crm.Close)
	tokens := oauthtest.Start(t, "switchyard", clientSec, time.Hour)
	slack := slacktest.New(t)

	withBearer := destination("erp", erp.URL, []string{"events.order.>"}, 3)
	withBearer.Auth = config.Auth{Type: config.AuthBearer, Token: bearer}
	withBearer.Headers = map[string]config.Secret{"X-Partner-Key": partnerKey}
	withBearer.SyncHeaders = []string{"X-Echo"}
	withOAuth := destination("crm", crm.URL, []string{"events.invoice.>"}, 3)
	withOAuth.Auth = config.Auth{Type: config.AuthOAuth2ClientCredentials, TokenURL: tokens.URL, ClientID: "switchyard", ClientSecret: clientSec}
	cfg := config.Config{Destinations: []config.Destination{withBearer, withOAuth}}
	cfg.Ingress.APIKeys = []config.IngressAPIKey{{Name: "orders", Key: apiKey}}
	sys := startSystem(t, options{Config: cfg, SlackURL: slack.WebhookURL()})
	ctx := context.Background()

	// A synchronous publish to erp: the caller gets the partner's answer.
	req, _ := http.NewRequest(http.MethodPost, sys.Ingress.URL+"/v1/events?wait=5s",
		strings.NewReader(`{"type": "order.created", "data": {"order_id": 42}}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+apiKey)
	req.Header.Set("Idempotency-Key", "o-echo")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var answer syncAnswer
	err = json.NewDecoder(resp.Body).Decode(&answer)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	d := answer.Destinations["erp"]
	if d.StatusCode != http.StatusBadRequest || !strings.Contains(d.Body, outbound.Redacted) {
		t.Fatalf("synchronous answer %+v, want erp's 400 with its echo redacted", answer)
	}
	if _, err := events.Publish(ctx, sys.JS, events.Event{ID: "inv-echo", Type: "invoice.created", Data: []byte(`{"invoice":7}`)}); err != nil {
		t.Fatal(err)
	}

	api := &auditapi.Client{BaseURL: sys.AuditAPI.URL, RequestedBy: "e2e"}
	for _, id := range []string{"orders:o-echo", "inv-echo"} {
		ev := waitfor.Value(t, "the dead letter of "+id+" in the audit log", func() (auditapi.EventDetail, bool) {
			ev, err := api.GetEvent(ctx, id)
			return ev, err == nil && len(ev.DeadLetters) == 1 && len(ev.Attempts) == 1
		})
		if s := ev.DeadLetters[0].ResponseSnippet; !strings.Contains(s, outbound.Redacted) || !strings.Contains(s, "you_sent") {
			t.Errorf("dead letter of %s keeps %q, want the echo with the credentials redacted", id, s)
		}
	}
	msgs := waitfor.Value(t, "the DeliveryDeadLettered alerts of erp and crm in Slack", func() ([]slacktest.Message, bool) {
		m := slack.Accepted()
		seen := map[string]bool{}
		for _, x := range m {
			for _, dest := range []string{"erp", "crm"} {
				if strings.Contains(string(x.Raw), "dead-lettered on "+dest) {
					seen[dest] = true
				}
			}
		}
		return m, seen["erp"] && seen["crm"]
	})

	secrets := append([]string{bearer, partnerKey, clientSec}, tokens.Issued()...)
	if len(tokens.Issued()) == 0 {
		t.Fatal("no OAuth2 token was issued")
	}
	kept := map[string]string{"the synchronous answer": d.Body + " " + strings.Join(mapValues(d.Headers), " ")}
	for i, m := range msgs {
		kept["Slack message "+string(rune('0'+i))] = string(m.Raw)
	}
	for _, m := range natstest.StreamMsgs(t, sys.JS, natsx.StreamDeadLetters, "dlq.>") {
		kept["DEAD_LETTERS "+m.Subject] += string(m.Data)
	}
	for what, text := range kept {
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("%s contains the credential %q", what, s)
			}
		}
	}
	sys.assertNotInAuditLog(t, secrets...)
}

func mapValues(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}
