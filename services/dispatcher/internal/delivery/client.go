package delivery

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/switchyard/switchyard/pkg/signing"
	"github.com/switchyard/switchyard/pkg/version"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
)

// Version names this build in the User-Agent (pkg/version: set with
// -ldflags "-X github.com/switchyard/switchyard/pkg/version.Version=v1.2.3").
var Version = version.String()

// SnippetLimit bounds the response body kept for the audit log.
const SnippetLimit = 1024

// Target is where and how a destination is reached.
type Target struct {
	// URL events are POSTed to.
	URL string
	// Timeout bounds one attempt, connection included (and, after a 401,
	// the renewal of the credentials and the second request).
	Timeout time.Duration
	// Headers are added to every request (values already revealed).
	Headers map[string]string
	// AllowPrivateNetwork lifts the guard against internal addresses.
	AllowPrivateNetwork bool
	// MaxConns is the most connections kept to the destination.
	MaxConns int
	// Policy classifies responses.
	Policy Policy
	// Auth puts credentials on each request; nil for none.
	Auth Authenticator
	// Signer signs each request with Standard Webhooks; nil for none.
	Signer *signing.StandardWebhooks
}

// Client sends events to one destination.
type Client struct {
	target Target
	http   *http.Client
}

// NewClient returns a client with its own connection pool, so that one
// destination's slow connections never take another's.
func NewClient(t Target) *Client {
	return &Client{target: t, http: NewHTTPClient(t)}
}

// NewHTTPClient is the HTTP client of a destination: its own pool, the
// address guard unless allowed, no proxy, no redirects. Token requests
// (OAuth2) use it too.
func NewHTTPClient(t Target) *http.Client {
	dialer := &net.Dialer{Timeout: min(t.Timeout, 10*time.Second), KeepAlive: 30 * time.Second}
	if !t.AllowPrivateNetwork {
		dialer.Control = blockPrivate
	}
	tr := &http.Transport{
		Proxy:                 nil, // a proxy would hide the real address from the guard
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          max(t.MaxConns, 2),
		MaxIdleConnsPerHost:   max(t.MaxConns, 2),
		MaxConnsPerHost:       0,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   min(t.Timeout, 10*time.Second),
		ExpectContinueTimeout: time.Second,
		ResponseHeaderTimeout: t.Timeout,
	}
	return &http.Client{
		Transport: tr,
		// A redirect is the destination's configuration problem; following
		// it would also step around the address guard.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Request is one event to send.
type Request struct {
	EventID     string
	EventType   string
	ContentType string
	Body        []byte
	Attempt     int
	// ReplayOf is the dead letter id when this is a replay.
	ReplayOf string
	// Header holds extra headers for this request.
	Header http.Header
}

// Send makes one attempt and classifies it. It never returns an error: every
// failure is a Result.
func (c *Client) Send(ctx context.Context, r Request) Result {
	start := time.Now()
	res := c.send(ctx, r)
	res.Started = start
	res.Duration = time.Since(start)
	return res
}

func (c *Client) send(ctx context.Context, r Request) Result {
	ctx, cancel := context.WithTimeout(ctx, c.target.Timeout)
	defer cancel()
	res, req := c.do(ctx, r)
	if res.StatusCode == http.StatusUnauthorized && req != nil && c.target.Auth != nil && c.target.Auth.Renew(ctx, req) {
		// The credentials were renewed: send once more within the same
		// attempt. A second 401 is final.
		res, _ = c.do(ctx, r)
		if res.StatusCode == http.StatusUnauthorized && !res.Retryable() {
			res.Err = fmt.Errorf("HTTP 401 Unauthorized, again with renewed credentials: %w", ErrCredentials)
		}
	}
	return res
}

// do sends one request. The request is returned for Renew when a response
// arrived.
func (c *Client) do(ctx context.Context, r Request) (Result, *http.Request) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.target.URL, bytes.NewReader(r.Body))
	if err != nil {
		return Result{Outcome: switchyardv1.Outcome_OUTCOME_PERMANENT, Err: fmt.Errorf("build request: %w", err)}, nil
	}
	for k, v := range c.target.Headers {
		req.Header.Set(k, v)
	}
	for k, vs := range r.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	ct := r.ContentType
	if ct == "" {
		ct = "application/octet-stream"
	}
	req.Header.Set("Content-Type", ct)
	req.Header.Set("User-Agent", UserAgent())
	req.Header.Set("Idempotency-Key", r.EventID)
	if r.EventType != "" {
		req.Header.Set("Switchyard-Event-Type", r.EventType)
	}
	req.Header.Set("Switchyard-Attempt", strconv.Itoa(r.Attempt))
	if r.ReplayOf != "" {
		req.Header.Set("Switchyard-Replay-Of", r.ReplayOf)
	}
	if c.target.Signer != nil {
		// Signed at send time, so the timestamp is fresh on every attempt.
		now := time.Now()
		req.Header.Set(signing.HeaderWebhookID, r.EventID)
		req.Header.Set(signing.HeaderWebhookTimestamp, strconv.FormatInt(now.Unix(), 10))
		req.Header.Set(signing.HeaderWebhookSignature, c.target.Signer.Sign(r.EventID, now, r.Body))
	}
	if c.target.Auth != nil {
		if err := c.target.Auth.Apply(ctx, req); err != nil {
			return authFailure(err), nil
		}
	}

	resp, err := c.http.Do(req)
	if err != nil {
		return classifyError(err), nil
	}
	defer resp.Body.Close()
	snippet := readSnippet(resp.Body)
	// Drain a little more so the connection can be reused.
	_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
	return c.target.Policy.Classify(resp.StatusCode, resp.Header, snippet, time.Now()), req
}

// authFailure is the Result when no credentials could be had: permanent
// when they were refused, retryable when the token endpoint was
// unreachable.
func authFailure(err error) Result {
	if errors.Is(err, ErrCredentials) {
		return Result{Outcome: switchyardv1.Outcome_OUTCOME_PERMANENT, Err: err}
	}
	res := classifyError(err)
	res.Err = err
	return res
}

// UserAgent names Switchyard and its version.
func UserAgent() string {
	return "Switchyard/" + Version + " (+https://github.com/switchyard/switchyard)"
}

// Policy is a destination's classification of responses.
type Policy struct {
	// RetryOnStatus are 4xx statuses retried instead of treated as
	// permanent.
	RetryOnStatus []int
}

// Classify maps a response to a Result with the default policy.
func Classify(status int, h http.Header, snippet string, now time.Time) Result {
	return Policy{}.Classify(status, h, snippet, now)
}

// Classify maps a response to a Result: 2xx delivered; 408, 409, 425,
// 429, 5xx and the policy's RetryOnStatus retryable; everything else
// (other 4xx, 410 Gone always, 3xx, 1xx) permanent. Retry-After is read on
// 429 and 503, and on the policy's extra statuses.
func (p Policy) Classify(status int, h http.Header, snippet string, now time.Time) Result {
	res := Result{StatusCode: status, Snippet: snippet}
	extra := status != http.StatusGone && slices.Contains(p.RetryOnStatus, status)
	switch {
	case status >= 200 && status < 300:
		res.Outcome = switchyardv1.Outcome_OUTCOME_DELIVERED
		return res
	case status == http.StatusRequestTimeout, status == http.StatusConflict, status == http.StatusTooEarly,
		status == http.StatusTooManyRequests, status >= 500, extra:
		res.Outcome = switchyardv1.Outcome_OUTCOME_RETRYABLE
		if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable || extra {
			res.RetryAfter = ParseRetryAfter(h.Get("Retry-After"), now)
		}
	case status >= 300 && status < 400:
		res.Outcome = switchyardv1.Outcome_OUTCOME_PERMANENT
		res.Err = fmt.Errorf("HTTP %d redirect to %q not followed: point the destination at the final URL", status, h.Get("Location"))
		return res
	default:
		res.Outcome = switchyardv1.Outcome_OUTCOME_PERMANENT
	}
	res.Err = fmt.Errorf("HTTP %d %s", status, http.StatusText(status))
	return res
}

// ErrTimeout is the error of an attempt that got no answer within the
// destination's timeout (retryable). The transport's own error, which
// would quote the URL, is dropped.
var ErrTimeout = errors.New("timeout: no response within the destination's timeout")

// ErrTLSCertificate wraps the error of an attempt whose TLS certificate the
// client did not accept (retryable: a partner may fix its certificate).
var ErrTLSCertificate = errors.New("TLS certificate not accepted")

// classifyError maps a transport error: everything is retryable except the
// address guard, which no retry can get past.
func classifyError(err error) Result {
	res := Result{Outcome: switchyardv1.Outcome_OUTCOME_RETRYABLE, Err: err}
	var urlErr interface{ Unwrap() error }
	if errors.As(err, &urlErr) {
		res.Err = urlErr.Unwrap()
	}
	var netErr net.Error
	var certErr *tls.CertificateVerificationError
	switch {
	case errors.Is(err, ErrBlockedAddress):
		res.Outcome = switchyardv1.Outcome_OUTCOME_PERMANENT
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &netErr) && netErr.Timeout()):
		res.Err = ErrTimeout
	case errors.As(err, &certErr):
		res.Err = fmt.Errorf("%w: %w", ErrTLSCertificate, certErr.Err)
	}
	return res
}

// ParseRetryAfter reads delay-seconds or an HTTP date; 0 when absent or
// unreadable. It is capped at a day.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 {
			return 0
		}
		d = time.Duration(min(n, 86400)) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return max(0, min(d, 24*time.Hour))
}

func readSnippet(r io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(r, SnippetLimit))
	return strings.ToValidUTF8(string(b), "\uFFFD")
}
