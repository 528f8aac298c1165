package runner

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
	"github.com/switchyard/switchyard/pkg/testing/waitfor"
	"github.com/switchyard/switchyard/pkg/topology"
	"github.com/switchyard/switchyard/services/dispatcher/internal/ids"
)

// logLines keeps a dispatcher's log for a test to read, and shows it in
// the test log too.
type logLines struct {
	mu  sync.Mutex
	buf bytes.Buffer
	t   *testing.T
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	return len(p), nil
}

// find returns the lines that contain every one of parts.
func (l *logLines) find(parts ...string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for line := range strings.Lines(l.buf.String()) {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(line, p)
		}
		if ok {
			out = append(out, line)
		}
	}
	return out
}

func captureLog(t *testing.T) (*logLines, *slog.Logger) {
	l := &logLines{t: t}
	t.Cleanup(func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		t.Log(l.buf.String())
	})
	return l, slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// A rolling deploy: replica B starts with a configuration that no longer
// (or not yet) has crm, while replica A still delivers to crm. B leaves
// crm's consumer alone and says so; A goes on delivering, retries included.
func TestProvisionLeavesOtherReplicasConsumers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	erp := newPartner(t, reply{status: http.StatusOK})
	crm := newPartner(t, reply{status: http.StatusServiceUnavailable}, reply{status: http.StatusOK})
	dErp, dCrm := destinationFor("erp", erp.URL, 3), destinationFor("crm", crm.URL, 3)
	dCrm.Retry.Backoff = []config.Duration{config.Duration(2 * time.Second)} // room to start B meanwhile
	e.start(t, dErp, dCrm)

	e.publish(t, orderEvent("ev-1"))
	waitfor.True(t, "crm's first attempt failed", func() bool { return len(crm.received()) == 1 })
	logs, log := captureLog(t)
	_, jsB := e.nats.Connect(t)
	e.run(t, jsB, func(c *Config) { c.Logger = log }, dErp)

	warned := logs.find("level=WARN", "destination=crm", "consumer=dispatcher-crm", "num_pending=0", "num_ack_pending=1", "destinations prune")
	if len(warned) != 1 {
		t.Errorf("replica B logged %d warnings naming crm's consumer and its pending events, want 1", len(warned))
	}
	// A delivers the retry, and a new event, to crm.
	e.publish(t, orderEvent("ev-2"))
	e.waitSettled(t, "crm", 3)
	counts := crm.countByID()
	if counts["ev-1"] != 2 || counts["ev-2"] != 1 {
		t.Errorf("crm received %v, want ev-1 twice (failed, retried) and ev-2 once", counts)
	}
}

// A destination's consumer deleted while a replica delivers to it (an
// operator pruned it too early) is recreated by that replica, starting
// where the old one was acknowledged up to: the events stored while it was
// gone are delivered, not skipped.
func TestDeletedConsumerIsRecreatedWithoutLosingEvents(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	release := make(chan struct{})
	p := newPartner(t, reply{hang: true, release: release}, reply{status: http.StatusOK})
	d := destinationFor("erp", p.URL, 3)
	d.Concurrency = 1
	d.Timeout = config.Duration(5 * time.Second)
	d.Retry.Backoff = []config.Duration{config.Duration(6 * time.Second)}
	logs, log := captureLog(t)
	e.run(t, e.js, func(c *Config) { c.Logger = log }, d)

	e.publish(t, orderEvent("ev-1"))
	waitfor.True(t, "ev-1 in flight", func() bool { return len(p.received()) == 1 })
	// The only worker is busy: the replica does not fetch until it is
	// done, so these two are stored while no consumer exists.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.js.DeleteConsumer(ctx, natsx.StreamEvents, ConsumerName("erp")); err != nil {
		t.Fatal(err)
	}
	e.publish(t, orderEvent("ev-2"))
	e.publish(t, orderEvent("ev-3"))
	close(release)

	waitfor.True(t, "ev-2 and ev-3 delivered", func() bool {
		c := p.countByID()
		return c["ev-2"] == 1 && c["ev-3"] == 1
	})
	if got := logs.find("level=ERROR", "consumer was deleted", "from_stream_seq=1"); len(got) != 1 {
		t.Errorf("%d error lines about the recreated consumer, want 1", len(got))
	}
	info := e.consumerInfo(t, "erp")
	if info.Config.DeliverPolicy != jetstream.DeliverByStartSequencePolicy || info.Config.OptStartSeq != 1 {
		t.Errorf("recreated consumer starts with %v at %d, want by start sequence at 1 (the last ack floor + 1)",
			info.Config.DeliverPolicy, info.Config.OptStartSeq)
	}

	// Provisioning again (a restart) keeps where it starts: that cannot
	// change in place.
	e.provision(t, d)
	if again := e.consumerInfo(t, "erp"); !again.Created.Equal(info.Created) {
		t.Errorf("re-provisioning replaced the recreated consumer")
	}
	if dls := natstest.DeadLetters(t, e.js, "erp"); len(dls) != 0 {
		t.Errorf("%d dead letters", len(dls))
	}
}

// EVENTS deleted and created again while the dispatcher delivers (its
// destination consumers go with it): every destination's consumer is
// recreated from the new stream's first event, not from the old stream's
// ack floor, which in the new numbering would skip the first events
// stored. Attempt ids name the new stream.
func TestConsumersAreRecreatedWithARecreatedEventsStream(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := newPartner(t, reply{status: http.StatusOK})
	erp, crm := destinationFor("erp", p.URL, 3), destinationFor("crm", p.URL, 3)
	logs, log := captureLog(t)
	r := e.run(t, e.js, func(c *Config) { c.Logger = log; c.BacklogInterval = 100 * time.Millisecond }, erp, crm)
	for _, id := range []string{"ev-1", "ev-2", "ev-3"} {
		e.publish(t, orderEvent(id))
	}
	e.waitSettled(t, "erp", 3)
	e.waitSettled(t, "crm", 3)
	// Both destinations know the old stream's ack floor: 3, past the
	// new stream's first two events.
	waitfor.True(t, "the ack floors measured", func() bool {
		return r.d.dests[0].ackFloor.Load() == 3 && r.d.dests[1].ackFloor.Load() == 3
	})
	oldInc := e.incarnation(t)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.js.DeleteStream(ctx, natsx.StreamEvents); err != nil {
		t.Fatal(err)
	}
	if err := topology.Ensure(ctx, e.js, topology.Topology{}); err != nil {
		t.Fatal(err)
	}
	// Stored before or after the consumers are back: delivered either way.
	for _, id := range []string{"ev-4", "ev-5"} {
		e.publish(t, orderEvent(id))
	}
	waitfor.True(t, "the new stream's events delivered to both destinations", func() bool {
		c := p.countByID()
		return c["ev-4"] == 2 && c["ev-5"] == 2
	})
	newInc := e.incarnation(t)
	if newInc == oldInc {
		t.Fatal("the recreated stream has the old incarnation")
	}
	for _, dest := range []string{"erp", "crm"} {
		info := e.waitSettled(t, dest, 2)
		if info.Config.DeliverPolicy != jetstream.DeliverAllPolicy {
			t.Errorf("%s consumer recreated with %v at %d, want deliver all (the new stream's first event)",
				dest, info.Config.DeliverPolicy, info.Config.OptStartSeq)
		}
		recs, _ := attempts(t, e.js, dest)
		for _, rec := range recs {
			if a := rec.GetDeliveryAttempt(); a.EventId == "ev-4" || a.EventId == "ev-5" {
				if want := ids.AttemptID(newInc, a.StreamSeq, dest, 1); rec.Id != want {
					t.Errorf("attempt record id %q, want %q (the new stream)", rec.Id, want)
				}
			}
		}
	}
	// One line per destination, though its fetch loop and backlog monitor
	// may both find the consumer gone; never as a consumer of an unchanged
	// stream.
	for _, dest := range []string{"erp", "crm"} {
		if got := logs.find("level=ERROR", "consumer was deleted", "destination="+dest+" ", "events_recreated=true"); len(got) != 1 {
			t.Errorf("%d error lines about %s's consumer recreated with EVENTS, want 1", len(got), dest)
		}
	}
	if got := logs.find("consumer was deleted", "events_recreated=false"); len(got) != 0 {
		t.Errorf("consumers recreated as if EVENTS were the old stream: %q", got)
	}
	for id, n := range p.countByID() {
		if n != 2 {
			t.Errorf("%s reached the partner %d times, want once per destination", id, n)
		}
	}
}
