package auditlog_test

import (
	"errors"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/publish"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
	"github.com/switchyard/switchyard/pkg/testing/testctx"
	"github.com/switchyard/switchyard/pkg/testing/waitfor"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
)

// testContext is the test's context (testctx.New).
var testContext = testctx.New

// auditStream starts a test server and returns JetStream and the AUDIT
// stream (whose auditor and notifier consumers hold the records).
func auditStream(t *testing.T) (jetstream.JetStream, jetstream.Stream) {
	t.Helper()
	_, js := natstest.Start(t).Connect(t)
	s, err := js.Stream(testContext(t), natsx.StreamAudit)
	if err != nil {
		t.Fatalf("AUDIT stream: %v", err)
	}
	return js, s
}

func msgCount(t *testing.T, s jetstream.Stream) uint64 {
	t.Helper()
	info, err := s.Info(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func TestKindAndSubject(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		rec      *switchyardv1.AuditRecord
		kind     string
		key      string
		wantSubj string
	}{
		{
			name: "webhook rejected",
			rec: &switchyardv1.AuditRecord{Detail: &switchyardv1.AuditRecord_WebhookRejected{WebhookRejected: &switchyardv1.WebhookRejected{
				Source: "shop", Reason: switchyardv1.RejectReason_REJECT_REASON_BAD_SIGNATURE,
			}}},
			kind: auditlog.KindRejected, key: "shop", wantSubj: "audit.rejected.shop",
		},
		{
			name: "webhook duplicate",
			rec:  &switchyardv1.AuditRecord{Detail: &switchyardv1.AuditRecord_WebhookDuplicate{WebhookDuplicate: &switchyardv1.WebhookDuplicate{Source: "shop"}}},
			kind: auditlog.KindDuplicate, key: "shop", wantSubj: "audit.duplicate.shop",
		},
		{
			name: "delivery attempt",
			rec:  &switchyardv1.AuditRecord{Detail: &switchyardv1.AuditRecord_DeliveryAttempt{DeliveryAttempt: &switchyardv1.DeliveryAttempt{Destination: "crm", Source: "shop"}}},
			kind: auditlog.KindAttempt, key: "crm", wantSubj: "audit.attempt.crm",
		},
		{
			name: "dead lettered",
			rec:  &switchyardv1.AuditRecord{Detail: &switchyardv1.AuditRecord_DeadLettered{DeadLettered: &switchyardv1.DeadLetter{Destination: "crm"}}},
			kind: auditlog.KindDeadLetter, key: "crm", wantSubj: "audit.dead_letter.crm",
		},
		{
			name: "replayed",
			rec:  &switchyardv1.AuditRecord{Detail: &switchyardv1.AuditRecord_Replayed{Replayed: &switchyardv1.Replayed{Destination: "erp"}}},
			kind: auditlog.KindReplayed, key: "erp", wantSubj: "audit.replayed.erp",
		},
		{
			name: "circuit changed",
			rec:  &switchyardv1.AuditRecord{Detail: &switchyardv1.AuditRecord_CircuitChanged{CircuitChanged: &switchyardv1.CircuitChanged{Destination: "crm"}}},
			kind: auditlog.KindCircuit, key: "crm", wantSubj: "audit.circuit.crm",
		},
		{
			name: "backlog",
			rec:  &switchyardv1.AuditRecord{Detail: &switchyardv1.AuditRecord_Backlog{Backlog: &switchyardv1.BacklogReport{Destination: "crm"}}},
			kind: auditlog.KindBacklog, key: "crm", wantSubj: "audit.backlog.crm",
		},
		{
			name: "audit lag is keyed by service",
			rec:  &switchyardv1.AuditRecord{Service: "auditor", Detail: &switchyardv1.AuditRecord_AuditLag{AuditLag: &switchyardv1.AuditLag{}}},
			kind: auditlog.KindLag, key: "auditor", wantSubj: "audit.lag.auditor",
		},
		{
			name: "alert",
			rec:  &switchyardv1.AuditRecord{Detail: &switchyardv1.AuditRecord_Alert{Alert: &switchyardv1.AlertNotification{Rule: "dead_letters"}}},
			kind: auditlog.KindAlert, key: "dead_letters", wantSubj: "audit.alert.dead_letters",
		},
		{
			name: "poll round is keyed by source",
			rec:  &switchyardv1.AuditRecord{Detail: &switchyardv1.AuditRecord_PollRound{PollRound: &switchyardv1.PollRound{Source: "shop-orders"}}},
			kind: auditlog.KindPoll, key: "shop-orders", wantSubj: "audit.poll.shop-orders",
		},
		{
			name: "quarantined payload of a source",
			rec:  &switchyardv1.AuditRecord{Detail: &switchyardv1.AuditRecord_PayloadQuarantined{PayloadQuarantined: &switchyardv1.PayloadQuarantined{Source: "shop"}}},
			kind: auditlog.KindQuarantined, key: "shop", wantSubj: "audit.quarantined.shop",
		},
		{
			name: "released event of a publish API key",
			rec:  &switchyardv1.AuditRecord{Detail: &switchyardv1.AuditRecord_QuarantineReleased{QuarantineReleased: &switchyardv1.QuarantineReleased{ApiKey: "billing"}}},
			kind: auditlog.KindReleased, key: "billing", wantSubj: "audit.released.billing",
		},
		{
			name: "no detail",
			rec:  &switchyardv1.AuditRecord{Service: "ingress"},
			kind: auditlog.KindOther, key: "ingress", wantSubj: "audit.other.ingress",
		},
		{
			name: "empty key",
			rec:  &switchyardv1.AuditRecord{Detail: &switchyardv1.AuditRecord_DeliveryAttempt{DeliveryAttempt: &switchyardv1.DeliveryAttempt{}}},
			kind: auditlog.KindAttempt, key: "", wantSubj: "audit.attempt.unknown",
		},
		{
			name: "nil detail message",
			rec:  &switchyardv1.AuditRecord{Detail: &switchyardv1.AuditRecord_DeadLettered{}},
			kind: auditlog.KindDeadLetter, key: "", wantSubj: "audit.dead_letter.unknown",
		},
		{
			name: "untrusted key made a token",
			rec: &switchyardv1.AuditRecord{Detail: &switchyardv1.AuditRecord_WebhookRejected{WebhookRejected: &switchyardv1.WebhookRejected{
				Source: "evil.>.* source",
			}}},
			kind: auditlog.KindRejected, key: "evil.>.* source", wantSubj: "audit.rejected.evil_____source",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			kind, key := auditlog.Kind(tt.rec)
			if kind != tt.kind || key != tt.key {
				t.Errorf("Kind = %q, %q; want %q, %q", kind, key, tt.kind, tt.key)
			}
			if got := auditlog.Subject(tt.rec); got != tt.wantSubj {
				t.Errorf("Subject = %q, want %q", got, tt.wantSubj)
			}
		})
	}
}

// TestEveryDetailHasAKind walks the detail oneof of the generated code, so
// that a kind added to audit.proto without a case in Kind fails here
// instead of landing on audit.other.
func TestEveryDetailHasAKind(t *testing.T) {
	t.Parallel()
	rec := &switchyardv1.AuditRecord{}
	oneof := rec.ProtoReflect().Descriptor().Oneofs().ByName("detail")
	if oneof == nil {
		t.Fatal("AuditRecord has no detail oneof")
	}
	seen := map[string]protoreflect.Name{}
	fields := oneof.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		rec := &switchyardv1.AuditRecord{}
		m := rec.ProtoReflect()
		m.Set(fd, m.NewField(fd))
		kind, _ := auditlog.Kind(rec)
		if kind == auditlog.KindOther {
			t.Errorf("detail %s has no kind (audit.other)", fd.Name())
			continue
		}
		if other, ok := seen[kind]; ok {
			t.Errorf("details %s and %s share kind %q", other, fd.Name(), kind)
		}
		seen[kind] = fd.Name()
	}
	if len(seen) != fields.Len() {
		t.Errorf("%d kinds for %d details", len(seen), fields.Len())
	}
}

func TestEmit(t *testing.T) {
	t.Parallel()
	js, s := auditStream(t)
	ctx := testContext(t)
	clock := time.Date(2025, 6, 1, 10, 0, 0, 0, time.UTC)
	em := auditlog.NewEmitter(js, "dispatcher").WithClock(func() time.Time { return clock })

	rec := &switchyardv1.AuditRecord{
		Service: "spoofed", // the emitter stamps its own
		Detail: &switchyardv1.AuditRecord_DeliveryAttempt{DeliveryAttempt: &switchyardv1.DeliveryAttempt{
			EventId: "order-1", Destination: "crm", Attempt: 1, MaxAttempts: 6,
			Outcome: switchyardv1.Outcome_OUTCOME_DELIVERED, StatusCode: 200,
		}},
	}
	if err := em.Emit(ctx, rec); err != nil {
		t.Fatalf("Emit: %v", err)
	}
	if _, err := ulid.ParseStrict(rec.Id); err != nil {
		t.Errorf("Id = %q, not a ULID: %v", rec.Id, err)
	}
	if !rec.Time.AsTime().Equal(clock) {
		t.Errorf("Time = %v, want the emitter's clock %v", rec.Time.AsTime(), clock)
	}
	if rec.Service != "dispatcher" {
		t.Errorf("Service = %q, want dispatcher", rec.Service)
	}
	host, _ := os.Hostname()
	if want := host + "/" + strconv.Itoa(os.Getpid()); rec.Instance != want {
		t.Errorf("Instance = %q, want %q", rec.Instance, want)
	}

	m, err := s.GetLastMsgForSubject(ctx, "audit.attempt.crm")
	if err != nil {
		t.Fatalf("no record on audit.attempt.crm: %v", err)
	}
	if got := m.Header.Get(nats.MsgIdHdr); got != rec.Id {
		t.Errorf("Nats-Msg-Id = %q, want the record id %q", got, rec.Id)
	}
	got, err := auditlog.Decode(m.Data)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if !proto.Equal(got, rec) {
		t.Errorf("stored record = %v\nwant %v", got, rec)
	}
}

func TestEmitKeepsIDAndTime(t *testing.T) {
	t.Parallel()
	js, s := auditStream(t)
	ctx := testContext(t)
	at := timestamppb.New(time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC))
	rec := &switchyardv1.AuditRecord{
		Id:     "01HZZZZZZZZZZZZZZZZZZZZZZZ",
		Time:   at,
		Detail: &switchyardv1.AuditRecord_AuditLag{AuditLag: &switchyardv1.AuditLag{PendingRecords: 12}},
	}
	if err := auditlog.NewEmitter(js, "auditor").Emit(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if rec.Id != "01HZZZZZZZZZZZZZZZZZZZZZZZ" || !proto.Equal(rec.Time, at) {
		t.Errorf("Emit replaced the id or time: %v", rec)
	}
	// Audit lag is keyed by the emitting service, stamped before the
	// subject is chosen.
	m, err := s.GetLastMsgForSubject(ctx, "audit.lag.auditor")
	if err != nil {
		t.Fatalf("no record on audit.lag.auditor: %v", err)
	}
	if m.Header.Get(nats.MsgIdHdr) != rec.Id {
		t.Errorf("Nats-Msg-Id = %q", m.Header.Get(nats.MsgIdHdr))
	}
}

// TestEmitDuplicate: a record emitted twice with the same id (a retry after
// a lost PubAck) is stored once within AUDIT's duplicate window.
func TestEmitDuplicate(t *testing.T) {
	t.Parallel()
	js, s := auditStream(t)
	ctx := testContext(t)
	em := auditlog.NewEmitter(js, "ingress")
	rec := &switchyardv1.AuditRecord{Detail: &switchyardv1.AuditRecord_WebhookRejected{WebhookRejected: &switchyardv1.WebhookRejected{
		Source: "shop", Reason: switchyardv1.RejectReason_REJECT_REASON_STALE_TIMESTAMP,
	}}}
	for range 3 {
		if err := em.Emit(ctx, rec); err != nil {
			t.Fatal(err)
		}
	}
	if n := msgCount(t, s); n != 1 {
		t.Errorf("AUDIT holds %d messages after emitting one record 3 times, want 1", n)
	}
	// A new record (new id) is stored.
	if err := em.Emit(ctx, &switchyardv1.AuditRecord{Detail: rec.Detail}); err != nil {
		t.Fatal(err)
	}
	if n := msgCount(t, s); n != 2 {
		t.Errorf("AUDIT holds %d messages, want 2", n)
	}
}

func TestEmitAsync(t *testing.T) {
	t.Parallel()
	js, s := auditStream(t)
	em := auditlog.NewEmitter(js, "notifier")
	var futures []jetstream.PubAckFuture
	var ids []string
	for i := range 10 {
		rec := &switchyardv1.AuditRecord{Detail: &switchyardv1.AuditRecord_Alert{Alert: &switchyardv1.AlertNotification{
			Rule: "dead_letters", Count: int64(i),
		}}}
		f, err := em.EmitAsync(rec)
		if err != nil {
			t.Fatal(err)
		}
		futures = append(futures, f)
		ids = append(ids, rec.Id)
	}
	ctx := testContext(t)
	for i, f := range futures {
		select {
		case ack := <-f.Ok():
			if ack.Stream != natsx.StreamAudit {
				t.Errorf("stored in %s", ack.Stream)
			}
		case err := <-f.Err():
			t.Fatalf("record %d: %v", i, err)
		case <-ctx.Done():
			t.Fatal("no PubAck")
		}
		if got := f.Msg().Header.Get(nats.MsgIdHdr); got != ids[i] {
			t.Errorf("record %d: Nats-Msg-Id = %q, want %q", i, got, ids[i])
		}
	}
	if n := msgCount(t, s); n != 10 {
		t.Errorf("AUDIT holds %d messages, want 10", n)
	}
}

func TestDecodeRoundTrip(t *testing.T) {
	t.Parallel()
	recs := []*switchyardv1.AuditRecord{
		{},
		{
			Id: auditlog.NewID(), Time: timestamppb.Now(), Service: "dispatcher", Instance: "host/1",
			Detail: &switchyardv1.AuditRecord_DeadLettered{DeadLettered: &switchyardv1.DeadLetter{
				Id: "dl-1", EventId: "e-1", Destination: "crm", Subject: "events.order.created", Stream: "EVENTS", StreamSeq: 42,
				Attempts: 6, LastStatusCode: 503, LastError: "503 Service Unavailable", Reason: switchyardv1.DeadLetterReason_DEAD_LETTER_REASON_MAX_ATTEMPTS,
				DeadLetteredAt: timestamppb.Now(), Payload: []byte{0, 1, 2, 0xff}, Headers: map[string]string{"Content-Type": "application/json"},
			}},
		},
		{
			Id: auditlog.NewID(), Service: "dispatcher",
			Detail: &switchyardv1.AuditRecord_DeliveryAttempt{DeliveryAttempt: &switchyardv1.DeliveryAttempt{
				EventId: "e-2", Destination: "erp", Duration: durationpb.New(1500 * time.Millisecond), RetryAfter: durationpb.New(time.Minute),
				Outcome: switchyardv1.Outcome_OUTCOME_RETRYABLE, Final: false,
			}},
		},
		{
			Id:     auditlog.NewID(),
			Detail: &switchyardv1.AuditRecord_Alert{Alert: &switchyardv1.AlertNotification{Rule: "r", Labels: map[string]string{"destination": "crm"}, State: switchyardv1.AlertState_ALERT_STATE_FIRING}},
		},
	}
	for _, rec := range recs {
		data, err := proto.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		got, err := auditlog.Decode(data)
		if err != nil {
			t.Fatalf("Decode: %v", err)
		}
		if !proto.Equal(got, rec) {
			t.Errorf("Decode(Marshal(r)) = %v, want %v", got, rec)
		}
	}
	if _, err := auditlog.Decode([]byte{0xff, 0xff, 0xff}); err == nil {
		t.Error("Decode of garbage succeeded")
	}
}

func TestNewID(t *testing.T) {
	t.Parallel()
	ids := make([]string, 1000)
	for i := range ids {
		ids[i] = auditlog.NewID()
		if _, err := ulid.ParseStrict(ids[i]); err != nil {
			t.Fatalf("NewID = %q: %v", ids[i], err)
		}
	}
	if !slices.IsSorted(ids) {
		t.Error("ids from one process are not in time order")
	}
	if len(slices.Compact(slices.Clone(ids))) != len(ids) {
		t.Error("NewID repeated an id")
	}
}

func TestCheckRefusesWhatCannotBeEncoded(t *testing.T) {
	t.Parallel()
	bad := &switchyardv1.AuditRecord{Id: "r", Detail: &switchyardv1.AuditRecord_Replayed{Replayed: &switchyardv1.Replayed{RequestedBy: "a\xffb"}}}
	if err := auditlog.Check(bad); !errors.Is(err, auditlog.ErrUnencodable) {
		t.Errorf("Check(invalid UTF-8) = %v, want ErrUnencodable", err)
	}
	good := &switchyardv1.AuditRecord{Id: "r", Detail: &switchyardv1.AuditRecord_Replayed{Replayed: &switchyardv1.Replayed{RequestedBy: "ab"}}}
	if err := auditlog.Check(good); err != nil {
		t.Errorf("Check(valid) = %v", err)
	}
}

// A record that nothing would emit again waits for room in a store that
// is full, and is stored once room returns.
func TestEmitUntilStoredWaitsForRoom(t *testing.T) {
	t.Parallel()
	ns := natstest.StartWithStoreLimit(t, 256<<10)
	nc, js := ns.Connect(t)
	ctx := testContext(t)
	filler := make([]byte, 4<<10)
	for {
		_, err := js.Publish(ctx, "events.fill", filler)
		if publish.NoRoom(err) {
			break
		}
		if err != nil {
			t.Fatalf("filling the store: %v", err)
		}
	}
	// Every send of the record, refused or not, also reaches a plain
	// subscriber of its subject.
	sends, err := nc.SubscribeSync("audit.attempt.crm")
	if err != nil {
		t.Fatal(err)
	}
	rec := &switchyardv1.AuditRecord{Id: "attempt-full-1", Detail: &switchyardv1.AuditRecord_DeliveryAttempt{DeliveryAttempt: &switchyardv1.DeliveryAttempt{
		EventId: "order-9", Destination: "crm", Attempt: 1, Outcome: switchyardv1.Outcome_OUTCOME_DELIVERED,
	}}}
	done := make(chan error, 1)
	go func() { done <- auditlog.NewEmitter(js, "dispatcher").EmitUntilStored(ctx, rec) }()
	waitfor.True(t, "the record sent twice while the store is full", func() bool {
		n, _, _ := sends.Pending()
		return n >= 2
	})
	select {
	case err := <-done:
		t.Fatalf("EmitUntilStored returned while the store was full: %v", err)
	default:
	}
	ns.RaiseStoreLimit(t, 64<<20)
	if err := <-done; err != nil {
		t.Fatalf("EmitUntilStored after room returned: %v", err)
	}
	s, err := js.Stream(ctx, natsx.StreamAudit)
	if err != nil {
		t.Fatal(err)
	}
	if n := msgCount(t, s); n != 1 {
		t.Errorf("AUDIT holds %d records, want 1", n)
	}
}
