// Package signing verifies the signatures partners put on webhooks and signs
// the webhooks Switchyard sends. Each scheme is a Verifier; comparisons are
// constant-time and every failure is one of the sentinel errors below, so
// that ingress can answer with a reason without ever echoing a secret.
package signing

import (
	"crypto/hmac"
	"errors"
	"net/http"
	"time"
)

// Failure reasons. Every error a Verifier returns wraps exactly one.
var (
	// ErrMissingSignature: the request carries no signature (or timestamp)
	// header for the scheme.
	ErrMissingSignature = errors.New("missing signature")
	// ErrBadSignature: a signature is present but none matches any secret.
	ErrBadSignature = errors.New("signature does not match")
	// ErrStaleTimestamp: the signed timestamp is outside the tolerance,
	// in the past or in the future.
	ErrStaleTimestamp = errors.New("timestamp outside tolerance")
	// ErrMalformed: a header is present but cannot be parsed.
	ErrMalformed = errors.New("malformed signature header")
)

// Request is what a Verifier looks at.
type Request struct {
	Header http.Header
	Body   []byte
	// Now is the verification time, for timestamp tolerance.
	Now time.Time
}

// Verified is what a successful verification learnt about the request.
type Verified struct {
	// DeliveryID is the provider's id for this delivery; empty when the
	// scheme has none (ingress then derives one from the body).
	DeliveryID string
	// EventType is the provider's event type when the scheme carries it in
	// a header; empty otherwise.
	EventType string
	// Timestamp is the signed timestamp, when the scheme has one.
	Timestamp time.Time
}

// Verifier checks one source's requests.
type Verifier interface {
	Verify(r Request) (Verified, error)
}

// equal compares MACs in constant time.
func equal(a, b []byte) bool { return hmac.Equal(a, b) }

// checkTolerance accepts ts within tol of now, both ways.
func checkTolerance(ts, now time.Time, tol time.Duration) error {
	d := now.Sub(ts)
	if d > tol || d < -tol {
		return ErrStaleTimestamp
	}
	return nil
}
