package engine

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/testing/slacktest"
	"github.com/switchyard/switchyard/pkg/testing/waitfor"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/notifier/internal/alerting"
	"github.com/switchyard/switchyard/services/notifier/internal/rules"
	"github.com/switchyard/switchyard/services/notifier/internal/sender"
)

// A burst of 100 dead letters on one destination is one page after the
// group wait; what comes later is one digest per group interval; 30 quiet
// minutes resolve it.
func TestDeadLetterBurstIsOnePageThenADigest(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.start()

	e.emit(deadLetters("erp", 1, 100)...)
	e.settle()
	e.advance(29 * time.Second)
	e.wantTitles() // the group wait
	e.advance(time.Second)
	e.wantTitles("[FIRING][critical] 100 deliveries dead-lettered on erp")

	page := e.slack.Accepted()[0]
	all := page.Text + "\n" + strings.Join(page.Fields, "\n")
	for _, want := range []string{"*Destination*\nerp", "*Rule*\nDeliveryDeadLettered", "*Dead letters*\n100", "*Last error*\nHTTP 503: Service Unavailable",
		"*Last event*\n`shop:msg_", "*First seen*\n2026-03-01 12:00:00 UTC"} {
		if !strings.Contains(all, want) {
			t.Errorf("the page lacks %q:\n%s", want, all)
		}
	}
	if !strings.Contains(string(page.Raw), "https://switchyard.example.com/v1/deliveries?destination=erp\\u0026amp;status=dead_lettered|Dead letters of erp") {
		t.Errorf("the page lacks the link to the dead letters: %s", page.Raw)
	}
	if c := page.Color; c != "#d50200" {
		t.Errorf("firing colour %s", c)
	}

	// 20 more over the next minutes: nothing until the group interval.
	e.emit(deadLetters("erp", 101, 20)...)
	e.advance(2 * time.Minute)
	e.wantTitles("[FIRING]")
	e.advance(3 * time.Minute)
	e.wantTitles("[FIRING]", "[UPDATE][critical] 20 more deliveries dead-lettered on erp (120 in all)")
	if digest := strings.Join(e.slack.Accepted()[1].Fields, "\n"); !strings.Contains(digest, "*New since the last message*\n20") {
		t.Errorf("digest fields:\n%s", digest)
	}

	// The same dead letter read again (a redelivery after a crash) is not
	// news.
	e.emit(deadLetter("erp", 120))
	e.advance(6 * time.Minute)
	e.wantTitles("[FIRING]", "[UPDATE]")

	// 30 minutes after the last one: resolved, in green.
	e.advance(25 * time.Minute)
	e.wantTitles("[FIRING]", "[UPDATE]", "[RESOLVED][critical] DeliveryDeadLettered on erp resolved")
	if c := e.slack.Accepted()[2].Color; c != "#2eb886" {
		t.Errorf("resolved colour %s", c)
	}

	recs := e.alertRecords()
	if len(recs) != 3 {
		t.Fatalf("%d alert audit records, want 3", len(recs))
	}
	for i, kind := range []string{alerting.KindFiring, alerting.KindUpdate, alerting.KindResolved} {
		r := recs[i]
		if r.Kind != kind || !r.Delivered || r.Sender != "slack" || r.Rule != rules.DeliveryDeadLettered || r.Labels["destination"] != "erp" || r.Attempts != 1 {
			t.Errorf("alert record %d = %v", i, r)
		}
	}
	if recs[0].Count != 100 || recs[1].Count != 120 || recs[2].State != switchyardv1.AlertState_ALERT_STATE_RESOLVED {
		t.Errorf("counts %d %d, last state %v", recs[0].Count, recs[1].Count, recs[2].State)
	}
}

// The error-rate rule over synthetic attempt streams: fires as a warning,
// escalates to critical, and resolves after 10 minutes under 12.5%.
func TestErrorRateFiresEscalatesAndResolves(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.start()
	minute := func(failed int) {
		e.emit(e.attempts("erp", 20, failed, 40*time.Millisecond)...)
		e.advance(time.Minute)
	}
	for range 5 {
		minute(2) // 10%: healthy enough
	}
	e.wantTitles()
	for range 3 {
		minute(8) // 40%: the 5-minute ratio passes 25% in the third minute
	}
	e.wantTitles("[FIRING][warning] erp fails")
	if got := e.titles()[0]; !strings.Contains(got, "%") {
		t.Errorf("title %q does not give the ratio", got)
	}
	for range 6 {
		minute(18) // 90%: critical; the update waits for the group interval
	}
	e.wantTitles("[FIRING][warning] erp fails", "[UPDATE][critical] erp fails")

	// Healthy again: the window needs 5 minutes to drop under 12.5%, then
	// 10 minutes under it resolve.
	for range 12 {
		minute(0)
	}
	e.wantTitles("[FIRING]", "[UPDATE]")
	for range 5 {
		minute(0)
	}
	e.wantTitles("[FIRING]", "[UPDATE]", "[RESOLVED][critical] PartnerErrorRateHigh on erp resolved")
}

// The latency rule: an hour of 100ms attempts is the baseline; a window of
// 1.5s attempts fires (above max(2 x 100ms, 1s)); fast attempts again
// resolve it after 10 minutes.
func TestLatencyFiresAndResolves(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.start()
	for range 60 {
		e.emit(e.attempts("erp", 10, 0, 100*time.Millisecond)...)
		e.clock.Advance(time.Minute)
	}
	e.settle()
	e.wantTitles()

	e.emit(e.attempts("erp", 30, 0, 1500*time.Millisecond)...)
	e.advance(30 * time.Second)
	e.wantTitles("[FIRING][warning] erp is slow: p95 1.")
	fields := strings.Join(e.slack.Accepted()[0].Fields, "\n")
	for _, want := range []string{"*Baseline*\n10", "*Fires above*\n1s"} {
		if !strings.Contains(fields, want) {
			t.Errorf("the page lacks %q:\n%s", want, fields)
		}
	}

	// Under 1.5 x 100ms once the slow attempts leave the window (5m), then
	// 10 minutes.
	for range 12 {
		e.emit(e.attempts("erp", 10, 0, 100*time.Millisecond)...)
		e.advance(time.Minute)
	}
	e.wantTitles("[FIRING]")
	for range 5 {
		e.emit(e.attempts("erp", 10, 0, 100*time.Millisecond)...)
		e.advance(time.Minute)
	}
	e.wantTitles("[FIRING]", "[RESOLVED][warning] PartnerLatencyHigh on erp resolved")
}

// While PartnerDown fires for a destination its other alerts stay quiet;
// other destinations are not affected; when it resolves, what still fires
// is told.
func TestPartnerDownInhibitsTheDestinationsOtherAlerts(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.start()
	e.emit(circuit("erp", switchyardv1.CircuitState_CIRCUIT_STATE_OPEN))
	e.emit(deadLetters("erp", 1, 10)...)
	e.emit(e.attempts("erp", 30, 30, time.Second)...)
	e.emit(deadLetters("crm", 100, 2)...)
	e.advance(30 * time.Second)
	got := strings.Join(e.titles(), "\n")
	if len(e.titles()) != 2 || !strings.Contains(got, "erp is down: its circuit breaker is open") || !strings.Contains(got, "2 deliveries dead-lettered on crm") {
		t.Fatalf("Slack got:\n%s\nwant PartnerDown for erp and the crm dead letters only", got)
	}
	e.advance(10 * time.Minute)
	if n := len(e.titles()); n != 2 {
		t.Fatalf("%d messages while PartnerDown fires, want 2: %v", n, e.titles())
	}

	e.emit(circuit("erp", switchyardv1.CircuitState_CIRCUIT_STATE_CLOSED))
	e.advance(time.Minute)
	if n := len(e.titles()); n != 2 {
		t.Fatalf("%d messages a minute after the breaker closed, want 2 (resolves after 2m)", n)
	}
	// The breaker has been closed 2 minutes: PartnerDown resolves, and the
	// erp dead letters (20 minutes old, still within 30) are told now. The
	// error rate window has emptied: it never fired to anyone.
	e.emit(deadLetter("erp", 11))
	e.advance(time.Minute)
	got = strings.Join(e.titles()[2:], "\n")
	if len(e.titles()) != 4 || !strings.Contains(got, "[RESOLVED][critical] PartnerDown on erp") || !strings.Contains(got, "[FIRING][critical] 11 deliveries dead-lettered on erp") {
		t.Fatalf("after recovery Slack got:\n%s", strings.Join(e.titles(), "\n"))
	}
	for _, title := range e.titles() {
		if strings.Contains(title, "fails") {
			t.Errorf("inhibited error-rate alert was sent: %q", title)
		}
	}
}

// A restart (or a crash between batches) never pages twice and never
// forgets a firing alert: the next process resolves it.
func TestNoDoublePageAcrossARestart(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	first := e.start()
	e.emit(deadLetters("erp", 1, 5)...)
	e.emit(deadLetters("crm", 50, 1)...)
	e.settle()
	e.advance(30 * time.Second)
	e.wantTitles("dead-lettered on", "dead-lettered on")
	e.stop(first)
	e.emit(deadLetters("erp", 6, 3)...) // no notifier runs: the next one reads these

	e.start()
	e.settle()
	e.advance(time.Minute)
	e.wantTitles("dead-lettered on", "dead-lettered on")
	e.advance(4 * time.Minute)
	e.wantTitles("dead-lettered on", "dead-lettered on", "3 more deliveries dead-lettered on erp (8 in all)")
	e.advance(31 * time.Minute)
	if n := len(e.titles()); n != 5 {
		t.Fatalf("Slack got %d messages, want 5 (two resolved):\n%s", n, strings.Join(e.titles(), "\n"))
	}
	for _, title := range e.titles()[3:] {
		if !strings.HasPrefix(title, "[RESOLVED]") {
			t.Errorf("%q, want resolved", title)
		}
	}

	// A restart inside the group wait: the next process sends the page.
	e.emit(deadLetters("erp", 100, 1)...)
	e.settle()
	e.advance(10 * time.Second)
	e.stop(e.replicas[0])
	e.start()
	e.advance(20 * time.Second)
	if n := len(e.titles()); n != 6 || !strings.Contains(e.titles()[5], "1 delivery dead-lettered on erp") {
		t.Fatalf("after a restart in the group wait: %s", strings.Join(e.titles(), "\n"))
	}
}

// Two replicas share the records, the state and the messages: every alert
// is paged once and resolved once.
func TestTwoReplicasPageOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.start()
	e.start()
	for i := range 10 {
		e.emit(deadLetters("erp", i*10, 10)...)
		e.emit(deadLetters("crm", 1000+i*10, 10)...)
		e.emit(e.attempts("erp", 10, 10, 500*time.Millisecond)...)
	}
	e.emit(circuit("crm", switchyardv1.CircuitState_CIRCUIT_STATE_OPEN))
	e.settle()
	e.advance(30 * time.Second)
	e.advance(time.Second)
	titles := e.titles()
	joined := strings.Join(titles, "\n")
	// crm is inhibited by its PartnerDown; erp has a dead-letter and an
	// error-rate alert.
	if len(titles) != 3 || !strings.Contains(joined, "100 deliveries dead-lettered on erp") || !strings.Contains(joined, "erp fails 100%") ||
		!strings.Contains(joined, "crm is down") {
		t.Fatalf("two replicas sent:\n%s", joined)
	}
	e.emit(circuit("crm", switchyardv1.CircuitState_CIRCUIT_STATE_CLOSED))
	for range 40 {
		e.advance(time.Minute)
	}
	joined = strings.Join(e.titles(), "\n")
	// crm's dead letters, muted while its breaker was open, are told when
	// it closes; then everything resolves, once.
	if n := len(e.titles()); n != 8 || strings.Count(joined, "[RESOLVED]") != 4 || !strings.Contains(joined, "[FIRING][critical] 100 deliveries dead-lettered on crm") {
		t.Fatalf("after recovery two replicas sent:\n%s", joined)
	}
	seen := map[string]bool{}
	for _, title := range e.titles() {
		key := title[:strings.Index(title, "]")] + describeTitle(title)
		if seen[key] {
			t.Errorf("sent twice: %q", title)
		}
		seen[key] = true
	}
	if n := len(e.alertRecords()); n != 8 {
		t.Errorf("%d alert audit records, want 8", n)
	}
}

func TestSlackRateLimitIsHonoured(t *testing.T) {
	t.Parallel()
	e := newEnv(t, slacktest.Answer{Status: http.StatusTooManyRequests, Text: "rate_limited", RetryAfter: "1"}, slacktest.OK)
	e.start()
	e.emit(deadLetter("erp", 7))
	e.advance(30 * time.Second)
	msgs := e.slack.Messages()
	if len(msgs) != 2 || msgs[0].Status != 429 || msgs[1].Status != 200 {
		t.Fatalf("Slack got %d requests, want a 429 then the accepted retry", len(msgs))
	}
	if gap := msgs[1].At.Sub(msgs[0].At); gap < time.Second {
		t.Errorf("retried %v after a 429 with Retry-After: 1, want at least 1s", gap)
	}
	if string(msgs[0].Raw) != string(msgs[1].Raw) {
		t.Error("the retry sent a different message")
	}
	recs := e.alertRecords()
	if len(recs) != 1 || !recs[0].Delivered || recs[0].Attempts != 2 {
		t.Errorf("alert records = %v, want one delivered on the second attempt", recs)
	}
}

func TestSlackServerErrorIsRetriedWithBackoff(t *testing.T) {
	t.Parallel()
	e := newEnv(t, slacktest.Answer{Status: 500, Text: "internal_error"}, slacktest.Answer{Status: 503}, slacktest.OK)
	e.start()
	e.emit(deadLetter("erp", 8))
	e.advance(30 * time.Second)
	msgs := e.slack.Messages()
	if len(msgs) != 3 || len(e.slack.Accepted()) != 1 {
		t.Fatalf("Slack got %d requests, want 3 (500, 503, ok)", len(msgs))
	}
	// RetryWait is 200ms in the tests, doubling.
	if gap := msgs[1].At.Sub(msgs[0].At); gap < 200*time.Millisecond {
		t.Errorf("first retry after %v, want at least 200ms", gap)
	}
	if gap := msgs[2].At.Sub(msgs[1].At); gap < 400*time.Millisecond {
		t.Errorf("second retry after %v, want at least 400ms", gap)
	}
}

// invalid_payload for one alert is logged, counted and audited, and the
// others go on; an alert whose firing message never got through is not
// "resolved" to anyone.
func TestPermanentFailureDoesNotBlockOtherAlerts(t *testing.T) {
	t.Parallel()
	e := newEnv(t, slacktest.Answer{Status: 400, Text: "invalid_payload"}, slacktest.OK)
	r := e.start()
	e.emit(deadLetter("erp", 1))
	e.settle()
	e.advance(30 * time.Second)
	e.emit(deadLetter("crm", 2))
	e.settle()
	e.advance(30 * time.Second)
	if n := len(e.slack.Messages()); n != 2 {
		t.Fatalf("Slack got %d requests, want 2", n)
	}
	e.wantTitles("1 delivery dead-lettered on crm")
	recs := e.alertRecords()
	if len(recs) != 2 || recs[0].Delivered || !strings.Contains(recs[0].Error, "invalid_payload") || recs[0].StatusCode != 400 || !recs[1].Delivered {
		t.Fatalf("alert records = %v", recs)
	}
	e.advance(31 * time.Minute)
	e.wantTitles("on crm", "[RESOLVED][critical] DeliveryDeadLettered on crm")
	if !strings.Contains(e.logs.String(), "alert could not be sent and will not be retried") {
		t.Error("the permanent failure was not logged")
	}
	if n := testutil.ToFloat64(r.eng.m.sendFailures.WithLabelValues("slack", sender.ReasonRejected, "true")); n != 1 {
		t.Errorf("send_failures_total{reason=rejected,permanent=true} = %v, want 1", n)
	}
	if n := testutil.ToFloat64(r.eng.m.notifications.WithLabelValues("slack", "given_up")); n != 1 {
		t.Errorf("notifications_total{outcome=given_up} = %v, want 1", n)
	}
}

// A revoked webhook (404 no_service) is a permanent failure; the URL is a
// secret and appears in no log line, error or audit record.
func TestRevokedWebhookNeverLogsTheURL(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.start(sender.NewSlack(e.slack.URL+"/services/T0000SECRET/B0000SECRET/REVOKEDSECRET", sender.Pacing{}))
	e.emit(deadLetter("erp", 9))
	e.advance(30 * time.Second)
	recs := e.alertRecords()
	if len(recs) != 1 || recs[0].Delivered || !strings.Contains(recs[0].Error, "no_service") {
		t.Fatalf("alert records = %v", recs)
	}
	for _, text := range []string{e.logs.String(), recs[0].Error} {
		if strings.Contains(text, "SECRET") || strings.Contains(text, "/services/") {
			t.Errorf("the webhook URL leaked:\n%s", text)
		}
	}
}

func TestSilenceMutesUntilItEnds(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.start()
	st := silenceStore(t, e)
	if _, err := st.Create(context.Background(), silenceSpec(t, e.clock.Now().Add(10*time.Minute), "destination=erp", "rule=~Delivery.*")); err != nil {
		t.Fatal(err)
	}
	waitfor.True(t, "the notifier sees the silence", func() bool {
		return r.eng.silenced.Muting(map[string]string{"destination": "erp", "rule": rules.DeliveryDeadLettered}, e.clock.Now()) != ""
	})
	e.emit(deadLetter("erp", 1), deadLetter("crm", 2))
	e.advance(time.Minute)
	e.wantTitles("on crm")
	e.advance(8 * time.Minute)
	e.wantTitles("on crm")
	e.advance(time.Minute) // the silence ends
	e.wantTitles("on crm", "1 delivery dead-lettered on erp")
}

// A generic webhook gets every message too, keyed by the fingerprint.
func TestWebhookSenderGetsTheSameAlerts(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	hook := slacktest.NewJSON(t)
	e.start(e.slackSender(), sender.NewWebhook(hook.WebhookURL(), sender.Pacing{PerSecond: 100, Burst: 10}))
	e.emit(circuit("erp", switchyardv1.CircuitState_CIRCUIT_STATE_OPEN))
	e.advance(30 * time.Second)
	e.emit(circuit("erp", switchyardv1.CircuitState_CIRCUIT_STATE_CLOSED))
	e.advance(2 * time.Minute)
	e.wantTitles("erp is down", "[RESOLVED][critical] PartnerDown on erp")
	got := hook.Accepted()
	if len(got) != 2 {
		t.Fatalf("the webhook got %d messages, want 2", len(got))
	}
	fp := alerting.Fingerprint(rules.PartnerDown, map[string]string{"destination": "erp"})
	for i, action := range []string{`"event_action":"trigger"`, `"event_action":"resolve"`} {
		body := string(got[i].Raw)
		if !strings.Contains(body, `"dedup_key":"`+fp+`"`) || !strings.Contains(body, action) {
			t.Errorf("webhook message %d = %s", i, body)
		}
	}
	if n := len(e.alertRecords()); n != 4 {
		t.Errorf("%d alert audit records, want 4 (2 messages x 2 senders)", n)
	}
}

func TestUndecodableRecordDoesNotStopTheEngine(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.start()
	m := nats.NewMsg("audit.other.garbage")
	m.Data = []byte{0xff, 0xff, 0xff}
	if _, err := e.js.PublishMsg(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	e.emit(deadLetter("erp", 10))
	e.advance(30 * time.Second)
	e.wantTitles("on erp")
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	if _, err := New(nil, nil, Config{}); err == nil {
		t.Error("New without senders and logger succeeded")
	}
	log := slog.New(slog.DiscardHandler)
	if _, err := New(nil, nil, Config{Logger: log, Senders: []sender.Sender{sender.Console{Log: log}, sender.Console{Log: log}}}); err == nil {
		t.Error("New with two senders of one name succeeded")
	}
}

// describeTitle keeps what names the alert in a title.
func describeTitle(title string) string {
	for _, w := range []string{"dead-lettered on erp", "dead-lettered on crm", "erp fails", "crm is down", "PartnerDown on crm", "PartnerErrorRateHigh on erp", "DeliveryDeadLettered on crm", "DeliveryDeadLettered on erp"} {
		if strings.Contains(title, w) {
			return w
		}
	}
	return title
}

// Credentials, signature failures, backlog and audit lag fire from their
// records, each with its own labels.
func TestEveryRuleFiresFromItsRecords(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.start()
	var recs []*switchyardv1.AuditRecord
	for i := range 3 {
		recs = append(recs, &switchyardv1.AuditRecord{Detail: &switchyardv1.AuditRecord_DeliveryAttempt{DeliveryAttempt: &switchyardv1.DeliveryAttempt{
			EventId: "ev-auth", Destination: "crm", Attempt: int32(i + 1), StatusCode: 401, Outcome: switchyardv1.Outcome_OUTCOME_PERMANENT,
			Error: "HTTP 401 Unauthorized", StartedAt: timestamppb.New(e.clock.Now()), Duration: durationpb.New(20 * time.Millisecond),
		}}})
	}
	for range 12 {
		recs = append(recs, &switchyardv1.AuditRecord{Detail: &switchyardv1.AuditRecord_WebhookRejected{WebhookRejected: &switchyardv1.WebhookRejected{
			Source: "shop", Reason: switchyardv1.RejectReason_REJECT_REASON_BAD_SIGNATURE, Detail: "no signature matches", StatusCode: 401,
		}}})
	}
	recs = append(recs, &switchyardv1.AuditRecord{Detail: &switchyardv1.AuditRecord_Backlog{Backlog: &switchyardv1.BacklogReport{
		Destination: "erp", NumAckPending: 10000, MaxAckPending: 10000, Full: true, OldestPendingAge: durationpb.New(20 * time.Minute),
	}}})
	e.emit(recs...)
	// The auditor reports its own lag.
	e.auditorReports(&switchyardv1.AuditLag{
		PendingRecords: 250000, OldestAge: durationpb.New(7 * time.Minute), LastError: "dial tcp 127.0.0.1:5432: connection refused",
	})
	e.advance(30 * time.Second)
	e.wantAll(
		"[FIRING][critical] crm refuses Switchyard's credentials",
		"[FIRING][warning] 12 webhooks from shop refused for their signature",
		"[FIRING][critical] erp has a growing backlog: 10000 unfinished",
		"[FIRING][warning] The audit log is behind by 7m0s",
	)
	// The auditor catches up: AuditLag resolves after 2 minutes.
	e.auditorReports(&switchyardv1.AuditLag{CaughtUp: true})
	for range 3 {
		e.advance(time.Minute)
	}
	if got := e.titles(); len(got) != 5 || !strings.Contains(got[4], "[RESOLVED][warning] AuditLag resolved") {
		t.Errorf("after the auditor caught up:\n%s", strings.Join(got, "\n"))
	}
}

// pollRound is a poll round record of source at the rule clock's time.
func pollRound(source string, status switchyardv1.PollStatus, code int32, msg string) *switchyardv1.AuditRecord {
	return &switchyardv1.AuditRecord{Detail: &switchyardv1.AuditRecord_PollRound{PollRound: &switchyardv1.PollRound{
		Source: source, Status: status, StatusCode: code, Error: msg,
	}}}
}

// A polled source whose partner API fails pages once it has had no
// successful round for 10 intervals (at least 5m), and says when it
// recovers (resolve_after, 2m, after a successful round); an interrupted
// round counts neither way.
func TestPolledSourceDownFiresAndResolves(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.sources = []config.Source{
		{Name: "shop-orders", Poll: &config.SourcePoll{Interval: config.Duration(30 * time.Second)}},
		{Name: "shop"}, // webhooks: never PartnerDown
	}
	e.start()
	ok := switchyardv1.PollStatus_POLL_STATUS_OK
	down := switchyardv1.PollStatus_POLL_STATUS_UNAVAILABLE
	e.emit(pollRound("shop-orders", ok, 200, ""), pollRound("shop", down, 503, "HTTP 503"))
	for range 4 {
		e.advance(time.Minute)
		e.emit(pollRound("shop-orders", down, 503, "HTTP 503 Service Unavailable"),
			pollRound("shop-orders", switchyardv1.PollStatus_POLL_STATUS_INTERRUPTED, 0, ""))
	}
	if n := len(e.titles()); n != 0 {
		t.Fatalf("%d messages 4 minutes after the last success, want none yet: %v", n, e.titles())
	}
	e.advance(time.Minute)
	e.advance(30 * time.Second) // group wait
	e.wantTitles("[FIRING][critical] shop-orders: lost connection to the partner API, no successful poll for 5m")
	msg := e.slack.Accepted()[0]
	for _, want := range []string{"unavailable: HTTP 503 Service Unavailable", "/v1/records?key=shop-orders", "kind=poll"} {
		if !strings.Contains(string(msg.Raw), want) {
			t.Errorf("the message lacks %q:\n%s", want, msg.Raw)
		}
	}

	// The partner is back: resolved two minutes after the successful round.
	e.emit(pollRound("shop-orders", ok, 200, ""))
	e.advance(time.Minute)
	if n := len(e.titles()); n != 1 {
		t.Fatalf("resolved before resolve_after: %v", e.titles())
	}
	e.advance(90 * time.Second)
	e.wantTitles("[FIRING][critical] shop-orders", "[RESOLVED][critical] PartnerDown for shop-orders resolved")

	// No round at all (no replica polls it): that pages too.
	e.advance(5 * time.Minute)
	e.advance(30 * time.Second)
	if got := e.titles(); len(got) != 3 || !strings.Contains(got[2], "shop-orders: no poll round for") || !strings.Contains(got[2], "is ingress running?") {
		t.Errorf("with no rounds recorded:\n%s", strings.Join(got, "\n"))
	}
}
