package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/silences"
	"github.com/switchyard/switchyard/pkg/topology"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/auditor/auditapi"
)

// silenceRoutes adds the silence endpoints to the admin API's /v1 group
// (so they sit behind its bearer token): GET /v1/silences, POST
// /v1/silences, GET /v1/silences/{id} and DELETE /v1/silences/{id} (expire
// now). Silences live in the notifier's silences KV bucket; every notifier
// replica watches it.
func silenceRoutes(g *echo.Group, h *silenceHandlers) {
	g.GET("/silences", h.list)
	g.POST("/silences", h.create)
	g.GET("/silences/:id", h.get)
	g.DELETE("/silences/:id", h.expire)
}

type silenceHandlers struct {
	js   jetstream.JetStream
	log  *slog.Logger
	topo topology.Topology
	mu   sync.Mutex
	st   *silences.Store
}

// store opens the bucket on first use, so that the API starts even while
// NATS is away.
func (h *silenceHandlers) store(ctx context.Context) (*silences.Store, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.js == nil {
		return nil, errors.New("this API has no NATS connection")
	}
	if h.st == nil {
		st, err := silences.Open(ctx, h.js, h.topo)
		if err != nil {
			return nil, err
		}
		h.st = st
	}
	return h.st, nil
}

// silenceJSON is a silence as the API answers it.
func silenceJSON(s *switchyardv1.Silence, now time.Time) auditapi.Silence {
	out := auditapi.Silence{
		ID: s.GetId(), StartsAt: s.GetStartsAt().AsTime(), EndsAt: s.GetEndsAt().AsTime(), CreatedAt: s.GetCreatedAt().AsTime(),
		CreatedBy: s.GetCreatedBy(), Comment: s.GetComment(), ExpiredBy: s.GetExpiredBy(), State: silences.State(s, now),
		Matchers: []string{},
	}
	for _, m := range s.GetMatchers() {
		out.Matchers = append(out.Matchers, silences.FormatMatcher(m))
	}
	return out
}

// fail translates an error of the silences store into the API's answer.
func (h *silenceHandlers) fail(ctx context.Context, id string, err error) error {
	switch {
	case errors.Is(err, silences.ErrInvalid):
		return &apiErr{status: http.StatusBadRequest, body: auditapi.Error{Code: auditapi.CodeInvalidSilence, Message: err.Error()}, cause: err}
	case errors.Is(err, silences.ErrNotFound):
		return &apiErr{status: http.StatusNotFound, body: auditapi.Error{Code: auditapi.CodeNotFound, Message: "no silence with id " + id}, cause: err}
	}
	h.log.ErrorContext(ctx, "silences store failed", slog.Any("error", err))
	return &apiErr{status: http.StatusServiceUnavailable, body: auditapi.Error{Code: auditapi.CodeUnavailable,
		Message: "the silences store (NATS KV) is not reachable; try again"}, cause: err}
}

// listSilences lists the silences, ended ones included for 7 days.
func (h *silenceHandlers) listSilences(ctx context.Context) ([]auditapi.Silence, error) {
	st, err := h.store(ctx)
	if err != nil {
		return nil, h.fail(ctx, "", err)
	}
	all, err := st.List(ctx)
	if err != nil {
		return nil, h.fail(ctx, "", err)
	}
	now := time.Now()
	out := []auditapi.Silence{}
	for _, s := range all {
		out = append(out, silenceJSON(s, now))
	}
	return out, nil
}

// createSilence checks and stores a new silence.
func (h *silenceHandlers) createSilence(ctx context.Context, in auditapi.NewSilence) (auditapi.Silence, error) {
	spec := silences.Spec{CreatedBy: in.CreatedBy, Comment: in.Comment}
	if spec.CreatedBy == "" {
		spec.CreatedBy = "api"
	}
	for _, m := range in.Matchers {
		pm, err := silences.ParseMatcher(m)
		if err != nil {
			return auditapi.Silence{}, h.fail(ctx, "", err)
		}
		spec.Matchers = append(spec.Matchers, pm)
	}
	spec.StartsAt = time.Now()
	if in.StartsAt != nil {
		spec.StartsAt = *in.StartsAt
	}
	switch {
	case in.EndsAt != nil && in.Duration != "":
		return auditapi.Silence{}, h.fail(ctx, "", fmt.Errorf("%w: give ends_at or duration, not both", silences.ErrInvalid))
	case in.EndsAt != nil:
		spec.EndsAt = *in.EndsAt
	case in.Duration != "":
		d, err := config.ParseDuration(in.Duration)
		if err != nil {
			return auditapi.Silence{}, h.fail(ctx, "", fmt.Errorf("%w: duration: %v", silences.ErrInvalid, err))
		}
		spec.EndsAt = spec.StartsAt.Add(d.D())
	}
	st, err := h.store(ctx)
	if err != nil {
		return auditapi.Silence{}, h.fail(ctx, "", err)
	}
	s, err := st.Create(ctx, spec)
	if err != nil {
		return auditapi.Silence{}, h.fail(ctx, "", err)
	}
	return silenceJSON(s, time.Now()), nil
}

// expireSilence ends a silence now.
func (h *silenceHandlers) expireSilence(ctx context.Context, id, by string) (auditapi.Silence, error) {
	st, err := h.store(ctx)
	if err != nil {
		return auditapi.Silence{}, h.fail(ctx, id, err)
	}
	if by == "" {
		by = "api"
	}
	s, err := st.Expire(ctx, id, by)
	if err != nil {
		return auditapi.Silence{}, h.fail(ctx, id, err)
	}
	return silenceJSON(s, time.Now()), nil
}

func (h *silenceHandlers) list(c echo.Context) error {
	out, err := h.listSilences(c.Request().Context())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, auditapi.SilenceList{Silences: out})
}

func (h *silenceHandlers) get(c echo.Context) error {
	ctx, id := c.Request().Context(), c.Param("id")
	st, err := h.store(ctx)
	if err != nil {
		return h.fail(ctx, id, err)
	}
	s, err := st.Get(ctx, id)
	if err != nil {
		return h.fail(ctx, id, err)
	}
	return c.JSON(http.StatusOK, silenceJSON(s, time.Now()))
}

func (h *silenceHandlers) create(c echo.Context) error {
	var in auditapi.NewSilence
	if err := c.Bind(&in); err != nil {
		if errors.Is(err, echo.ErrStatusRequestEntityTooLarge) {
			return errBodyTooLarge
		}
		return apiError(http.StatusBadRequest, auditapi.CodeInvalidSilence, "the body must be a JSON object: "+err.Error())
	}
	out, err := h.createSilence(c.Request().Context(), in)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, out)
}

func (h *silenceHandlers) expire(c echo.Context) error {
	out, err := h.expireSilence(c.Request().Context(), c.Param("id"), c.QueryParam("by"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, out)
}
