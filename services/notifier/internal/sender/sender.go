// Package sender delivers alert messages: to a Slack incoming webhook, to a
// generic JSON webhook (for PagerDuty or Opsgenie bridges), or to the log.
// The webhook senders pace themselves (a token bucket per webhook, and a
// pause after a 429) and classify every answer as accepted, worth retrying
// (with the wait the receiver asked for) or permanent.
package sender

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/switchyard/switchyard/pkg/config"

	"golang.org/x/time/rate"
)

// Alert is one message for on-call.
type Alert struct {
	// Title is the headline, e.g. "[FIRING][critical] 3 deliveries dead-lettered on erp".
	Title string
	// Fields are label/value pairs shown in the message, in order.
	Fields []Field
	// Firing is false for a recovery message.
	Firing bool
	// Link points at the event or destination in the query API; LinkText
	// describes it. Empty: no link.
	Link, LinkText string

	// What machine-readable senders pass on.
	Fingerprint string
	Rule        string
	Labels      map[string]string
	Severity    string
	// Kind is firing, update, repeat or resolved.
	Kind      string
	Summary   string
	Sequence  uint64
	Count     int64
	FirstSeen time.Time
}

// Field is one label/value pair.
type Field struct {
	Label, Value string
}

// Sender sends alerts.
type Sender interface {
	// Name is slack, console or webhook.
	Name() string
	// Send delivers one alert. A *RetryableError means try again later;
	// an error wrapping ErrPermanent means retrying cannot help.
	Send(ctx context.Context, a Alert) error
}

// RetryableError is a failure worth retrying, after After if it is set.
type RetryableError struct {
	Err   error
	After time.Duration
	// StatusCode is the receiver's answer, 0 if none came.
	StatusCode int
	// Reason classifies the failure: ReasonThrottled, ReasonNetwork,
	// ReasonRateLimited or ReasonUnavailable.
	Reason string
}

func (e *RetryableError) Error() string { return e.Err.Error() }
func (e *RetryableError) Unwrap() error { return e.Err }

// ErrPermanent wraps failures that retrying cannot fix (revoked webhook,
// invalid payload).
var ErrPermanent = errors.New("permanent alert delivery failure")

// PermanentError is a permanent failure with the receiver's answer.
type PermanentError struct {
	StatusCode int
	// Reason is what the receiver said (Slack's error code), bounded.
	Reason string
}

func (e *PermanentError) Error() string {
	return fmt.Sprintf("%v: answered %d %s", ErrPermanent, e.StatusCode, e.Reason)
}

// Is makes errors.Is(err, ErrPermanent) true.
func (e *PermanentError) Is(target error) bool { return target == ErrPermanent }

// Why a send failed: the reason label of
// switchyard_notifier_send_failures_total. The HTTP status itself is in the
// log and the audit record.
const (
	// ReasonThrottled: the sender's own pacing held the message back (the
	// rate limit, or a receiver's Retry-After longer than a send may wait).
	ReasonThrottled = "throttled"
	// ReasonNetwork: no answer (connection refused, timeout, TLS).
	ReasonNetwork = "network"
	// ReasonRateLimited: the receiver answered 429.
	ReasonRateLimited = "rate_limited"
	// ReasonUnavailable: the receiver answered 5xx or 408.
	ReasonUnavailable = "unavailable"
	// ReasonRejected: the receiver refused the message for good (another
	// 4xx: invalid_payload, a revoked webhook's 403/404/410).
	ReasonRejected = "rejected"
	// ReasonInvalid: the message or the URL could not be used at all.
	ReasonInvalid = "invalid"
)

// FailureReasons are every reason, each with whether it is permanent.
var FailureReasons = []struct {
	Reason    string
	Permanent bool
}{
	{ReasonThrottled, false}, {ReasonNetwork, false}, {ReasonRateLimited, false}, {ReasonUnavailable, false},
	{ReasonRejected, true}, {ReasonInvalid, true},
}

// FailureReason classifies a send error.
func FailureReason(err error) string {
	var re *RetryableError
	var pe *PermanentError
	switch {
	case errors.As(err, &re) && re.Reason != "":
		return re.Reason
	case errors.As(err, &re):
		return ReasonNetwork
	case errors.As(err, &pe):
		return ReasonRejected
	}
	return ReasonInvalid
}

// StatusCode returns the HTTP status carried by a send error, or 0.
func StatusCode(err error) int {
	var re *RetryableError
	var pe *PermanentError
	switch {
	case errors.As(err, &re):
		return re.StatusCode
	case errors.As(err, &pe):
		return pe.StatusCode
	}
	return 0
}

// Console writes alerts to the log.
type Console struct{ Log *slog.Logger }

// Name implements Sender.
func (Console) Name() string { return "console" }

// Send implements Sender.
func (c Console) Send(ctx context.Context, a Alert) error {
	attrs := []any{slog.Bool("firing", a.Firing)}
	for _, f := range a.Fields {
		attrs = append(attrs, slog.String(strings.ToLower(strings.ReplaceAll(f.Label, " ", "_")), f.Value))
	}
	if a.Link != "" {
		attrs = append(attrs, slog.String("link", a.Link))
	}
	if a.Fingerprint != "" {
		attrs = append(attrs, slog.String("fingerprint", a.Fingerprint))
	}
	c.Log.WarnContext(ctx, "ALERT "+a.Title, attrs...)
	return nil
}

// Pacing bounds the messages per second to one webhook.
type Pacing struct {
	// PerSecond is the sustained rate (alerts.rate_limit.per_second; its
	// default is Slack's limit for an incoming webhook).
	PerSecond float64
	// Burst is how many may go at once (alerts.rate_limit.burst).
	Burst int
	// MaxWait is the longest Send waits for its turn; beyond it Send
	// returns a RetryableError at once, so that a long Retry-After does not
	// hold a message past its ack deadline. Default 30s.
	MaxWait time.Duration
}

// withDefaults fills what is unset: the rate from the configuration's
// defaults (config.Defaults), the wait the sender's own.
func (p Pacing) withDefaults() Pacing {
	d := config.Defaults().Alerts.RateLimit
	if p.PerSecond <= 0 {
		p.PerSecond = d.PerSecond
	}
	if p.Burst <= 0 {
		p.Burst = d.Burst
	}
	if p.MaxWait <= 0 {
		p.MaxWait = 30 * time.Second
	}
	return p
}

// pacer is a token bucket plus a pause that a 429 extends.
type pacer struct {
	lim     *rate.Limiter
	maxWait time.Duration
	mu      sync.Mutex
	until   time.Time
}

func newPacer(p Pacing) *pacer {
	p = p.withDefaults()
	return &pacer{lim: rate.NewLimiter(rate.Limit(p.PerSecond), p.Burst), maxWait: p.MaxWait}
}

// wait blocks until the next request may go.
func (p *pacer) wait(ctx context.Context) error {
	p.mu.Lock()
	pause := time.Until(p.until)
	p.mu.Unlock()
	if pause > p.maxWait {
		return &RetryableError{Err: fmt.Errorf("rate limited by the receiver for another %s", pause.Round(time.Second)), After: pause, Reason: ReasonThrottled}
	}
	if pause > 0 {
		t := time.NewTimer(pause)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return &RetryableError{Err: ctx.Err(), After: pause, Reason: ReasonThrottled}
		}
	}
	r := p.lim.Reserve()
	if d := r.Delay(); d > p.maxWait {
		r.Cancel()
		return &RetryableError{Err: errors.New("more alerts than the rate limit lets through"), After: d, Reason: ReasonThrottled}
	} else if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			r.Cancel()
			return &RetryableError{Err: ctx.Err(), After: d, Reason: ReasonThrottled}
		}
	}
	return nil
}

// pause holds every request back for d (a 429's Retry-After).
func (p *pacer) pause(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if u := time.Now().Add(d); u.After(p.until) {
		p.until = u
	}
}

// post sends body to url, once p lets it, and classifies the answer: 2xx
// accepted; 429 (pausing p for its Retry-After), 408 and 5xx retryable;
// any other status permanent.
func post(ctx context.Context, client *http.Client, p *pacer, url, what string, body []byte, header http.Header) error {
	if err := p.wait(ctx); err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%w: the %s URL is not usable", ErrPermanent, what)
	}
	req.Header = header
	resp, err := client.Do(req)
	if err != nil {
		// The error text quotes the URL, which is a secret; keep only what
		// went wrong.
		return &RetryableError{Err: fmt.Errorf("post to %s: %s", what, redactErr(err)), Reason: ReasonNetwork}
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	text := strings.TrimSpace(strings.ToValidUTF8(string(msg), "?"))
	code := resp.StatusCode
	switch {
	case code >= 200 && code < 300:
		return nil
	case code == http.StatusTooManyRequests:
		after := retryAfter(resp.Header.Get("Retry-After"))
		p.pause(after)
		return &RetryableError{Err: fmt.Errorf("%s rate limit (429)", what), After: after, StatusCode: code, Reason: ReasonRateLimited}
	case code >= 500 || code == http.StatusRequestTimeout:
		return &RetryableError{Err: fmt.Errorf("%s answered %d %s", what, code, text), StatusCode: code, Reason: ReasonUnavailable}
	default:
		return &PermanentError{StatusCode: code, Reason: text}
	}
}

// retryAfter reads a Retry-After of seconds or an HTTP date; at least 1s.
func retryAfter(v string) time.Duration {
	if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n > 0 {
		return time.Duration(min(n, 3600)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := time.Until(t); d > time.Second {
			return min(d, time.Hour).Round(time.Second)
		}
	}
	return time.Second
}

func redactErr(err error) string {
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) && ue.Unwrap() != nil {
		return ue.Unwrap().Error()
	}
	return "request failed"
}

func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

func newClient() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, CheckRedirect: noRedirects}
}
