// Package deadletter stores the dead letters of deliveries the dispatcher
// gave up: each in the DEAD_LETTERS stream with the event's payload and
// headers (what a replay sends), and in the audit log without them. The
// dispatcher's workers and its advisory reconciler both write through it;
// a dead letter's id is its Nats-Msg-Id, so whichever writes second
// changes nothing.
package deadletter

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/switchyard/switchyard/pkg/auditlog"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
)

// auditTimeout bounds waiting for one publish (the dead letter, its audit
// record) to be stored.
const auditTimeout = 5 * time.Second

// Writer stores dead letters.
type Writer struct {
	js    jetstream.JetStream
	audit *auditlog.Emitter
}

// NewWriter returns a Writer that publishes through js and records through
// audit.
func NewWriter(js jetstream.JetStream, audit *auditlog.Emitter) *Writer {
	return &Writer{js: js, audit: audit}
}

// Write stores dl in DEAD_LETTERS with the event's payload and
// headers, and records it (without them) in the audit log; both must be
// stored for it to succeed. It reports whether DEAD_LETTERS already held
// the dead letter: it drops a second one with the same id (Nats-Msg-Id)
// within its 2h duplicate window. The audit record is emitted either way
// (its id is deterministic and the audit log keeps one), since a crash or a
// failed audit write may have come between the two.
//
// A dead letter that would not fit in a NATS message (an event near
// max_payload, plus the dead letter's own fields) is stored without the
// payload, with payload_omitted set: the payload stays in EVENTS at
// stream_seq for as long as EVENTS keeps it.
func (w *Writer) Write(ctx context.Context, dl *switchyardv1.DeadLetter, h nats.Header, payload []byte) (duplicate bool, err error) {
	m, err := w.msg(dl, h, payload, false)
	if err != nil {
		return false, err
	}
	pctx, cancel := context.WithTimeout(ctx, auditTimeout)
	ack, err := w.js.PublishMsg(pctx, m)
	cancel()
	if err != nil && tooLarge(err) && !dl.PayloadOmitted {
		// The limit is lower than the connection announced (a stream or
		// account limit): store it without the payload rather than never.
		if m, err = w.msg(dl, h, payload, true); err != nil {
			return false, err
		}
		pctx, cancel := context.WithTimeout(ctx, auditTimeout)
		ack, err = w.js.PublishMsg(pctx, m)
		cancel()
	}
	if err != nil {
		return false, fmt.Errorf("publish dead letter %s: %w", dl.Id, err)
	}
	rec := &switchyardv1.AuditRecord{
		Id:     "dead_letter:" + dl.Id,
		Detail: &switchyardv1.AuditRecord_DeadLettered{DeadLettered: dl},
	}
	if err := w.emitAudit(ctx, rec); err != nil {
		return ack.Duplicate, fmt.Errorf("dead letter %s stored, its audit record not: %w", dl.Id, err)
	}
	return ack.Duplicate, nil
}

// msg encodes the DEAD_LETTERS message of dl: with the payload
// and headers, unless they do not fit in the connection's max_payload or
// omit is set; then without the payload (dl.PayloadOmitted is set), and
// without the headers too if even that is too large.
func (w *Writer) msg(dl *switchyardv1.DeadLetter, h nats.Header, payload []byte, omit bool) (*nats.Msg, error) {
	full := proto.Clone(dl).(*switchyardv1.DeadLetter)
	full.Payload = payload
	full.Headers = map[string]string{}
	for k := range h {
		// Nats-Msg-Id and the stream's own headers (Nats-Stream,
		// Nats-Sequence, … on a message read back from EVENTS) are not the
		// event's: a replay must not carry them.
		if strings.HasPrefix(k, "Nats-") {
			continue
		}
		full.Headers[k] = h.Get(k)
	}
	// The message's own header block (Nats-Msg-Id) counts against the
	// limit too.
	room := w.js.Conn().MaxPayload() - int64(len(dl.Id)+64)
	data, err := proto.Marshal(full)
	if err == nil && len(payload) > 0 && (omit || int64(len(data)) > room) {
		full.Payload = nil
		dl.PayloadOmitted, full.PayloadOmitted = true, true
		data, err = proto.Marshal(full)
	}
	if err == nil && int64(len(data)) > room {
		full.Headers = nil
		data, err = proto.Marshal(full)
	}
	if err != nil {
		return nil, fmt.Errorf("encode dead letter: %w", err)
	}
	m := nats.NewMsg("dlq." + dl.Destination)
	m.Header.Set(nats.MsgIdHdr, dl.Id)
	m.Data = data
	return m, nil
}

// tooLarge reports whether a publish was refused for its size.
func tooLarge(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, nats.ErrMaxPayload) ||
		(errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum)
}

// auditTries is how many times a record that must not be lost (a dead
// letter's, a circuit change's) is published before giving up.
const auditTries = 3

// emitAudit publishes rec and waits for it to be stored, trying again a
// few times, each with its own timeout.
func (w *Writer) emitAudit(ctx context.Context, rec *switchyardv1.AuditRecord) error {
	var err error
	for i := range auditTries {
		actx, cancel := context.WithTimeout(ctx, auditTimeout)
		err = w.audit.Emit(actx, rec)
		cancel()
		if err == nil {
			return nil
		}
		if i == auditTries-1 {
			break
		}
		t := time.NewTimer(time.Duration(250<<i) * time.Millisecond)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return err
		}
	}
	return err
}
