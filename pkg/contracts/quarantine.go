package contracts

import (
	"encoding/json"
)

// How a payload that broke its contract is kept in QUARANTINE: the message
// it would have been in EVENTS (body, headers, Nats-Msg-Id = event id) on
// quarantine.<source or API key>.<EVENTS subject>, with two more headers.
// A release publishes it again on HeaderSubject without them.
const (
	// HeaderSubject is the EVENTS subject the event would have had.
	HeaderSubject = "Switchyard-Quarantine-Subject"
	// HeaderViolations holds the violations as a JSON array of {path,
	// message}, at most MaxViolationsHeader bytes (the audit record keeps
	// every one reported).
	HeaderViolations = "Switchyard-Violations"
	// MaxViolationsHeader bounds HeaderViolations: the headers of an event
	// must stay within events.EnvelopeAllowance.
	MaxViolationsHeader = 2048
	// SubjectPrefix starts every QUARANTINE subject.
	SubjectPrefix = "quarantine."
)

// QuarantineSubject is where o's payload that would have been stored on
// eventSubject is quarantined: quarantine.<o's name>.<eventSubject>.
func QuarantineSubject(o Owner, eventSubject string) string {
	return SubjectPrefix + o.Name + "." + eventSubject
}

// EncodeViolations is the HeaderViolations value of vs: as many of them as
// fit in MaxViolationsHeader bytes.
func EncodeViolations(vs []Violation) string {
	for n := len(vs); n > 0; n-- {
		b, err := json.Marshal(vs[:n])
		if err == nil && len(b) <= MaxViolationsHeader {
			return string(b)
		}
	}
	return "[]"
}

// DecodeViolations reads a HeaderViolations value; nil if it is not one.
func DecodeViolations(s string) []Violation {
	var vs []Violation
	if json.Unmarshal([]byte(s), &vs) != nil {
		return nil
	}
	return vs
}
