package engine

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/silences"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
	"github.com/switchyard/switchyard/pkg/testing/slacktest"
	"github.com/switchyard/switchyard/pkg/testing/waitfor"
	"github.com/switchyard/switchyard/pkg/topology"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/notifier/internal/rules"
	"github.com/switchyard/switchyard/services/notifier/internal/sender"
)

// t0 is where the tests' rule clock starts.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// env is one embedded NATS, one fake Slack, one rule clock, and the
// notifier replicas a test starts against them.
type env struct {
	t      *testing.T
	ns     *natstest.Server
	js     jetstream.JetStream
	clock  *clockwork.FakeClock
	slack  *slacktest.Server
	alerts config.Alerts
	dests  []config.Destination
	// sources are the configured sources (the polled ones matter).
	sources []config.Source
	// auditorCheck is the replicas' AuditorCheckInterval. Off unless a test
	// sets it: no auditor runs here, and records must stay in AUDIT for
	// alertRecords to read them.
	auditorCheck time.Duration
	logs         *syncBuffer
	mu           sync.Mutex
	replicas     []*replica
}

type replica struct {
	eng    *Engine
	cancel context.CancelFunc
	done   chan error
}

// newEnv starts NATS and a fake Slack answering from script.
func newEnv(t *testing.T, script ...slacktest.Answer) *env {
	t.Helper()
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	logs := &syncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log("notifier log:\n" + logs.String())
		}
	})
	return &env{
		t: t, ns: ns, js: js, clock: clockwork.NewFakeClockAt(t0), slack: slacktest.New(t, script...),
		alerts: config.Alerts{PublicBaseURL: "https://switchyard.example.com"},
		dests: []config.Destination{
			{Name: "erp", Timeout: config.Duration(5 * time.Second)},
			{Name: "crm", Timeout: config.Duration(5 * time.Second)},
		},
		logs: logs, auditorCheck: -1,
	}
}

// slackSender is a Slack sender quick enough for tests.
func (e *env) slackSender() sender.Sender {
	return sender.NewSlack(e.slack.WebhookURL(), sender.Pacing{PerSecond: 100, Burst: 10})
}

// start runs a notifier replica until the test ends or stop is called.
func (e *env) start(senders ...sender.Sender) *replica {
	e.t.Helper()
	return e.startWith(nil, senders...)
}

// startWith runs a replica whose JetStream client is wrap(client): a test
// puts faults between the engine and NATS this way. nil wraps nothing.
func (e *env) startWith(wrap func(jetstream.JetStream) jetstream.JetStream, senders ...sender.Sender) *replica {
	e.t.Helper()
	if len(senders) == 0 {
		senders = []sender.Sender{e.slackSender()}
	}
	_, js := e.ns.Connect(e.t)
	if wrap != nil {
		js = wrap(js)
	}
	log := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	eng, err := New(js, auditlog.NewEmitter(js, "notifier"), Config{
		Rules:                rules.NewConfig(e.alerts, e.dests).WithSources(e.sources),
		Senders:              senders,
		Logger:               log,
		Clock:                e.clock,
		FlushInterval:        20 * time.Millisecond,
		RetryWait:            200 * time.Millisecond,
		AuditorCheckInterval: e.auditorCheck,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &replica{eng: eng, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- eng.Run(ctx) }()
	e.t.Cleanup(func() { e.stop(r) })
	e.mu.Lock()
	e.replicas = append(e.replicas, r)
	e.mu.Unlock()
	// Ready once its first pass ran (the state is loaded).
	waitfor.True(e.t, "the notifier's first evaluation", func() bool { return eng.finished.Load() > 0 })
	return r
}

// stop ends a replica, as a restart or a crash between batches would.
func (e *env) stop(r *replica) {
	e.t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		if err != nil {
			e.t.Errorf("Run = %v after cancel, want nil", err)
		}
	case <-time.After(15 * time.Second):
		e.t.Error("Run did not return within 15s of cancel")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for i, x := range e.replicas {
		if x == r {
			e.replicas = append(e.replicas[:i], e.replicas[i+1:]...)
			break
		}
	}
}

// emit publishes audit records stamped by the rule clock, as the other
// services would, and settles if a notifier runs: the records are read at
// the current rule time.
func (e *env) emit(recs ...*switchyardv1.AuditRecord) {
	e.t.Helper()
	e.publish(recs...)
	e.mu.Lock()
	running := len(e.replicas) > 0
	e.mu.Unlock()
	if running {
		e.settle()
	}
}

// publish publishes audit records stamped by the rule clock, without
// waiting for a notifier to read them.
func (e *env) publish(recs ...*switchyardv1.AuditRecord) {
	e.t.Helper()
	em := auditlog.NewEmitter(e.js, "dispatcher").WithClock(e.clock.Now)
	for _, r := range recs {
		if _, err := em.EmitAsync(r); err != nil {
			e.t.Fatal(err)
		}
	}
	select {
	case <-e.js.PublishAsyncComplete():
	case <-time.After(10 * time.Second):
		e.t.Fatal("audit records not stored within 10s")
	}
}

// settle waits until every replica read every record, then ran an
// evaluation pass that began after that, and every message it made was
// delivered or dropped.
func (e *env) settle() {
	e.t.Helper()
	e.evaluate()
	waitfor.True(e.t, "every alert message delivered", func() bool {
		return natstest.Count(e.t, e.js, topology.StreamNotifications, "notify.>") == 0
	})
}

// evaluate waits until every replica read every record, then ran an
// evaluation pass that began after that; the messages it made may still
// be on their way (a receiver that fails).
func (e *env) evaluate() {
	e.t.Helper()
	ctx := context.Background()
	waitfor.True(e.t, "the notifier consumed AUDIT", func() bool {
		// The consumer's num pending is updated after the PubAck, not
		// with it: compare its ack floor with the stream's last record.
		s, err := e.js.Stream(ctx, natsx.StreamAudit)
		if err != nil {
			e.t.Fatal(err)
		}
		last := s.CachedInfo().State.LastSeq
		c, err := e.js.Consumer(ctx, natsx.StreamAudit, natsx.ConsumerNotifier)
		if err != nil {
			e.t.Fatal(err)
		}
		info := c.CachedInfo()
		return info.NumPending == 0 && info.NumAckPending == 0 && info.AckFloor.Stream >= last
	})
	e.mu.Lock()
	rs := append([]*replica(nil), e.replicas...)
	e.mu.Unlock()
	for _, r := range rs {
		mark := r.eng.started.Load()
		r.eng.poke()
		waitfor.True(e.t, "an evaluation pass", func() bool { return r.eng.finished.Load() > mark })
	}
}

// advance moves the rule clock and settles.
func (e *env) advance(d time.Duration) {
	e.t.Helper()
	e.clock.Advance(d)
	e.settle()
}

// messages returns the titles of the messages Slack accepted.
func (e *env) titles() []string {
	var out []string
	for _, m := range e.slack.Accepted() {
		out = append(out, m.Text)
	}
	return out
}

// alertRecords returns the alert records in AUDIT.
func (e *env) alertRecords() []*switchyardv1.AlertNotification {
	var out []*switchyardv1.AlertNotification
	for _, r := range natstest.AuditRecords(e.t, e.js, "audit."+auditlog.KindAlert+".>") {
		out = append(out, r.GetAlert())
	}
	return out
}

func (e *env) wantTitles(want ...string) {
	e.t.Helper()
	got := e.titles()
	if len(got) != len(want) {
		e.t.Fatalf("Slack got %d messages, want %d:\n  %s", len(got), len(want), strings.Join(got, "\n  "))
	}
	for i := range want {
		if !strings.Contains(got[i], want[i]) {
			e.t.Errorf("message %d = %q, want it to contain %q", i, got[i], want[i])
		}
	}
}

// wantAll checks that Slack accepted one message containing each of want,
// in any order, and nothing else.
func (e *env) wantAll(want ...string) {
	e.t.Helper()
	joined := strings.Join(e.titles(), "\n")
	for _, w := range want {
		if !strings.Contains(joined, w) {
			e.t.Errorf("Slack lacks %q; got:\n%s", w, joined)
		}
	}
	if n := len(e.titles()); n != len(want) {
		e.t.Errorf("%d messages, want %d:\n%s", n, len(want), joined)
	}
}

// auditorReports publishes an AuditLag record as the auditor does, and
// settles.
func (e *env) auditorReports(l *switchyardv1.AuditLag) {
	e.t.Helper()
	rec := &switchyardv1.AuditRecord{Detail: &switchyardv1.AuditRecord_AuditLag{AuditLag: l}}
	if err := auditlog.NewEmitter(e.js, "auditor").WithClock(e.clock.Now).Emit(context.Background(), rec); err != nil {
		e.t.Fatal(err)
	}
	e.settle()
}

func deadLetter(dest string, n int) *switchyardv1.AuditRecord {
	id := fmt.Sprintf("EVENTS:%d:%s", n, dest)
	return &switchyardv1.AuditRecord{Id: "dead_letter:" + id, Detail: &switchyardv1.AuditRecord_DeadLettered{DeadLettered: &switchyardv1.DeadLetter{
		Id: id, EventId: fmt.Sprintf("shop:msg_%d", n), Destination: dest, Subject: "webhooks.shop.order_created", Stream: "EVENTS",
		StreamSeq: uint64(n), Attempts: 6, LastStatusCode: 503, LastError: "Service Unavailable",
		Reason: switchyardv1.DeadLetterReason_DEAD_LETTER_REASON_MAX_ATTEMPTS,
	}}}
}

func deadLetters(dest string, from, n int) []*switchyardv1.AuditRecord {
	var out []*switchyardv1.AuditRecord
	for i := range n {
		out = append(out, deadLetter(dest, from+i))
	}
	return out
}

// attempts makes n attempts on dest started just before now, failed of them
// retryable failures, each taking d.
func (e *env) attempts(dest string, n, failed int, d time.Duration) []*switchyardv1.AuditRecord {
	now := e.clock.Now()
	var out []*switchyardv1.AuditRecord
	for i := range n {
		a := &switchyardv1.DeliveryAttempt{
			EventId: fmt.Sprintf("ev-%d-%d", now.Unix(), i), Destination: dest, Attempt: 1,
			StartedAt: timestamppb.New(now.Add(-time.Duration(i) * time.Second / time.Duration(n))),
			Duration:  durationpb.New(d), StatusCode: 200, Outcome: switchyardv1.Outcome_OUTCOME_DELIVERED,
		}
		if i < failed {
			a.StatusCode, a.Outcome, a.Error = 503, switchyardv1.Outcome_OUTCOME_RETRYABLE, "HTTP 503 Service Unavailable"
		}
		out = append(out, &switchyardv1.AuditRecord{Detail: &switchyardv1.AuditRecord_DeliveryAttempt{DeliveryAttempt: a}})
	}
	return out
}

func circuit(dest string, to switchyardv1.CircuitState) *switchyardv1.AuditRecord {
	return &switchyardv1.AuditRecord{Detail: &switchyardv1.AuditRecord_CircuitChanged{CircuitChanged: &switchyardv1.CircuitChanged{
		Destination: dest, To: to, Reason: "5 consecutive failures", LastError: "dial tcp: connection refused",
	}}}
}

// syncBuffer collects the replicas' logs for tests that read them.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func silenceStore(t *testing.T, e *env) *silences.Store {
	t.Helper()
	st, err := silences.Open(context.Background(), e.js, topology.Topology{})
	if err != nil {
		t.Fatal(err)
	}
	return st.WithClock(e.clock.Now)
}

func silenceSpec(t *testing.T, ends time.Time, matchers ...string) silences.Spec {
	t.Helper()
	spec := silences.Spec{EndsAt: ends, CreatedBy: "test", Comment: "maintenance"}
	for _, m := range matchers {
		pm, err := silences.ParseMatcher(m)
		if err != nil {
			t.Fatal(err)
		}
		spec.Matchers = append(spec.Matchers, pm)
	}
	return spec
}
