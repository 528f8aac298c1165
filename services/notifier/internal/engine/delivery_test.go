package engine

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/proto"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/testing/slacktest"
	"github.com/switchyard/switchyard/pkg/testing/waitfor"
	"github.com/switchyard/switchyard/pkg/topology"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/notifier/internal/alerting"
	"github.com/switchyard/switchyard/services/notifier/internal/rules"
	"github.com/switchyard/switchyard/services/notifier/internal/sender"
)

// afterSend runs a hook once a send was accepted, before the engine goes on
// to record it.
type afterSend struct {
	sender.Sender
	mu   sync.Mutex
	hook func()
}

func (a *afterSend) set(hook func()) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.hook = hook
}

func (a *afterSend) Send(ctx context.Context, al sender.Alert) error {
	err := a.Sender.Send(ctx, al)
	a.mu.Lock()
	hook := a.hook
	a.hook = nil
	a.mu.Unlock()
	if err == nil && hook != nil {
		hook()
	}
	return err
}

// alertState reads an alert's state from KV.
func (e *env) alertState(rule string, labels map[string]string) *switchyardv1.Alert {
	e.t.Helper()
	kv, err := e.js.KeyValue(context.Background(), topology.NotifierStateBucket)
	if err != nil {
		e.t.Fatal(err)
	}
	entry, err := kv.Get(context.Background(), alerting.Key(alerting.Fingerprint(rule, labels)))
	if err != nil {
		e.t.Fatalf("read alert %s %v: %v", rule, labels, err)
	}
	var a switchyardv1.Alert
	if err := proto.Unmarshal(entry.Value(), &a); err != nil {
		e.t.Fatal(err)
	}
	return &a
}

// A shutdown that begins between Slack's 200 and the state write still
// stores the outcome before the message is acknowledged: the alert is not
// left with a pending message forever (which would silence it for that
// sender in every later episode), and the page is not sent twice.
func TestShutdownAfterTheSendStillRecordsTheOutcome(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	slack := &afterSend{Sender: e.slackSender()}
	r := e.start(slack)
	cancel, stopping := r.cancel, make(chan struct{})
	slack.set(func() { // the notifier is told to stop right after the 200
		cancel()
		close(stopping)
	})

	e.emit(deadLetter("erp", 1))
	e.clock.Advance(30 * time.Second)
	r.eng.poke()
	waitfor.True(t, "Slack accepted the page", func() bool {
		select {
		case <-stopping:
			return true
		default:
			return false
		}
	})
	e.stop(r)

	erp := map[string]string{"destination": "erp"}
	if p := e.alertState(rules.DeliveryDeadLettered, erp).GetSenders()["slack"].GetPending(); p != nil {
		t.Fatalf("the sent page is still pending after the shutdown: %v", p)
	}
	if recs := e.alertRecords(); len(recs) != 1 || !recs[0].Delivered {
		t.Errorf("alert audit records = %v, want the delivered page", recs)
	}

	// The next process tells the recovery, and never pages twice.
	e.start()
	e.settle()
	e.advance(5 * time.Minute)
	e.advance(26 * time.Minute)
	e.wantTitles("[FIRING][critical] 1 delivery dead-lettered on erp", "[RESOLVED][critical] DeliveryDeadLettered on erp")
}

// A message that NOTIFICATIONS lost while Slack was down (its max age, a
// purge) is made again and sent; one whose body an older notifier did not
// keep is given up, logged and audited, and its alert goes on.
func TestLostMessageIsMadeAgain(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	down := slacktest.New(t, slacktest.Answer{Status: 503, Text: "service_unavailable"})
	r := e.start(sender.NewSlack(down.WebhookURL(), sender.Pacing{PerSecond: 100, Burst: 10}))
	e.emit(deadLetter("erp", 1), deadLetter("crm", 2))
	e.clock.Advance(30 * time.Second)
	r.eng.poke()
	waitfor.True(t, "both pages tried", func() bool { return len(down.Messages()) >= 2 })
	e.stop(r)

	ctx := context.Background()
	stream, err := e.js.Stream(ctx, topology.StreamNotifications)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Purge(ctx); err != nil {
		t.Fatal(err)
	}
	// crm's state as an older notifier left it: no body once published.
	kv, err := e.js.KeyValue(ctx, topology.NotifierStateBucket)
	if err != nil {
		t.Fatal(err)
	}
	crm := map[string]string{"destination": "crm"}
	key := alerting.Key(alerting.Fingerprint(rules.DeliveryDeadLettered, crm))
	entry, err := kv.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	old := e.alertState(rules.DeliveryDeadLettered, crm)
	p := old.GetSenders()["slack"].GetPending()
	if p == nil || !p.Published || len(p.Notification) == 0 {
		t.Fatalf("crm's pending page = %v, want a published one with its body", p)
	}
	lostSeq := p.Sequence
	p.Notification = nil
	data, _ := proto.Marshal(old)
	if _, err := kv.Update(ctx, key, data, entry.Revision()); err != nil {
		t.Fatal(err)
	}

	e.start()
	e.advance(time.Minute)
	e.wantTitles() // not looked for before the ack wait
	e.advance(time.Minute)
	e.wantTitles("[FIRING][critical] 1 delivery dead-lettered on erp")
	if !strings.Contains(e.logs.String(), "alert message lost from the NOTIFICATIONS stream before it was sent; sending it again") {
		t.Error("the recovery was not logged")
	}
	var gaveUp *switchyardv1.AlertNotification
	for _, rec := range e.alertRecords() {
		if rec.Labels["destination"] == "crm" {
			gaveUp = rec
		}
	}
	if gaveUp == nil || gaveUp.Delivered || gaveUp.Sequence != lostSeq || !strings.Contains(gaveUp.Error, "lost from the NOTIFICATIONS stream") {
		t.Fatalf("crm's alert record = %v, want the lost page given up", gaveUp)
	}
	// crm's alert is not stuck: its next news goes out.
	e.emit(deadLetter("crm", 3))
	e.advance(5 * time.Minute) // the group interval since the give-up
	e.wantTitles("on erp", "[UPDATE][critical] 1 more delivery dead-lettered on crm (2 in all)")
	e.advance(31 * time.Minute)
	e.wantTitles("on erp", "on crm", "[RESOLVED][critical] DeliveryDeadLettered on", "[RESOLVED][critical] DeliveryDeadLettered on")
	if resolved := strings.Join(e.titles()[2:], "\n"); !strings.Contains(resolved, "on erp") || !strings.Contains(resolved, "on crm") {
		t.Errorf("resolved:\n%s\nwant erp and crm", resolved)
	}
}

// Every counter series exists at 0 from the start, so that rate() and
// increase() see a sender's first failure.
func TestMetricsStartAtZero(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	log := slog.New(slog.DiscardHandler)
	_, err := New(nil, auditlog.NewEmitter(nil, "notifier"), Config{
		Logger: log, Registerer: reg, Senders: []sender.Sender{sender.NewWebhook("https://bridge.example/alerts", sender.Pacing{})},
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]int{
		"switchyard_notifier_send_failures_total": len(sender.FailureReasons),
		"switchyard_notifier_notifications_total": 5,
		"switchyard_notifier_records_total":       len(auditlog.Kinds),
		"switchyard_notifier_state_writes_total":  3,
		"switchyard_notifier_alerts_firing":       len(rules.Names),
		"switchyard_notifier_flushes_total":       1,
	} {
		if n, err := testutil.GatherAndCount(reg, name); err != nil || n != want {
			t.Errorf("%s: %d series (%v), want %d", name, n, err, want)
		}
	}
	const want = `
# HELP switchyard_notifier_send_failures_total Failed sends by sender and reason (throttled, network, rate_limited, unavailable: retried; rejected, invalid: permanent, also audited).
# TYPE switchyard_notifier_send_failures_total counter
switchyard_notifier_send_failures_total{permanent="false",reason="network",sender="webhook"} 0
switchyard_notifier_send_failures_total{permanent="false",reason="rate_limited",sender="webhook"} 0
switchyard_notifier_send_failures_total{permanent="false",reason="throttled",sender="webhook"} 0
switchyard_notifier_send_failures_total{permanent="false",reason="unavailable",sender="webhook"} 0
switchyard_notifier_send_failures_total{permanent="true",reason="invalid",sender="webhook"} 0
switchyard_notifier_send_failures_total{permanent="true",reason="rejected",sender="webhook"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "switchyard_notifier_send_failures_total"); err != nil {
		t.Error(err)
	}
}
