// Package auditlog publishes audit records to the AUDIT stream. Every
// service records what happened through an Emitter; the auditor stores the
// records and the notifier evaluates alert rules over them.
package auditlog

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/switchyard/switchyard/pkg/publish"
	"github.com/switchyard/switchyard/pkg/subjects"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
)

// Emitter publishes audit records for one service.
type Emitter struct {
	js       jetstream.JetStream
	service  string
	instance string
	now      func() time.Time
}

// NewEmitter returns an Emitter that stamps records with service and an
// instance id made from the host name and process id.
func NewEmitter(js jetstream.JetStream, service string) *Emitter {
	host, _ := os.Hostname()
	return &Emitter{
		js:       js,
		service:  service,
		instance: host + "/" + strconv.Itoa(os.Getpid()),
		now:      time.Now,
	}
}

// WithClock returns a copy of e that stamps records using now.
func (e *Emitter) WithClock(now func() time.Time) *Emitter {
	c := *e
	c.now = now
	return &c
}

// NewID returns a new unique, time-ordered record id.
func NewID() string { return ulid.Make().String() }

// ErrUnencodable is returned for a record protobuf refuses to marshal
// (a string field holding invalid UTF-8): nothing was published. Callers
// check records with Check before the action they record, so that an
// action never happens without its record.
var ErrUnencodable = errors.New("audit record cannot be encoded")

// Check reports whether rec can be marshalled (ErrUnencodable if not),
// without publishing it.
func Check(rec *switchyardv1.AuditRecord) error {
	if _, err := proto.Marshal(rec); err != nil {
		return fmt.Errorf("%w: %w", ErrUnencodable, err)
	}
	return nil
}

// prepare fills the envelope fields and builds the message.
func (e *Emitter) prepare(rec *switchyardv1.AuditRecord) (*nats.Msg, error) {
	if rec.Id == "" {
		rec.Id = NewID()
	}
	if rec.Time == nil {
		rec.Time = timestamppb.New(e.now())
	}
	rec.Service = e.service
	rec.Instance = e.instance
	data, err := proto.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnencodable, err)
	}
	m := nats.NewMsg(Subject(rec))
	m.Header.Set(nats.MsgIdHdr, rec.Id)
	m.Data = data
	return m, nil
}

// Emit publishes rec and waits for JetStream to store it. It fills Id
// (when empty), Time (when nil), Service and Instance. It fails fast when
// no stream answers: callers whose records must not be lost try again
// themselves, or use EmitUntilStored.
func (e *Emitter) Emit(ctx context.Context, rec *switchyardv1.AuditRecord) error {
	m, err := e.prepare(rec)
	if err != nil {
		return err
	}
	if _, err := e.js.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("publish audit record %s: %w", m.Subject, err)
	}
	return nil
}

// EmitUntilStored is Emit for a record that nothing would emit again: it
// sends the record again under its id while no PubAck comes (a stream
// leader election in a cluster, a reconnect; publish.Msg) or while
// JetStream has no room for it (publish.NoRoom: a store that filled up may
// get room back as messages expire or are consumed), until it is stored or
// ctx ends. The id must be deterministic or set by the caller, so that a
// record emitted twice is stored once.
func (e *Emitter) EmitUntilStored(ctx context.Context, rec *switchyardv1.AuditRecord) error {
	m, err := e.prepare(rec)
	if err != nil {
		return err
	}
	for pause := noRoomPause; ; pause = min(2*pause, maxNoRoomPause) {
		_, err := publish.Msg(ctx, e.js, m)
		if err == nil {
			return nil
		}
		if !publish.NoRoom(err) {
			return fmt.Errorf("publish audit record %s: %w", m.Subject, err)
		}
		select {
		case <-time.After(pause):
		case <-ctx.Done():
			return fmt.Errorf("publish audit record %s: %w", m.Subject, err)
		}
	}
}

// Pauses of EmitUntilStored between refusals for want of room.
const (
	noRoomPause    = 100 * time.Millisecond
	maxNoRoomPause = 2 * time.Second
)

// EmitAsync publishes rec without waiting; the future reports the outcome.
func (e *Emitter) EmitAsync(rec *switchyardv1.AuditRecord) (jetstream.PubAckFuture, error) {
	m, err := e.prepare(rec)
	if err != nil {
		return nil, err
	}
	f, err := e.js.PublishMsgAsync(m)
	if err != nil {
		return nil, fmt.Errorf("publish audit record %s: %w", m.Subject, err)
	}
	return f, nil
}

// Subject returns audit.<kind>.<key> for a record: the kind lets consumers
// filter (the notifier reads attempts and dead letters), the key is the
// destination, source or rule concerned.
func Subject(rec *switchyardv1.AuditRecord) string {
	kind, key := Kind(rec)
	return "audit." + kind + "." + subjects.Token(key)
}

// Record kinds, the second token of an audit subject.
const (
	KindRejected   = "rejected"
	KindDuplicate  = "duplicate"
	KindAttempt    = "attempt"
	KindDeadLetter = "dead_letter"
	KindReplayed   = "replayed"
	KindCircuit    = "circuit"
	KindBacklog    = "backlog"
	KindLag        = "lag"
	KindAlert      = "alert"
	KindSilence    = "silence"
	KindPoll       = "poll"
	// KindQuarantined records a payload that broke its contract
	// (PayloadQuarantined), keyed by its source or publish API key.
	KindQuarantined = "quarantined"
	// KindValid records valid payloads flowing again after broken ones
	// (PayloadsValid), keyed by the source or publish API key.
	KindValid = "valid"
	// KindReleased records a quarantined event released to EVENTS
	// (QuarantineReleased), keyed by its source or publish API key.
	KindReleased = "released"
	// KindFiltered records an event a destination's filter left out
	// (DeliveryFiltered), keyed by the destination.
	KindFiltered = "filtered"
	KindOther    = "other"
)

// Kinds lists every record kind.
var Kinds = []string{KindRejected, KindDuplicate, KindAttempt, KindDeadLetter, KindReplayed,
	KindCircuit, KindBacklog, KindLag, KindAlert, KindSilence, KindPoll, KindQuarantined, KindValid, KindReleased, KindFiltered, KindOther}

// Kind returns the record's kind and subject key.
func Kind(rec *switchyardv1.AuditRecord) (kind, key string) {
	switch d := rec.Detail.(type) {
	case *switchyardv1.AuditRecord_WebhookRejected:
		return KindRejected, d.WebhookRejected.GetSource()
	case *switchyardv1.AuditRecord_WebhookDuplicate:
		return KindDuplicate, d.WebhookDuplicate.GetSource()
	case *switchyardv1.AuditRecord_DeliveryAttempt:
		return KindAttempt, d.DeliveryAttempt.GetDestination()
	case *switchyardv1.AuditRecord_DeadLettered:
		return KindDeadLetter, d.DeadLettered.GetDestination()
	case *switchyardv1.AuditRecord_Replayed:
		return KindReplayed, d.Replayed.GetDestination()
	case *switchyardv1.AuditRecord_CircuitChanged:
		return KindCircuit, d.CircuitChanged.GetDestination()
	case *switchyardv1.AuditRecord_Backlog:
		return KindBacklog, d.Backlog.GetDestination()
	case *switchyardv1.AuditRecord_AuditLag:
		return KindLag, rec.GetService()
	case *switchyardv1.AuditRecord_Alert:
		return KindAlert, d.Alert.GetRule()
	case *switchyardv1.AuditRecord_SilenceChanged:
		return KindSilence, d.SilenceChanged.GetSilence().GetId()
	case *switchyardv1.AuditRecord_PollRound:
		return KindPoll, d.PollRound.GetSource()
	case *switchyardv1.AuditRecord_PayloadQuarantined:
		return KindQuarantined, cmp.Or(d.PayloadQuarantined.GetSource(), d.PayloadQuarantined.GetApiKey())
	case *switchyardv1.AuditRecord_PayloadsValid:
		return KindValid, cmp.Or(d.PayloadsValid.GetSource(), d.PayloadsValid.GetApiKey())
	case *switchyardv1.AuditRecord_QuarantineReleased:
		return KindReleased, cmp.Or(d.QuarantineReleased.GetSource(), d.QuarantineReleased.GetApiKey())
	case *switchyardv1.AuditRecord_DeliveryFiltered:
		return KindFiltered, d.DeliveryFiltered.GetDestination()
	default:
		return KindOther, rec.GetService()
	}
}

// Decode parses an audit record from a message body.
func Decode(data []byte) (*switchyardv1.AuditRecord, error) {
	var rec switchyardv1.AuditRecord
	if err := proto.Unmarshal(data, &rec); err != nil {
		return nil, fmt.Errorf("decode audit record: %w", err)
	}
	return &rec, nil
}
