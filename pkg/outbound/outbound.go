// Package outbound is how Switchyard calls partners' APIs: the dispatcher
// delivering events and ingress polling sources share it. It owns the
// partner's HTTP client (its own connection pool, no proxy, no redirects,
// the guard against internal addresses), the credentials (static headers,
// bearer, basic, OAuth2 client credentials with a shared token cache), the
// one renewal of credentials a refused request gets, and reading
// Retry-After.
package outbound

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/version"
)

// HTTPConfig shapes a partner's HTTP client.
type HTTPConfig struct {
	// Timeout bounds connecting, the TLS handshake and waiting for the
	// response headers. Callers bound the whole request with a context.
	Timeout time.Duration
	// MaxConns is the most idle connections kept to the partner. At
	// least 2.
	MaxConns int
	// AllowPrivateNetwork lifts the guard against internal addresses.
	AllowPrivateNetwork bool

	// afterGuard, set by tests only, sees every address the guard let
	// through, just before the connection is made; an error stops it.
	afterGuard func(address string) error
}

// NewHTTPClient is a partner's HTTP client: its own pool, so that one
// partner's slow connections never take another's; the address guard
// unless allowed; no proxy; no redirects. Token requests (OAuth2) use it
// too, so the guard covers the token URL.
func NewHTTPClient(c HTTPConfig) *http.Client {
	dialer := &net.Dialer{Timeout: min(c.Timeout, 10*time.Second), KeepAlive: 30 * time.Second}
	if !c.AllowPrivateNetwork {
		dialer.Control = blockPrivate
	}
	if c.afterGuard != nil {
		guard := dialer.Control
		dialer.Control = func(network, address string, rc syscall.RawConn) error {
			if guard != nil {
				if err := guard(network, address, rc); err != nil {
					return err
				}
			}
			return c.afterGuard(address)
		}
	}
	tr := &http.Transport{
		Proxy:                 nil, // a proxy would hide the real address from the guard
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          max(c.MaxConns, 2),
		MaxIdleConnsPerHost:   max(c.MaxConns, 2),
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   min(c.Timeout, 10*time.Second),
		ExpectContinueTimeout: time.Second,
		ResponseHeaderTimeout: c.Timeout,
	}
	return &http.Client{
		Transport: tr,
		// A redirect is the partner's configuration problem; following it
		// would also step around the address guard.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// FromConfig is the Authenticator a configured auth block describes; nil
// for none. hc makes the OAuth2 token requests.
func FromConfig(a config.Auth, hc *http.Client) Authenticator {
	switch a.Type {
	case config.AuthBearer:
		return Bearer{Token: a.Token.Reveal()}
	case config.AuthBasic:
		return Basic{Username: a.Username, Password: a.Password.Reveal()}
	case config.AuthOAuth2ClientCredentials:
		params := map[string][]string{}
		for k, v := range a.Params {
			params[k] = []string{v}
		}
		return NewClientCredentials(ClientCredentialsConfig{
			TokenURL: a.TokenURL, ClientID: a.ClientID, ClientSecret: a.ClientSecret.Reveal(),
			Scopes: a.Scopes, Params: params, ClientAuth: a.ClientAuth, HTTPClient: hc,
		})
	}
	return nil
}

// RevealHeaders are configured static headers with their values revealed,
// for Client.Headers.
func RevealHeaders(h map[string]config.Secret) map[string]string {
	out := make(map[string]string, len(h))
	for k, v := range h {
		out[k] = v.Reveal()
	}
	return out
}

// Client sends requests to one partner with its static headers and
// credentials.
type Client struct {
	// HTTP sends the requests (NewHTTPClient). Required.
	HTTP *http.Client
	// Headers are set on every request that does not set them itself.
	Headers map[string]string
	// Auth puts credentials on every request; nil for none.
	Auth Authenticator
	// RenewOn are the statuses after which the credentials are renewed and
	// the request sent once more. Default 401 only: a 403 usually means
	// the credentials are fine but lack a permission, which a new token
	// does not grant; a poller that knows its partner answers 403 for an
	// expired token names it.
	RenewOn []int
}

// AuthError is a request that was not sent because no credentials could be
// had: the token endpoint refused the client (it wraps ErrCredentials) or
// could not be reached.
type AuthError struct{ Err error }

func (e *AuthError) Error() string { return e.Err.Error() }

// Unwrap returns the cause.
func (e *AuthError) Unwrap() error { return e.Err }

// Response is a partner's answer.
type Response struct {
	*http.Response
	// Renewed is true when the first answer refused the credentials, they
	// were renewed, and this is the answer to the second request.
	Renewed bool
	// sent are the credentials the requests carried, for Redact.
	sent []string
}

// Do sends the request newRequest builds (called again for the second
// request after a renewal: a body must be readable twice) with the static
// headers and the credentials. When the partner answers one of RenewOn and
// the credentials could be renewed, the first answer is drained and the
// request sent once more; Response.Renewed says so. The error is an
// *AuthError when no credentials could be had, otherwise the transport's.
// The caller closes the body.
func (c *Client) Do(ctx context.Context, newRequest func(context.Context) (*http.Request, error)) (*Response, error) {
	resp, req, err := c.do(ctx, newRequest)
	if err != nil {
		return nil, err
	}
	sent := credentialsOf(req, c.Headers)
	if c.Auth == nil || !statusIn(resp.StatusCode, c.renewOn()) || !c.Auth.Renew(ctx, req) {
		return &Response{Response: resp, sent: sent}, nil
	}
	Drain(resp.Body)
	resp, req, err = c.do(ctx, newRequest)
	if err != nil {
		return nil, err
	}
	// The first request's credentials too: a revoked token is still one.
	for _, v := range credentialsOf(req, c.Headers) {
		if !slices.Contains(sent, v) {
			sent = append(sent, v)
		}
	}
	slices.SortFunc(sent, func(a, b string) int { return len(b) - len(a) })
	return &Response{Response: resp, Renewed: true, sent: sent}, nil
}

// Refused reports whether an answer refuses the credentials for good: one
// of RenewOn, after the renewal or with credentials that cannot be renewed
// (static ones). A person must act.
func (c *Client) Refused(resp *Response) bool {
	return resp != nil && resp.Response != nil && statusIn(resp.StatusCode, c.renewOn())
}

func (c *Client) renewOn() []int {
	if len(c.RenewOn) == 0 {
		return []int{http.StatusUnauthorized}
	}
	return c.RenewOn
}

func (c *Client) do(ctx context.Context, newRequest func(context.Context) (*http.Request, error)) (*http.Response, *http.Request, error) {
	req, err := newRequest(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("build request: %w", err)
	}
	for k, v := range c.Headers {
		if req.Header.Get(k) == "" {
			req.Header.Set(k, v)
		}
	}
	if c.Auth != nil {
		if err := c.Auth.Apply(ctx, req); err != nil {
			return nil, nil, &AuthError{Err: err}
		}
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, nil, err
	}
	return resp, req, nil
}

// Drain reads a little of what is left of a body, so that the connection
// can be reused, and closes it.
func Drain(body io.ReadCloser) {
	_, _ = io.CopyN(io.Discard, body, 64<<10)
	_ = body.Close()
}

func statusIn(status int, set []int) bool { return slices.Contains(set, status) }

// UserAgent names Switchyard and its version (pkg/version) on every
// request to a partner.
func UserAgent() string {
	return "Switchyard/" + version.String() + " (+https://github.com/switchyard/switchyard)"
}

// IsTimeout reports whether err is a request that ran out of time.
func IsTimeout(err error) bool {
	var netErr net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &netErr) && netErr.Timeout())
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
