// Package api is the auditor's HTTP query API.
package api

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/switchyard/switchyard/services/auditor/internal/store"
)

// New returns the API handler over st.
func New(st store.Store) *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	h := &handlers{store: st}
	e.GET("/healthz", func(c echo.Context) error { return c.String(http.StatusOK, "ok\n") })
	e.GET("/v1/events/:id", h.getEvent)
	e.GET("/v1/rejections", h.listRejections)
	return e
}

type handlers struct {
	store store.Store
}

// EventJSON is the body of GET /v1/events/{id}.
type EventJSON struct {
	ID          string     `json:"id"`
	Subject     string     `json:"subject,omitempty"`
	Source      string     `json:"source,omitempty"`
	Type        string     `json:"type,omitempty"`
	StreamSeq   uint64     `json:"stream_seq,omitempty"`
	ReceivedAt  *time.Time `json:"received_at,omitempty"`
	ContentType string     `json:"content_type,omitempty"`
	PayloadSize int        `json:"payload_size"`
	// Payload is the body as text when it is valid UTF-8; otherwise
	// PayloadBase64 holds it.
	Payload       *string            `json:"payload,omitempty"`
	PayloadBase64 []byte             `json:"payload_base64,omitempty"`
	Headers       map[string]string  `json:"headers,omitempty"`
	Attempts      []AttemptJSON      `json:"attempts"`
	DeadLetters   []store.DeadLetter `json:"dead_letters"`
}

// AttemptJSON is one attempt in the API.
type AttemptJSON struct {
	store.Attempt
	DurationMS float64 `json:"duration_ms"`
}

func (h *handlers) getEvent(c echo.Context) error {
	id := c.Param("id")
	// Echo routes on the raw path when the request's escaping differs from
	// the default ("shop%3Amsg_1", "a%2Fb") and then leaves the parameter
	// escaped; event ids are free text, so decode it here.
	if c.Request().URL.RawPath != "" {
		if u, err := url.PathUnescape(id); err == nil {
			id = u
		}
	}
	d, err := h.store.GetEvent(c.Request().Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		return c.JSON(http.StatusNotFound, map[string]string{"error": "not_found", "message": "no event with id " + strconv.Quote(id)})
	}
	if err != nil {
		return err
	}
	out := EventJSON{ID: id, Attempts: []AttemptJSON{}, DeadLetters: d.DeadLetters}
	if out.DeadLetters == nil {
		out.DeadLetters = []store.DeadLetter{}
	}
	if e := d.Event; e != nil {
		out.Subject, out.Source, out.Type, out.StreamSeq = e.Subject, e.Source, e.Type, e.StreamSeq
		out.ReceivedAt, out.ContentType, out.PayloadSize, out.Headers = &e.ReceivedAt, e.ContentType, len(e.Payload), e.Headers
		if utf8.Valid(e.Payload) {
			s := string(e.Payload)
			out.Payload = &s
		} else {
			out.PayloadBase64 = e.Payload
		}
	}
	for _, a := range d.Attempts {
		out.Attempts = append(out.Attempts, AttemptJSON{Attempt: a, DurationMS: float64(a.Duration.Microseconds()) / 1000})
	}
	return c.JSON(http.StatusOK, out)
}

func (h *handlers) listRejections(c echo.Context) error {
	limit := 100
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return c.JSON(http.StatusBadRequest, map[string]string{"error": "bad_limit", "message": "limit must be 1-1000"})
		}
		limit = n
	}
	rs, err := h.store.ListRejections(c.Request().Context(), limit)
	if err != nil {
		return err
	}
	if rs == nil {
		rs = []store.Rejection{}
	}
	return c.JSON(http.StatusOK, map[string]any{"rejections": rs})
}
