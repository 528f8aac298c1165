package server

import (
	"context"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/switchyard/switchyard/pkg/events"
)

// traceRoute is traced as a route middleware, outermost, so that the
// span covers the admission checks too.
func (s *Server) traceRoute(route string) echo.MiddlewareFunc {
	return func(h echo.HandlerFunc) echo.HandlerFunc { return s.traced(route, h) }
}

// traced wraps a route in its server span, continuing the caller's
// traceparent (a partner's or one of our services'). Tracing off, it is
// the handler itself.
func (s *Server) traced(route string, h echo.HandlerFunc) echo.HandlerFunc {
	tr := s.cfg.Tracing
	if !tr.Enabled() {
		return h
	}
	return func(c echo.Context) error {
		req := c.Request()
		ctx := tr.ExtractHTTP(req.Context(), req.Header)
		attrs := []attribute.KeyValue{attribute.String("http.request.method", req.Method), attribute.String("http.route", route)}
		if src := c.Param("source"); src != "" {
			if _, ok := s.sources[src]; ok {
				attrs = append(attrs, attribute.String("switchyard.source", src))
			}
		}
		ctx, span := tr.Start(ctx, route, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attrs...))
		defer span.End()
		c.SetRequest(req.WithContext(ctx))
		err := h(c)
		status := c.Response().Status
		span.SetAttributes(attribute.Int("http.response.status_code", status))
		if status >= 500 {
			span.SetStatus(codes.Error, "")
		}
		return err
	}
}

// startStore starts the span of storing one event (a child of the
// request's span, or a new trace for a polled item) and writes its trace
// context into the message, so that every service that handles the event
// continues it. Tracing off, it returns ctx and a no-op span.
func (s *Server) startStore(ctx context.Context, eventID string, m *nats.Msg) (context.Context, trace.Span) {
	tr := s.cfg.Tracing
	if !tr.Enabled() {
		return ctx, trace.SpanFromContext(ctx)
	}
	ctx, span := tr.Start(ctx, "store "+m.Subject, trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(
		attribute.String("switchyard.event_id", eventID),
		attribute.String("messaging.destination.name", m.Subject),
		attribute.String("switchyard.source", m.Header.Get(events.HeaderSource)),
	))
	tr.Inject(ctx, m.Header)
	return ctx, span
}
