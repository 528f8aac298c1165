package natsx

import (
	"errors"

	"github.com/nats-io/nats.go/jetstream"
)

// Names of the four streams every service reads or writes. pkg/topology
// declares them (subjects, retention, limits, replicas).
const (
	StreamEvents      = "EVENTS"
	StreamDeadLetters = "DEAD_LETTERS"
	StreamAudit       = "AUDIT"
	StreamAdvisories  = "ADVISORIES"
)

// Durable consumers that every service declares with the streams
// (pkg/topology). AUDIT has interest retention, so the consumers that hold
// the interest must exist before anything is published, whichever service
// starts first.
const (
	ConsumerAuditor       = "auditor"
	ConsumerAuditorEvents = "auditor-events"
	ConsumerNotifier      = "notifier"
	// ConsumerAuditorDeadLetters records every dead letter in the audit log
	// from DEAD_LETTERS itself, so that a lost AUDIT copy of a dead letter
	// cannot leave it out. Declared with the streams so that it exists before
	// the first dead letter is stored.
	ConsumerAuditorDeadLetters = "auditor-dead-letters"
)

// IsNotFound reports whether err means a stream, consumer or message does
// not exist.
func IsNotFound(err error) bool {
	return errors.Is(err, jetstream.ErrStreamNotFound) ||
		errors.Is(err, jetstream.ErrConsumerNotFound) ||
		errors.Is(err, jetstream.ErrMsgNotFound)
}
