// Package store is the audit log's storage: one interface, implemented for
// Postgres (production) and an embedded SQLite file (the all-in-one), and
// checked by one shared test suite (storetest) against both.
//
// Writes are idempotent: every row is keyed by the audit record id or the
// event id, and writing a row that exists changes nothing, so replaying the
// AUDIT stream is harmless.
package store

import (
	"context"
	"errors"
	"time"

	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
)

// ErrNotFound is returned when the requested row does not exist.
var ErrNotFound = errors.New("not found")

// ErrUnavailable wraps errors that mean the database could not be reached
// or refused the write; the writer retries them.
var ErrUnavailable = errors.New("audit store unavailable")

// Event is a stored event as the auditor read it from EVENTS.
type Event struct {
	ID          string
	Subject     string
	Source      string
	Type        string
	StreamSeq   uint64
	ReceivedAt  time.Time
	ContentType string
	Payload     []byte
	Headers     map[string]string
}

// Batch is what the writer stores in one transaction.
type Batch struct {
	Events  []Event
	Records []*switchyardv1.AuditRecord
}

// Len is the number of items in the batch.
func (b Batch) Len() int { return len(b.Events) + len(b.Records) }

// Attempt is one delivery attempt as stored.
type Attempt struct {
	ID              string        `json:"id"`
	EventID         string        `json:"event_id"`
	Destination     string        `json:"destination"`
	Attempt         int           `json:"attempt"`
	StartedAt       time.Time     `json:"started_at"`
	Duration        time.Duration `json:"-"`
	StatusCode      int           `json:"status_code"`
	Outcome         string        `json:"outcome"`
	Error           string        `json:"error,omitempty"`
	ResponseSnippet string        `json:"response_snippet,omitempty"`
	Final           bool          `json:"final"`
	ReplayOf        string        `json:"replay_of,omitempty"`
}

// DeadLetter is a dead letter as stored (no payload: the event holds it).
type DeadLetter struct {
	ID              string    `json:"id"`
	EventID         string    `json:"event_id"`
	Destination     string    `json:"destination"`
	Subject         string    `json:"subject"`
	Reason          string    `json:"reason"`
	Attempts        int       `json:"attempts"`
	LastStatusCode  int       `json:"last_status_code"`
	LastError       string    `json:"last_error,omitempty"`
	ResponseSnippet string    `json:"response_snippet,omitempty"`
	DeadLetteredAt  time.Time `json:"dead_lettered_at"`
	StreamSeq       uint64    `json:"stream_seq"`
}

// EventDetail is an event with what happened to it. Event is nil when the
// attempts are known but the event row has not been written yet (the two
// arrive on different streams).
type EventDetail struct {
	Event       *Event
	Attempts    []Attempt
	DeadLetters []DeadLetter
}

// Rejection is a refused webhook as stored.
type Rejection struct {
	ID         string    `json:"id"`
	At         time.Time `json:"at"`
	Source     string    `json:"source"`
	Reason     string    `json:"reason"`
	Detail     string    `json:"detail"`
	RemoteAddr string    `json:"remote_addr"`
	StatusCode int       `json:"status_code"`
	EventID    string    `json:"event_id,omitempty"`
}

// Store is the audit log.
type Store interface {
	// Migrate brings the schema up to date; safe to run concurrently.
	Migrate(ctx context.Context) error
	// Write stores a batch in one transaction, idempotently.
	Write(ctx context.Context, b Batch) error
	// GetEvent returns an event with its attempts and dead letters, or
	// ErrNotFound when nothing is known about id.
	GetEvent(ctx context.Context, id string) (EventDetail, error)
	// ListRejections returns the newest rejections first, at most limit.
	ListRejections(ctx context.Context, limit int) ([]Rejection, error)
	// Close releases the connections.
	Close() error
}
