package natstest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/natsx"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
)

// StreamMsgs returns the messages of stream whose subject matches filter,
// in stream order. It reads them by sequence (direct get), so it neither
// consumes them nor creates a consumer that would change an interest
// stream's retention.
func StreamMsgs(t testing.TB, js jetstream.JetStream, stream, filter string) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatalf("stream %s info: %v", stream, err)
	}
	if info.State.Msgs == 0 {
		return nil
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatalf("get %s #%d: %v", stream, seq, err)
		}
		if server.SubjectMatchesFilter(m.Subject, filter) {
			out = append(out, m)
		}
	}
	return out
}

// Count is the number of messages of stream on subjects matching filter.
func Count(t testing.TB, js jetstream.JetStream, stream, filter string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		t.Fatalf("stream %s info: %v", stream, err)
	}
	var n uint64
	for _, c := range info.State.Subjects {
		n += c
	}
	return n
}

// AuditRecords decodes the AUDIT records on subjects matching filter (e.g.
// audit.attempt.erp or audit.>), failing the test if a record's Nats-Msg-Id
// is not its id.
func AuditRecords(t testing.TB, js jetstream.JetStream, filter string) []*switchyardv1.AuditRecord {
	t.Helper()
	var out []*switchyardv1.AuditRecord
	for _, m := range StreamMsgs(t, js, natsx.StreamAudit, filter) {
		rec, err := auditlog.Decode(m.Data)
		if err != nil {
			t.Fatalf("decode audit record on %s: %v", m.Subject, err)
		}
		if got := m.Header.Get(nats.MsgIdHdr); got != rec.Id {
			t.Errorf("audit record on %s: Nats-Msg-Id %q is not its id %q", m.Subject, got, rec.Id)
		}
		out = append(out, rec)
	}
	return out
}

// DeadLetters decodes the DEAD_LETTERS messages of a destination.
func DeadLetters(t testing.TB, js jetstream.JetStream, destination string) []*switchyardv1.DeadLetter {
	t.Helper()
	var out []*switchyardv1.DeadLetter
	for _, m := range StreamMsgs(t, js, natsx.StreamDeadLetters, "dlq."+destination) {
		var dl switchyardv1.DeadLetter
		if err := proto.Unmarshal(m.Data, &dl); err != nil {
			t.Fatalf("decode dead letter: %v", err)
		}
		if got := m.Header.Get(nats.MsgIdHdr); got != dl.Id {
			t.Errorf("dead letter Nats-Msg-Id %q is not its id %q", got, dl.Id)
		}
		out = append(out, &dl)
	}
	return out
}

// PublishDeadLetter stores dl in DEAD_LETTERS as the dispatcher does: the
// whole DeadLetter on dlq.<destination>, its id as Nats-Msg-Id.
func PublishDeadLetter(t testing.TB, js jetstream.JetStream, dl *switchyardv1.DeadLetter) {
	t.Helper()
	data, err := proto.Marshal(dl)
	if err != nil {
		t.Fatalf("encode dead letter: %v", err)
	}
	m := nats.NewMsg("dlq." + dl.Destination)
	m.Header.Set(nats.MsgIdHdr, dl.Id)
	m.Data = data
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.PublishMsg(ctx, m); err != nil {
		t.Fatalf("publish dead letter %s: %v", dl.Id, err)
	}
}

// Go runs a service loop (a Run method) in the background until the test
// ends; then it cancels the context and fails the test if the loop returned
// an error or did not stop within 15s.
func Go(t testing.TB, name string, run func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var once sync.Once
	go func() { done <- run(ctx) }()
	t.Cleanup(func() {
		once.Do(cancel)
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("%s returned %v after its context was cancelled", name, err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("%s did not stop within 15s of its context being cancelled", name)
		}
	})
}
