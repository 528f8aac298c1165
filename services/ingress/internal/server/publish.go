package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/contracts"
	"github.com/switchyard/switchyard/pkg/events"
	"github.com/switchyard/switchyard/pkg/signing"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
)

// The publish API: our own services POST events to /v1/events with a
// bearer API key.
//
//   - JSON form: Content-Type application/json, body
//     {"type": "order.created", "data": <any JSON>, "content_type": "..."}.
//     data is stored as the JSON text it is in the request; with a
//     content_type that is not JSON, data is a JSON string whose text is
//     stored.
//   - Raw form: POST /v1/events?type=order.created with any body, stored
//     byte for byte with the request's Content-Type.
//
// Both take the event id from the Idempotency-Key header: the event id is
// <key name>:<Idempotency-Key>, so the same key twice from one caller is
// one event, and callers (and webhook sources, whose ids are
// <source>:<delivery id>) cannot collide. POST /v1/events/batch takes
// {"events": [{"idempotency_key": "...", "type": ..., "data": ...}, ...]}
// and answers one result per event.

// HeaderIdempotencyKey carries the caller's part of the publish API's
// event id.
const HeaderIdempotencyKey = "Idempotency-Key"

// MaxIdempotencyKeyLength bounds an Idempotency-Key: with the longest key
// name (63 bytes) and the ':', the event id stays within
// events.MaxIDLength.
const MaxIdempotencyKeyLength = events.MaxIDLength - 64

// apiEventID is the id of the event an API key's caller publishes under
// idem. The key's name is the namespace, as the source is for webhooks.
func apiEventID(keyName, idem string) string { return keyName + ":" + idem }

// checkIdempotencyKey refuses a key that cannot be (part of) an event id,
// with a message saying how to fix it; field names it for the caller.
func checkIdempotencyKey(field, idem string) *rejection {
	switch {
	case idem == "":
		return invalid("missing_idempotency_key",
			field+" is required: a stable key for this event (the same key twice is stored once)")
	case len(idem) > MaxIdempotencyKeyLength:
		return invalid("invalid_idempotency_key", fmt.Sprintf("%s is %d bytes; at most %d", field, len(idem), MaxIdempotencyKeyLength))
	case !utf8.ValidString(idem):
		return invalid("invalid_idempotency_key", field+" is not valid UTF-8; use printable text, e.g. order-1001-created")
	case strings.TrimSpace(idem) == "" || strings.ContainsFunc(idem, unicode.IsControl):
		return invalid("invalid_idempotency_key", field+" must be printable text without control characters, e.g. order-1001-created")
	}
	return nil
}

// apiKeys authenticates publish API callers. The keys are held as SHA-256
// digests and compared in constant time, all of them every time.
type apiKeys struct {
	names   []string
	digests [][sha256.Size]byte
}

func newAPIKeys(keys []config.IngressAPIKey) *apiKeys {
	k := &apiKeys{}
	for _, key := range keys {
		k.names = append(k.names, key.Name)
		k.digests = append(k.digests, sha256.Sum256([]byte(key.Key.Reveal())))
	}
	return k
}

// authenticate returns the name of the caller's key.
func (k *apiKeys) authenticate(authorization string) (string, *rejection) {
	unauthorized := func(code, msg string) *rejection {
		return &rejection{status: http.StatusUnauthorized, reason: switchyardv1.RejectReason_REJECT_REASON_UNAUTHORIZED, code: code, msg: msg}
	}
	if authorization == "" {
		return "", unauthorized("missing_credentials", "need an Authorization: Bearer <API key> header")
	}
	token, err := signing.ParseAuthorization("Bearer", authorization)
	if err != nil {
		return "", unauthorized("missing_credentials", err.Error())
	}
	got := sha256.Sum256([]byte(token))
	found := -1
	for i := range k.digests {
		if subtle.ConstantTimeCompare(got[:], k.digests[i][:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return "", unauthorized("bad_credentials", "the API key is not one of ingress.api_keys")
	}
	return k.names[found], nil
}

// envelope is the JSON form of one event.
type envelope struct {
	Type        string          `json:"type"`
	Data        json.RawMessage `json:"data"`
	ContentType string          `json:"content_type"`
}

// batchItem is one event of a batch.
type batchItem struct {
	IdempotencyKey string          `json:"idempotency_key"`
	Type           string          `json:"type"`
	Data           json.RawMessage `json:"data"`
	ContentType    string          `json:"content_type"`
}

// itemResult is the outcome of one event of a batch.
type itemResult struct {
	IdempotencyKey string `json:"idempotency_key"`
	// ID is the stored event's id, <key name>:<idempotency_key>.
	ID string `json:"id,omitempty"`
	// Status is accepted, duplicate, quarantined (stored in QUARANTINE:
	// it broke the key's contract), rejected (fix it) or unavailable
	// (retry it).
	Status  string `json:"status"`
	Error   string `json:"error,omitempty"`
	Message string `json:"message,omitempty"`
}

type batchReply struct {
	Results []itemResult `json:"results"`
}

// Statuses of batch results besides accepted and duplicate.
const (
	statusRejected    = "rejected"
	statusUnavailable = "unavailable"
)

func invalid(code, msg string) *rejection {
	return &rejection{status: http.StatusBadRequest, reason: switchyardv1.RejectReason_REJECT_REASON_MALFORMED, code: code, msg: msg}
}

func (s *Server) handlePublish(c echo.Context) error {
	req := c.Request()
	key, rj := s.keys.authenticate(req.Header.Get(echo.HeaderAuthorization))
	if rj != nil {
		s.metrics.published.WithLabelValues(unauthenticatedKey, statusRejected).Inc()
		return s.rejectAs(c, s.apiGate, apiSource, "", "", req.ContentLength, rj)
	}
	fail := func(id string, size int64, rj *rejection) error {
		outcome := statusRejected
		if rj.status == http.StatusServiceUnavailable {
			outcome = statusUnavailable
		}
		s.metrics.published.WithLabelValues(key, outcome).Inc()
		return s.rejectAs(c, s.apiGate, apiSource, key, id, size, rj)
	}
	idem := req.Header.Get(HeaderIdempotencyKey)
	var id string
	if idem != "" {
		// Also for a refusal: the id the event would have had.
		id = apiEventID(key, idem)
	}
	body, rj := s.readAPIBody(c)
	if rj != nil {
		return fail(id, req.ContentLength, rj)
	}
	if rj := checkIdempotencyKey("the Idempotency-Key header", idem); rj != nil {
		return fail(id, int64(len(body)), rj)
	}
	var e events.Event
	if q := c.QueryParams(); q.Has("type") {
		e = events.Event{ID: id, Type: q.Get("type"), Data: body, ContentType: req.Header.Get(echo.HeaderContentType)}
		if e.ContentType == "" {
			e.ContentType = "application/octet-stream"
		}
	} else {
		var env envelope
		if err := decodeStrict(body, &env); err != nil {
			return fail(id, int64(len(body)), invalid("malformed_body",
				"the body must be a JSON object {type, data, content_type}, or use ?type= to send a raw body: "+err.Error()))
		}
		var err error
		if e, err = env.event(id); err != nil {
			return fail(id, int64(len(body)), invalid("invalid_event", err.Error()))
		}
	}
	if vs := s.checkContract(contracts.APIKey(key), e.ID, e.Type, e.ContentType, e.Data); len(vs) > 0 {
		return s.publishInvalid(c, key, e, vs)
	}
	sp, rj := s.startSync(req, &e)
	if rj != nil {
		return fail(id, int64(len(body)), rj)
	}
	if sp != nil {
		defer sp.wait.Stop()
	}
	res, rj := s.publishEvent(req.Context(), key, e)
	if rj != nil {
		return fail(id, int64(len(body)), rj)
	}
	if res.duplicate() {
		// Stored, and its attempts made, before: nothing to wait for.
		s.metrics.published.WithLabelValues(key, statusDuplicate).Inc()
		s.auditAPIDuplicate(c, key, id, res)
		return writeReply(c, http.StatusOK, id, statusDuplicate)
	}
	s.metrics.published.WithLabelValues(key, statusAccepted).Inc()
	if sp != nil {
		return s.answerSync(c, key, id, sp)
	}
	return writeReply(c, http.StatusAccepted, id, statusAccepted)
}

// batchConcurrency bounds the events of one batch being stored at once.
const batchConcurrency = 32

func (s *Server) handlePublishBatch(c echo.Context) error {
	req := c.Request()
	key, rj := s.keys.authenticate(req.Header.Get(echo.HeaderAuthorization))
	if rj != nil {
		s.metrics.published.WithLabelValues(unauthenticatedKey, statusRejected).Inc()
		return s.rejectAs(c, s.apiGate, apiSource, "", "", req.ContentLength, rj)
	}
	body, rj := s.readAPIBody(c)
	if rj != nil {
		return s.rejectAs(c, s.apiGate, apiSource, key, "", req.ContentLength, rj)
	}
	var batch struct {
		Events []json.RawMessage `json:"events"`
	}
	if err := decodeStrict(body, &batch); err != nil {
		return s.rejectAs(c, s.apiGate, apiSource, key, "", int64(len(body)), invalid("malformed_body",
			`the body must be {"events": [{"idempotency_key": ..., "type": ..., "data": ...}, ...]}: `+err.Error()))
	}
	switch n := len(batch.Events); {
	case n == 0:
		return s.rejectAs(c, s.apiGate, apiSource, key, "", int64(len(body)), invalid("empty_batch", "the batch has no events"))
	case n > s.cfg.MaxBatch:
		return s.rejectAs(c, s.apiGate, apiSource, key, "", int64(len(body)), invalid("batch_too_large",
			fmt.Sprintf("the batch has %d events; at most %d (ingress.max_batch)", n, s.cfg.MaxBatch)))
	}

	results := make([]itemResult, len(batch.Events))
	sem := make(chan struct{}, batchConcurrency)
	var wg sync.WaitGroup
	for i, raw := range batch.Events {
		var item batchItem
		err := decodeStrict(raw, &item)
		results[i].IdempotencyKey = item.IdempotencyKey
		var e events.Event
		var bad *rejection
		switch {
		case err != nil:
			bad = invalid("malformed_event", "each event is {idempotency_key, type, data, content_type}: "+err.Error())
		default:
			if bad = checkIdempotencyKey("idempotency_key", item.IdempotencyKey); bad != nil {
				break
			}
			e, err = envelope{Type: item.Type, Data: item.Data, ContentType: item.ContentType}.event(apiEventID(key, item.IdempotencyKey))
			if err != nil {
				bad = invalid("invalid_event", err.Error())
			}
		}
		if bad != nil {
			s.batchFailed(c, key, &results[i], len(raw), bad)
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			r := &results[i]
			if vs := s.checkContract(contracts.APIKey(key), e.ID, e.Type, e.ContentType, e.Data); len(vs) > 0 {
				s.batchInvalid(c, key, r, e, vs)
				return
			}
			res, rj := s.publishEvent(req.Context(), key, e)
			switch {
			case rj != nil:
				s.batchFailed(c, key, r, len(e.Data), rj)
			case res.duplicate():
				r.ID, r.Status = e.ID, statusDuplicate
				s.metrics.published.WithLabelValues(key, statusDuplicate).Inc()
				s.auditAPIDuplicate(c, key, e.ID, res)
			default:
				r.ID, r.Status = e.ID, statusAccepted
				s.metrics.published.WithLabelValues(key, statusAccepted).Inc()
			}
		})
	}
	wg.Wait()

	code, stored, unavailable := http.StatusOK, 0, 0
	for _, r := range results {
		switch r.Status {
		case statusAccepted, statusDuplicate, statusQuarantined:
			stored++
		case statusUnavailable:
			unavailable++
		}
	}
	switch {
	case stored == len(results):
	case stored == 0 && unavailable == len(results):
		code = http.StatusServiceUnavailable
		c.Response().Header().Set("Retry-After", retryAfterSeconds(s.cfg.RetryAfter))
	default:
		code = http.StatusMultiStatus
	}
	return c.JSON(code, batchReply{Results: results})
}

// batchFailed fills a failed result, counts and audits it.
func (s *Server) batchFailed(c echo.Context, key string, r *itemResult, size int, rj *rejection) {
	r.Status, r.Error, r.Message = statusRejected, rj.code, rj.msg
	if rj.status == http.StatusServiceUnavailable {
		r.Status = statusUnavailable
	}
	s.metrics.published.WithLabelValues(key, r.Status).Inc()
	var id string
	if r.IdempotencyKey != "" {
		id = apiEventID(key, r.IdempotencyKey)
	}
	_ = s.rejectAs(c, s.apiGate, apiSource, key, id, int64(size), rj)
}

// publishInvalid answers a publish whose payload broke its key's
// contract: 422 naming the violations (on_invalid: reject), or 202
// quarantined once QUARANTINE has it.
func (s *Server) publishInvalid(c echo.Context, key string, e events.Event, vs []contracts.Violation) error {
	owner := contracts.APIKey(key)
	m, err := e.Msg(time.Now())
	if err != nil {
		s.metrics.published.WithLabelValues(key, statusRejected).Inc()
		return s.rejectAs(c, s.apiGate, apiSource, key, e.ID, int64(len(e.Data)), invalid("invalid_event", err.Error()))
	}
	m.Header.Set(events.HeaderPublisher, key)
	if s.cfg.Contracts.Rejects(owner) {
		s.metrics.published.WithLabelValues(key, statusRejected).Inc()
		s.auditInvalid(owner, e.ID, e.Type, m.Subject, c.RealIP(), vs, true, 0, len(e.Data))
		return writeInvalid(c, e.ID, vs)
	}
	res, err := s.quarantine(c.Request().Context(), owner, e.ID, m, vs)
	if err != nil {
		s.metrics.published.WithLabelValues(key, statusUnavailable).Inc()
		return s.rejectAs(c, s.apiGate, apiSource, key, e.ID, int64(len(e.Data)), s.unavailable())
	}
	if res.duplicate() {
		s.metrics.published.WithLabelValues(key, statusDuplicate).Inc()
		s.auditAPIDuplicate(c, key, e.ID, res)
		return writeReply(c, http.StatusOK, e.ID, statusDuplicate)
	}
	s.metrics.published.WithLabelValues(key, statusQuarantined).Inc()
	s.auditInvalid(owner, e.ID, e.Type, m.Subject, c.RealIP(), vs, false, res.seq, len(e.Data))
	return writeReply(c, http.StatusAccepted, e.ID, statusQuarantined)
}

// batchInvalid is publishInvalid for one event of a batch.
func (s *Server) batchInvalid(c echo.Context, key string, r *itemResult, e events.Event, vs []contracts.Violation) {
	owner := contracts.APIKey(key)
	m, err := e.Msg(time.Now())
	if err != nil {
		s.batchFailed(c, key, r, len(e.Data), invalid("invalid_event", err.Error()))
		return
	}
	m.Header.Set(events.HeaderPublisher, key)
	if s.cfg.Contracts.Rejects(owner) {
		r.Status, r.Error, r.Message = statusRejected, codeContractViolation, violationsText(vs)
		s.metrics.published.WithLabelValues(key, statusRejected).Inc()
		s.auditInvalid(owner, e.ID, e.Type, m.Subject, c.RealIP(), vs, true, 0, len(e.Data))
		return
	}
	res, err := s.quarantine(c.Request().Context(), owner, e.ID, m, vs)
	switch {
	case err != nil:
		s.batchFailed(c, key, r, len(e.Data), s.unavailable())
	case res.duplicate():
		r.ID, r.Status = e.ID, statusDuplicate
		s.metrics.published.WithLabelValues(key, statusDuplicate).Inc()
		s.auditAPIDuplicate(c, key, e.ID, res)
	default:
		r.ID, r.Status = e.ID, statusQuarantined
		s.metrics.published.WithLabelValues(key, statusQuarantined).Inc()
		s.auditInvalid(owner, e.ID, e.Type, m.Subject, c.RealIP(), vs, false, res.seq, len(e.Data))
	}
}

// publishEvent stores one event of the publish API.
func (s *Server) publishEvent(ctx context.Context, key string, e events.Event) (stored, *rejection) {
	m, err := e.Msg(time.Now())
	if err != nil {
		return stored{}, invalid("invalid_event", err.Error())
	}
	m.Header.Set(events.HeaderPublisher, key)
	res, err := s.store(ctx, e.ID, m)
	if err != nil {
		return stored{}, s.unavailable()
	}
	return res, nil
}

func (s *Server) auditAPIDuplicate(c echo.Context, key, id string, res stored) {
	s.emit(&switchyardv1.AuditRecord{Detail: &switchyardv1.AuditRecord_WebhookDuplicate{
		WebhookDuplicate: &switchyardv1.WebhookDuplicate{
			Source: apiSource, EventId: id, RemoteAddr: c.RealIP(), Subject: res.subject, Via: res.via, ApiKey: key,
		},
	}})
}

// readAPIBody reads a publish API body within ingress.max_body.
func (s *Server) readAPIBody(c echo.Context) ([]byte, *rejection) {
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), c.Request().Body, s.cfg.MaxBody))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return nil, &rejection{status: http.StatusRequestEntityTooLarge, reason: switchyardv1.RejectReason_REJECT_REASON_BODY_TOO_LARGE,
			code: "body_too_large", msg: fmt.Sprintf("the body is larger than ingress.max_body (%d bytes)", s.cfg.MaxBody)}
	case errors.Is(err, errOverBudget):
		s.metrics.overloaded.WithLabelValues(routeAPI).Inc()
		closeUnread(c)
		return nil, s.overloaded()
	case err != nil:
		return nil, invalid("unreadable_body", "the request body could not be read completely")
	}
	return body, nil
}

// event builds the event an envelope describes.
func (env envelope) event(id string) (events.Event, error) {
	e := events.Event{ID: id, Type: env.Type, ContentType: env.ContentType}
	if env.Type == "" {
		return e, errors.New(`"type" is required, e.g. "order.created"`)
	}
	switch {
	case len(env.Data) == 0:
	case env.ContentType == "" || isJSONMediaType(env.ContentType):
		e.Data = env.Data
	default:
		var text string
		if err := json.Unmarshal(env.Data, &text); err != nil {
			return e, fmt.Errorf(`with content_type %q (not JSON), "data" must be a JSON string holding the payload`, env.ContentType)
		}
		e.Data = []byte(text)
	}
	return e, nil
}

func isJSONMediaType(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
}

// decodeStrict decodes one JSON value, refusing unknown fields (a typo
// would otherwise be silently dropped) and trailing data.
func decodeStrict(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	// Not d.More(), which is false before a stray '}' or ']': only the
	// end of the body may follow.
	if _, err := d.Token(); !errors.Is(err, io.EOF) {
		return errors.New("unexpected data after the JSON value")
	}
	return nil
}
