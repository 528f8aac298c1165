package runner

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/events"
	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
	"github.com/switchyard/switchyard/pkg/testing/oauthtest"
	"github.com/switchyard/switchyard/pkg/testing/waitfor"
	"github.com/switchyard/switchyard/pkg/topology"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/dispatcher/internal/ids"
	"github.com/switchyard/switchyard/services/dispatcher/internal/reconcile"
)

// refuseAudit makes AUDIT refuse the records of one kind (it stops
// listening on audit.<kind>.>, so a publish finds no stream), as a stream
// that is unavailable for them would; the returned function restores it.
func refuseAudit(t *testing.T, e *testEnv, kind string) (restore func()) {
	t.Helper()
	var others []string
	for _, k := range auditlog.Kinds {
		if k != kind {
			others = append(others, "audit."+k+".>")
		}
	}
	return setSubjects(t, e, natsx.StreamAudit, others)
}

// setSubjects changes the subjects a stream listens on; the returned
// function restores them.
func setSubjects(t *testing.T, e *testEnv, stream string, subjects []string) (restore func()) {
	t.Helper()
	update := func(change func(*jetstream.StreamConfig)) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s, err := e.js.Stream(ctx, stream)
		if err != nil {
			t.Fatal(err)
		}
		cfg := s.CachedInfo().Config
		change(&cfg)
		if _, err := e.js.UpdateStream(ctx, cfg); err != nil {
			t.Fatal(err)
		}
	}
	var all []string
	update(func(cfg *jetstream.StreamConfig) { all, cfg.Subjects = cfg.Subjects, subjects })
	return func() {
		t.Helper()
		update(func(cfg *jetstream.StreamConfig) { cfg.Subjects = all })
	}
}

// auditedDeadLetters returns the dead letters recorded in the audit log.
func auditedDeadLetters(t *testing.T, e *testEnv, destination string) []*switchyardv1.AuditRecord {
	t.Helper()
	return natstest.AuditRecords(t, e.js, "audit."+auditlog.KindDeadLetter+"."+destination)
}

// A dead letter is finished only when both copies are stored: while its
// audit record cannot be, the event is not terminated. Its redelivery (to
// the replica that built the dead letter) stores what is missing without
// sending the event to the partner again.
func TestDeadLetterIsTerminatedOnlyWithItsAuditRecord(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := newPartner(t, reply{status: http.StatusUnprocessableEntity, body: "no such sku"})
	d := destinationFor("erp", p.URL, 5)
	// Ack waits far longer than the work in hand, however loaded the
	// machine: the only redeliveries are the ones this test is about.
	d.Timeout = config.Duration(time.Second)
	d.Retry.Backoff = []config.Duration{config.Duration(4 * time.Second)}
	e.start(t, d)
	restore := refuseAudit(t, e, auditlog.KindDeadLetter)

	seq := e.publish(t, orderEvent("ev-1"))
	waitfor.True(t, "the dead letter stored in DEAD_LETTERS", func() bool { return len(natstest.DeadLetters(t, e.js, "erp")) == 1 })
	// Not terminated: JetStream hands the event out again.
	waitfor.True(t, "the event redelivered", func() bool { return e.consumerInfo(t, "erp").Delivered.Consumer >= 2 })
	restore()

	id := ids.DeadLetterID(e.incarnation(t), seq, "erp")
	waitfor.True(t, "the dead letter's audit record", func() bool {
		recs := auditedDeadLetters(t, e, "erp")
		return len(recs) == 1 && recs[0].Id == "dead_letter:"+id
	})
	e.waitSettled(t, "erp", 2)
	if n := len(p.received()); n != 1 {
		t.Errorf("the partner got %d requests, want 1: a redelivery only finishes the dead letter", n)
	}
	if dls := natstest.DeadLetters(t, e.js, "erp"); len(dls) != 1 || dls[0].Reason != switchyardv1.DeadLetterReason_DEAD_LETTER_REASON_PERMANENT_FAILURE ||
		dls[0].Attempts != 1 || dls[0].LastStatusCode != 422 {
		t.Errorf("dead letters = %v", dls)
	}
}

// The reconciler acknowledges an advisory only once the dead letter and
// its audit record are both stored.
func TestReconcilerRetriesUntilTheAuditRecordIsStored(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	d, _, seq := e.abandonOnFinalDelivery(t, orderEvent("ev-orphan"))
	restore := refuseAudit(t, e, auditlog.KindDeadLetter)
	r := e.start(t, d)
	waitfor.True(t, "the reconciled dead letter stored", func() bool { return len(natstest.DeadLetters(t, e.js, "erp")) == 1 })
	waitfor.True(t, "the advisory handed out again", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := e.js.Consumer(ctx, natsx.StreamAdvisories, reconcile.ConsumerName)
		if err != nil {
			t.Fatal(err)
		}
		return c.CachedInfo().NumRedelivered > 0 || c.CachedInfo().Delivered.Consumer >= 2
	})
	restore()
	waitfor.True(t, "the reconciled dead letter's audit record", func() bool {
		recs := auditedDeadLetters(t, e, "erp")
		return len(recs) == 1 && recs[0].Id == "dead_letter:"+ids.DeadLetterID(e.incarnation(t), seq, "erp")
	})
	waitfor.True(t, "the advisory acknowledged", func() bool {
		return testutil.ToFloat64(r.metrics.reconciled.WithLabelValues("max_deliveries", "already_dead_lettered")) == 1
	})
}

// bigEvent is an event that fills max_payload but for 64 bytes: it is
// stored, but a dead letter carrying its payload, headers and the dead
// letter's own fields is not.
func bigEvent(t *testing.T, e *testEnv, id string) events.Event {
	t.Helper()
	ev := orderEvent(id)
	m, err := ev.Msg(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	header := len("NATS/1.0\r\n\r\n")
	for k, vs := range m.Header {
		for _, v := range vs {
			header += len(k) + len(": \r\n") + len(v)
		}
	}
	ev.Data = bytes.Repeat([]byte("x"), int(e.js.Conn().MaxPayload())-header-64)
	return ev
}

func checkPayloadOmitted(t *testing.T, e *testEnv, dl *switchyardv1.DeadLetter, seq uint64) {
	t.Helper()
	if !dl.PayloadOmitted || len(dl.Payload) != 0 || dl.StreamSeq != seq || dl.Headers["Switchyard-Event-Id"] == "" {
		t.Errorf("dead letter of a large event: payload_omitted %v, %d payload bytes, seq %d, headers %v", dl.PayloadOmitted, len(dl.Payload), dl.StreamSeq, dl.Headers)
	}
	waitfor.True(t, "the audit record of the dead letter", func() bool {
		recs := auditedDeadLetters(t, e, "erp")
		return len(recs) == 1 && recs[0].GetDeadLettered().GetPayloadOmitted()
	})
}

// An event near max_payload fits in EVENTS but not, with its metadata, in
// a dead letter: the dead letter is stored without the payload (which
// stays in EVENTS at stream_seq), at once and once; the partner is not
// sent the event again.
func TestLargeEventIsDeadLetteredWithoutItsPayload(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := newPartner(t, reply{status: http.StatusRequestEntityTooLarge})
	d := destinationFor("erp", p.URL, 3)
	d.Timeout = config.Duration(5 * time.Second) // an 8 MB request on a loaded machine
	d.Retry.Backoff = []config.Duration{config.Duration(6 * time.Second)}
	e.start(t, d)

	ev := bigEvent(t, e, "ev-big")
	seq := e.publish(t, ev)
	e.waitSettled(t, "erp", 1)
	dls := natstest.DeadLetters(t, e.js, "erp")
	if len(dls) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dls))
	}
	checkPayloadOmitted(t, e, dls[0], seq)
	if n := len(p.received()); n != 1 {
		t.Errorf("the partner got %d requests, want 1", n)
	}
}

// The reconciler stores such a dead letter without its payload too,
// instead of trying again for ever.
func TestReconcilerStoresALargeEventsDeadLetterWithoutItsPayload(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	d, _, seq := e.abandonOnFinalDelivery(t, bigEvent(t, e, "ev-big"))
	e.start(t, d)
	dl := firstDeadLetter(t, e, "erp")
	checkPayloadOmitted(t, e, dl, seq)
	if dl.EventId != "ev-big" || dl.Reason != switchyardv1.DeadLetterReason_DEAD_LETTER_REASON_MAX_DELIVERIES_ADVISORY {
		t.Errorf("reconciled dead letter = %v", dl)
	}
}

// Credential failures are marked as such, for the notifier's
// CredentialsFailing rule: a token endpoint refusing the client (no
// request reaches the partner, status 0), a 401 after a fresh token, a
// 403. Other failures are not.
func TestAuthFailuresAreMarked(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ts := oauthtest.Start(t, "switchyard", "the-right-secret", time.Hour)
	p := newAnsweringPartner(t, func(h hit) reply {
		switch {
		case bytes.Contains(h.body, []byte("forbidden")):
			return reply{status: http.StatusForbidden}
		case bytes.Contains(h.body, []byte("unauthorized")):
			return reply{status: http.StatusUnauthorized}
		}
		return reply{status: http.StatusBadRequest}
	})
	refused := destinationFor("erp", p.URL, 3)
	refused.Auth = config.Auth{Type: config.AuthOAuth2ClientCredentials, TokenURL: ts.URL, ClientID: "switchyard",
		ClientSecret: "a-wrong-secret", ClientAuth: "auto"}
	partner := destinationFor("crm", p.URL, 3)
	partner.Subjects = []string{"events.stock.>"}
	d := e.start(t, refused, partner)

	e.publish(t, orderEvent("ev-refused"))
	for _, id := range []string{"forbidden", "unauthorized", "bad-request"} {
		e.publish(t, stockEvent(id))
	}
	e.waitSettled(t, "erp", 1)
	e.waitSettled(t, "crm", 3)
	if ts.Requests() == 0 {
		t.Fatal("no token request")
	}

	_, as := attempts(t, e.js, "erp")
	if len(as) != 1 || !as[0].AuthFailure || as[0].StatusCode != 0 || !strings.Contains(as[0].Error, "credentials refused") {
		t.Errorf("attempt refused by the token endpoint = %v, want auth_failure with status 0", as)
	}
	if dls := natstest.DeadLetters(t, e.js, "erp"); len(dls) != 1 || !dls[0].AuthFailure {
		t.Errorf("dead letters of the refused credentials = %v, want auth_failure", dls)
	}
	_, as = attempts(t, e.js, "crm")
	want := map[string]bool{"forbidden": true, "unauthorized": true, "bad-request": false}
	for _, a := range as {
		if a.AuthFailure != want[a.EventId] {
			t.Errorf("attempt of %s (status %d): auth_failure %v, want %v", a.EventId, a.StatusCode, a.AuthFailure, want[a.EventId])
		}
	}
	authDeadLetters := 0
	for _, dl := range natstest.DeadLetters(t, e.js, "crm") {
		if dl.AuthFailure != want[dl.EventId] {
			t.Errorf("dead letter of %s: auth_failure %v, want %v", dl.EventId, dl.AuthFailure, want[dl.EventId])
		}
		if dl.AuthFailure {
			authDeadLetters++
		}
	}
	// The same, counted for the Prometheus CredentialsFailing rule.
	m := d.metrics
	for dest, want := range map[string]struct{ failures, deadLetters float64 }{"erp": {1, 1}, "crm": {2, float64(authDeadLetters)}} {
		if got := testutil.ToFloat64(m.authFailures.WithLabelValues(dest)); got != want.failures {
			t.Errorf("switchyard_dispatcher_auth_failures_total{destination=%q} = %v, want %v", dest, got, want.failures)
		}
		if got := testutil.ToFloat64(m.authDeadLetters.WithLabelValues(dest)); got != want.deadLetters {
			t.Errorf("switchyard_dispatcher_auth_dead_letters_total{destination=%q} = %v, want %v", dest, got, want.deadLetters)
		}
	}
}

// A reconciled dead letter of an event EVENTS no longer holds names it by
// a stable placeholder, not an empty id.
func TestReconciledDeadLetterOfAnAgedOutEvent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	d, _, seq := e.abandonOnFinalDelivery(t, orderEvent("ev-gone"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := e.js.Stream(ctx, natsx.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteMsg(ctx, seq); err != nil { // as MaxAge would
		t.Fatal(err)
	}
	e.start(t, d)
	dl := firstDeadLetter(t, e, "erp")
	if dl.EventId != "unknown:EVENTS:1" || dl.StreamSeq != seq || !strings.Contains(dl.LastError, "no longer in EVENTS") {
		t.Errorf("dead letter of an aged-out event = %v", dl)
	}
}

// The ids name the EVENTS stream's incarnation: after EVENTS is deleted
// and created again (numbering from 1 again), a dead letter of the new
// stream's first event is a new dead letter, not a duplicate of the old
// stream's first one.
func TestIDsSurviveARecreatedEventsStream(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := newPartner(t, reply{status: http.StatusBadRequest})
	d := destinationFor("erp", p.URL, 3)
	r := e.run(t, e.js, nil, d)
	first := e.publish(t, orderEvent("ev-old"))
	waitfor.True(t, "the first dead letter", func() bool { return len(auditedDeadLetters(t, e, "erp")) == 1 })
	r.stop(t)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.js.DeleteStream(ctx, natsx.StreamEvents); err != nil {
		t.Fatal(err)
	}
	if err := topology.Ensure(ctx, e.js, topology.Topology{}); err != nil {
		t.Fatal(err)
	}
	e.start(t, d)
	second := e.publish(t, orderEvent("ev-new"))
	if first != second {
		t.Fatalf("sequences %d and %d: the recreated stream should number from the start again", first, second)
	}
	waitfor.True(t, "the second dead letter, stored and recorded", func() bool {
		return len(natstest.DeadLetters(t, e.js, "erp")) == 2 && len(auditedDeadLetters(t, e, "erp")) == 2
	})
	recs, _ := attempts(t, e.js, "erp")
	if len(recs) != 2 || recs[0].Id == recs[1].Id {
		t.Errorf("attempt records %v: want two with different ids", recs)
	}
}

// refuseDeadLetters makes DEAD_LETTERS refuse every dead letter (it stops
// listening on dlq.>, so a publish finds no stream), as a stream that is
// unavailable would; the returned function restores it.
func refuseDeadLetters(t *testing.T, e *testEnv) (restore func()) {
	t.Helper()
	return setSubjects(t, e, natsx.StreamDeadLetters, []string{"refused-dlq.>"})
}

// A dead letter DEAD_LETTERS refuses is not lost: the event is not
// terminated (and no audit copy is written ahead of the dead letter).
// While it has deliveries left, it comes back, and its redelivery to the
// replica that built the dead letter stores it, without another request
// to the partner; on its last delivery, the replica keeps the event and
// retries, so that the dead letter keeps the partner's answer (the
// reconciler, which takes over from a replica that died, cannot know it).
// Either way there is one dead letter, with the real reason and status,
// and one audit copy.
func TestRefusedDeadLetterIsStoredLater(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name        string
		maxAttempts int
		wantReason  switchyardv1.DeadLetterReason
		// failedLog is logged each time the dead letter is refused.
		failedLog string
	}{
		{"by the redelivery", 5, switchyardv1.DeadLetterReason_DEAD_LETTER_REASON_PERMANENT_FAILURE, "dead letter not finished"},
		{"by the replica holding the last delivery", 1, switchyardv1.DeadLetterReason_DEAD_LETTER_REASON_PERMANENT_FAILURE, "dead letter not stored yet on the event's last delivery"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			p := newPartner(t, reply{status: http.StatusUnprocessableEntity, body: "no such sku"})
			d := destinationFor("erp", p.URL, tt.maxAttempts)
			logs, log := captureLog(t)
			r := e.run(t, e.js, func(c *Config) { c.Logger = log }, d)
			restore := refuseDeadLetters(t, e)

			ev := orderEvent("ev-refused")
			seq := e.publish(t, ev)
			waitfor.True(t, "the dead letter refused", func() bool {
				return len(logs.find(tt.failedLog, "publish dead letter "+ids.DeadLetterID(e.incarnation(t), seq, "erp"))) > 0
			})
			if tt.maxAttempts > 1 {
				waitfor.True(t, "the event redelivered, not terminated", func() bool { return e.consumerInfo(t, "erp").Delivered.Consumer >= 2 })
			}
			if recs := auditedDeadLetters(t, e, "erp"); len(recs) != 0 {
				t.Errorf("%d audit records of a dead letter DEAD_LETTERS does not hold", len(recs))
			}
			restore()

			id := ids.DeadLetterID(e.incarnation(t), seq, "erp")
			waitfor.True(t, "the dead letter and its audit record", func() bool {
				recs := auditedDeadLetters(t, e, "erp")
				return len(natstest.DeadLetters(t, e.js, "erp")) == 1 && len(recs) == 1 && recs[0].Id == "dead_letter:"+id
			})
			e.waitSettled(t, "erp", 1)
			dls := natstest.DeadLetters(t, e.js, "erp")
			if len(dls) != 1 {
				t.Fatalf("%d dead letters, want 1", len(dls))
			}
			dl := dls[0]
			if dl.Id != id || dl.Reason != tt.wantReason || dl.EventId != ev.ID || dl.StreamSeq != seq || string(dl.Payload) != string(ev.Data) ||
				dl.LastStatusCode != http.StatusUnprocessableEntity || !strings.Contains(dl.ResponseSnippet, "no such sku") {
				t.Errorf("dead letter = %v", dl)
			}
			if n := len(p.received()); n != 1 {
				t.Errorf("the partner got %d requests, want 1", n)
			}
			if _, as := attempts(t, e.js, "erp"); len(as) != 1 || as[0].Outcome != switchyardv1.Outcome_OUTCOME_PERMANENT {
				t.Errorf("attempt records = %v, want the one attempt", as)
			}
			// Terminated once stored: the MSG_TERMINATED advisory (the
			// dispatcher's reason) needs nothing more, and no
			// MAX_DELIVERIES advisory made a second dead letter.
			waitfor.True(t, "the termination reconciled", func() bool {
				return testutil.ToFloat64(r.d.metrics.reconciled.WithLabelValues("terminated", "already_dead_lettered")) == 1
			})
			if n := testutil.ToFloat64(r.d.metrics.reconciled.WithLabelValues("max_deliveries", "dead_lettered")); n != 0 {
				t.Errorf("%v dead letters made by the reconciler, want 0", n)
			}
		})
	}
}

// A dead letter DEAD_LETTERS refuses for its size (a max_msg_size below
// the connection's max_payload) is stored without its payload at once,
// instead of being refused on every redelivery.
func TestDeadLetterRefusedForItsSizeIsStoredWithoutThePayload(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := e.js.Stream(ctx, natsx.StreamDeadLetters)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	cfg.MaxMsgSize = 2048
	if _, err := e.js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	p := newPartner(t, reply{status: http.StatusUnprocessableEntity})
	e.start(t, destinationFor("erp", p.URL, 3))

	ev := orderEvent("ev-wide")
	ev.Data = bytes.Repeat([]byte("x"), 4096) // fits in EVENTS, not in DEAD_LETTERS
	seq := e.publish(t, ev)
	info := e.waitSettled(t, "erp", 1)
	if info.Delivered.Consumer != 1 || info.NumRedelivered != 0 {
		t.Errorf("consumer delivered %d times (%d redelivered), want the dead letter stored on the first", info.Delivered.Consumer, info.NumRedelivered)
	}
	dls := natstest.DeadLetters(t, e.js, "erp")
	if len(dls) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dls))
	}
	checkPayloadOmitted(t, e, dls[0], seq)
	if n := len(p.received()); n != 1 {
		t.Errorf("the partner got %d requests, want 1", n)
	}
}
