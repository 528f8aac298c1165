package writer

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/events"
	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
	"github.com/switchyard/switchyard/pkg/testing/testctx"
	"github.com/switchyard/switchyard/pkg/testing/waitfor"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/auditor/internal/store"
	"github.com/switchyard/switchyard/services/auditor/internal/store/storetest"
)

// testCtx is the test's context (testctx.New).
var testCtx = testctx.New

// backends open a fresh, unmigrated store.
var backends = storetest.Backends

type testEnv struct {
	ns  *natstest.Server
	js  jetstream.JetStream
	st  store.Store
	reg *prometheus.Registry
	w   *Writer
}

// testConfig is the writer configuration of the tests: small batches, a
// fast lag monitor, routes to erp for order events.
func testConfig(t *testing.T, js jetstream.JetStream, reg prometheus.Registerer) Config {
	return Config{
		BatchSize: 50, Linger: 5 * time.Millisecond, Logger: natstest.Logger(t), Registerer: reg,
		WriteTimeout: 3 * time.Second, LagInterval: 100 * time.Millisecond, LagThreshold: 300 * time.Millisecond,
		Audit: auditlog.NewEmitter(js, "auditor"),
		Route: func(subject string) []string {
			if strings.HasPrefix(subject, "events.order.") {
				return []string{"erp"}
			}
			return nil
		},
	}
}

// start runs a writer into st until the test ends.
func start(t *testing.T, st store.Store) *testEnv {
	t.Helper()
	return startOn(t, natstest.Start(t), st)
}

// startOn runs a writer on a given server; adjust changes the test
// configuration.
func startOn(t *testing.T, ns *natstest.Server, st store.Store, adjust ...func(*Config)) *testEnv {
	t.Helper()
	_, js := ns.Connect(t)
	reg := prometheus.NewRegistry()
	cfg := testConfig(t, js, reg)
	for _, a := range adjust {
		a(&cfg)
	}
	w, err := New(js, st, cfg)
	if err != nil {
		t.Fatal(err)
	}
	natstest.Go(t, "writer", w.Run)
	return &testEnv{ns: ns, js: js, st: st, reg: reg, w: w}
}

func (e *testEnv) emit(t *testing.T, rec *switchyardv1.AuditRecord) {
	t.Helper()
	if err := auditlog.NewEmitter(e.js, "dispatcher").Emit(testCtx(t), rec); err != nil {
		t.Fatal(err)
	}
}

func (e *testEnv) consumer(t *testing.T, stream, name string) *jetstream.ConsumerInfo {
	t.Helper()
	c, err := e.js.Consumer(testCtx(t), stream, name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// waitAcked waits until the auditor's consumers have acknowledged
// everything.
func (e *testEnv) waitAcked(t *testing.T) {
	t.Helper()
	for _, c := range streams {
		waitfor.True(t, "consumer "+c.consumer+" acknowledged everything", func() bool {
			info := e.consumer(t, c.stream, c.consumer)
			return info.NumPending == 0 && info.NumAckPending == 0
		})
	}
}

func (e *testEnv) metric(t *testing.T, name string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

// forEachMigrated runs fn in parallel subtests on a fresh, migrated store
// of each kind.
func forEachMigrated(t *testing.T, fn func(t *testing.T, st store.Store)) {
	t.Helper()
	for name, open := range backends {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			st := open(t)
			if err := st.Migrate(testCtx(t)); err != nil {
				t.Fatal(err)
			}
			fn(t, st)
		})
	}
}

func TestWritesEventsAndRecords(t *testing.T) {
	t.Parallel()
	forEachMigrated(t, func(t *testing.T, st store.Store) {
		e := start(t, st)

		res, err := events.Publish(testCtx(t), e.js, events.Event{
			ID: "ev-1", Type: "order.created", Data: []byte(`{"order":1}`),
			Header: nats.Header{"X-Trace": {"t-1"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		// A partner webhook as ingress stores it.
		wh := nats.NewMsg("webhooks.shop.order_created")
		wh.Header.Set(nats.MsgIdHdr, "shop:msg_1")
		wh.Header.Set(events.HeaderEventID, "shop:msg_1")
		wh.Header.Set(events.HeaderSource, "shop")
		wh.Header.Set(events.HeaderEventType, "order.created")
		wh.Header.Set(events.HeaderContentType, "application/json")
		wh.Data = []byte(`{"type":"order.created"}`)
		whAck, err := e.js.PublishMsg(testCtx(t), wh)
		if err != nil {
			t.Fatal(err)
		}
		// A replay is a copy of a recorded event: not recorded again.
		rp := nats.NewMsg("replay.erp.events.order.created")
		rp.Header.Set(nats.MsgIdHdr, "replay-1")
		rp.Header.Set(events.HeaderEventID, "ev-replay-only")
		if _, err := e.js.PublishMsg(testCtx(t), rp); err != nil {
			t.Fatal(err)
		}

		e.emit(t, storetest.Attempt("ev-1", "erp", 1, time.Now(), 503, switchyardv1.Outcome_OUTCOME_RETRYABLE, false))
		e.emit(t, storetest.DeadLetter("ev-1", "erp", time.Now()))
		e.emit(t, storetest.Rejection("rej-1", time.Now()))
		for _, rec := range storetest.Others(time.Now()) {
			e.emit(t, rec)
		}
		// More than a batch of attempts for one event.
		for i := range 120 {
			e.emit(t, storetest.Attempt("ev-many", "crm", i+1, time.Now(), 500, switchyardv1.Outcome_OUTCOME_RETRYABLE, false))
		}

		waitfor.True(t, "event, attempt and dead letter stored", func() bool {
			d, err := st.GetEvent(testCtx(t), "ev-1")
			return err == nil && d.Event != nil && len(d.Attempts) == 1 && len(d.DeadLetters) == 1
		})
		waitfor.True(t, "every attempt of ev-many stored", func() bool {
			d, err := st.GetEvent(testCtx(t), "ev-many")
			return err == nil && len(d.Attempts) == 120
		})
		waitfor.True(t, "webhook stored", func() bool {
			d, err := st.GetEvent(testCtx(t), "shop:msg_1")
			return err == nil && d.Event != nil
		})
		waitfor.True(t, "rejection stored", func() bool {
			rs, _, err := st.ListRejections(testCtx(t), store.RejectionFilter{}, store.Page{})
			return err == nil && len(rs) == 1
		})
		e.waitAcked(t)

		d, err := st.GetEvent(testCtx(t), "ev-1")
		if err != nil {
			t.Fatal(err)
		}
		ev := d.Event
		if ev.Subject != "events.order.created" || ev.Type != "order.created" || ev.ContentType != "application/json" ||
			ev.StreamSeq != res.Sequence || string(ev.Payload) != `{"order":1}` || ev.ReceivedAt.IsZero() {
			t.Errorf("event = %+v", ev)
		}
		if ev.Headers["X-Trace"] != "t-1" || ev.Headers[events.HeaderEventID] != "ev-1" {
			t.Errorf("headers = %v", ev.Headers)
		}
		if _, ok := ev.Headers[nats.MsgIdHdr]; ok {
			t.Error("Nats-Msg-Id kept in the stored headers")
		}
		d, err = st.GetEvent(testCtx(t), "shop:msg_1")
		if err != nil {
			t.Fatal(err)
		}
		if d.Event.Source != "shop" || d.Event.StreamSeq != whAck.Sequence || d.Event.Subject != "webhooks.shop.order_created" {
			t.Errorf("webhook event = %+v", d.Event)
		}
		if _, err := st.GetEvent(testCtx(t), "ev-replay-only"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("replay recorded as an event: %v", err)
		}
		if got := e.metric(t, "switchyard_auditor_written_total"); got < 1+120+1+1+4+2 {
			t.Errorf("written_total = %v", got)
		}
	})
}

func TestUndecodableMessagesAreParked(t *testing.T) {
	t.Parallel()
	st := backends["sqlite"](t)
	if err := st.Migrate(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	e := start(t, st)

	garbage := nats.NewMsg("audit.other.garbage")
	garbage.Data = []byte{0xff, 0x01, 0x02}
	if _, err := e.js.PublishMsg(testCtx(t), garbage); err != nil {
		t.Fatal(err)
	}
	noID := nats.NewMsg("events.order.created")
	noID.Data = []byte(`{}`)
	if _, err := e.js.PublishMsg(testCtx(t), noID); err != nil {
		t.Fatal(err)
	}
	e.emit(t, storetest.Rejection("rej-after-garbage", time.Now()))
	if _, err := events.Publish(testCtx(t), e.js, events.Event{ID: "ev-after-garbage", Type: "order.created", Data: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}

	waitfor.True(t, "good messages written past the bad ones", func() bool {
		rs, _, err := st.ListRejections(testCtx(t), store.RejectionFilter{}, store.Page{})
		_, gerr := st.GetEvent(testCtx(t), "ev-after-garbage")
		return err == nil && len(rs) == 1 && gerr == nil
	})
	e.waitAcked(t)
	parked, _, err := st.ListParked(testCtx(t), store.Page{})
	if err != nil {
		t.Fatal(err)
	}
	bySubject := map[string]store.Parked{}
	for _, p := range parked {
		bySubject[p.Subject] = p
	}
	if len(parked) != 2 || !bytes.Equal(bySubject["audit.other.garbage"].Data, garbage.Data) || string(bySubject["events.order.created"].Data) != "{}" {
		t.Errorf("parked = %+v, want the two undecodable messages whole", parked)
	}
	if p := bySubject["audit.other.garbage"]; p.Stream != natsx.StreamAudit || p.StreamSeq == 0 || !strings.Contains(p.Error, "undecodable") {
		t.Errorf("parked garbage = %+v", p)
	}
	if got := e.metric(t, "switchyard_auditor_parked_total"); got != 2 {
		t.Errorf("parked_total = %v, want 2", got)
	}
}

// While the store refuses writes nothing is acknowledged; once it accepts
// them, everything that waited is written.
func TestNothingAckedUntilWritten(t *testing.T) {
	t.Parallel()
	st := backends["postgres"](t) // not migrated: every write fails
	e := start(t, st)

	e.emit(t, storetest.Rejection("rej-waiting", time.Now()))
	if _, err := events.Publish(testCtx(t), e.js, events.Event{ID: "ev-waiting", Type: "order.created", Data: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	waitfor.True(t, "failed writes", func() bool { return e.metric(t, "switchyard_auditor_write_errors_total") >= 2 })
	for _, c := range []struct{ stream, name string }{
		{natsx.StreamAudit, natsx.ConsumerAuditor},
		{natsx.StreamEvents, natsx.ConsumerAuditorEvents},
	} {
		info := e.consumer(t, c.stream, c.name)
		// At least the one record or event; AUDIT may also hold the
		// writer's own AuditLag reports, which wait like the rest.
		if info.AckFloor.Stream != 0 || info.NumAckPending+int(info.NumPending) < 1 {
			t.Errorf("%s acknowledged before the write succeeded: ack floor %d, pending %d/%d",
				c.name, info.AckFloor.Stream, info.NumAckPending, info.NumPending)
		}
	}

	if err := st.Migrate(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	waitfor.True(t, "waiting items written", func() bool {
		rs, _, err := st.ListRejections(testCtx(t), store.RejectionFilter{}, store.Page{})
		_, gerr := st.GetEvent(testCtx(t), "ev-waiting")
		return err == nil && len(rs) == 1 && gerr == nil
	})
	e.waitAcked(t)
	if got := e.metric(t, "switchyard_auditor_written_total"); got < 2 {
		t.Errorf("written_total = %v, want at least 2", got)
	}
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	if _, err := New(nil, nil, Config{}); err == nil {
		t.Error("New without a logger succeeded")
	}
	if c := (Config{}).WithDefaults(); c.BatchSize != 500 || c.Linger != 20*time.Millisecond || c.WriteTimeout != 30*time.Second ||
		c.LagInterval != 10*time.Second || c.LagThreshold != 30*time.Second || c.Now == nil {
		t.Errorf("defaults = %+v", c)
	}
}
