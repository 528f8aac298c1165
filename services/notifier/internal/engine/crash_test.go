package engine

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/proto"

	"github.com/switchyard/switchyard/pkg/testing/natstest"
	"github.com/switchyard/switchyard/pkg/testing/waitfor"
	"github.com/switchyard/switchyard/pkg/topology"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/notifier/internal/alerting"
	"github.com/switchyard/switchyard/services/notifier/internal/rules"
	"github.com/switchyard/switchyard/services/notifier/internal/sender"
)

// diesBeforePublishing is the JetStream client of a process that dies
// between storing an alert message as pending in KV and publishing it to
// NOTIFICATIONS: no alert message of it ever reaches the stream.
type diesBeforePublishing struct{ jetstream.JetStream }

func (d diesBeforePublishing) PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	if strings.HasPrefix(msg.Subject, "notify.") {
		return nil, errors.New("process died before publishing")
	}
	return d.JetStream.PublishMsg(ctx, msg, opts...)
}

// gatedSender holds every send until open is closed.
type gatedSender struct {
	sender.Sender
	open    chan struct{}
	waiting atomic.Int32
}

func (g *gatedSender) Send(ctx context.Context, a sender.Alert) error {
	g.waiting.Add(1)
	select {
	case <-g.open:
	case <-ctx.Done():
		return &sender.RetryableError{Err: ctx.Err()}
	}
	return g.Sender.Send(ctx, a)
}

// pass runs one evaluation pass of r that begins now.
func (e *env) pass(r *replica) {
	e.t.Helper()
	mark := r.eng.started.Load()
	r.eng.poke()
	waitfor.True(e.t, "an evaluation pass", func() bool { return r.eng.finished.Load() > mark })
}

// crashBeforePublishing makes erp's DeliveryDeadLettered page in a replica
// that dies before publishing it, and returns the pending page as the dead
// process left it in KV.
func (e *env) crashBeforePublishing() *switchyardv1.PendingNotification {
	e.t.Helper()
	r := e.startWith(func(js jetstream.JetStream) jetstream.JetStream { return diesBeforePublishing{js} })
	e.emit(deadLetter("erp", 1))
	e.advance(30 * time.Second) // the group wait: the page is made
	e.stop(r)
	p := e.alertState(rules.DeliveryDeadLettered, map[string]string{"destination": "erp"}).GetSenders()["slack"].GetPending()
	if p == nil || p.Published || len(p.Notification) == 0 || p.Sequence != 1 {
		e.t.Fatalf("pending page after the crash = %v, want sequence 1 unpublished with its body", p)
	}
	if n := natstest.Count(e.t, e.js, topology.StreamNotifications, "notify.>"); n != 0 {
		e.t.Fatalf("NOTIFICATIONS holds %d messages after a crash before publishing, want 0", n)
	}
	return p
}

// A message stored as pending by a process that died before publishing it
// is published by the next process once the republish grace has passed
// (not before, when its maker may still be about to), and sent once.
func TestMessageMadeButNotPublishedIsPublishedByTheNextProcess(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.crashBeforePublishing()

	e.start()
	e.settle()
	e.advance(republishGrace - time.Second)
	e.wantTitles() // its maker may still publish it
	e.advance(time.Second)
	e.wantTitles("[FIRING][critical] 1 delivery dead-lettered on erp")
	erp := map[string]string{"destination": "erp"}
	a := e.alertState(rules.DeliveryDeadLettered, erp)
	if p := a.GetSenders()["slack"].GetPending(); p != nil {
		t.Errorf("the page is still pending after it was delivered: %v", p)
	}
	if a.GetLastSequence() != 1 {
		t.Errorf("last sequence = %d, want 1: the page was made again instead of published", a.GetLastSequence())
	}
	if recs := e.alertRecords(); len(recs) != 1 || !recs[0].Delivered || recs[0].Sequence != 1 {
		t.Errorf("alert audit records = %v, want page 1 delivered", recs)
	}
	e.advance(31 * time.Minute)
	e.wantTitles("[FIRING]", "[RESOLVED][critical] DeliveryDeadLettered on erp")
}

// A process that published a message but died before marking it published
// leaves a copy in NOTIFICATIONS that the next process also republishes
// after the grace: the stream's duplicate window stores it once, and the
// receiver gets it once.
func TestMessagePublishedButNotMarkedIsSentOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := e.crashBeforePublishing()
	fp := alerting.Fingerprint(rules.DeliveryDeadLettered, map[string]string{"destination": "erp"})
	// What the dead process did just before it died.
	msg := nats.NewMsg(notifySubject(fp, "slack"))
	msg.Header.Set(nats.MsgIdHdr, notifyID(fp, "slack", p.Sequence))
	msg.Data = p.Notification
	if _, err := e.js.PublishMsg(context.Background(), msg); err != nil {
		t.Fatal(err)
	}

	// The next process takes the copy, and its send waits (a slow Slack)
	// while the grace passes and an evaluation pass republishes it.
	slack := &gatedSender{Sender: e.slackSender(), open: make(chan struct{})}
	r := e.start(slack)
	waitfor.True(t, "the copy in NOTIFICATIONS taken for sending", func() bool { return slack.waiting.Load() == 1 })
	e.clock.Advance(republishGrace)
	e.pass(r)
	waitfor.True(t, "the page marked published", func() bool {
		return e.alertState(rules.DeliveryDeadLettered, map[string]string{"destination": "erp"}).GetSenders()["slack"].GetPending().GetPublished()
	})
	stream, err := e.js.Stream(context.Background(), topology.StreamNotifications)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.LastSeq != 1 || info.State.Msgs != 1 {
		t.Fatalf("NOTIFICATIONS last seq %d, %d messages after the republish; want the copy stored once (1, 1)", info.State.LastSeq, info.State.Msgs)
	}

	close(slack.open)
	e.settle()
	e.advance(time.Minute)
	e.wantTitles("[FIRING][critical] 1 delivery dead-lettered on erp")
	if recs := e.alertRecords(); len(recs) != 1 || !recs[0].Delivered {
		t.Errorf("alert audit records = %v, want one delivered page", recs)
	}
}

// failingKV fails the next n writes to alert keys with an error that is not
// a compare-and-set conflict, as a KV outage does.
type failingKV struct {
	jetstream.KeyValue
	n atomic.Int32
}

var errKVDown = errors.New("nats: timeout")

func (f *failingKV) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	if strings.HasPrefix(key, alerting.KeyPrefix) && f.n.Add(-1) >= 0 {
		return 0, errKVDown
	}
	return f.KeyValue.Update(ctx, key, value, rev)
}

// kvFaults is a JetStream client whose state bucket is kv.
type kvFaults struct {
	jetstream.JetStream
	kv *failingKV
}

func (k kvFaults) CreateOrUpdateKeyValue(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	kv, err := k.JetStream.CreateOrUpdateKeyValue(ctx, cfg)
	if err != nil || cfg.Bucket != topology.NotifierStateBucket {
		return kv, err
	}
	k.kv.KeyValue = kv
	return k.kv, nil
}

// An outcome that cannot be stored at once (KV unavailable right after
// Slack's 200) is retried until it is, and only then is the message
// acknowledged: the page is sent once, it does not stay pending (which
// would silence the alert for that sender for good), and the resolution
// follows.
func TestOutcomeIsStoredThroughAKVOutage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	kv := &failingKV{}
	// Slack answers only once the page is marked published, so that the
	// outage hits the outcome write alone.
	gate := &gatedSender{Sender: e.slackSender(), open: make(chan struct{})}
	slack := &afterSend{Sender: gate}
	r := e.startWith(func(js jetstream.JetStream) jetstream.JetStream { return kvFaults{JetStream: js, kv: kv} }, slack)
	slack.set(func() { kv.n.Store(3) }) // KV goes away right after the 200

	e.emit(deadLetter("erp", 1))
	e.clock.Advance(30 * time.Second)
	e.pass(r)
	erp := map[string]string{"destination": "erp"}
	waitfor.True(t, "the page marked published", func() bool {
		return e.alertState(rules.DeliveryDeadLettered, erp).GetSenders()["slack"].GetPending().GetPublished()
	})
	close(gate.open)
	e.settle()
	e.wantTitles("[FIRING][critical] 1 delivery dead-lettered on erp")
	if left := kv.n.Load(); left > 0 {
		t.Fatalf("%d KV failures left unused", left)
	}
	if got := testutil.ToFloat64(r.eng.m.stateWrites.WithLabelValues("error")); got != 3 {
		t.Errorf("failed state writes = %v, want the 3 of the outage", got)
	}
	if n := strings.Count(e.logs.String(), "alert outcome not recorded; will retry"); n != 3 {
		t.Errorf("%d retries logged, want 3", n)
	}
	if p := e.alertState(rules.DeliveryDeadLettered, erp).GetSenders()["slack"].GetPending(); p != nil {
		t.Fatalf("the page is still pending after the outage: %v", p)
	}
	cons, err := e.js.Consumer(context.Background(), topology.StreamNotifications, topology.SenderConsumerName("slack"))
	if err != nil {
		t.Fatal(err)
	}
	if info := cons.CachedInfo(); info.NumRedelivered != 0 || info.NumAckPending != 0 || info.AckFloor.Stream != 1 {
		t.Errorf("slack consumer: %d redelivered, %d ack pending, ack floor %d; want the page acked once",
			info.NumRedelivered, info.NumAckPending, info.AckFloor.Stream)
	}
	if recs := e.alertRecords(); len(recs) != 1 || !recs[0].Delivered {
		t.Errorf("alert audit records = %v, want one delivered page", recs)
	}
	e.advance(31 * time.Minute)
	e.wantTitles("[FIRING]", "[RESOLVED][critical] DeliveryDeadLettered on erp")
}

// A copy of a message whose outcome is already stored (delivered twice, or
// handled by another replica) is dropped at delivery, not sent again; a
// message that does not decode is terminated; and the sender goes on with
// the next alert.
func TestStaleAndUndecodableMessagesAreNotSent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.start()
	e.emit(deadLetter("erp", 1))
	e.advance(30 * time.Second)
	e.wantTitles("[FIRING][critical] 1 delivery dead-lettered on erp")

	erp := map[string]string{"destination": "erp"}
	fp := alerting.Fingerprint(rules.DeliveryDeadLettered, erp)
	copyOf := &switchyardv1.Notification{Alert: &switchyardv1.AlertNotification{
		Fingerprint: fp, Rule: rules.DeliveryDeadLettered, Labels: erp, Kind: alerting.KindFiring, Sequence: 1,
		State: switchyardv1.AlertState_ALERT_STATE_FIRING, Severity: "critical", Count: 1,
	}}
	data, err := proto.Marshal(copyOf)
	if err != nil {
		t.Fatal(err)
	}
	for subject, body := range map[string][]byte{notifySubject(fp, "slack"): data, "notify.slack.garbage": {0xff, 0x01}} {
		if _, err := e.js.Publish(context.Background(), subject, body); err != nil {
			t.Fatal(err)
		}
	}
	e.settle() // NOTIFICATIONS empty: both were acknowledged or terminated
	e.wantTitles("[FIRING][critical] 1 delivery dead-lettered on erp")
	if got := testutil.ToFloat64(r.eng.m.notifications.WithLabelValues("slack", outcomeStale)); got != 1 {
		t.Errorf("stale messages = %v, want the copy", got)
	}
	if !strings.Contains(e.logs.String(), "undecodable alert message terminated") {
		t.Error("the undecodable message was not logged")
	}
	if recs := e.alertRecords(); len(recs) != 1 {
		t.Errorf("%d alert audit records, want only the delivered page's", len(recs))
	}
	e.emit(deadLetter("crm", 2))
	e.advance(30 * time.Second)
	e.wantTitles("on erp", "[FIRING][critical] 1 delivery dead-lettered on crm")
}
