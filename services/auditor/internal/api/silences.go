package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/silences"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
)

// SilenceJSON is a silence in the admin API.
type SilenceJSON struct {
	ID string `json:"id"`
	// Matchers are name=value, name!=value, name=~regex or name!~regex
	// over the labels rule, destination, source and severity.
	Matchers  []string  `json:"matchers"`
	StartsAt  time.Time `json:"starts_at"`
	EndsAt    time.Time `json:"ends_at"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by,omitempty"`
	Comment   string    `json:"comment,omitempty"`
	ExpiredBy string    `json:"expired_by,omitempty"`
	// State is pending, active or expired.
	State string `json:"state"`
}

// NewSilence is the body of POST /v1/silences. Give ends_at or duration.
type NewSilence struct {
	Matchers []string `json:"matchers"`
	// StartsAt defaults to now.
	StartsAt *time.Time `json:"starts_at,omitempty"`
	EndsAt   *time.Time `json:"ends_at,omitempty"`
	// Duration from the start, e.g. "2h" or "1d".
	Duration  string `json:"duration,omitempty"`
	CreatedBy string `json:"created_by,omitempty"`
	Comment   string `json:"comment,omitempty"`
}

// silenceRoutes adds the silence endpoints to the admin API's /v1 group
// (so they sit behind its bearer token): GET /v1/silences, POST
// /v1/silences, GET /v1/silences/{id} and DELETE /v1/silences/{id} (expire
// now). Silences live in the notifier's silences KV bucket; every notifier
// replica watches it.
func silenceRoutes(g *echo.Group, js jetstream.JetStream) {
	h := &silenceHandlers{js: js}
	g.GET("/silences", h.list)
	g.POST("/silences", h.create)
	g.GET("/silences/:id", h.get)
	g.DELETE("/silences/:id", h.expire)
}

type silenceHandlers struct {
	js jetstream.JetStream
	mu sync.Mutex
	st *silences.Store
}

// store opens the bucket on first use, so that the API starts even while
// NATS is away.
func (h *silenceHandlers) store(ctx context.Context) (*silences.Store, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.st == nil {
		st, err := silences.Open(ctx, h.js)
		if err != nil {
			return nil, err
		}
		h.st = st
	}
	return h.st, nil
}

func silenceJSON(s *switchyardv1.Silence, now time.Time) SilenceJSON {
	out := SilenceJSON{
		ID: s.GetId(), StartsAt: s.GetStartsAt().AsTime(), EndsAt: s.GetEndsAt().AsTime(), CreatedAt: s.GetCreatedAt().AsTime(),
		CreatedBy: s.GetCreatedBy(), Comment: s.GetComment(), ExpiredBy: s.GetExpiredBy(), State: silences.State(s, now),
		Matchers: []string{},
	}
	for _, m := range s.GetMatchers() {
		out.Matchers = append(out.Matchers, silences.FormatMatcher(m))
	}
	return out
}

func (h *silenceHandlers) fail(c echo.Context, err error) error {
	switch {
	case errors.Is(err, silences.ErrInvalid):
		return c.JSON(http.StatusBadRequest, map[string]string{"error": "invalid_silence", "message": err.Error()})
	case errors.Is(err, silences.ErrNotFound):
		return c.JSON(http.StatusNotFound, map[string]string{"error": "not_found", "message": "no silence with id " + c.Param("id")})
	}
	c.Logger().Error(err)
	return c.JSON(http.StatusServiceUnavailable, map[string]string{"error": "unavailable", "message": "the silences store (NATS KV) is not reachable; try again"})
}

func (h *silenceHandlers) list(c echo.Context) error {
	st, err := h.store(c.Request().Context())
	if err != nil {
		return h.fail(c, err)
	}
	all, err := st.List(c.Request().Context())
	if err != nil {
		return h.fail(c, err)
	}
	now := time.Now()
	out := []SilenceJSON{}
	for _, s := range all {
		out = append(out, silenceJSON(s, now))
	}
	return c.JSON(http.StatusOK, map[string]any{"silences": out})
}

func (h *silenceHandlers) get(c echo.Context) error {
	st, err := h.store(c.Request().Context())
	if err != nil {
		return h.fail(c, err)
	}
	s, err := st.Get(c.Request().Context(), c.Param("id"))
	if err != nil {
		return h.fail(c, err)
	}
	return c.JSON(http.StatusOK, silenceJSON(s, time.Now()))
}

func (h *silenceHandlers) create(c echo.Context) error {
	var in NewSilence
	if err := c.Bind(&in); err != nil {
		if errors.Is(err, echo.ErrStatusRequestEntityTooLarge) {
			return errBodyTooLarge
		}
		return c.JSON(http.StatusBadRequest, map[string]string{"error": "invalid_silence", "message": "the body must be a JSON object: " + err.Error()})
	}
	spec := silences.Spec{CreatedBy: in.CreatedBy, Comment: in.Comment}
	if spec.CreatedBy == "" {
		spec.CreatedBy = "api"
	}
	for _, m := range in.Matchers {
		pm, err := silences.ParseMatcher(m)
		if err != nil {
			return h.fail(c, err)
		}
		spec.Matchers = append(spec.Matchers, pm)
	}
	spec.StartsAt = time.Now()
	if in.StartsAt != nil {
		spec.StartsAt = *in.StartsAt
	}
	switch {
	case in.EndsAt != nil && in.Duration != "":
		return h.fail(c, fmt.Errorf("%w: give ends_at or duration, not both", silences.ErrInvalid))
	case in.EndsAt != nil:
		spec.EndsAt = *in.EndsAt
	case in.Duration != "":
		d, err := config.ParseDuration(in.Duration)
		if err != nil {
			return h.fail(c, fmt.Errorf("%w: duration: %v", silences.ErrInvalid, err))
		}
		spec.EndsAt = spec.StartsAt.Add(d.D())
	}
	st, err := h.store(c.Request().Context())
	if err != nil {
		return h.fail(c, err)
	}
	s, err := st.Create(c.Request().Context(), spec)
	if err != nil {
		return h.fail(c, err)
	}
	return c.JSON(http.StatusCreated, silenceJSON(s, time.Now()))
}

func (h *silenceHandlers) expire(c echo.Context) error {
	st, err := h.store(c.Request().Context())
	if err != nil {
		return h.fail(c, err)
	}
	by := c.QueryParam("by")
	if by == "" {
		by = "api"
	}
	s, err := st.Expire(c.Request().Context(), c.Param("id"), by)
	if err != nil {
		return h.fail(c, err)
	}
	return c.JSON(http.StatusOK, silenceJSON(s, time.Now()))
}
