// Package auditapi is the auditor's admin API as Go types and its one
// client: what GET /v1/events and friends answer, what replays and
// silences send and answer, and the errors. The auditor's store returns
// these types and its HTTP handlers encode them; the switchyard CLI and
// the tests call the API through Client, so none of them can drift apart.
package auditapi

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"
)

// Delivery statuses: where the delivery of one event to one destination
// stands.
const (
	// StatusPending: the event is stored and routed to the destination; no
	// attempt is recorded yet.
	StatusPending = "pending"
	// StatusDelivered: the destination answered 2xx.
	StatusDelivered = "delivered"
	// StatusRetrying: the last attempt failed and another is scheduled.
	StatusRetrying = "retrying"
	// StatusDeadLettered: Switchyard gave up; a dead letter holds the event.
	StatusDeadLettered = "dead_lettered"
	// StatusReplayed: a dead letter was sent again and its first attempt is
	// not recorded yet.
	StatusReplayed = "replayed"
	// StatusFiltered: the destination's filter left the event out; no
	// attempt was made (a replay of it may be attempted again).
	StatusFiltered = "filtered"
)

// DefaultLimit and MaxLimit bound a page of a list: DefaultLimit when the
// request gives no limit.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// Statuses lists every delivery status.
var Statuses = []string{StatusPending, StatusDelivered, StatusRetrying, StatusDeadLettered, StatusReplayed, StatusFiltered}

// Event is a stored event. In lists the payload is left out.
type Event struct {
	ID        string `json:"id"`
	Subject   string `json:"subject,omitempty"`
	Source    string `json:"source,omitempty"`
	Type      string `json:"type,omitempty"`
	StreamSeq uint64 `json:"stream_seq,omitempty"`
	// Incarnation names the EVENTS stream (its creation time, base 36, as
	// in attempt and dead-letter ids) StreamSeq is in; empty for events
	// recorded before it was kept.
	Incarnation string    `json:"incarnation,omitempty"`
	ReceivedAt  time.Time `json:"received_at"`
	ContentType string    `json:"content_type,omitempty"`
	PayloadSize int       `json:"payload_size"`
	PayloadHash string    `json:"payload_sha256,omitempty"`
	// PayloadDroppedAt is set once retention removed the body; the
	// metadata stays.
	PayloadDroppedAt *time.Time `json:"payload_dropped_at,omitempty"`
	// PayloadText is the body when it is valid UTF-8; otherwise
	// PayloadBase64 holds it (event detail only).
	PayloadText   *string           `json:"payload,omitempty"`
	PayloadBase64 []byte            `json:"payload_base64,omitempty"`
	Headers       map[string]string `json:"headers,omitempty"`
	// Payload is the body as stored (nil after retention).
	Payload []byte `json:"-"`
}

// Delivery is where the delivery of one event to one destination stands.
type Delivery struct {
	EventID     string `json:"event_id"`
	Destination string `json:"destination"`
	Status      string `json:"status"`
	// Attempts counts the attempts of the current round (the original
	// delivery, or the latest replay); TotalAttempts counts every round.
	Attempts       int        `json:"attempts"`
	TotalAttempts  int        `json:"total_attempts"`
	LastStatusCode int        `json:"last_status_code,omitempty"`
	LastError      string     `json:"last_error,omitempty"`
	FirstAttemptAt *time.Time `json:"first_attempt_at,omitempty"`
	LastAttemptAt  *time.Time `json:"last_attempt_at,omitempty"`
	// DeliveredAt is when a destination first acknowledged the event.
	DeliveredAt *time.Time `json:"delivered_at,omitempty"`
	// DeadLetterID is the latest dead letter of this delivery.
	DeadLetterID string `json:"dead_letter_id,omitempty"`
	// ReplayOf is the dead letter the current round replays.
	ReplayOf string `json:"replay_of,omitempty"`
	// UpdatedAt is when the latest thing recorded about it happened.
	UpdatedAt time.Time `json:"updated_at"`
}

// Attempt is one HTTP request to a destination.
type Attempt struct {
	ID          string    `json:"id"`
	EventID     string    `json:"event_id"`
	Destination string    `json:"destination"`
	Attempt     int       `json:"attempt"`
	StreamSeq   uint64    `json:"stream_seq"`
	StartedAt   time.Time `json:"started_at"`
	// Duration of the request; DurationMS is the same in milliseconds.
	Duration        time.Duration `json:"-"`
	DurationMS      float64       `json:"duration_ms"`
	StatusCode      int           `json:"status_code"`
	Outcome         string        `json:"outcome"`
	Error           string        `json:"error,omitempty"`
	ResponseSnippet string        `json:"response_snippet,omitempty"`
	Final           bool          `json:"final"`
	ReplayOf        string        `json:"replay_of,omitempty"`
	// TraceID is the OpenTelemetry trace of the attempt's span (empty when
	// tracing was off or the trace not sampled).
	TraceID string `json:"trace_id,omitempty"`
	// TransformVersion is the version (12 hex digits) of the destination's
	// transformation that produced the delivered body; empty when the
	// payload was sent as stored.
	TransformVersion string `json:"transform_version,omitempty"`
}

// DeadLetter is a delivery Switchyard gave up on (the payload stays with the
// event, or in the DEAD_LETTERS stream).
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
	ReplayOf        string    `json:"replay_of,omitempty"`
	// Replays counts the times it was sent again.
	Replays int `json:"replays"`
}

// Replay is one dead letter sent again.
type Replay struct {
	ID           string    `json:"id"`
	DeadLetterID string    `json:"dead_letter_id"`
	EventID      string    `json:"event_id"`
	Destination  string    `json:"destination"`
	Subject      string    `json:"subject"`
	StreamSeq    uint64    `json:"stream_seq"`
	RequestedBy  string    `json:"requested_by,omitempty"`
	At           time.Time `json:"at"`
}

// Rejection is a webhook ingress refused.
type Rejection struct {
	ID         string    `json:"id"`
	At         time.Time `json:"at"`
	Source     string    `json:"source"`
	Reason     string    `json:"reason"`
	Detail     string    `json:"detail"`
	RemoteAddr string    `json:"remote_addr"`
	StatusCode int       `json:"status_code"`
	EventID    string    `json:"event_id,omitempty"`
	// APIKey names (never shows) the publish-API key the request
	// authenticated with; Source is then "_api".
	APIKey    string `json:"api_key,omitempty"`
	UserAgent string `json:"user_agent,omitempty"`
	// BodySize is the request body's length in bytes, as ingress read it.
	BodySize int64 `json:"body_size"`
}

// CircuitChange is a destination breaker's state change.
type CircuitChange struct {
	ID          string    `json:"id"`
	At          time.Time `json:"at"`
	Destination string    `json:"destination"`
	From        string    `json:"from"`
	To          string    `json:"to"`
	Reason      string    `json:"reason,omitempty"`
	LastError   string    `json:"last_error,omitempty"`
}

// Alert is one alert message a notifier sent, or gave up sending, as its
// audit record tells it.
type Alert struct {
	ID          string            `json:"id"`
	At          time.Time         `json:"at"`
	Rule        string            `json:"rule"`
	Fingerprint string            `json:"fingerprint"`
	Labels      map[string]string `json:"labels,omitempty"`
	// State is firing or resolved; Kind is what the message was: firing,
	// update (a digest), repeat or resolved.
	State    string `json:"state"`
	Kind     string `json:"kind"`
	Severity string `json:"severity,omitempty"`
	Summary  string `json:"summary"`
	// Sender is slack, console or webhook. Delivered is false when the
	// sender gave up for a permanent reason (Error, StatusCode say why).
	Sender     string `json:"sender"`
	Delivered  bool   `json:"delivered"`
	Error      string `json:"error,omitempty"`
	StatusCode int    `json:"status_code,omitempty"`
	Attempts   int    `json:"attempts"`
	// Count is the number the message showed (dead letters, failures,
	// rejections).
	Count     int64      `json:"count"`
	Episode   uint32     `json:"episode"`
	Sequence  uint64     `json:"sequence"`
	FirstSeen *time.Time `json:"first_seen,omitempty"`
}

// Record is an audit record kept whole: the kinds without a table of their
// own (webhook duplicates, backlog and lag reports, alert messages, silence
// changes). Detail is the record as protobuf JSON.
type Record struct {
	ID      string          `json:"id"`
	At      time.Time       `json:"at"`
	Service string          `json:"service"`
	Kind    string          `json:"kind"`
	Key     string          `json:"key"`
	Detail  json.RawMessage `json:"detail"`
}

// Alert states.
const (
	AlertFiring   = "firing"
	AlertResolved = "resolved"
)

// Parked is a message the auditor could not store however often it tried
// (a poison record): kept whole so that nothing is lost, and listed so that
// a person can act on it.
type Parked struct {
	ID        string    `json:"id"`
	Stream    string    `json:"stream"`
	Subject   string    `json:"subject"`
	StreamSeq uint64    `json:"stream_seq"`
	Error     string    `json:"error"`
	ParkedAt  time.Time `json:"parked_at"`
	// Data is the message body; Headers its headers.
	Data    []byte            `json:"data"`
	Headers map[string]string `json:"headers,omitempty"`
}

// EventDetail is GET /v1/events/{id}: the event (absent when only the
// attempts are known yet), and everything that happened to it.
type EventDetail struct {
	Event
	// Known is false when the event row is not written yet (its attempts
	// arrived first); the event fields are then empty.
	Known       bool         `json:"known"`
	Deliveries  []Delivery   `json:"deliveries"`
	Attempts    []Attempt    `json:"attempts"`
	DeadLetters []DeadLetter `json:"dead_letters"`
	Replays     []Replay     `json:"replays"`
	// Incarnations are the EVENTS messages stored under this id, oldest
	// first: the event above, then any later message that reused the id
	// (a publish-API key sent again after the idempotency horizon, an id
	// published again after the duplicate window, a recreated stream).
	// Attempts and dead letters name theirs by stream sequence.
	Incarnations []EventIncarnation `json:"incarnations,omitempty"`
}

// EventIncarnation is one EVENTS message stored under an event id.
type EventIncarnation struct {
	Incarnation string    `json:"incarnation,omitempty"`
	StreamSeq   uint64    `json:"stream_seq"`
	Subject     string    `json:"subject"`
	ReceivedAt  time.Time `json:"received_at"`
	PayloadSize int       `json:"payload_size"`
	PayloadHash string    `json:"payload_sha256,omitempty"`
}

// DestinationStatus is one row of GET /v1/destinations.
type DestinationStatus struct {
	Name string `json:"name"`
	// Backlog is what the dispatcher's consumer has yet to finish: events
	// not yet delivered to it (Pending) and delivered but not settled
	// (AckPending: in flight or waiting for a retry). Nil when the
	// consumer could not be read.
	Backlog *Backlog `json:"backlog,omitempty"`
	// Window is the period the rates cover, ending now.
	Window       string  `json:"window"`
	Attempts     int     `json:"attempts"`
	Delivered    int     `json:"delivered"`
	SuccessRate  float64 `json:"success_rate"`
	P95LatencyMS float64 `json:"p95_latency_ms"`
	// Breaker is the state of the latest circuit change (closed when none
	// is recorded).
	Breaker      string     `json:"breaker"`
	BreakerSince *time.Time `json:"breaker_since,omitempty"`
	LastError    string     `json:"last_error,omitempty"`
	LastErrorAt  *time.Time `json:"last_error_at,omitempty"`
	DeadLettered int        `json:"dead_lettered"`
}

// Backlog is a destination consumer's backlog.
type Backlog struct {
	Pending    uint64 `json:"pending"`
	AckPending int    `json:"ack_pending"`
	Paused     bool   `json:"paused"`
}

// List is a page of items and the cursor of the next page (empty on the
// last page).
type List[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"next_cursor,omitempty"`
}

// ReplayResult says what a replay request did for one dead letter.
type ReplayResult struct {
	DeadLetterID string `json:"dead_letter_id"`
	EventID      string `json:"event_id"`
	Destination  string `json:"destination"`
	Subject      string `json:"subject,omitempty"`
	// MsgID is the replay's Nats-Msg-Id.
	MsgID     string `json:"msg_id,omitempty"`
	StreamSeq uint64 `json:"stream_seq,omitempty"`
	// Duplicate is true when the same replay request was already published
	// (a double click): nothing new was sent.
	Duplicate bool   `json:"duplicate"`
	Error     string `json:"error,omitempty"`
}

// BulkReplayRequest is POST /v1/dead-letters/replay: replay the current
// dead letters of the deliveries that match (those whose latest round ended
// in a dead letter).
type BulkReplayRequest struct {
	Destination string     `json:"destination"`
	Source      string     `json:"source,omitempty"`
	EventID     string     `json:"event_id,omitempty"`
	Since       *time.Time `json:"since,omitempty"`
	Until       *time.Time `json:"until,omitempty"`
	Q           string     `json:"q,omitempty"`
	// Limit bounds the replays of one request (default 100, at most 1000).
	Limit int `json:"limit,omitempty"`
	// DryRun lists what would be replayed without sending anything.
	DryRun bool `json:"dry_run,omitempty"`
}

// BulkReplayResult is the answer to a bulk replay.
type BulkReplayResult struct {
	Matched  int            `json:"matched"`
	Replayed int            `json:"replayed"`
	Failed   int            `json:"failed"`
	DryRun   bool           `json:"dry_run"`
	Results  []ReplayResult `json:"results"`
	// Incomplete is true when the request ran out of time (the answer must
	// fit the server's write timeout) before it got through everything
	// matched; Remaining were not tried. The same request again goes on
	// where this one stopped: what was replayed no longer matches.
	Incomplete bool `json:"incomplete,omitempty"`
	Remaining  int  `json:"remaining,omitempty"`
}

// Silence mutes the alerts whose labels all its matchers match, from
// StartsAt until EndsAt: GET /v1/silences/{id}, and the answer to creating
// or expiring one.
type Silence struct {
	ID string `json:"id"`
	// Matchers are name=value, name!=value, name=~regex or name!~regex
	// over the labels rule, destination, source and severity.
	Matchers  []string  `json:"matchers"`
	StartsAt  time.Time `json:"starts_at"`
	EndsAt    time.Time `json:"ends_at"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by,omitempty"`
	Comment   string    `json:"comment,omitempty"`
	ExpiredBy string    `json:"expired_by,omitempty"`
	// State is pending, active or expired.
	State string `json:"state"`
}

// SilenceList is GET /v1/silences: every silence, ended ones for 7 days.
type SilenceList struct {
	Silences []Silence `json:"silences"`
}

// NewSilence is the body of POST /v1/silences. Give EndsAt or Duration.
type NewSilence struct {
	Matchers []string `json:"matchers"`
	// StartsAt defaults to now.
	StartsAt *time.Time `json:"starts_at,omitempty"`
	EndsAt   *time.Time `json:"ends_at,omitempty"`
	// Duration from the start, e.g. "2h" or "1d".
	Duration string `json:"duration,omitempty"`
	// CreatedBy defaults to "api".
	CreatedBy string `json:"created_by,omitempty"`
	Comment   string `json:"comment,omitempty"`
}

// Error codes: Error.Code, the "error" field of every non-2xx answer.
const (
	// CodeUnauthorized: the admin token is missing or wrong (401).
	CodeUnauthorized = "unauthorized"
	// CodeForbidden: a request a browser may have been made to send: an
	// API without a token asked under a Host that is not a loopback name
	// (DNS rebinding) or by a client elsewhere, or a request from another
	// site (Origin, Sec-Fetch-Site) (403).
	CodeForbidden = "forbidden"
	// CodeNotDeliberate: a state-changing request with neither
	// Content-Type: application/json nor a Switchyard-Requested-By
	// header, as a form or a no-cors fetch would send it (415).
	CodeNotDeliberate = "json_or_requested_by_required"
	// CodeBadRequest: a parameter or the body is not what the endpoint
	// takes; the message says which (400).
	CodeBadRequest = "bad_request"
	// CodeBadCursor: the cursor is not one this list gave out (400).
	CodeBadCursor = "bad_cursor"
	// CodeInvalidSilence: the silence asked for cannot be made; the
	// message says why (400).
	CodeInvalidSilence = "invalid_silence"
	// CodeNotFound: no such event, dead letter or silence (404).
	CodeNotFound = "not_found"
	// CodeDestinationNotConfigured: a replay names a destination no
	// dispatcher delivers to (409 for one dead letter, 422 for a bulk
	// replay).
	CodeDestinationNotConfigured = "destination_not_configured"
	// CodePayloadGone: retention dropped the payload a replay needs, and no
	// stream holds it any more (410).
	CodePayloadGone = "payload_gone"
	// CodeBodyTooLarge: the request body is over the API's limit (413).
	CodeBodyTooLarge = "body_too_large"
	// CodeStoreNotReady: the auditor has not opened its store yet; try
	// again after Retry-After (503).
	CodeStoreNotReady = "store_not_ready"
	// CodeUnavailable: the store or NATS is away for now (503).
	CodeUnavailable = "unavailable"
	// CodeInternal: anything else; the auditor's log has the detail (500).
	CodeInternal = "internal"
)

// CodeForStatus is the Code of an answer without a body of the API's own
// (a 405 from its router, a proxy's 502): the status text in snake case.
func CodeForStatus(status int) string {
	return strings.ToLower(strings.ReplaceAll(http.StatusText(status), " ", "_"))
}

// Sentinels for the answers callers branch on most: errors.Is(err,
// auditapi.ErrNotFound) is true for any *Error with that code.
var (
	ErrUnauthorized   = &Error{Code: CodeUnauthorized}
	ErrForbidden      = &Error{Code: CodeForbidden}
	ErrNotDeliberate  = &Error{Code: CodeNotDeliberate}
	ErrBadRequest     = &Error{Code: CodeBadRequest}
	ErrBadCursor      = &Error{Code: CodeBadCursor}
	ErrInvalidSilence = &Error{Code: CodeInvalidSilence}
	ErrNotFound       = &Error{Code: CodeNotFound}
)

// Error is the body of every non-2xx answer; the client returns it as the
// error (errors.As), with the answer's status.
type Error struct {
	// Status is the answer's HTTP status. It is not part of the body.
	Status int `json:"-"`
	// Code says what went wrong, for a program: one of the Code constants.
	Code string `json:"error"`
	// Message says it for a person.
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Is makes errors.Is(err, target) true when target is an *Error with the
// same Code (the sentinels above).
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}
