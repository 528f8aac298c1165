package delivery

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/switchyard/switchyard/pkg/outbound"
	"github.com/switchyard/switchyard/pkg/signing"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
)

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
	Auth outbound.Authenticator
	// Signer signs each request with Standard Webhooks; nil for none.
	Signer *signing.StandardWebhooks
}

// HTTPConfig is the shape of the destination's HTTP client.
func (t Target) HTTPConfig() outbound.HTTPConfig {
	return outbound.HTTPConfig{Timeout: t.Timeout, MaxConns: t.MaxConns, AllowPrivateNetwork: t.AllowPrivateNetwork}
}

// Client sends events to one destination.
type Client struct {
	target Target
	out    outbound.Client
}

// NewClient returns a client with its own connection pool, so that one
// destination's slow connections never take another's. hc, when not nil,
// is that pool (shared with the OAuth2 token requests); nil makes one.
func NewClient(t Target, hc *http.Client) *Client {
	if hc == nil {
		hc = outbound.NewHTTPClient(t.HTTPConfig())
	}
	return &Client{target: t, out: outbound.Client{HTTP: hc, Headers: t.Headers, Auth: t.Auth}}
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
	// Path, when set, is appended to the destination URL's path (already
	// escaped: a destination's path template, pkg/mapping).
	Path string
	// Capture, when above 0, keeps the response's headers and up to this
	// many bytes of its body in the Result (for a publisher waiting for
	// the answer).
	Capture int
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
	resp, err := c.out.Do(ctx, func(ctx context.Context) (*http.Request, error) { return c.newRequest(ctx, r) })
	var authErr *outbound.AuthError
	switch {
	case errors.As(err, &authErr):
		return authFailure(authErr.Err)
	case err != nil:
		return classifyError(err)
	}
	defer resp.Body.Close()
	// Everything kept of the answer is redacted (outbound.Response): a
	// partner that echoes the request would hand back the credentials
	// sent with it.
	var snippet string
	var body []byte
	truncated := false
	if r.Capture > 0 {
		// A publisher waits for this answer: keep more of it.
		body, truncated = resp.ReadBody(r.Capture)
		snippet = resp.Snippet(body, SnippetLimit)
	} else {
		snippet = resp.ReadSnippet(SnippetLimit)
	}
	// Drain a little more so the connection can be reused.
	_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
	header := resp.RedactedHeader()
	res := c.target.Policy.Classify(resp.StatusCode, header, snippet, time.Now())
	if r.Capture > 0 {
		res.Header, res.Body, res.BodyTruncated = header, body, truncated
	}
	if resp.Renewed && c.out.Refused(resp) && !res.Retryable() {
		// The credentials were renewed and the request sent once more
		// within the same attempt: a second 401 is final.
		res.Err = fmt.Errorf("HTTP 401 Unauthorized, again with renewed credentials: %w", outbound.ErrCredentials)
	}
	return res
}

// newRequest builds the request for r; the credentials are outbound's.
func (c *Client) newRequest(ctx context.Context, r Request) (*http.Request, error) {
	target := c.target.URL
	if r.Path != "" {
		var err error
		if target, err = joinPath(target, r.Path); err != nil {
			return nil, err
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(r.Body))
	if err != nil {
		return nil, err
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
	req.Header.Set("User-Agent", outbound.UserAgent())
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
	return req, nil
}

// joinPath appends an escaped path to base's path, keeping base's query.
func joinPath(base, escaped string) (string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", err
	}
	p, err := url.PathUnescape(escaped)
	if err != nil {
		return "", fmt.Errorf("templated path %q: %w", escaped, err)
	}
	u.RawPath = strings.TrimSuffix(u.EscapedPath(), "/") + escaped
	u.Path = strings.TrimSuffix(u.Path, "/") + p
	return u.String(), nil
}

// authFailure is the Result when no credentials could be had: permanent
// when they were refused, retryable when the token endpoint was
// unreachable.
func authFailure(err error) Result {
	if errors.Is(err, outbound.ErrCredentials) {
		return Result{Outcome: switchyardv1.Outcome_OUTCOME_PERMANENT, Err: err}
	}
	res := classifyError(err)
	res.Err = err
	return res
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
			res.RetryAfter = outbound.ParseRetryAfter(h.Get("Retry-After"), now)
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
	var certErr *tls.CertificateVerificationError
	switch {
	case errors.Is(err, outbound.ErrBlockedAddress):
		res.Outcome = switchyardv1.Outcome_OUTCOME_PERMANENT
	case outbound.IsTimeout(err):
		res.Err = ErrTimeout
	case errors.As(err, &certErr):
		res.Err = fmt.Errorf("%w: %w", ErrTLSCertificate, certErr.Err)
	}
	return res
}
