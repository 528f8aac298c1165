// Package api is the auditor's HTTP API: queries over the audit log (JSON,
// cursor pagination, filters) and dead-letter replay. Every /v1 route
// requires the admin bearer token when one is configured.
package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard/switchyard/pkg/adminguard"
	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/telemetry"
	"github.com/switchyard/switchyard/pkg/topology"
	"github.com/switchyard/switchyard/services/auditor/auditapi"
	"github.com/switchyard/switchyard/services/auditor/internal/store"
)

// Config is what the API needs.
type Config struct {
	// Store is the audit log. Required.
	Store store.Store
	// JS publishes replays and reads consumer backlogs; nil disables both.
	JS jetstream.JetStream
	// Audit records replays; nil records them in the store only.
	Audit *auditlog.Emitter
	// AdminToken, when set, is required as a bearer token on /v1.
	AdminToken string
	// Destinations are the configured destination names (listed by
	// /v1/destinations even before anything was delivered to them).
	Destinations []string
	// Topology declares the silences bucket the API opens, and gives
	// EVENTS' Nats-Msg-Id window: a replay asked for twice within it is
	// sent once. Zero fields take the configuration's defaults.
	Topology topology.Topology
	// BulkReplayBudget bounds the time one bulk replay request spends
	// replaying, so that its answer goes out within the HTTP server's write
	// timeout (30s); what is left is answered as incomplete, for the client
	// to ask again. Default 20s.
	BulkReplayBudget time.Duration
	// Logger is required.
	Logger *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Tracing makes each replay a new trace linked to the dead letter's;
	// nil is off.
	Tracing *telemetry.Tracing
}

// New returns the API handler.
func New(cfg Config) *echo.Echo { return NewOps(cfg).Handler() }

// Ops is what the API does, as Go calls: replaying dead letters, the
// destinations' health, silences. The console (internal/ui) calls them, so
// that each is one implementation behind both, with the same checks,
// audit records and messages (see Explain).
type Ops struct {
	h *handlers
}

// NewOps prepares the API's operations over cfg.
func NewOps(cfg Config) *Ops {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.Topology = cfg.Topology.Resolved()
	if cfg.BulkReplayBudget == 0 {
		cfg.BulkReplayBudget = DefaultBulkReplayBudget
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Ops{h: &handlers{cfg: cfg, store: cfg.Store, replay: &replayer{cfg: cfg},
		silences: &silenceHandlers{js: cfg.JS, log: cfg.Logger, topo: cfg.Topology}}}
}

// Handler returns the JSON API over these operations.
func (o *Ops) Handler() *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = errorHandler(o.h.cfg.Logger)
	e.GET("/healthz", func(c echo.Context) error { return c.String(http.StatusOK, "ok\n") })
	v1 := e.Group("/v1", loopbackGuard(o.h.cfg.AdminToken), bearer(o.h.cfg.AdminToken), changeGuard, middleware.BodyLimit(MaxBodySize))
	o.h.routes(v1)
	return e
}

// ReplayDeadLetter sends dead letter id again (POST
// /v1/dead-letters/{id}/replay): key names the request (the same key
// replays once; empty: a repeat within the duplicate window is the same
// replay), requestedBy goes into the audit record.
func (o *Ops) ReplayDeadLetter(ctx context.Context, id, key, requestedBy string) (auditapi.ReplayResult, error) {
	return o.h.replayDeadLetter(ctx, id, key, requestedBy)
}

// BulkReplay replays the current dead letter of every delivery req matches
// (POST /v1/dead-letters/replay); with req.DryRun it only counts them.
func (o *Ops) BulkReplay(ctx context.Context, req auditapi.BulkReplayRequest, key, requestedBy string) (auditapi.BulkReplayResult, error) {
	return o.h.bulkReplay(ctx, req, key, requestedBy)
}

// Destinations is every destination's health over window (GET
// /v1/destinations): backlog, success rate, p95 latency, breaker, last
// error, dead-lettered deliveries.
func (o *Ops) Destinations(ctx context.Context, window time.Duration) ([]auditapi.DestinationStatus, error) {
	return o.h.destinations(ctx, config.Duration(window))
}

// Silences lists the silences (GET /v1/silences).
func (o *Ops) Silences(ctx context.Context) ([]auditapi.Silence, error) {
	return o.h.silences.listSilences(ctx)
}

// CreateSilence stores a new silence (POST /v1/silences).
func (o *Ops) CreateSilence(ctx context.Context, in auditapi.NewSilence) (auditapi.Silence, error) {
	return o.h.silences.createSilence(ctx, in)
}

// ExpireSilence ends silence id now (DELETE /v1/silences/{id}).
func (o *Ops) ExpireSilence(ctx context.Context, id, by string) (auditapi.Silence, error) {
	return o.h.silences.expireSilence(ctx, id, by)
}

// MaxBodySize bounds a request body (a replay or silence request is a small
// JSON object); a larger one is answered 413 without being read.
const MaxBodySize = "256K"

// DefaultBulkReplayBudget is Config.BulkReplayBudget's default.
const DefaultBulkReplayBudget = 20 * time.Second

// routes is the one place where /v1 endpoints are registered: add new ones
// here (each in its own file, as a method of handlers).
func (h *handlers) routes(g *echo.Group) {
	g.GET("/events", h.listEvents)
	g.GET("/events/:id", h.getEvent)
	g.GET("/deliveries", h.listDeliveries)
	g.GET("/dead-letters", h.listDeadLetters)
	g.GET("/dead-letters/:id", h.getDeadLetter)
	g.POST("/dead-letters/:id/replay", h.replayOne)
	g.POST("/dead-letters/replay", h.replayBulk)
	g.GET("/rejections", h.listRejections)
	g.GET("/alerts", h.listAlerts)
	g.GET("/records", h.listRecords)
	g.GET("/destinations", h.listDestinations)
	g.GET("/parked", h.listParked)
	silenceRoutes(g, h.silences)
}

type handlers struct {
	cfg      Config
	store    store.Store
	replay   *replayer
	silences *silenceHandlers
}

// bearer requires "Authorization: Bearer <token>" when token is set. The
// comparison hashes both sides first, so it takes the same time whatever
// the length of the guess.
func bearer(token string) echo.MiddlewareFunc {
	want := sha256.Sum256([]byte(token))
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		if token == "" {
			return next
		}
		return func(c echo.Context) error {
			got, ok := strings.CutPrefix(c.Request().Header.Get(echo.HeaderAuthorization), "Bearer ")
			sum := sha256.Sum256([]byte(strings.TrimSpace(got)))
			if !ok || subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
				c.Response().Header().Set("WWW-Authenticate", `Bearer realm="switchyard-audit"`)
				return apiError(http.StatusUnauthorized, auditapi.CodeUnauthorized, "this API needs Authorization: Bearer <auditor.admin_token>")
			}
			return next(c)
		}
	}
}

// loopbackGuard refuses, when the API has no token, a client elsewhere or
// a request addressed to a Host that is not a loopback name: DNS
// rebinding would otherwise let a web page reach 127.0.0.1 under its own
// name, as the same origin, and read payloads or start replays
// (pkg/adminguard).
func loopbackGuard(token string) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		if token != "" {
			return next
		}
		return func(c echo.Context) error {
			r := c.Request()
			switch err := adminguard.Loopback(r); {
			case errors.Is(err, adminguard.ErrRemoteClient):
				return apiError(http.StatusForbidden, auditapi.CodeForbidden,
					"without auditor.admin_token this API answers clients on this machine only: set auditor.admin_token to use it from elsewhere")
			case err != nil:
				return apiError(http.StatusForbidden, auditapi.CodeForbidden, fmt.Sprintf(
					"without auditor.admin_token this API answers only when addressed as 127.0.0.1, [::1] or localhost, not %q (another name could be a DNS rebinding attack)",
					adminguard.HostName(r.Host)))
			}
			return next(c)
		}
	}
}

// changeGuard refuses a state-changing request that another site sent
// (Origin, Sec-Fetch-Site), or that carries neither a JSON content type
// nor a Switchyard-Requested-By header: what a form or a no-cors fetch
// from any web page can make a browser send (pkg/adminguard).
func changeGuard(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if !adminguard.ChangesState(r.Method) {
			return next(c)
		}
		if err := adminguard.SameOrigin(r); err != nil {
			return apiError(http.StatusForbidden, auditapi.CodeForbidden, err.Error()+": this API is for programs; use the console (/ui/) from a browser")
		}
		if err := adminguard.Deliberate(r, HeaderRequestedBy); err != nil {
			return apiError(http.StatusUnsupportedMediaType, auditapi.CodeNotDeliberate,
				"send Content-Type: application/json or a Switchyard-Requested-By header naming yourself: a request without either is what any web page can make a browser send")
		}
		return next(c)
	}
}

// apiErr is an error with its HTTP answer.
type apiErr struct {
	status int
	body   auditapi.Error
	// cause is a sentinel the error also is, if any.
	cause error
}

func (e *apiErr) Error() string { return e.body.Message }

func (e *apiErr) Unwrap() error { return e.cause }

func apiError(status int, code, msg string) error {
	return &apiErr{status: status, body: auditapi.Error{Code: code, Message: msg}}
}

func badRequest(msg string) error {
	return apiError(http.StatusBadRequest, auditapi.CodeBadRequest, msg)
}

// bindJSON decodes the request body into v: 413 when it is over
// MaxBodySize (a body without Content-Length is cut off while read), 400
// when it is not the JSON object expected.
func bindJSON(c echo.Context, v any) error {
	err := c.Bind(v)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, echo.ErrStatusRequestEntityTooLarge):
		return errBodyTooLarge
	}
	return badRequest("the body must be a JSON object: " + err.Error())
}

// errBodyTooLarge answers a body over MaxBodySize.
var errBodyTooLarge = apiError(http.StatusRequestEntityTooLarge, auditapi.CodeBodyTooLarge, "the request body is over "+MaxBodySize+"B")

// Problem is an error as the API answers it.
type Problem struct {
	Status  int
	Code    string
	Message string
	// Unexpected is true for an error the API has no answer for (a bug, a
	// store error it does not know): Message then only says to look in the
	// log, and the caller logs the error.
	Unexpected bool
}

// Explain says what an error of the API, or of Ops, means to the person
// who asked: its status, code and message, store errors translated. The
// console shows the same messages as the JSON API.
func Explain(err error) Problem {
	var ae *apiErr
	var he *echo.HTTPError
	switch {
	case errors.As(err, &ae):
	case errors.Is(err, echo.ErrStatusRequestEntityTooLarge):
		errors.As(errBodyTooLarge, &ae)
	case errors.Is(err, store.ErrBadCursor):
		ae = &apiErr{status: http.StatusBadRequest, body: auditapi.Error{Code: auditapi.CodeBadCursor, Message: err.Error()}}
	case errors.Is(err, store.ErrBadFilter):
		ae = &apiErr{status: http.StatusBadRequest, body: auditapi.Error{Code: auditapi.CodeBadRequest, Message: err.Error()}}
	case errors.Is(err, store.ErrNotFound):
		ae = &apiErr{status: http.StatusNotFound, body: auditapi.Error{Code: auditapi.CodeNotFound, Message: err.Error()}}
	case errors.Is(err, store.ErrNotReady):
		ae = &apiErr{status: http.StatusServiceUnavailable, body: auditapi.Error{Code: auditapi.CodeStoreNotReady,
			Message: "the auditor has not opened its audit store yet and keeps trying; records wait in NATS meanwhile: " + err.Error()}}
	case errors.Is(err, store.ErrUnavailable):
		ae = &apiErr{status: http.StatusServiceUnavailable, body: auditapi.Error{Code: auditapi.CodeUnavailable, Message: "the audit store is unavailable; try again shortly"}}
	case errors.As(err, &he):
		ae = &apiErr{status: he.Code, body: auditapi.Error{Code: auditapi.CodeForStatus(he.Code), Message: http.StatusText(he.Code)}}
	default:
		return Problem{Status: http.StatusInternalServerError, Code: auditapi.CodeInternal, Message: "internal error; see the auditor's log", Unexpected: true}
	}
	return Problem{Status: ae.status, Code: ae.body.Code, Message: ae.body.Message}
}

// errorHandler answers every error as JSON: ours with their status, store
// errors translated, the rest as 500 with the detail only in the log.
func errorHandler(log *slog.Logger) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		p := Explain(err)
		switch {
		case p.Unexpected:
			log.ErrorContext(c.Request().Context(), "audit API failed", slog.String("path", c.Path()), slog.Any("error", err))
		case p.Code == auditapi.CodeStoreNotReady:
			c.Response().Header().Set("Retry-After", "5")
		case p.Code == auditapi.CodeUnavailable && errors.Is(err, store.ErrUnavailable):
			log.WarnContext(c.Request().Context(), "audit API: store unavailable", slog.String("path", c.Path()), slog.Any("error", err))
		}
		_ = c.JSON(p.Status, auditapi.Error{Code: p.Code, Message: p.Message})
	}
}

// param is a path parameter, unescaped. Echo routes on the raw path when
// the request's escaping differs from the default ("shop%3Amsg_1",
// "a%2Fb") and then leaves the parameter escaped; ids are free text.
func param(c echo.Context, name string) string {
	v := c.Param(name)
	if c.Request().URL.RawPath != "" {
		if u, err := url.PathUnescape(v); err == nil {
			return u
		}
	}
	return v
}

// query reads the list parameters common to every list.
type query struct {
	v    url.Values
	now  time.Time
	errs []string
}

func (q *query) str(name string) string { return strings.TrimSpace(q.v.Get(name)) }

// page reads limit and cursor.
func (q *query) page() store.Page {
	p := store.Page{Cursor: q.str("cursor")}
	if v := q.str("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > store.MaxLimit {
			q.errs = append(q.errs, "limit must be 1-"+strconv.Itoa(store.MaxLimit))
		}
		p.Limit = n
	}
	return p
}

// times reads since and until: RFC 3339 times, or durations back from now
// ("1h", "7d").
func (q *query) times() store.TimeRange {
	var r store.TimeRange
	r.Since = q.time("since")
	r.Until = q.time("until")
	if !r.Since.IsZero() && !r.Until.IsZero() && !r.Since.Before(r.Until) {
		q.errs = append(q.errs, "since must be before until")
	}
	return r
}

func (q *query) time(name string) time.Time {
	v := q.str(name)
	if v == "" {
		return time.Time{}
	}
	return parseTime(v, q.now, func(msg string) { q.errs = append(q.errs, name+" "+msg) })
}

// parseTime reads an RFC 3339 time or a duration back from now.
func parseTime(v string, now time.Time, bad func(string)) time.Time {
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t
	}
	if d, err := config.ParseDuration(v); err == nil {
		return now.Add(-d.D())
	}
	bad("must be an RFC 3339 time (2026-03-01T12:00:00Z) or a duration back from now (90m, 24h, 7d)")
	return time.Time{}
}

func (q *query) status() string {
	s := q.str("status")
	if s != "" && !contains(auditapi.Statuses, s) {
		q.errs = append(q.errs, "status must be one of "+strings.Join(auditapi.Statuses, ", "))
	}
	return s
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// done returns the collected problems as one 400.
func (q *query) done() error {
	if len(q.errs) == 0 {
		return nil
	}
	return badRequest(strings.Join(q.errs, "; "))
}

func (h *handlers) newQuery(c echo.Context) *query {
	return &query{v: c.QueryParams(), now: h.cfg.Now()}
}

// ParseEventQuery reads the filters and the page of GET /v1/events from v,
// with the API's checks and messages (a 400 error naming every bad
// parameter): the console's search form sends the same parameters.
func ParseEventQuery(v url.Values, now time.Time) (store.EventFilter, store.Page, error) {
	q := &query{v: v, now: now}
	f, p := q.eventFilter(), q.page()
	return f, p, q.done()
}

// ParseTimeRange reads since and until as the lists do: RFC 3339 times or
// durations back from now, since before until.
func ParseTimeRange(since, until string, now time.Time) (store.TimeRange, error) {
	q := &query{v: url.Values{"since": {since}, "until": {until}}, now: now}
	r := q.times()
	return r, q.done()
}

// ParseDeadLetterQuery is ParseEventQuery for GET /v1/dead-letters.
func ParseDeadLetterQuery(v url.Values, now time.Time) (store.DeadLetterFilter, store.Page, error) {
	q := &query{v: v, now: now}
	f, p := q.deadLetterFilter(), q.page()
	return f, p, q.done()
}

// ParseRejectionQuery is ParseEventQuery for GET /v1/rejections.
func ParseRejectionQuery(v url.Values, now time.Time) (store.RejectionFilter, store.Page, error) {
	q := &query{v: v, now: now}
	f, p := q.rejectionFilter(), q.page()
	return f, p, q.done()
}

// ParseRecordQuery is ParseEventQuery for GET /v1/records of one kind
// (key, since, until): the console's quarantine page reads the same
// parameters.
func ParseRecordQuery(v url.Values, now time.Time, kind string) (store.RecordFilter, store.Page, error) {
	q := &query{v: v, now: now}
	f, p := store.RecordFilter{TimeRange: q.times(), Kind: kind, Key: q.str("key")}, q.page()
	return f, p, q.done()
}

// serveList reads the page parameters, checks every parameter read so
// far, runs the list and answers the page.
func serveList[T any](c echo.Context, q *query, run func(ctx context.Context, p store.Page) ([]T, string, error)) error {
	p := q.page()
	if err := q.done(); err != nil {
		return err
	}
	items, next, err := run(c.Request().Context(), p)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, auditapi.List[T]{Items: nonNil(items), NextCursor: next})
}

func (q *query) eventFilter() store.EventFilter {
	return store.EventFilter{
		TimeRange: q.times(), ID: q.str("event_id"), IDContains: q.str("id_contains"), Source: q.str("source"), Type: q.str("type"),
		Subject: q.str("subject"), Destination: q.str("destination"), Status: q.status(), Q: q.str("q"),
	}
}

func (q *query) deadLetterFilter() store.DeadLetterFilter {
	return store.DeadLetterFilter{
		TimeRange: q.times(), EventID: q.str("event_id"), Destination: q.str("destination"), Reason: q.str("reason"), Q: q.str("q"),
	}
}

func (q *query) rejectionFilter() store.RejectionFilter {
	return store.RejectionFilter{TimeRange: q.times(), Source: q.str("source"), Reason: q.str("reason"), Q: q.str("q")}
}

func (h *handlers) listEvents(c echo.Context) error {
	q := h.newQuery(c)
	f := q.eventFilter()
	return serveList(c, q, func(ctx context.Context, p store.Page) ([]store.Event, string, error) {
		return h.store.ListEvents(ctx, f, p)
	})
}

func (h *handlers) getEvent(c echo.Context) error {
	id := param(c, "id")
	d, err := h.store.GetEvent(c.Request().Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		return apiError(http.StatusNotFound, auditapi.CodeNotFound, "no event with id "+strconv.Quote(id))
	}
	if err != nil {
		return err
	}
	out := auditapi.EventDetail{Event: auditapi.Event{ID: id}, Deliveries: d.Deliveries, Attempts: d.Attempts, DeadLetters: d.DeadLetters, Replays: d.Replays,
		Incarnations: d.Incarnations}
	if e := d.Event; e != nil {
		out.Event, out.Known = *e, true
		switch {
		case e.Payload == nil: // dropped by retention
		case utf8.Valid(e.Payload):
			s := string(e.Payload)
			out.PayloadText = &s
		default:
			out.PayloadBase64 = e.Payload
		}
	}
	out.Deliveries, out.Attempts, out.DeadLetters, out.Replays = nonNil(out.Deliveries), nonNil(out.Attempts), nonNil(out.DeadLetters), nonNil(out.Replays)
	return c.JSON(http.StatusOK, out)
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func (h *handlers) listDeliveries(c echo.Context) error {
	q := h.newQuery(c)
	f := store.DeliveryFilter{
		TimeRange: q.times(), EventID: q.str("event_id"), Destination: q.str("destination"), Status: q.status(),
		Source: q.str("source"), Type: q.str("type"), Q: q.str("q"),
	}
	return serveList(c, q, func(ctx context.Context, p store.Page) ([]store.Delivery, string, error) {
		return h.store.ListDeliveries(ctx, f, p)
	})
}

func (h *handlers) listDeadLetters(c echo.Context) error {
	q := h.newQuery(c)
	f := q.deadLetterFilter()
	return serveList(c, q, func(ctx context.Context, p store.Page) ([]store.DeadLetter, string, error) {
		return h.store.ListDeadLetters(ctx, f, p)
	})
}

func (h *handlers) getDeadLetter(c echo.Context) error {
	id := param(c, "id")
	dl, err := h.store.GetDeadLetter(c.Request().Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		return apiError(http.StatusNotFound, auditapi.CodeNotFound, "no dead letter with id "+strconv.Quote(id))
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, dl)
}

func (h *handlers) listRejections(c echo.Context) error {
	q := h.newQuery(c)
	f := q.rejectionFilter()
	return serveList(c, q, func(ctx context.Context, p store.Page) ([]store.Rejection, string, error) {
		return h.store.ListRejections(ctx, f, p)
	})
}

func (h *handlers) listAlerts(c echo.Context) error {
	q := h.newQuery(c)
	f := store.AlertFilter{TimeRange: q.times(), Rule: q.str("rule"), Destination: q.str("destination"),
		Source: q.str("source"), State: q.str("state"), Sender: q.str("sender")}
	if f.State != "" && f.State != auditapi.AlertFiring && f.State != auditapi.AlertResolved {
		q.errs = append(q.errs, "state must be firing or resolved")
	}
	if v := q.str("delivered"); v != "" {
		d, err := strconv.ParseBool(v)
		if err != nil {
			q.errs = append(q.errs, "delivered must be true or false")
		}
		f.Delivered = &d
	}
	return serveList(c, q, func(ctx context.Context, p store.Page) ([]store.Alert, string, error) {
		return h.store.ListAlerts(ctx, f, p)
	})
}

// ownList names the list of the kinds that have one, for a request that
// asks /v1/records for them.
var ownList = map[string]string{
	auditlog.KindRejected: "/v1/rejections", auditlog.KindAttempt: "/v1/events/{id} (attempts)",
	auditlog.KindDeadLetter: "/v1/dead-letters", auditlog.KindReplayed: "/v1/events/{id} (replays)",
	auditlog.KindCircuit: "/v1/destinations (breaker)",
}

func (h *handlers) listRecords(c echo.Context) error {
	q := h.newQuery(c)
	f := store.RecordFilter{TimeRange: q.times(), Kind: q.str("kind"), Key: q.str("key")}
	switch {
	case ownList[f.Kind] != "":
		q.errs = append(q.errs, fmt.Sprintf("%s records are listed by %s", f.Kind, ownList[f.Kind]))
	case !contains(store.RecordKinds, f.Kind):
		q.errs = append(q.errs, "kind must be one of "+strings.Join(store.RecordKinds, ", "))
	}
	return serveList(c, q, func(ctx context.Context, p store.Page) ([]store.Record, string, error) {
		return h.store.ListRecords(ctx, f, p)
	})
}

func (h *handlers) listParked(c echo.Context) error {
	q := h.newQuery(c)
	return serveList(c, q, h.store.ListParked)
}
