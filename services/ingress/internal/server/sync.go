package server

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/events"
	"github.com/switchyard/switchyard/pkg/mapping"
	"github.com/switchyard/switchyard/pkg/subjects"
	"github.com/switchyard/switchyard/pkg/syncreply"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/ingress/internal/syncwait"
)

// Synchronous publishes: POST /v1/events?wait=5s (or Prefer: wait=5)
// stores the event as every publish does, then waits up to the given time
// (bounded by ingress.sync.max_wait) for the first attempt of each
// destination the event routes to, and answers 200 with what each said, or
// 202 with those not finished marked pending. The delivery itself is the
// usual one: the wait never cancels or repeats it. See pkg/syncreply for
// how the attempts reach this replica.

// Answer statuses of a synchronous publish, and of each destination in it.
const (
	syncCompleted = "completed"
	syncPending   = "pending"

	destDelivered = "delivered"
	destRetrying  = "retrying"
	destFailed    = "failed"
	destPending   = "pending"
)

// syncAnswer is the body of a synchronous publish's answer.
type syncAnswer struct {
	ID string `json:"id"`
	// Status is completed (every destination answered) or pending.
	Status       string                      `json:"status"`
	Destinations map[string]destinationReply `json:"destinations"`
}

// destinationReply is what one destination said to the event's first
// attempt.
type destinationReply struct {
	// Status is delivered, retrying (a retryable failure: the next attempt
	// follows on the destination's schedule), failed (permanent: the event
	// is dead-lettered) or pending (no attempt finished in time).
	Status     string            `json:"status"`
	Attempt    int32             `json:"attempt,omitempty"`
	StatusCode int32             `json:"status_code,omitempty"`
	Error      string            `json:"error,omitempty"`
	DurationMS float64           `json:"duration_ms,omitempty"`
	Headers    map[string]string `json:"headers,omitempty"`
	// Body is the response body when it is UTF-8 text; BodyBase64
	// otherwise. BodyTruncated when it was longer than 64 KiB.
	Body          string `json:"body,omitempty"`
	BodyBase64    string `json:"body_base64,omitempty"`
	BodyTruncated bool   `json:"body_truncated,omitempty"`
}

// syncPublish is a publish waiting for its deliveries.
type syncPublish struct {
	wait *syncwait.Wait
	// dests are the destinations the event routes to.
	dests []string
	// d is how long to wait once the event is stored.
	d time.Duration
	// preferred: the wait came from a Prefer header, answered with
	// Preference-Applied.
	preferred bool
}

// routes are the destinations whose subjects match subject, as the
// dispatcher's consumers filter.
func (s *Server) routes(subject string) []config.Destination {
	var out []config.Destination
	for _, d := range s.cfg.Destinations {
		for _, p := range d.Subjects {
			if subjects.Match(p, subject) {
				out = append(out, d)
				break
			}
		}
	}
	return out
}

// compileFilters compiles the filter of each destination that has one.
// The configuration was validated, so an error here is a hand-built one's.
func compileFilters(dests []config.Destination) (map[string]*mapping.Mapping, error) {
	out := map[string]*mapping.Mapping{}
	for _, d := range dests {
		if d.Filter == "" {
			continue
		}
		spec := d.MappingSpec()
		m, err := mapping.Compile(mapping.Spec{Filter: spec.Filter, Timeout: spec.Timeout})
		if err != nil {
			return nil, fmt.Errorf("ingress: destination %q: %w", d.Name, err)
		}
		out[d.Name] = m
	}
	return out, nil
}

// kept leaves out of routed the destinations whose filter leaves e out, as
// the dispatcher will (it acks such an event without an attempt, so no
// reply would ever come and the caller would wait for nothing). The filter
// sees the event as the dispatcher reads it back from EVENTS. A filter
// that fails keeps its destination: the dispatcher dead-letters the event
// there, and the caller sees it pending.
func (s *Server) kept(routed []config.Destination, e *events.Event) []config.Destination {
	if len(s.filters) == 0 {
		return routed
	}
	var in *mapping.Input
	out := routed[:0:0]
	for _, d := range routed {
		f := s.filters[d.Name]
		if f == nil {
			out = append(out, d)
			continue
		}
		if in == nil {
			m, err := e.Msg(time.Now())
			if err != nil {
				return routed // refused when the event is built
			}
			st := events.FromMsg(m.Subject, m.Header, m.Data)
			in = mapping.NewInput(mapping.Event{ID: st.ID, Type: st.Type, Source: st.Source, Subject: st.Subject, Header: st.Header, Body: st.Data})
		}
		if keep, err := f.Filter(context.Background(), in); keep || err != nil {
			out = append(out, d)
		}
	}
	return out
}

// errBadWait is a wait the caller wrote wrong.
var errBadWait = errors.New("wait must be a duration such as 5s (query) or seconds (Prefer: wait=5)")

// askedWait reads ?wait= or Prefer: wait=<seconds>; asked is false when the
// request says nothing. respond-async in Prefer means no wait.
func askedWait(r *http.Request) (d time.Duration, asked, preferred bool, err error) {
	if q := r.URL.Query(); q.Has("wait") {
		v := q.Get("wait")
		if n, err := strconv.Atoi(v); err == nil {
			d = time.Duration(n) * time.Second
		} else if d, err = time.ParseDuration(v); err != nil {
			return 0, false, false, errBadWait
		}
		if d < 0 {
			return 0, false, false, errBadWait
		}
		return d, true, false, nil
	}
	for _, h := range r.Header.Values("Prefer") {
		for _, pref := range strings.Split(h, ",") {
			name, val, _ := strings.Cut(strings.TrimSpace(pref), "=")
			switch strings.ToLower(strings.TrimSpace(name)) {
			case "respond-async":
				return 0, true, true, nil
			case "wait":
				n, err := strconv.Atoi(strings.Trim(strings.TrimSpace(val), `"`))
				if err != nil || n < 0 {
					return 0, false, false, errBadWait
				}
				d, asked, preferred = time.Duration(n)*time.Second, true, true
			}
		}
	}
	return d, asked, preferred, nil
}

// startSync decides whether a publish of e waits, and if it does registers
// the wait and adds the reply headers to e; nil when it does not wait.
func (s *Server) startSync(r *http.Request, e *events.Event) (*syncPublish, *rejection) {
	d, asked, preferred, err := askedWait(r)
	if err != nil {
		return nil, invalid("invalid_wait", err.Error())
	}
	if s.waiter == nil || (asked && d == 0) {
		return nil, nil
	}
	subject, err := events.Subject(e.Type)
	if err != nil {
		return nil, nil // refused when the event is built
	}
	routed := s.kept(s.routes(subject), e)
	if !asked {
		for _, dest := range routed {
			if dest.Mode == config.ModeSync {
				d = s.cfg.Sync.DefaultWait.D()
			}
		}
	}
	if d <= 0 || len(routed) == 0 {
		return nil, nil
	}
	d = min(d, s.cfg.Sync.MaxWait.D())
	names := make([]string, len(routed))
	for i, dest := range routed {
		names[i] = dest.Name
	}
	sp := &syncPublish{wait: s.waiter.Start(names), dests: names, d: d, preferred: preferred}
	if e.Header == nil {
		e.Header = nats.Header{}
	}
	// Replies are useful until the wait ends: after the store (bounded by
	// the publish timeout) and the wait.
	syncreply.Set(e.Header, sp.wait.Subject, time.Now().Add(s.cfg.PublishTimeout+d))
	return sp, nil
}

// answerSync waits for the stored event's first attempts and answers.
func (s *Server) answerSync(c echo.Context, key, id string, sp *syncPublish) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), sp.d)
	defer cancel()
	got := sp.wait.Collect(ctx)
	answer := syncAnswer{ID: id, Status: syncCompleted, Destinations: map[string]destinationReply{}}
	code := http.StatusOK
	for _, name := range sp.dests {
		r, ok := got[name]
		if !ok {
			answer.Destinations[name] = destinationReply{Status: destPending}
			answer.Status, code = syncPending, http.StatusAccepted
			continue
		}
		answer.Destinations[name] = fromReply(r)
	}
	s.metrics.syncPublishes.WithLabelValues(key, answer.Status).Inc()
	if sp.preferred {
		c.Response().Header().Set("Preference-Applied", fmt.Sprintf("wait=%d", int(sp.d/time.Second)))
	}
	return c.JSON(code, answer)
}

// fromReply is what a caller sees of a destination's reply: the headers
// once more checked against those never passed on.
func fromReply(r *switchyardv1.DeliveryReply) destinationReply {
	a := r.GetAttempt()
	out := destinationReply{
		Attempt: a.GetAttempt(), StatusCode: a.GetStatusCode(), Error: a.GetError(),
		DurationMS:    float64(a.GetDuration().AsDuration().Microseconds()) / 1000,
		BodyTruncated: r.GetBodyTruncated(),
	}
	switch {
	case a.GetOutcome() == switchyardv1.Outcome_OUTCOME_DELIVERED:
		out.Status = destDelivered
	case a.GetOutcome() == switchyardv1.Outcome_OUTCOME_RETRYABLE && !a.GetFinal():
		out.Status = destRetrying
	default:
		out.Status = destFailed
	}
	for _, h := range r.GetHeaders() {
		if syncreply.CheckHeaderName(h.GetName()) != nil {
			continue
		}
		if out.Headers == nil {
			out.Headers = map[string]string{}
		}
		if prev, ok := out.Headers[h.GetName()]; ok {
			out.Headers[h.GetName()] = prev + ", " + h.GetValue()
		} else {
			out.Headers[h.GetName()] = h.GetValue()
		}
	}
	if b := r.GetBody(); utf8.Valid(b) {
		out.Body = string(b)
	} else {
		out.BodyBase64 = base64.StdEncoding.EncodeToString(b)
	}
	return out
}
