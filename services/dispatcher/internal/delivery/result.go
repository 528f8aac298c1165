// Package delivery sends one event to one destination over HTTP and
// classifies what happened as a typed Result.
package delivery

import (
	"errors"
	"net/http"
	"time"

	"github.com/switchyard/switchyard/pkg/outbound"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
)

// Result is the outcome of one attempt.
type Result struct {
	// Outcome is delivered, retryable or permanent.
	Outcome switchyardv1.Outcome
	// StatusCode is 0 when no response arrived.
	StatusCode int
	// Err explains a failure; nil when delivered.
	Err error
	// RetryAfter is what the destination asked for on 429/503; 0 if nothing.
	RetryAfter time.Duration
	// Snippet is the start of the response body.
	Snippet string
	// Started and Duration time the attempt.
	Started  time.Time
	Duration time.Duration
	// Header, Body and BodyTruncated are the response's, when the request
	// asked to Capture them and a response arrived.
	Header        http.Header
	Body          []byte
	BodyTruncated bool
}

// Delivered reports whether the destination accepted the event.
func (r Result) Delivered() bool { return r.Outcome == switchyardv1.Outcome_OUTCOME_DELIVERED }

// Retryable reports whether a later attempt may succeed.
func (r Result) Retryable() bool { return r.Outcome == switchyardv1.Outcome_OUTCOME_RETRYABLE }

// AuthFailure reports whether the attempt failed on the destination's
// credentials: an answer 401 or 403, or the token endpoint refusing the
// client (no request was sent then, so StatusCode is 0).
func (r Result) AuthFailure() bool {
	return r.StatusCode == http.StatusUnauthorized || r.StatusCode == http.StatusForbidden || errors.Is(r.Err, outbound.ErrCredentials)
}

// ErrorString is Err's text, or "".
func (r Result) ErrorString() string {
	if r.Err == nil {
		return ""
	}
	return r.Err.Error()
}
