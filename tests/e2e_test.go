package tests

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/events"
	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/testing/slacktest"
	"github.com/switchyard/switchyard/pkg/testing/waitfor"
	"github.com/switchyard/switchyard/services/auditor/auditapi"
)

// The official Standard Webhooks test vector.
const (
	vectorSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vectorID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vectorTimestamp = 1614265330
	vectorBody      = `{"test": 2432232314}`
	vectorSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

// TestEndToEnd runs ingress, dispatcher, notifier and auditor against an
// embedded NATS and the real Postgres, with fake partners and a fake Slack.
func TestEndToEnd(t *testing.T) {
	shop := newPartner(t, always(http.StatusOK))
	erp := newPartner(t, func(attempt int) int {
		if attempt <= 2 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	crm := newPartner(t, always(http.StatusInternalServerError))
	slack := slacktest.New(t)

	sys := startSystem(t, options{
		Config: config.Config{
			Sources: []config.Source{{
				Name: "shop", Scheme: "standard-webhooks", Secrets: []config.Secret{vectorSecret},
			}},
			Destinations: []config.Destination{
				destination("shop-sink", shop.URL, []string{"webhooks.shop.>"}, 3),
				destination("erp", erp.URL, []string{"events.order.>"}, 6),
				destination("crm", crm.URL, []string{"events.invoice.>"}, 3),
			},
		},
		Now:      func() time.Time { return time.Unix(vectorTimestamp, 0) },
		SlackURL: slack.WebhookURL(),
	})
	ctx := context.Background()

	postWebhook := func(t *testing.T, id, signature, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, sys.Ingress.URL+"/webhooks/shop", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("webhook-id", id)
		req.Header.Set("webhook-timestamp", "1614265330")
		req.Header.Set("webhook-signature", signature)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("POST webhook: %v", err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	storedOn := func(t *testing.T, filter string) uint64 {
		t.Helper()
		stream, err := sys.JS.Stream(ctx, natsx.StreamEvents)
		if err != nil {
			t.Fatal(err)
		}
		info, err := stream.Info(ctx, jetstream.WithSubjectFilter(filter))
		if err != nil {
			t.Fatal(err)
		}
		var n uint64
		for _, c := range info.State.Subjects {
			n += c
		}
		return n
	}
	api := &auditapi.Client{BaseURL: sys.AuditAPI.URL, RequestedBy: "e2e"}
	// audited waits until the audit log's account of event id satisfies
	// done, and returns it.
	audited := func(t *testing.T, what, id string, done func(auditapi.EventDetail) bool) auditapi.EventDetail {
		t.Helper()
		return waitfor.Value(t, what, func() (auditapi.EventDetail, bool) {
			ev, err := api.GetEvent(ctx, id)
			return ev, err == nil && done(ev)
		})
	}

	t.Run("signed webhook is accepted and delivered", func(t *testing.T) {
		status, body := postWebhook(t, vectorID, vectorSignature, vectorBody)
		if status != http.StatusAccepted {
			t.Fatalf("status %d, body %s; want 202", status, body)
		}
		id := "shop:" + vectorID
		got := waitfor.Value(t, "the shop partner to receive the webhook", func() ([]*recorded, bool) {
			r := shop.got(id)
			return r, len(r) > 0
		})
		if string(got[0].body) != vectorBody {
			t.Errorf("partner got body %q, want the original %q byte for byte", got[0].body, vectorBody)
		}
		if ct := got[0].header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("partner got Content-Type %q", ct)
		}
		ev := audited(t, "the event and its delivery in the audit log", id, func(ev auditapi.EventDetail) bool {
			return ev.Subject != "" && len(ev.Attempts) == 1
		})
		if ev.Subject != "webhooks.shop.unknown" || ev.PayloadText == nil || *ev.PayloadText != vectorBody || ev.Attempts[0].Outcome != "delivered" {
			t.Errorf("audit log has %+v", ev)
		}
	})

	t.Run("published event is retried and delivered on the third attempt", func(t *testing.T) {
		id := "order-1042"
		if _, err := events.Publish(ctx, sys.JS, events.Event{ID: id, Type: "order.created", Data: []byte(`{"order":1042}`)}); err != nil {
			t.Fatal(err)
		}
		// Wait until the delivery is over (nothing pending or in flight on
		// the erp consumer) and its final attempt is in Postgres; then a
		// late fourth attempt could not hide.
		waitfor.True(t, "the erp consumer to settle", func() bool { return sys.settled(t, "erp") })
		ev := audited(t, "the final attempt in the Postgres audit log", id, func(ev auditapi.EventDetail) bool {
			return len(ev.Attempts) > 0 && ev.Attempts[len(ev.Attempts)-1].Final
		})
		want := []struct {
			status  int
			outcome string
		}{{503, "retryable"}, {503, "retryable"}, {200, "delivered"}}
		if len(ev.Attempts) != 3 {
			t.Fatalf("got %d attempts, want 3: %+v", len(ev.Attempts), ev.Attempts)
		}
		for i, a := range ev.Attempts {
			if a.Attempt != i+1 || a.StatusCode != want[i].status || a.Outcome != want[i].outcome || a.Destination != "erp" {
				t.Errorf("attempt %d = %+v, want #%d %d %s", i, a, i+1, want[i].status, want[i].outcome)
			}
		}
		if n := len(erp.got(id)); n != 3 {
			t.Errorf("the erp partner got %d requests, want exactly 3", n)
		}
		if got := erp.got(id)[0].header.Get("Idempotency-Key"); got != id {
			t.Errorf("Idempotency-Key = %q, want the event id", got)
		}
	})

	t.Run("always-failing partner ends in one dead letter and one Slack message", func(t *testing.T) {
		id := "invoice-77"
		if _, err := events.Publish(ctx, sys.JS, events.Event{ID: id, Type: "invoice.failed", Data: []byte(`{"invoice":77}`)}); err != nil {
			t.Fatal(err)
		}
		ev := audited(t, "the dead letter in the audit log", id, func(ev auditapi.EventDetail) bool { return len(ev.DeadLetters) == 1 })
		if n := len(crm.got(id)); n != 3 {
			t.Errorf("the crm partner got %d attempts, want MaxDeliver = 3", n)
		}
		if dl := ev.DeadLetters[0]; dl.Destination != "crm" || dl.Attempts != 3 || dl.Reason != "max_attempts" {
			t.Errorf("dead letter %+v", dl)
		}
		stream, err := sys.JS.Stream(ctx, natsx.StreamDeadLetters)
		if err != nil {
			t.Fatal(err)
		}
		info, err := stream.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Msgs != 1 {
			t.Errorf("DEAD_LETTERS holds %d messages, want 1", info.State.Msgs)
		}
		waitfor.True(t, "the Slack alert", func() bool { return len(slack.Accepted()) > 0 })
		// The alert's own audit record is written after Slack accepted it;
		// once it is in Postgres, every message for this dead letter has
		// been sent.
		waitfor.True(t, "the alert's audit record", func() bool {
			var n int
			_ = sys.queryRow(t, "SELECT count(*) FROM audit_records WHERE kind = 'alert'", &n)
			return n == 1
		})
		msgs := slack.Accepted()
		if len(msgs) != 1 {
			t.Fatalf("Slack got %d messages, want 1: %v", len(msgs), msgs)
		}
		for _, want := range []string{"crm", id, "HTTP 500"} {
			if !strings.Contains(string(msgs[0].Raw), want) {
				t.Errorf("Slack message lacks %q: %s", want, msgs[0].Raw)
			}
		}
	})

	t.Run("bad signature is refused, audited, and publishes nothing", func(t *testing.T) {
		before := storedOn(t, "webhooks.shop.>")
		status, body := postWebhook(t, "msg_forged", vectorSignature, vectorBody)
		if status != http.StatusUnauthorized || !strings.Contains(body, "bad_signature") {
			t.Fatalf("status %d body %s; want 401 bad_signature", status, body)
		}
		rej := waitfor.Value(t, "the rejection in the audit log", func() ([]auditapi.Rejection, bool) {
			page, err := api.ListRejections(ctx, nil)
			return page.Items, err == nil && len(page.Items) > 0
		})
		r := rej[0]
		// A rejection names the event as it would be named: <source>:<delivery id>.
		if r.Source != "shop" || r.Reason != "bad_signature" || r.RemoteAddr != "127.0.0.1" || r.EventID != "shop:msg_forged" {
			t.Errorf("rejection %+v", r)
		}
		if after := storedOn(t, "webhooks.shop.>"); after != before {
			t.Errorf("EVENTS webhooks.shop.> went from %d to %d messages; a refused webhook must publish nothing", before, after)
		}
		sys.assertNotInAuditLog(t, vectorSecret, strings.TrimPrefix(vectorSecret, "whsec_"), vectorSignature)
	})

	t.Run("same webhook id twice is one event and one delivery", func(t *testing.T) {
		before := storedOn(t, "webhooks.shop.>")
		// One id sent three times in a row: accepted once, then answered
		// as a duplicate without storing anything.
		dupID, dupSig := "msg_again", signVector(t, "msg_again", vectorBody)
		for i := range 3 {
			status, body := postWebhook(t, dupID, dupSig, vectorBody)
			want, wantStatus := "accepted", http.StatusAccepted
			if i > 0 {
				want, wantStatus = "duplicate", http.StatusOK
			}
			if status != wantStatus || !strings.Contains(body, want) {
				t.Fatalf("send %d answered %d %s; want %d %s", i+1, status, body, wantStatus, want)
			}
		}
		if after := storedOn(t, "webhooks.shop.>"); after != before+1 {
			t.Errorf("EVENTS went from %d to %d shop webhooks; want one more", before, after)
		}
		before++
		// A fresh id, twice, concurrently: one event, one delivery.
		id, sig := "msg_twice", signVector(t, "msg_twice", vectorBody)
		var wg sync.WaitGroup
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if status, body := postWebhook(t, id, sig, vectorBody); status/100 != 2 {
					t.Errorf("status %d body %s", status, body)
				}
			}()
		}
		wg.Wait()
		audited(t, "the delivery of msg_twice", "shop:"+id, func(ev auditapi.EventDetail) bool { return len(ev.Attempts) >= 1 })
		if n := storedOn(t, "webhooks.shop.>"); n != before+1 {
			t.Errorf("EVENTS has %d shop webhooks, want %d", n, before+1)
		}
		waitfor.True(t, "the shop-sink consumer to settle", func() bool { return sys.settled(t, "shop-sink") })
		for _, id := range []string{"shop:" + id, "shop:" + dupID} {
			if n := len(shop.got(id)); n != 1 {
				t.Errorf("partner got %d deliveries of %s, want 1", n, id)
			}
		}
	})
}

// signVector signs body with the vector secret at the vector time.
func signVector(t *testing.T, id, body string) string {
	t.Helper()
	sw := mustStandard(t)
	return sw.Sign(id, time.Unix(vectorTimestamp, 0), []byte(body))
}
