// Package events is the event envelope Switchyard stores in the EVENTS
// stream and the publisher our own services use to put events there.
//
// An event is a JetStream message: the data is the payload exactly as the
// partner or service sent it, and Switchyard's metadata travels in headers.
// The event id is also the Nats-Msg-Id, so publishing the same event twice
// stores it once (within the stream's duplicate window).
package events

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard/switchyard/pkg/publish"
	"github.com/switchyard/switchyard/pkg/subjects"
	"github.com/switchyard/switchyard/pkg/untrusted"
)

// Header names Switchyard sets on stored events.
const (
	// HeaderEventID is the event id: the publisher's idempotency key, or
	// <source>:<delivery id> for partner webhooks.
	HeaderEventID = "Switchyard-Event-Id"
	// HeaderEventType is the type as the producer named it, before it was
	// made into a subject token.
	HeaderEventType = "Switchyard-Event-Type"
	// HeaderSource is the webhook source name (partner webhooks only).
	HeaderSource = "Switchyard-Source"
	// HeaderReceivedAt is when Switchyard accepted the event (RFC 3339).
	HeaderReceivedAt = "Switchyard-Received-At"
	// HeaderReplayOf is the dead letter id on a replayed event.
	HeaderReplayOf = "Switchyard-Replay-Of"
	// HeaderContentType is the payload's media type.
	HeaderContentType = "Content-Type"
	// HeaderPublisher names the publish-API key an event came in with
	// (events published over HTTP only).
	HeaderPublisher = "Switchyard-Publisher"
)

// Event is one integration event.
type Event struct {
	// ID identifies the event everywhere: Nats-Msg-Id, audit log,
	// Idempotency-Key and webhook-id on delivery. Required: valid UTF-8
	// without control characters, at most MaxIDLength bytes.
	//
	// Ids share one namespace in EVENTS (the stream's duplicate window and
	// the ingress idempotency records), and ingress reserves the prefixes
	// it uses: "<source>:" for partner webhooks, "<API key name>:" for the
	// publish API, "replay:" for replays. An id published here that starts
	// with one of them could shadow such an event (or be shadowed by it):
	// pick ids that do not, e.g. without ':' or prefixed with a name that
	// is neither a source nor an API key.
	ID string
	// Type is the event type, e.g. order.created. It becomes the subject
	// events.<type>, so it is dot-separated tokens of letters, digits, '-'
	// and '_'. Required.
	Type string
	// Data is the payload, delivered byte for byte.
	Data []byte
	// ContentType of Data. Default application/json. At most
	// MaxContentTypeLength bytes of valid UTF-8.
	ContentType string
	// Header holds extra headers to store with the event. Their values
	// must be valid UTF-8: they are copied into dead letters, whose headers
	// are protobuf strings.
	Header nats.Header
}

// ErrInvalidEvent is returned (wrapped) for an event that cannot be
// published as given.
var ErrInvalidEvent = errors.New("invalid event")

// Subject returns the subject an event of this type is published to.
func Subject(eventType string) (string, error) {
	if err := subjects.CheckTypePath(eventType); err != nil {
		return "", fmt.Errorf("%w: type %q: %v", ErrInvalidEvent, eventType, err)
	}
	return "events." + eventType, nil
}

// Msg builds the JetStream message for e, stamped with the receive time.
func (e Event) Msg(now time.Time) (*nats.Msg, error) {
	if strings.TrimSpace(e.ID) == "" {
		return nil, fmt.Errorf("%w: the id is empty (use a stable idempotency key)", ErrInvalidEvent)
	}
	if len(e.ID) > MaxIDLength {
		return nil, fmt.Errorf("%w: the id is longer than %d bytes", ErrInvalidEvent, MaxIDLength)
	}
	if !utf8.ValidString(e.ID) {
		return nil, fmt.Errorf("%w: the id is not valid UTF-8", ErrInvalidEvent)
	}
	if strings.ContainsFunc(e.ID, unicode.IsControl) {
		return nil, fmt.Errorf("%w: the id contains control characters", ErrInvalidEvent)
	}
	subj, err := Subject(e.Type)
	if err != nil {
		return nil, err
	}
	if len(e.ContentType) > MaxContentTypeLength {
		return nil, fmt.Errorf("%w: the content type is longer than %d bytes", ErrInvalidEvent, MaxContentTypeLength)
	}
	if !untrusted.Valid(e.ContentType) {
		return nil, fmt.Errorf("%w: the content type is not valid UTF-8 or contains control characters", ErrInvalidEvent)
	}
	m := nats.NewMsg(subj)
	for k, vs := range e.Header {
		for _, v := range vs {
			if !untrusted.Valid(v) {
				return nil, fmt.Errorf("%w: header %q is not valid UTF-8 or contains control characters", ErrInvalidEvent, k)
			}
			m.Header.Add(k, v)
		}
	}
	ct := e.ContentType
	if ct == "" {
		ct = "application/json"
	}
	m.Header.Set(nats.MsgIdHdr, e.ID)
	m.Header.Set(HeaderEventID, e.ID)
	m.Header.Set(HeaderEventType, e.Type)
	m.Header.Set(HeaderContentType, ct)
	m.Header.Set(HeaderReceivedAt, now.UTC().Format(time.RFC3339Nano))
	m.Data = e.Data
	return m, nil
}

// MaxIDLength bounds event ids.
const MaxIDLength = 256

// MaxContentTypeLength bounds an event's content type.
const MaxContentTypeLength = 512

// EnvelopeAllowance is the room to leave, in a NATS message of the
// server's max_payload, for the headers Switchyard stores with an event
// (ids, type, source, times, content type and the provider headers ingress
// keeps, each of those bounded): a body limit plus this must not exceed
// max_payload, or an event near the limit could never be stored.
const EnvelopeAllowance = 8 << 10

// Result says what JetStream did with a published event.
type Result struct {
	// Stream sequence of the stored event (of the first copy, for a
	// duplicate).
	Sequence uint64
	// Duplicate is true when the id was already stored within the duplicate
	// window and nothing new was stored.
	Duplicate bool
}

// Publish stores e in the EVENTS stream and waits for JetStream to confirm,
// sending it again when a confirmation is lost (a NATS server or stream
// leader going away; see publish.Msg) until ctx ends (10 s when ctx has
// no deadline). Publishing the same ID again is safe: it is stored once (within the
// stream's duplicate window; the ingress publish API also remembers ids for
// its idempotency horizon). The id is used as it is, so it must keep clear
// of the prefixes ingress reserves (see Event.ID).
func Publish(ctx context.Context, js jetstream.JetStream, e Event) (Result, error) {
	m, err := e.Msg(time.Now())
	if err != nil {
		return Result{}, err
	}
	// A PubAck lost to a leader change or a reconnect: the same message
	// again, under the same Nats-Msg-Id, until one comes or ctx ends.
	ack, err := publish.Msg(ctx, js, m)
	if err != nil {
		return Result{}, fmt.Errorf("publish event %q: %w", e.ID, err)
	}
	return Result{Sequence: ack.Sequence, Duplicate: ack.Duplicate}, nil
}

// ReplaySubject is the subject a dead letter is republished on to be
// delivered again: replay.<destination>.<original subject>. Only that
// destination's consumer subscribes to replay.<destination>.>, so a replay
// reaches the destination that failed it and no other.
func ReplaySubject(destination, originalSubject string) string {
	return "replay." + destination + "." + originalSubject
}

// Stored is an event read back from the EVENTS stream.
type Stored struct {
	ID          string
	Subject     string
	Type        string
	Source      string
	ContentType string
	ReceivedAt  time.Time
	ReplayOf    string
	Data        []byte
	Header      nats.Header
}

// FromMsg reads the envelope of a stored event.
func FromMsg(subject string, h nats.Header, data []byte) Stored {
	s := Stored{
		ID:          h.Get(HeaderEventID),
		Subject:     subject,
		Type:        h.Get(HeaderEventType),
		Source:      h.Get(HeaderSource),
		ContentType: h.Get(HeaderContentType),
		ReplayOf:    h.Get(HeaderReplayOf),
		Data:        data,
		Header:      h,
	}
	if s.ID == "" {
		s.ID = h.Get(nats.MsgIdHdr)
	}
	if t, err := time.Parse(time.RFC3339Nano, h.Get(HeaderReceivedAt)); err == nil {
		s.ReceivedAt = t
	}
	return s
}
