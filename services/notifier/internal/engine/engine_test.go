package engine

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/natstest"
	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/slacktest"
	"github.com/switchyard/switchyard/pkg/waitfor"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/notifier/internal/sender"
)

type testEnv struct {
	js jetstream.JetStream
}

// start runs an engine against a fresh embedded NATS until the test ends.
func start(t *testing.T, s sender.Sender) *testEnv {
	t.Helper()
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	e, err := New(js, auditlog.NewEmitter(js, "notifier"), Config{Sender: s, Logger: natstest.Logger(t), RetryWait: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run = %v after cancel, want nil", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after its context was cancelled")
		}
	})
	return &testEnv{js: js}
}

func deadLetter(id string) *switchyardv1.DeadLetter {
	return &switchyardv1.DeadLetter{
		Id:             id,
		EventId:        "shop:msg_2KWPBgLlAfxdpx2AI54pPJ85f4W",
		Destination:    "erp",
		Subject:        "webhooks.shop.order_created",
		Stream:         "EVENTS",
		StreamSeq:      42,
		Attempts:       6,
		LastStatusCode: 503,
		LastError:      "HTTP 503 Service Unavailable",
		Reason:         switchyardv1.DeadLetterReason_DEAD_LETTER_REASON_MAX_ATTEMPTS,
		DeadLetteredAt: timestamppb.Now(),
	}
}

func (e *testEnv) emit(t *testing.T, rec *switchyardv1.AuditRecord) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := auditlog.NewEmitter(e.js, "dispatcher").Emit(ctx, rec); err != nil {
		t.Fatalf("emit: %v", err)
	}
}

func (e *testEnv) emitDeadLetter(t *testing.T, dl *switchyardv1.DeadLetter) {
	t.Helper()
	e.emit(t, &switchyardv1.AuditRecord{Id: "dead_letter:" + dl.Id, Detail: &switchyardv1.AuditRecord_DeadLettered{DeadLettered: dl}})
}

// alerts returns the alert records in AUDIT.
func (e *testEnv) alerts(t *testing.T) []*switchyardv1.AuditRecord {
	t.Helper()
	return natstest.AuditRecords(t, e.js, "audit."+auditlog.KindAlert+".>")
}

// waitIdle waits until the notifier has acknowledged everything in AUDIT.
func (e *testEnv) waitIdle(t *testing.T) {
	t.Helper()
	waitfor.True(t, "notifier consumer acknowledged everything", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := e.js.Consumer(ctx, natsx.StreamAudit, natsx.ConsumerNotifier)
		if err != nil {
			t.Fatal(err)
		}
		info, err := c.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.NumPending == 0 && info.NumAckPending == 0
	})
}

func TestDeadLetterSendsOneSlackMessage(t *testing.T) {
	t.Parallel()
	slack := slacktest.New(t, slacktest.Answer{Status: 200, Text: "ok"})
	e := start(t, sender.NewSlack(slack.WebhookURL()))

	// Records that are not dead letters raise no alert.
	e.emit(t, &switchyardv1.AuditRecord{Detail: &switchyardv1.AuditRecord_DeliveryAttempt{DeliveryAttempt: &switchyardv1.DeliveryAttempt{
		EventId: "ev-0", Destination: "erp", Attempt: 1, StatusCode: 503, Outcome: switchyardv1.Outcome_OUTCOME_RETRYABLE,
	}}})
	dl := deadLetter("EVENTS:42:erp")
	e.emitDeadLetter(t, dl)

	var alert *switchyardv1.AuditRecord
	waitfor.True(t, "alert audit record", func() bool {
		as := e.alerts(t)
		if len(as) > 0 {
			alert = as[0]
		}
		return len(as) > 0
	})
	e.waitIdle(t)

	msgs := slack.Messages()
	if len(msgs) != 1 {
		t.Fatalf("Slack got %d messages, want 1", len(msgs))
	}
	m := msgs[0]
	all := m.Text + "\n" + strings.Join(m.Fields, "\n")
	for _, want := range []string{"erp", dl.EventId, "6", "HTTP 503 Service Unavailable", "Attempts", "Last error"} {
		if !strings.Contains(all, want) {
			t.Errorf("Slack message lacks %q:\n%s", want, all)
		}
	}
	if !strings.Contains(m.Text, "erp") {
		t.Errorf("notification text %q does not name the destination", m.Text)
	}

	n := alert.GetAlert()
	if alert.Id != "alert:dead_letter:"+dl.Id || alert.Service != "notifier" || n == nil {
		t.Fatalf("alert record = %v", alert)
	}
	if n.Rule != "DeliveryDeadLettered" || !n.Delivered || n.Sender != "slack" || n.Error != "" ||
		n.State != switchyardv1.AlertState_ALERT_STATE_FIRING || n.Labels["destination"] != "erp" {
		t.Errorf("alert = %v", n)
	}
	if got := e.alerts(t); len(got) != 1 {
		t.Errorf("%d alert records, want 1", len(got))
	}
}

func TestSlackRateLimitIsRetriedLater(t *testing.T) {
	t.Parallel()
	slack := slacktest.New(t,
		slacktest.Answer{Status: http.StatusTooManyRequests, Text: "rate_limited", RetryAfter: "1"},
		slacktest.Answer{Status: 200, Text: "ok"},
	)
	e := start(t, sender.NewSlack(slack.WebhookURL()))
	e.emitDeadLetter(t, deadLetter("EVENTS:7:erp"))

	waitfor.True(t, "alert delivered after the rate limit", func() bool {
		as := e.alerts(t)
		return len(as) == 1 && as[0].GetAlert().GetDelivered()
	})
	e.waitIdle(t)
	msgs := slack.Messages()
	if len(msgs) != 2 {
		t.Fatalf("Slack got %d messages, want 2 (rate limited, then sent)", len(msgs))
	}
	if gap := msgs[1].At.Sub(msgs[0].At); gap < time.Second {
		t.Errorf("retried %v after a 429 with Retry-After: 1, want at least 1s", gap)
	}
	if string(msgs[0].Raw) != string(msgs[1].Raw) {
		t.Error("the retry sent a different message")
	}
}

func TestSlackServerErrorIsRetried(t *testing.T) {
	t.Parallel()
	slack := slacktest.New(t,
		slacktest.Answer{Status: http.StatusInternalServerError, Text: "internal_error"},
		slacktest.Answer{Status: 200, Text: "ok"},
	)
	e := start(t, sender.NewSlack(slack.WebhookURL()))
	e.emitDeadLetter(t, deadLetter("EVENTS:8:erp"))
	waitfor.True(t, "alert delivered after a Slack 500", func() bool {
		as := e.alerts(t)
		return len(as) == 1 && as[0].GetAlert().GetDelivered()
	})
	msgs := slack.Messages()
	if len(msgs) != 2 {
		t.Fatalf("Slack got %d messages, want 2", len(msgs))
	}
	// No Retry-After: the engine's RetryWait applies.
	if gap := msgs[1].At.Sub(msgs[0].At); gap < 300*time.Millisecond {
		t.Errorf("retried after %v, want at least RetryWait (300ms)", gap)
	}
}

func TestPermanentSlackFailureIsRecordedNotRetried(t *testing.T) {
	t.Parallel()
	slack := slacktest.New(t, slacktest.Answer{Status: 200, Text: "ok"})
	// A revoked webhook: Slack answers 404 no_service.
	e := start(t, sender.NewSlack(slack.URL+"/services/T0000SECRET/B0000SECRET/REVOKEDSECRET"))
	dl := deadLetter("EVENTS:9:erp")
	e.emitDeadLetter(t, dl)

	waitfor.True(t, "undelivered alert record", func() bool { return len(e.alerts(t)) == 1 })
	e.waitIdle(t)
	n := e.alerts(t)[0].GetAlert()
	if n.Delivered || !strings.Contains(n.Error, "no_service") {
		t.Errorf("alert = %v, want undelivered with Slack's reason", n)
	}
	if strings.Contains(n.Error, "SECRET") || strings.Contains(n.Error, "/services/") {
		t.Errorf("alert error %q reveals the webhook URL", n.Error)
	}
	if got := len(slack.Accepted()); got != 0 {
		t.Errorf("fake Slack accepted %d messages on a revoked URL", got)
	}
}

func TestUndecodableRecordDoesNotStopTheEngine(t *testing.T) {
	t.Parallel()
	slack := slacktest.New(t, slacktest.Answer{Status: 200, Text: "ok"})
	e := start(t, sender.NewSlack(slack.WebhookURL()))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m := nats.NewMsg("audit.other.garbage")
	m.Data = []byte{0xff, 0xff, 0xff}
	if _, err := e.js.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
	e.emitDeadLetter(t, deadLetter("EVENTS:10:erp"))
	waitfor.True(t, "alert after an undecodable record", func() bool { return len(slack.Messages()) == 1 })
	e.waitIdle(t)
}

func TestDeadLetterAlert(t *testing.T) {
	t.Parallel()
	dl := deadLetter("EVENTS:1:erp")
	dl.LastError = ""
	a := DeadLetterAlert(dl)
	if !a.Firing || a.Title != "Delivery dead-lettered: erp" {
		t.Errorf("alert = %+v", a)
	}
	got := map[string]string{}
	for _, f := range a.Fields {
		got[f.Label] = f.Value
	}
	want := map[string]string{
		"Destination": "erp",
		"Event":       "`" + dl.EventId + "`",
		"Attempts":    "6",
		"Last error":  "(none)",
		"Reason":      "DEAD_LETTER_REASON_MAX_ATTEMPTS",
		"Subject":     "webhooks.shop.order_created",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("field %s = %q, want %q", k, got[k], v)
		}
	}
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	if _, err := New(nil, nil, Config{}); err == nil {
		t.Error("New without sender and logger succeeded")
	}
}
