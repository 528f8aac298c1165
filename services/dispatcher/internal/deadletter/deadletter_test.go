package deadletter_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
	"github.com/switchyard/switchyard/pkg/topology"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/dispatcher/internal/deadletter"
)

func deadLetter(id string) *switchyardv1.DeadLetter {
	return &switchyardv1.DeadLetter{
		Id: id, EventId: "ev-1", Destination: "erp", Subject: "events.order.created", Stream: natsx.StreamEvents, StreamSeq: 7,
		Attempts: 1, LastStatusCode: 400, Reason: switchyardv1.DeadLetterReason_DEAD_LETTER_REASON_PERMANENT_FAILURE,
	}
}

// A dead letter is stored with the event's payload and headers (not the
// stream's own), and recorded in the audit log without them; writing it
// again changes nothing and says so.
func TestWriteStoresOnce(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	w := deadletter.NewWriter(js, auditlog.NewEmitter(js, "dispatcher"))
	h := nats.Header{}
	h.Set("Switchyard-Event-Id", "ev-1")
	h.Set("Nats-Msg-Id", "ev-1")
	h.Set("Nats-Sequence", "7")

	for i, wantDup := range []bool{false, true} {
		dup, err := w.Write(ctx, deadLetter("EVENTS@x:7:erp"), h, []byte(`{"order":1}`))
		if err != nil || dup != wantDup {
			t.Fatalf("write %d = %v, %v; want duplicate %v", i+1, dup, err, wantDup)
		}
	}
	dls := natstest.DeadLetters(t, js, "erp")
	if len(dls) != 1 || string(dls[0].Payload) != `{"order":1}` || dls[0].PayloadOmitted ||
		len(dls[0].Headers) != 1 || dls[0].Headers["Switchyard-Event-Id"] != "ev-1" {
		t.Fatalf("dead letters = %v, want one with the payload and the event's header", dls)
	}
	recs := natstest.AuditRecords(t, js, "audit."+auditlog.KindDeadLetter+".>")
	if len(recs) != 1 || recs[0].Id != "dead_letter:EVENTS@x:7:erp" || recs[0].GetDeadLettered().GetPayload() != nil {
		t.Errorf("audit records = %v, want one without the payload", recs)
	}
}

// A dead letter that would not fit in a message with its payload is stored
// without it (payload_omitted; the payload stays in EVENTS).
func TestWriteOmitsAPayloadTooLarge(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ns := natstest.StartWithServer(t, topology.Topology{}, natsx.EmbeddedConfig{MaxPayload: 64 << 10})
	_, js := ns.Connect(t)
	w := deadletter.NewWriter(js, auditlog.NewEmitter(js, "dispatcher"))
	h := nats.Header{}
	h.Set("Switchyard-Event-Id", "ev-1")
	dl := deadLetter("EVENTS@x:7:erp")
	if _, err := w.Write(ctx, dl, h, bytes.Repeat([]byte("x"), 64<<10-100)); err != nil {
		t.Fatal(err)
	}
	if !dl.PayloadOmitted {
		t.Error("the dead letter written is not marked payload_omitted")
	}
	dls := natstest.DeadLetters(t, js, "erp")
	if len(dls) != 1 || !dls[0].PayloadOmitted || len(dls[0].Payload) != 0 || dls[0].Headers["Switchyard-Event-Id"] != "ev-1" {
		t.Errorf("dead letters = %v, want one without its payload, with the headers", dls)
	}
	recs := natstest.AuditRecords(t, js, "audit."+auditlog.KindDeadLetter+".>")
	if len(recs) != 1 || !recs[0].GetDeadLettered().GetPayloadOmitted() {
		t.Errorf("audit records = %v, want one marked payload_omitted", recs)
	}
}
