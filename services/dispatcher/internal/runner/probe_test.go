package runner

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/natstest"
	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/waitfor"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
)

// inProgressCounter counts the InProgress acknowledgements (+WPI) sent for
// one delivery, as the server receives them on its reply subject.
func inProgressCounter(t *testing.T, e *testEnv, msg jetstream.Msg) *atomic.Int64 {
	t.Helper()
	nc, _ := e.nats.Connect(t)
	var n atomic.Int64
	if _, err := nc.Subscribe(msg.Reply(), func(m *nats.Msg) {
		if string(m.Data) == "+WPI" {
			n.Add(1)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return &n
}

// competingReplica pulls from the destination's consumer on a connection
// of its own until stop is called, and reports how many events it was
// handed: any is an event the server thought lost.
func competingReplica(t *testing.T, e *testEnv, destination string) (stop func() int) {
	t.Helper()
	_, js := e.nats.Connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cons, err := js.Consumer(ctx, natsx.StreamEvents, ConsumerName(destination))
	if err != nil {
		t.Fatal(err)
	}
	var got atomic.Int64
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		for {
			select {
			case <-done:
				return
			default:
			}
			batch, err := cons.Fetch(1, jetstream.FetchMaxWait(100*time.Millisecond))
			if err != nil {
				continue
			}
			for range batch.Messages() {
				got.Add(1)
			}
		}
	}()
	return func() int {
		close(done)
		<-finished
		return int(got.Load())
	}
}

// An event fetched just before the breaker opened is held, not sent, for
// as long as the breaker is open, however many ack waits that takes: the
// holding replica keeps it alive with InProgress, so the server hands it
// to no other replica and counts no further delivery. When the cooldown
// ends, the held event becomes this replica's half-open probe: one
// request, as attempt 1, which closes the breaker.
func TestHeldEventIsKeptAliveAndBecomesTheProbe(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := newPartner(t, reply{status: http.StatusOK})
	dc := breakerDestination("erp", p.URL) // ack wait (step 1) 600ms: InProgress every 475ms
	dc.Breaker.Cooldown, dc.Breaker.MaxCooldown = config.Duration(time.Minute), config.Duration(time.Minute)
	d, err := New(e.js, auditlog.NewEmitter(e.js, "dispatcher"), Config{Destinations: []config.Destination{dc}, Logger: natstest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := d.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	seq := e.publish(t, orderEvent("ev-held"))
	msg := e.takeOne(t, "erp") // fetched while the breaker was closed
	dest := d.dests[0]
	if err := dest.breaker.update(ctx, func(c *circuit, now time.Time) string {
		c.open(dest.breaker.policy, now, "opened by the test")
		return c.Reason
	}); err != nil {
		t.Fatal(err)
	}
	// As if the pause had not taken (PauseConsumer failing is logged, not
	// fatal): only the keep-alive stops the server from handing the held
	// event to the replica pulling next to this one.
	if _, err := e.js.ResumeConsumer(ctx, natsx.StreamEvents, ConsumerName("erp")); err != nil {
		t.Fatal(err)
	}
	keepAlives := inProgressCounter(t, e, msg)
	stopCompetitor := competingReplica(t, e, "erp")

	done := make(chan struct{})
	go func() {
		defer close(done)
		dest.handle(ctx, ctx, msg, false)
	}()
	// Three keep-alives: held for more than two ack waits.
	waitfor.True(t, "three InProgress acknowledgements", func() bool { return keepAlives.Load() >= 3 })
	if n := len(p.received()); n != 0 {
		t.Fatalf("the partner got %d requests while the breaker was open", n)
	}
	// The cooldown ends.
	if err := dest.breaker.update(ctx, func(c *circuit, now time.Time) string {
		c.OpenUntil = now
		return ""
	}); err != nil {
		t.Fatal(err)
	}
	<-done
	if n := stopCompetitor(); n != 0 {
		t.Errorf("another replica was handed the held event %d times: its ack wait ran out", n)
	}

	hits := p.received()
	if len(hits) != 1 || hits[0].header.Get("Switchyard-Attempt") != "1" {
		t.Fatalf("partner requests = %d, want one, attempt 1", len(hits))
	}
	_, as := attempts(t, e.js, "erp")
	if len(as) != 1 || !as[0].Probe || as[0].Attempt != 1 || as[0].Outcome != switchyardv1.Outcome_OUTCOME_DELIVERED || !as[0].Final {
		t.Errorf("attempt records = %v, want the held event's delivery as the probe", as)
	}
	info := e.consumerInfo(t, "erp")
	if info.Delivered.Consumer != 1 || info.NumRedelivered != 0 || info.NumAckPending != 0 || info.AckFloor.Stream != seq {
		t.Errorf("consumer delivered %d times (%d redelivered, %d ack pending, ack floor %d), want once and acked at %d",
			info.Delivered.Consumer, info.NumRedelivered, info.NumAckPending, info.AckFloor.Stream, seq)
	}
	cs, _ := circuitRecords(t, e, "erp")
	if len(cs) != 3 || cs[0].To != open || cs[1].To != halfOpen || cs[2].To != closed || cs[2].Reason != "the probe attempt succeeded" {
		t.Errorf("circuit changes = %v, want open, half-open, closed by the probe", cs)
	}
	if c, _ := dest.breaker.view(); c.State != closed || dest.probing.Load() {
		t.Errorf("after the probe: circuit %v, probing %v", c.State, dest.probing.Load())
	}
}
