package ingress

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/contracts"
	"github.com/switchyard/switchyard/pkg/events"
	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/publish"
	"github.com/switchyard/switchyard/pkg/topology"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/ingress/internal/idempotency"
)

// Quarantined is a payload kept in QUARANTINE because it broke its
// contract: the event it would have been in EVENTS, and why it is not.
type Quarantined struct {
	// Seq is its sequence in QUARANTINE.
	Seq uint64
	// Subject is its QUARANTINE subject; EventsSubject the EVENTS subject
	// a release publishes it on.
	Subject, EventsSubject string
	EventID, EventType     string
	// Source names the webhook source, APIKey the publish API key (one of
	// the two).
	Source, APIKey string
	ContentType    string
	ReceivedAt     time.Time
	// Violations are the ones found when it arrived (at most
	// contracts.MaxViolationsHeader bytes of them).
	Violations []contracts.Violation
	Header     nats.Header
	Body       []byte
}

// Owner is whose contract the payload broke.
func (q Quarantined) Owner() contracts.Owner {
	if q.APIKey != "" {
		return contracts.APIKey(q.APIKey)
	}
	return contracts.Source(q.Source)
}

func quarantinedFrom(seq uint64, subject string, h nats.Header, body []byte) Quarantined {
	q := Quarantined{
		Seq: seq, Subject: subject, EventsSubject: h.Get(contracts.HeaderSubject),
		EventID: h.Get(events.HeaderEventID), EventType: h.Get(events.HeaderEventType),
		Source: h.Get(events.HeaderSource), APIKey: h.Get(events.HeaderPublisher),
		ContentType: h.Get(events.HeaderContentType),
		Violations:  contracts.DecodeViolations(h.Get(contracts.HeaderViolations)),
		Header:      h, Body: body,
	}
	if q.EventID == "" {
		q.EventID = h.Get(nats.MsgIdHdr)
	}
	q.ReceivedAt, _ = time.Parse(time.RFC3339Nano, h.Get(events.HeaderReceivedAt))
	return q
}

// ErrNotQuarantined is returned (wrapped) for a sequence QUARANTINE does
// not hold (released, aged out, never there).
var ErrNotQuarantined = errors.New("not in QUARANTINE")

// ListQuarantined returns the payloads in QUARANTINE, oldest first, of one
// source or publish API key (owner; empty: all), at most limit (0: all).
func ListQuarantined(ctx context.Context, js jetstream.JetStream, owner string, limit int) ([]Quarantined, error) {
	filter := contracts.SubjectPrefix + ">"
	if owner != "" {
		filter = contracts.SubjectPrefix + owner + ".>"
	}
	st, err := js.Stream(ctx, topology.StreamQuarantine)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", topology.StreamQuarantine, err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", topology.StreamQuarantine, err)
	}
	if info.State.Msgs == 0 {
		return nil, nil
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", topology.StreamQuarantine, err)
	}
	var out []Quarantined
	for {
		batch, err := cons.Fetch(256, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", topology.StreamQuarantine, err)
		}
		n, last := 0, false
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				return nil, fmt.Errorf("read %s: %w", topology.StreamQuarantine, err)
			}
			out = append(out, quarantinedFrom(md.Sequence.Stream, m.Subject(), m.Headers(), m.Data()))
			if md.NumPending == 0 || (limit > 0 && len(out) >= limit) {
				last = true
				break
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("read %s: %w", topology.StreamQuarantine, err)
		}
		if last || n == 0 {
			return out, nil
		}
	}
}

// GetQuarantined returns the payload at seq in QUARANTINE.
func GetQuarantined(ctx context.Context, js jetstream.JetStream, seq uint64) (Quarantined, error) {
	st, err := js.Stream(ctx, topology.StreamQuarantine)
	if err != nil {
		return Quarantined{}, fmt.Errorf("read %s: %w", topology.StreamQuarantine, err)
	}
	m, err := st.GetMsg(ctx, seq)
	if err != nil {
		if errors.Is(err, jetstream.ErrMsgNotFound) || natsx.IsNotFound(err) {
			return Quarantined{}, fmt.Errorf("#%d: %w", seq, ErrNotQuarantined)
		}
		return Quarantined{}, fmt.Errorf("read %s #%d: %w", topology.StreamQuarantine, seq, err)
	}
	return quarantinedFrom(m.Sequence, m.Subject, m.Header, m.Data), nil
}

// Release outcomes.
const (
	// Released: published to EVENTS under its original id.
	Released = "released"
	// AlreadyStored: EVENTS had the event (the partner sent a corrected
	// copy under the same id); nothing was published.
	AlreadyStored = "already_stored"
	// StillInvalid: the payload still breaks the current contract; it
	// stays in QUARANTINE.
	StillInvalid = "still_invalid"
)

// ReleaseResult says what releasing one payload did.
type ReleaseResult struct {
	Outcome string
	// StreamSeq is the event's sequence in EVENTS (Released).
	StreamSeq uint64
	// Violations are what the current contract finds (StillInvalid).
	Violations []contracts.Violation
}

// Releaser publishes quarantined payloads to EVENTS after a fix, checked
// against the contracts of the configuration it was built from.
type Releaser struct {
	js          jetstream.JetStream
	set         *contracts.Set
	idem        *idempotency.Store
	audit       *auditlog.Emitter
	requestedBy string
}

// NewReleaser compiles cfg's contracts (the fixed schemas) and opens the
// idempotency bucket; requestedBy names the operator in the audit log.
func NewReleaser(ctx context.Context, js jetstream.JetStream, cfg config.Config, requestedBy string) (*Releaser, error) {
	set, err := contracts.Compile(cfg)
	if err != nil {
		return nil, err
	}
	idem, err := idempotency.New(js, topology.FromConfig(cfg).Idempotency(cfg.Ingress.IdempotencyHorizon.D()).Config)
	if err != nil {
		return nil, err
	}
	if err := idem.Open(ctx); err != nil {
		return nil, err
	}
	return &Releaser{js: js, set: set, idem: idem, audit: auditlog.NewEmitter(js, "switchyard-cli"), requestedBy: requestedBy}, nil
}

// Release checks q against the current contract and, if it keeps it,
// publishes it to EVENTS as the event it would have been (its original id
// as Nats-Msg-Id, its headers without the quarantine's), writes its
// idempotency record, records the release in the audit log and removes it
// from QUARANTINE. It is safe to repeat: an event already in EVENTS is not
// published again, only removed from QUARANTINE. A payload that still
// breaks its contract stays where it is (StillInvalid).
func (r *Releaser) Release(ctx context.Context, q Quarantined) (ReleaseResult, error) {
	if q.EventsSubject == "" || q.EventID == "" {
		return ReleaseResult{}, fmt.Errorf("#%d has no %s or event id: not a quarantined event", q.Seq, contracts.HeaderSubject)
	}
	if vs := r.set.Validate(q.Owner(), q.EventType, q.ContentType, q.Body); len(vs) > 0 {
		return ReleaseResult{Outcome: StillInvalid, Violations: vs}, nil
	}
	res := ReleaseResult{Outcome: Released}
	_, found, err := r.idem.Lookup(ctx, q.EventID)
	if err != nil {
		return ReleaseResult{}, err
	}
	if found {
		res.Outcome = AlreadyStored
	} else {
		m := nats.NewMsg(q.EventsSubject)
		for k, v := range q.Header {
			if k == contracts.HeaderSubject || k == contracts.HeaderViolations {
				continue
			}
			m.Header[k] = v
		}
		m.Header.Set(nats.MsgIdHdr, q.EventID)
		m.Data = q.Body
		ack, err := publish.Msg(ctx, r.js, m)
		if err != nil {
			return ReleaseResult{}, fmt.Errorf("publish %s to %s: %w", q.EventID, natsx.StreamEvents, err)
		}
		res.StreamSeq = ack.Sequence
		if ack.Duplicate {
			res.Outcome, res.StreamSeq = AlreadyStored, 0
		}
		// The record, as ingress writes it after a PubAck: a redelivery of
		// the event is a duplicate from now on.
		if _, err := r.js.PublishMsg(ctx, r.idem.Msg(q.EventID, q.EventsSubject)); err != nil {
			return ReleaseResult{}, fmt.Errorf("idempotency record of %s: %w", q.EventID, err)
		}
	}
	rec := &switchyardv1.AuditRecord{
		// One record per quarantined copy, however often it is released.
		Id: "released:" + q.EventID + ":" + fmt.Sprint(q.Seq),
		Detail: &switchyardv1.AuditRecord_QuarantineReleased{QuarantineReleased: &switchyardv1.QuarantineReleased{
			EventId: q.EventID, Source: q.Source, ApiKey: q.APIKey, Subject: q.EventsSubject, StreamSeq: res.StreamSeq,
			QuarantineSeq: q.Seq, AlreadyStored: res.Outcome == AlreadyStored, RequestedBy: r.requestedBy,
		}},
	}
	if err := r.audit.EmitUntilStored(ctx, rec); err != nil {
		return ReleaseResult{}, err
	}
	st, err := r.js.Stream(ctx, topology.StreamQuarantine)
	if err != nil {
		return ReleaseResult{}, fmt.Errorf("remove #%d from %s: %w", q.Seq, topology.StreamQuarantine, err)
	}
	if err := st.DeleteMsg(ctx, q.Seq); err != nil {
		// Removed by an earlier release of the same copy: the server
		// answers a generic failure, so look.
		if _, gerr := st.GetMsg(ctx, q.Seq); !natsx.IsNotFound(gerr) {
			return ReleaseResult{}, fmt.Errorf("remove #%d from %s: %w", q.Seq, topology.StreamQuarantine, err)
		}
	}
	return res, nil
}
