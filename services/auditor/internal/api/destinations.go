package api

import (
	"context"
	"net/http"
	"slices"
	"sort"

	"github.com/switchyard/switchyard/pkg/destinations"

	"github.com/labstack/echo/v4"
	"golang.org/x/sync/errgroup"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/services/auditor/auditapi"
)

// dispatcherConsumer is the dispatcher's durable consumer of a destination
// on EVENTS.
func dispatcherConsumer(destination string) string { return destinations.ConsumerName(destination) }

// listDestinations is GET /v1/destinations: per destination, the backlog
// of its consumer (from JetStream), its success rate and p95 latency over
// a window (default 1h), its breaker state and its last error.
func (h *handlers) listDestinations(c echo.Context) error {
	q := h.newQuery(c)
	window := config.Duration(60 * 60 * 1e9)
	if v := q.str("window"); v != "" {
		d, err := config.ParseDuration(v)
		if err != nil || d.D() <= 0 {
			q.errs = append(q.errs, "window must be a duration such as 15m, 1h or 1d")
		}
		window = d
	}
	if err := q.done(); err != nil {
		return err
	}
	out, err := h.destinations(c.Request().Context(), window)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, auditapi.List[auditapi.DestinationStatus]{Items: out})
}

// destinations is the health of every destination over window: the
// configured ones and any the log knows deliveries for.
func (h *handlers) destinations(ctx context.Context, window config.Duration) ([]auditapi.DestinationStatus, error) {
	names, err := h.store.Destinations(ctx)
	if err != nil {
		return nil, err
	}
	for _, n := range h.cfg.Destinations {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	since := h.cfg.Now().Add(-window.D())
	out := make([]auditapi.DestinationStatus, len(names))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for i, name := range names {
		g.Go(func() error {
			st, err := h.store.DestinationStatus(gctx, name, since)
			if err != nil {
				return err
			}
			st.Window = window.String()
			st.Backlog = h.backlog(gctx, name)
			out[i] = st
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return out, nil
}

// backlog reads the destination consumer's state; nil when there is no
// such consumer (a destination no longer configured) or NATS is away.
func (h *handlers) backlog(ctx context.Context, name string) *auditapi.Backlog {
	if h.cfg.JS == nil {
		return nil
	}
	cons, err := h.cfg.JS.Consumer(ctx, natsx.StreamEvents, dispatcherConsumer(name))
	if err != nil {
		return nil
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return nil
	}
	return &auditapi.Backlog{Pending: info.NumPending, AckPending: info.NumAckPending, Paused: info.Paused}
}
