package server

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/signing"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
)

// Admission is what ingress checks of a request before it reads a byte of
// its body (decision 0407): a Content-Length over the limit is refused at
// once, a webhook without its scheme's signature headers too, and a body
// is read only once it fits in the process's bound on body bytes in
// flight (ingress.max_bytes_in_flight); past it the answer is 503 with
// Retry-After, so nothing accepted is lost: the sender retries.

// errOverBudget is a chunked body that grew past the bound on body bytes
// in flight while it was read.
var errOverBudget = errors.New("ingress holds as many request bodies as it may")

// byteBudget bounds the request body bytes the process holds at once. It
// never waits: a request it cannot take is answered 503 at once, since a
// request waiting for room would hold its connection and goroutine anyway.
type byteBudget struct {
	mu   sync.Mutex
	max  int64
	used int64
	peak int64
	// gauge follows used.
	gauge prometheus.Gauge
}

func newByteBudget(limit int64, gauge prometheus.Gauge) *byteBudget {
	return &byteBudget{max: limit, gauge: gauge}
}

// tryAcquire takes n bytes if they fit.
func (b *byteBudget) tryAcquire(n int64) bool {
	if n <= 0 {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+n > b.max {
		return false
	}
	b.used += n
	b.peak = max(b.peak, b.used)
	b.gauge.Set(float64(b.used))
	return true
}

// release gives n bytes back.
func (b *byteBudget) release(n int64) {
	if n <= 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used -= n
	b.gauge.Set(float64(b.used))
}

// inUse and highWater are the bytes held now and the most ever held.
func (b *byteBudget) inUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

func (b *byteBudget) highWater() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.peak
}

// budgetedBody takes a chunked body's bytes from the budget as they are
// read, up to limit (the handler's MaxBytesReader refuses the rest).
type budgetedBody struct {
	io.ReadCloser
	budget *byteBudget
	limit  int64
	held   int64
}

func (r *budgetedBody) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	if take := min(int64(n), r.limit-r.held); take > 0 {
		if !r.budget.tryAcquire(take) {
			return 0, errOverBudget
		}
		r.held += take
	}
	return n, err
}

func (r *budgetedBody) releaseAll() { r.budget.release(r.held) }

// takeBody takes the request's body bytes from the budget before the body
// is read: its Content-Length, at most limit; a chunked body's bytes as
// they are read. It returns what gives them back when the handler is done,
// or false when the budget has no room.
func (s *Server) takeBody(req *http.Request, limit int64) (func(), bool) {
	switch n := min(req.ContentLength, limit); {
	case n > 0:
		if !s.budget.tryAcquire(n) {
			return nil, false
		}
		return func() { s.budget.release(n) }, true
	case n < 0:
		b := &budgetedBody{ReadCloser: req.Body, budget: s.budget, limit: limit + 1}
		req.Body = b
		return b.releaseAll, true
	}
	return func() {}, true
}

// overloaded is the answer when the bound on body bytes in flight is
// reached: nothing was stored, the sender retries.
func (s *Server) overloaded() *rejection {
	return &rejection{
		status: http.StatusServiceUnavailable, reason: switchyardv1.RejectReason_REJECT_REASON_UNAVAILABLE,
		code: "overloaded", msg: "ingress is holding as many request bodies as it may (ingress.max_bytes_in_flight); retry later",
		retryAfter: s.cfg.RetryAfter,
	}
}

func contentTooLarge(length, limit int64, what string) *rejection {
	return &rejection{
		status: http.StatusRequestEntityTooLarge, reason: switchyardv1.RejectReason_REJECT_REASON_BODY_TOO_LARGE,
		code: "body_too_large", msg: fmt.Sprintf("the Content-Length of %d bytes is larger than %s of %d bytes", length, what, limit),
	}
}

// watchedBody notes whether the handler read the body to its end.
type watchedBody struct {
	io.ReadCloser
	sawEOF bool
}

func (r *watchedBody) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	if errors.Is(err, io.EOF) {
		r.sawEOF = true
	}
	return n, err
}

// serveWatched runs the handler and, when it refused the request without
// reading its body to the end (an unknown source, a rate limit, a caller
// without a key), closes the connection: see closeUnread.
func serveWatched(c echo.Context, next echo.HandlerFunc) error {
	req := c.Request()
	body := &watchedBody{ReadCloser: req.Body}
	req.Body = body
	err := next(c)
	if err != nil && req.ContentLength != 0 && !body.sawEOF {
		// The error handler has not answered yet: it runs after the chain.
		closeUnread(c)
	}
	return err
}

// closeUnread is for an answer given without reading the body: the server
// closes the connection after it. Without it net/http reads up to 256 KiB
// of the body before it answers (Connection: close skips that) and again
// after the handler, waiting for a slow sender up to the read timeout
// (the read deadline, set to now, skips that).
func closeUnread(c echo.Context) {
	c.Response().Header().Set(echo.HeaderConnection, "close")
	// Not supported under httptest's recorder, which has no connection.
	_ = http.NewResponseController(c.Response().Writer).SetReadDeadline(time.Now())
}

// admitWebhook runs before handleWebhook and reads nothing of the body: a
// Content-Length over the source's max_body is refused (413), a request
// without the headers its scheme cannot verify without (401), and one
// whose body does not fit in the bound on bytes in flight (503 with
// Retry-After). Unknown sources go on to the handler, which answers them.
func (s *Server) admitWebhook(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		src, ok := s.sources[c.Param("source")]
		if !ok {
			return serveWatched(c, next) // answered 404 without reading
		}
		start, req := time.Now(), c.Request()
		refuse := func(outcome, eventID string, rj *rejection) error {
			src.metrics.observe(outcome, time.Since(start))
			closeUnread(c)
			return s.reject(c, src, eventID, req.ContentLength, rj)
		}
		if limit := int64(src.cfg.MaxBody); req.ContentLength > limit {
			return refuse("body_too_large", "", contentTooLarge(req.ContentLength, limit, "this source's limit"))
		}
		if err := missingHeader(s.required[src.cfg.Name], req.Header); err != nil {
			rj := verifyRejection(err)
			var id string
			if raw := req.Header.Get(src.auditIDHeader); src.auditIDHeader != "" && raw != "" {
				id = src.cfg.Name + ":" + deliveryID(src.cfg.Name, raw, nil)
			}
			return refuse(rj.code, id, rj)
		}
		release, ok := s.takeBody(req, int64(src.cfg.MaxBody))
		if !ok {
			s.metrics.overloaded.WithLabelValues(routeWebhooks).Inc()
			return refuse(outcomeOverloaded, "", s.overloaded())
		}
		defer release()
		return serveWatched(c, next)
	}
}

// admitAPI runs before the publish API's handlers: for an authenticated
// caller, a Content-Length over ingress.max_body is refused (413) and a
// body that does not fit in the bound on bytes in flight waits for no one
// (503 with Retry-After). A request without a valid key goes on to the
// handler, which refuses it (401) without reading its body.
func (s *Server) admitAPI(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		key, rj := s.keys.authenticate(req.Header.Get(echo.HeaderAuthorization))
		if rj != nil {
			return serveWatched(c, next) // answered 401 without reading
		}
		refuse := func(outcome string, rj *rejection) error {
			s.metrics.published.WithLabelValues(key, outcome).Inc()
			closeUnread(c)
			return s.rejectAs(c, s.apiGate, apiSource, key, "", req.ContentLength, rj)
		}
		if req.ContentLength > s.cfg.MaxBody {
			return refuse(statusRejected, contentTooLarge(req.ContentLength, s.cfg.MaxBody, "ingress.max_body"))
		}
		release, ok := s.takeBody(req, s.cfg.MaxBody)
		if !ok {
			s.metrics.overloaded.WithLabelValues(routeAPI).Inc()
			return refuse(statusUnavailable, s.overloaded())
		}
		defer release()
		return serveWatched(c, next)
	}
}

// requiredHeaders are the request headers without which a scheme's
// Verifier refuses any request as missing its signature or credentials
// (TestRequiredHeadersAreTheVerifiers checks each against the Verifier):
// a request without one is refused before its body is read.
func requiredHeaders(cfg config.Source) []string {
	switch cfg.Scheme {
	case "standard-webhooks":
		return []string{signing.HeaderWebhookID, signing.HeaderWebhookTimestamp, signing.HeaderWebhookSignature}
	case "github":
		return []string{signing.HeaderGitHubSignature256}
	case "stripe":
		return []string{signing.HeaderStripeSignature}
	case "shopify":
		return []string{signing.HeaderShopifyHmac}
	case "slack":
		return []string{signing.HeaderSlackSignature, signing.HeaderSlackTimestamp}
	case "hmac":
		h := []string{cfg.HMAC.Header}
		if cfg.HMAC.TimestampHeader != "" {
			h = append(h, cfg.HMAC.TimestampHeader)
		}
		if cfg.IDHeader != "" && strings.Contains(cfg.HMAC.SignedContent, signing.PlaceholderID) {
			h = append(h, cfg.IDHeader) // it is signed
		}
		return h
	case "basic", "bearer":
		return []string{echo.HeaderAuthorization}
	}
	return nil
}

// missingHeader is the error the scheme's Verifier would return for a
// request without one of its required headers; nil when all are there.
func missingHeader(required []string, h http.Header) error {
	for _, name := range required {
		if h.Get(name) != "" {
			continue
		}
		if name == echo.HeaderAuthorization {
			return fmt.Errorf("%w: need an Authorization header", signing.ErrMissingCredentials)
		}
		return fmt.Errorf("%w: need the %s header", signing.ErrMissingSignature, textproto.CanonicalMIMEHeaderKey(name))
	}
	return nil
}

// Label values of the admission's metrics.
const (
	outcomeOverloaded = "overloaded"
	routeWebhooks     = "webhooks"
	routeAPI          = "api"
)
