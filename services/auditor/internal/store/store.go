// Package store is the audit log's storage: one interface, implemented for
// Postgres (production) and an embedded SQLite file (the all-in-one), and
// checked by one shared test suite (storetest) against both.
//
// Writes are idempotent: every row is keyed by the audit record id or the
// event id, writing a row that exists changes nothing, and the derived
// deliveries table is merged so that the order and the number of times
// records arrive do not change the result. Replaying the AUDIT stream is
// harmless.
package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/switchyard/switchyard/pkg/auditlog"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/auditor/auditapi"
)

// ErrNotFound is returned when the requested row does not exist.
var ErrNotFound = errors.New("not found")

// ErrUnavailable wraps errors that mean the database could not be reached
// or refused the write for a reason an operator can fix (down, overloaded,
// locked, missing privileges or schema); the writer retries them.
var ErrUnavailable = errors.New("audit store unavailable")

// ErrNotReady is returned while the store is not open yet (the auditor
// keeps trying to connect and migrate in the background). Errors wrapping it
// wrap ErrUnavailable too (see NotReady).
var ErrNotReady = errors.New("the audit store is not open yet")

// NotReady is the error of a store still being opened since since, cause
// being why the last try failed (nil before the first failed).
func NotReady(since time.Time, cause error) error {
	return &notReadyError{since: since, cause: cause}
}

type notReadyError struct {
	since time.Time
	cause error
}

func (e *notReadyError) Error() string {
	msg := fmt.Sprintf("%v (trying since %s)", ErrNotReady, e.since.UTC().Format(time.RFC3339))
	if e.cause != nil {
		msg += ": " + e.cause.Error()
	}
	return msg
}

// Unwrap makes the error ErrNotReady and ErrUnavailable (retry later), and
// its cause.
func (e *notReadyError) Unwrap() []error {
	errs := []error{ErrNotReady, ErrUnavailable}
	if e.cause != nil {
		errs = append(errs, e.cause)
	}
	return errs
}

// ErrRejected wraps errors that mean the database refused the data itself
// (a constraint, a value it cannot hold): writing the same rows again cannot
// succeed. The writer bisects such a batch and parks the rows that fail.
var ErrRejected = errors.New("audit store refused the data")

// ErrBadCursor is returned for a cursor this list did not issue.
var ErrBadCursor = errors.New("invalid cursor")

// ErrBadFilter is returned for a filter value a list does not know.
var ErrBadFilter = errors.New("invalid filter")

// The row types are the API's: the store returns what the API answers.
type (
	Event             = auditapi.Event
	Delivery          = auditapi.Delivery
	Attempt           = auditapi.Attempt
	DeadLetter        = auditapi.DeadLetter
	Replay            = auditapi.Replay
	EventIncarnation  = auditapi.EventIncarnation
	Rejection         = auditapi.Rejection
	Alert             = auditapi.Alert
	Record            = auditapi.Record
	CircuitChange     = auditapi.CircuitChange
	Parked            = auditapi.Parked
	DestinationStatus = auditapi.DestinationStatus
)

// Routed is an event as the writer read it from EVENTS, with the
// destinations its subject is routed to (each gets a pending delivery).
type Routed struct {
	Event
	Destinations []string
}

// Batch is what the writer stores in one transaction.
type Batch struct {
	Events  []Routed
	Records []*switchyardv1.AuditRecord
}

// Len is the number of items in the batch.
func (b Batch) Len() int { return len(b.Events) + len(b.Records) }

// Incarnation is the token that names a stream created at created in
// attempt and dead-letter ids (EVENTS@<token>:<seq>:...): its creation
// time in Unix milliseconds, base 36. It must stay the dispatcher's
// (services/dispatcher/internal/ids.StreamIncarnation).
func Incarnation(created time.Time) string { return strconv.FormatInt(created.UnixMilli(), 36) }

// DeadLetterIncarnation is the EVENTS incarnation a dead letter id names
// (EVENTS@<incarnation>:<seq>:<destination>); empty for ids made before
// they named one (EVENTS:<seq>:<destination>).
func DeadLetterIncarnation(id string) string {
	rest, ok := strings.CutPrefix(id, "EVENTS@")
	if !ok {
		return ""
	}
	inc, _, _ := strings.Cut(rest, ":")
	return inc
}

// EventDetail is an event with everything that happened to it. Event is nil
// when the attempts are known but the event row has not been written yet
// (the two arrive on different streams).
type EventDetail struct {
	Event       *Event
	Deliveries  []Delivery
	Attempts    []Attempt
	DeadLetters []DeadLetter
	Replays     []Replay
	// Incarnations are the EVENTS messages stored under the id, oldest
	// first, Event's included.
	Incarnations []EventIncarnation
}

// Page selects one page of a list: at most Limit items after Cursor (the
// NextCursor of the previous page; empty for the first).
type Page struct {
	Limit  int
	Cursor string
}

// TimeRange bounds a list by time: Since inclusive, Until exclusive; zero
// values leave that end open.
type TimeRange struct {
	Since, Until time.Time
}

// EventFilter selects events (newest first).
type EventFilter struct {
	TimeRange
	ID     string
	Source string
	Type   string
	// Subject is an exact subject, or a prefix ending in ".>".
	Subject string
	// IDContains is a part of the event id, matched exactly (case and
	// all): an event found by the order number its idempotency key or
	// delivery id carries.
	IDContains string
	// Destination and Status select events with such a delivery.
	Destination string
	Status      string
	// Q matches words of a delivery's last error.
	Q string
}

// DeliveryFilter selects deliveries (most recently changed first).
type DeliveryFilter struct {
	TimeRange
	EventID     string
	Destination string
	Status      string
	Source      string
	Type        string
	Q           string
}

// DeadLetterFilter selects dead letters (newest first).
type DeadLetterFilter struct {
	TimeRange
	EventID     string
	Destination string
	Reason      string
	Q           string
}

// RejectionFilter selects rejections (newest first).
type RejectionFilter struct {
	TimeRange
	Source string
	Reason string
	Q      string
}

// AlertFilter selects the alert messages notifiers recorded (newest first).
type AlertFilter struct {
	TimeRange
	Rule string
	// Destination and Source match the alert's labels.
	Destination string
	Source      string
	// State is firing or resolved (AlertFiring, AlertResolved).
	State  string
	Sender string
	// Delivered, when set, keeps the messages the sender delivered (true)
	// or gave up on (false).
	Delivered *bool
}

// RecordFilter selects the records of one kind kept whole (newest first).
type RecordFilter struct {
	TimeRange
	// Kind is required: one of RecordKinds.
	Kind string
	// Key is the record's subject key: the source of a duplicate, the
	// destination of a backlog report, the service of a lag report, the
	// rule of an alert, the id of a silence, the source of a poll round,
	// the source or publish API key of a quarantined or released payload,
	// the destination of a filtered-out delivery.
	Key string
}

// RecordKinds are the kinds kept whole in the audit_records table, which
// ListRecords lists. The others have tables (and lists) of their own.
var RecordKinds = []string{auditlog.KindDuplicate, auditlog.KindBacklog, auditlog.KindLag, auditlog.KindAlert,
	auditlog.KindSilence, auditlog.KindPoll, auditlog.KindQuarantined, auditlog.KindValid, auditlog.KindReleased, auditlog.KindFiltered, auditlog.KindOther}

// Store is the audit log.
type Store interface {
	// Migrate brings the schema up to date; safe to run concurrently.
	Migrate(ctx context.Context) error
	// Write stores a batch in one transaction, idempotently. Errors wrap
	// ErrUnavailable (retry later) or ErrRejected (the data itself).
	Write(ctx context.Context, b Batch) error
	// Park keeps messages that could not be written, whole.
	Park(ctx context.Context, ps []Parked) error

	// GetEvent returns an event with its deliveries, attempts, dead letters
	// and replays, or ErrNotFound when nothing is known about id.
	GetEvent(ctx context.Context, id string) (EventDetail, error)
	ListEvents(ctx context.Context, f EventFilter, p Page) ([]Event, string, error)
	ListDeliveries(ctx context.Context, f DeliveryFilter, p Page) ([]Delivery, string, error)
	ListDeadLetters(ctx context.Context, f DeadLetterFilter, p Page) ([]DeadLetter, string, error)
	// GetDeadLetter returns one dead letter or ErrNotFound.
	GetDeadLetter(ctx context.Context, id string) (DeadLetter, error)
	ListRejections(ctx context.Context, f RejectionFilter, p Page) ([]Rejection, string, error)
	ListAlerts(ctx context.Context, f AlertFilter, p Page) ([]Alert, string, error)
	ListRecords(ctx context.Context, f RecordFilter, p Page) ([]Record, string, error)
	ListParked(ctx context.Context, p Page) ([]Parked, string, error)
	// Destinations names the destinations the log knows deliveries for.
	Destinations(ctx context.Context) ([]string, error)
	// DestinationStatus summarises a destination's attempts since a time,
	// its breaker and its last error (the backlog is NATS's to tell).
	DestinationStatus(ctx context.Context, name string, since time.Time) (DestinationStatus, error)

	// AttemptsOverTime counts a destination's attempts that started in
	// [since, until), per step-long period from since and per outcome
	// (delivered, retryable, permanent), for charts. Periods without
	// attempts are left out; the list is in time order.
	AttemptsOverTime(ctx context.Context, destination string, since, until time.Time, step time.Duration) ([]AttemptBucket, error)
	// Activity counts what happened since a time per destination (dead
	// letters) and per source (events stored, requests refused).
	Activity(ctx context.Context, since time.Time) (Activity, error)

	// DropPayloads removes the bodies of at most limit events received
	// before cutoff, keeping their metadata, and returns how many.
	DropPayloads(ctx context.Context, cutoff, now time.Time, limit int) (int, error)
	// DeleteBefore removes at most limit rows per table whose time is
	// before cutoff, and returns how many in all.
	DeleteBefore(ctx context.Context, cutoff time.Time, limit int) (int, error)

	// Close releases the connections.
	Close() error
}

// AttemptBucket counts the attempts of one outcome that started in the
// period [Start, Start+step).
type AttemptBucket struct {
	Start   time.Time
	Outcome string
	Count   int
}

// Activity is what happened in a window, per destination and source.
type Activity struct {
	// DeadLetters counts the dead letters written per destination.
	DeadLetters map[string]int
	// Sources are the sources that sent anything, by name.
	Sources []SourceActivity
}

// SourceActivity is what one source sent in a window: events stored and
// requests refused. Source "" is events published by our own services over
// NATS; "_api" is refused publish-API requests.
type SourceActivity struct {
	Source          string
	Events          int
	LastEventAt     *time.Time
	Rejections      int
	LastRejectionAt *time.Time
}

// DefaultLimit and MaxLimit bound a page.
const (
	DefaultLimit = auditapi.DefaultLimit
	MaxLimit     = auditapi.MaxLimit
)

func (p Page) limit() int {
	switch {
	case p.Limit <= 0:
		return DefaultLimit
	case p.Limit > MaxLimit:
		return MaxLimit
	}
	return p.Limit
}
