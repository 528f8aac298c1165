package publish_test

import (
	"context"
	"errors"
	"fmt"
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

// A message JetStream has no room for is refused, not lost in transit:
// Msg returns the refusal at once (sending it again would be refused
// again) and NoRoom says so, whether the server's store is full or the
// stream's own limit is reached.
func TestNoRoomIsReturnedAtOnce(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// fill returns a JetStream that has no room for one more message
		// on subject.
		fill func(t *testing.T) (js jetstream.JetStream, subject string)
	}{
		{"server store full", func(t *testing.T) (jetstream.JetStream, string) {
			ns := natstest.StartWithStoreLimit(t, 256<<10)
			_, js := ns.Connect(t)
			fillUntilRefused(t, js, "events.fill")
			return js, "events.order.created"
		}},
		{"stream limit with discard new", func(t *testing.T) (jetstream.JetStream, string) {
			ns := natstest.Start(t)
			_, js := ns.Connect(t)
			if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{
				Name: "SMALL", Subjects: []string{"small.>"}, MaxBytes: 64 << 10, Discard: jetstream.DiscardNew,
			}); err != nil {
				t.Fatal(err)
			}
			fillUntilRefused(t, js, "small.fill")
			return js, "small.x"
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			js, subject := tt.fill(t)
			l := &lossy{JetStream: js, lose: func(int32) bool { return false }}
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			m := msg("full-1")
			m.Subject, m.Data = subject, make([]byte, 4<<10)
			_, err := publish.Msg(ctx, l, m)
			if !publish.NoRoom(err) {
				t.Fatalf("Msg with no room = %v, want a refusal NoRoom recognises", err)
			}
			if l.calls.Load() != 1 {
				t.Errorf("sent %d times, want 1: a refusal for want of room is not an unknown outcome", l.calls.Load())
			}
		})
	}
}

// fillUntilRefused publishes 4 KiB messages on subject until JetStream
// refuses one for want of room.
func fillUntilRefused(t *testing.T, js jetstream.JetStream, subject string) {
	t.Helper()
	data := make([]byte, 4<<10)
	for i := range 10_000 {
		_, err := js.Publish(t.Context(), subject, data)
		if err == nil {
			continue
		}
		if !publish.NoRoom(err) {
			t.Fatalf("message %d refused with %v, want no room", i, err)
		}
		return
	}
	t.Fatal("10,000 messages of 4 KiB stored: the limit did not hold")
}

func TestNoRoom(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  error
		want bool
	}{
		{nil, false},
		{context.DeadlineExceeded, false},
		{&jetstream.APIError{Code: 503, ErrorCode: 10023}, true},
		{fmt.Errorf("publish: %w", &jetstream.APIError{Code: 503, ErrorCode: 10077}), true},
		{&jetstream.APIError{Code: 400, ErrorCode: 10002}, true},
		{&jetstream.APIError{Code: 503, ErrorCode: 10008}, false},
		{&jetstream.APIError{Code: 400, ErrorCode: 10071}, false},
	}
	for _, tt := range tests {
		if got := publish.NoRoom(tt.err); got != tt.want {
			t.Errorf("NoRoom(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}
