package publish_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/publish"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
	"github.com/switchyard/switchyard/pkg/testing/waitfor"
)

// lossy is a real JetStream whose publishes lose their answer while lose
// returns true: the message is sent (and stored), the caller gets a
// timeout, as when a stream leader dies after storing.
type lossy struct {
	jetstream.JetStream
	calls atomic.Int32
	lose  func(call int32) bool
}

func (l *lossy) PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	n := l.calls.Add(1)
	ack, err := l.JetStream.PublishMsg(ctx, m, opts...)
	if err == nil && l.lose(n) {
		return nil, context.DeadlineExceeded
	}
	return ack, err
}

func msg(id string) *nats.Msg {
	m := nats.NewMsg("events.order.created")
	if id != "" {
		m.Header.Set(nats.MsgIdHdr, id)
	}
	m.Data = []byte(`{}`)
	return m
}

func stored(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	s, err := js.Stream(t.Context(), natsx.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	return s.CachedInfo().State.Msgs
}

func TestALostPubAckIsSentAgainAndStoredOnce(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	l := &lossy{JetStream: js, lose: func(n int32) bool { return n <= 2 }}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	ack, err := publish.Msg(ctx, l, msg("e-1"))
	if err != nil {
		t.Fatalf("Msg: %v", err)
	}
	if l.calls.Load() != 3 {
		t.Errorf("sent %d times, want 3 (two answers lost)", l.calls.Load())
	}
	// The copy the lost answers stored is this call's own.
	if ack.Duplicate {
		t.Error("the PubAck after lost answers is reported as a duplicate")
	}
	if n := stored(t, js); n != 1 {
		t.Errorf("EVENTS holds %d messages, want 1", n)
	}
	// A real duplicate is still one.
	ack, err = publish.Msg(ctx, js, msg("e-1"))
	if err != nil || !ack.Duplicate {
		t.Errorf("publishing e-1 again: %+v, %v; want a duplicate", ack, err)
	}
}

func TestWithoutAMsgIDItIsSentOnce(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	l := &lossy{JetStream: js, lose: func(int32) bool { return true }}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := publish.Msg(ctx, l, msg("")); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Msg = %v, want the lost answer's error", err)
	}
	if l.calls.Load() != 1 {
		t.Errorf("sent %d times; without a Nats-Msg-Id it could be stored twice, so once", l.calls.Load())
	}
}

func TestARefusalIsReturnedAtOnce(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	l := &lossy{JetStream: js, lose: func(int32) bool { return false }}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	_, err := publish.Msg(ctx, l, msg("e-2"), jetstream.WithExpectLastSequence(999))
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		t.Fatalf("Msg with a wrong expected sequence = %v, want the JetStream API error", err)
	}
	if l.calls.Load() != 1 {
		t.Errorf("sent %d times, want 1", l.calls.Load())
	}
}

// A message to a stream that does not exist yet (no responders) is sent
// again until the stream answers, within ctx.
func TestNoStreamYetIsWaitedFor(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	l := &lossy{JetStream: js, lose: func(int32) bool { return false }}
	m := nats.NewMsg("late.x")
	m.Header.Set(nats.MsgIdHdr, "late-1")
	done := make(chan error, 1)
	go func() {
		_, err := publish.Msg(ctx, l, m)
		done <- err
	}()
	waitfor.True(t, "the message sent a second time", func() bool { return l.calls.Load() >= 2 })
	select {
	case err := <-done:
		t.Fatalf("Msg returned before the stream existed: %v", err)
	default:
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "LATE", Subjects: []string{"late.>"}}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Msg: %v", err)
	}
}
