package ui

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/switchyard/switchyard/pkg/auditlog"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/auditor/auditapi"
	"github.com/switchyard/switchyard/services/auditor/internal/api"
	"github.com/switchyard/switchyard/services/auditor/internal/store"
)

// pageSize is the console's list page.
const pageSize = 50

// list is a page of a list with its filters, as the form shows them.
type list[T any] struct {
	Filter  url.Values
	Items   []T
	Next    string // link to the next page; empty on the last
	First   string // link to the first page, when not on it
	Problem string // a filter the API would refuse, in its words
	// Options of the form's selects.
	Destinations []string
	Statuses     []string
}

// filters are the query parameters a list form sends, tidied, with the
// page size the console uses.
func filters(ec echo.Context, names ...string) url.Values {
	v := url.Values{}
	for _, n := range names {
		if s := strings.TrimSpace(ec.QueryParam(n)); s != "" {
			v.Set(n, s)
		}
	}
	return v
}

func pageLinks[T any](l *list[T], path, next string) {
	if next != "" {
		q := cloneValues(l.Filter)
		q.Set("cursor", next)
		l.Next = path + "?" + q.Encode()
	}
	if l.Filter.Get("cursor") != "" {
		q := cloneValues(l.Filter)
		q.Del("cursor")
		l.First = path + query(q)
	}
}

func cloneValues(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

func query(q url.Values) string {
	if len(q) == 0 {
		return ""
	}
	return "?" + q.Encode()
}

// badFilter reports whether err is the API refusing a filter (shown next
// to the form) rather than a failure.
func badFilter(err error) bool {
	return api.Explain(err).Status == http.StatusBadRequest
}

// destinationNames are the configured destinations and any the log knows.
func (c *Console) destinationNames(ec echo.Context) []string {
	names, err := c.cfg.Store.Destinations(ec.Request().Context())
	if err != nil {
		names = nil
	}
	for _, n := range c.cfg.Destinations {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names
}

// events is GET /ui/events: the events matching the filters of GET
// /v1/events (read by the API's own parser).
func (c *Console) events(ec echo.Context) error {
	l := list[store.Event]{Filter: filters(ec, "id_contains", "event_id", "source", "type", "subject", "destination", "status", "since", "until", "q", "cursor"),
		Destinations: c.destinationNames(ec), Statuses: auditapi.Statuses}
	q := cloneValues(l.Filter)
	q.Set("limit", strconv.Itoa(pageSize))
	f, p, err := api.ParseEventQuery(q, c.cfg.Now())
	if err == nil {
		var next string
		l.Items, next, err = c.cfg.Store.ListEvents(ec.Request().Context(), f, p)
		pageLinks(&l, Prefix+"/events", next)
	}
	if err != nil {
		if !badFilter(err) {
			return err
		}
		l.Problem = api.Explain(err).Message
	}
	status := http.StatusOK
	if l.Problem != "" {
		status = http.StatusBadRequest
	}
	return c.page(ec, status, "events", "Events", "events", l)
}

// eventData is the event page.
type eventData struct {
	ID      string
	Event   *store.Event
	Payload payload
	Headers [][2]string
	TraceID string
	Live    liveWrapper
	// Incarnations are the EVENTS messages stored under the id, when more
	// than one was (the id was used again).
	Incarnations []store.EventIncarnation
}

// payload is an event body as the page shows it: pretty-printed JSON, text,
// or a hex dump of bytes; always as text.
type payload struct {
	// Kind is json, text, binary, empty, dropped or unknown.
	Kind      string
	Text      string
	Truncated bool
}

// maxPayloadShown bounds the body shown on the page.
const maxPayloadShown = 256 << 10

func showPayload(e *store.Event) payload {
	switch {
	case e == nil:
		return payload{Kind: "unknown"}
	case e.Payload == nil:
		return payload{Kind: "dropped"}
	case len(e.Payload) == 0:
		return payload{Kind: "empty"}
	}
	b := e.Payload
	var p payload
	if len(b) > maxPayloadShown {
		b, p.Truncated = b[:maxPayloadShown], true
	}
	if !p.Truncated && json.Valid(b) {
		var buf bytes.Buffer
		if json.Indent(&buf, b, "", "  ") == nil {
			return payload{Kind: "json", Text: buf.String()}
		}
	}
	if utf8.Valid(b) || (p.Truncated && utf8.Valid(b[:len(b)-utf8.UTFMax])) {
		p.Kind, p.Text = "text", strings.ToValidUTF8(string(b), "\uFFFD")
		return p
	}
	if len(b) > 16<<10 {
		b, p.Truncated = b[:16<<10], true
	}
	p.Kind, p.Text = "binary", hex.Dump(b)
	return p
}

// traceparent is a W3C trace context header: the trace id is its second
// field.
var traceparent = regexp.MustCompile(`^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}`)

// traceID is the event's trace id, when its headers carry a trace context.
func traceID(e *store.Event) string {
	if e == nil {
		return ""
	}
	for k, v := range e.Headers {
		if strings.EqualFold(k, "traceparent") {
			if m := traceparent.FindStringSubmatch(strings.TrimSpace(v)); m != nil && m[1] != strings.Repeat("0", 32) {
				return m[1]
			}
		}
	}
	return ""
}

// eventLiveData is the part of the event page that refreshes itself.
type eventLiveData struct {
	ID          string
	Deliveries  []store.Delivery
	Attempts    []store.Attempt
	DeadLetters []store.DeadLetter
	Replays     []store.Replay
	// Replayable marks the dead letters that are their delivery's current
	// one, still dead-lettered.
	Replayable map[string]bool
}

// event is GET /ui/event?id=: one event and everything that happened to it.
func (c *Console) event(ec echo.Context) error {
	id := ec.QueryParam("id")
	d, err := c.cfg.Store.GetEvent(ec.Request().Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		return echo.NewHTTPError(http.StatusNotFound, "No event with id "+quote(id)+" in the audit log.")
	}
	if err != nil {
		return err
	}
	data := eventData{ID: id, Event: d.Event, Payload: showPayload(d.Event), TraceID: traceID(d.Event)}
	if len(d.Incarnations) > 1 {
		data.Incarnations = d.Incarnations
	}
	if d.Event != nil {
		for _, k := range sortedKeys(d.Event.Headers) {
			data.Headers = append(data.Headers, [2]string{k, d.Event.Headers[k]})
		}
	}
	live := liveEvent(id, d)
	data.Live, err = c.liveBlock(ec, "event", "event-live", "event-live", Prefix+"/event/live", url.Values{"id": {id}}, live.every(), live)
	if err != nil {
		return err
	}
	return c.page(ec, http.StatusOK, "event", "Event "+id, "events", data)
}

// eventLive is GET /ui/event/live?id=: what the event page polls.
func (c *Console) eventLive(ec echo.Context) error {
	id := ec.QueryParam("id")
	d, err := c.cfg.Store.GetEvent(ec.Request().Context(), id)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	live := liveEvent(id, d)
	return c.live(ec, "event", "event-live", "event-live", Prefix+"/event/live", url.Values{"id": {id}}, live.every(), live)
}

func liveEvent(id string, d store.EventDetail) eventLiveData {
	out := eventLiveData{ID: id, Deliveries: d.Deliveries, Attempts: d.Attempts, DeadLetters: d.DeadLetters, Replays: d.Replays, Replayable: map[string]bool{}}
	for _, x := range d.Deliveries {
		if x.Status == auditapi.StatusDeadLettered && x.DeadLetterID != "" {
			out.Replayable[x.DeadLetterID] = true
		}
	}
	return out
}

// every is how often the event page refreshes: often while a delivery is
// under way, seldom once all are settled (someone may replay elsewhere).
func (d eventLiveData) every() time.Duration {
	for _, x := range d.Deliveries {
		switch x.Status {
		case auditapi.StatusPending, auditapi.StatusRetrying, auditapi.StatusReplayed:
			return 2 * time.Second
		}
	}
	return 10 * time.Second
}

// rejections is GET /ui/rejections: refused webhooks and publish-API
// requests, with the filters of GET /v1/rejections, and the counts per
// source over the last day.
func (c *Console) rejections(ec echo.Context) error {
	l := list[store.Rejection]{Filter: filters(ec, "source", "reason", "since", "until", "q", "cursor")}
	q := cloneValues(l.Filter)
	q.Set("limit", strconv.Itoa(pageSize))
	f, p, err := api.ParseRejectionQuery(q, c.cfg.Now())
	if err == nil {
		var next string
		l.Items, next, err = c.cfg.Store.ListRejections(ec.Request().Context(), f, p)
		pageLinks(&l, Prefix+"/rejections", next)
	}
	if err != nil {
		if !badFilter(err) {
			return err
		}
		l.Problem = api.Explain(err).Message
	}
	act, err := c.cfg.Store.Activity(ec.Request().Context(), c.cfg.Now().Add(-24*time.Hour))
	if err != nil {
		return err
	}
	var bySource []store.SourceActivity
	for _, s := range act.Sources {
		if s.Rejections > 0 {
			bySource = append(bySource, s)
		}
	}
	status := http.StatusOK
	if l.Problem != "" {
		status = http.StatusBadRequest
	}
	return c.page(ec, status, "rejections", "Rejections", "rejections", rejectionsData{List: l, BySource: bySource})
}

// quarantine is GET /ui/quarantine: payloads that broke their source's
// or API key's contract (kept in QUARANTINE, or refused with 422), newest
// first, each with its violations and whether it was released since. The
// console does not release: `switchyard quarantine release` checks each
// payload against the schemas as the configuration names them, which only
// ingress's configuration knows (docs/decisions/0502).
func (c *Console) quarantine(ec echo.Context) error {
	l := list[quarantinedRow]{Filter: filters(ec, "key", "since", "until", "cursor")}
	q := cloneValues(l.Filter)
	q.Set("limit", strconv.Itoa(pageSize))
	ctx := ec.Request().Context()
	f, p, err := api.ParseRecordQuery(q, c.cfg.Now(), auditlog.KindQuarantined)
	var recs []store.Record
	if err == nil {
		var next string
		recs, next, err = c.cfg.Store.ListRecords(ctx, f, p)
		pageLinks(&l, Prefix+"/quarantine", next)
	}
	if err != nil {
		if !badFilter(err) {
			return err
		}
		l.Problem = api.Explain(err).Message
	}
	released := map[string]*switchyardv1.QuarantineReleased{}
	if len(recs) > 0 {
		// Releases come after their quarantine: those since the oldest on
		// this page, at most one store page of them.
		rf := store.RecordFilter{TimeRange: store.TimeRange{Since: recs[len(recs)-1].At}, Kind: auditlog.KindReleased, Key: f.Key}
		rel, _, err := c.cfg.Store.ListRecords(ctx, rf, store.Page{Limit: store.MaxLimit})
		if err != nil {
			return err
		}
		for _, r := range rel {
			if d := recordDetail(r).GetQuarantineReleased(); d != nil {
				released[d.GetEventId()] = d
			}
		}
	}
	for _, r := range recs {
		d := recordDetail(r).GetPayloadQuarantined()
		if d == nil {
			continue
		}
		row := quarantinedRow{At: r.At, Owner: d.GetSource(), APIKey: d.GetApiKey(), EventID: d.GetEventId(), Type: d.GetEventType(),
			Subject: d.GetSubject(), Seq: d.GetQuarantineSeq(), Rejected: d.GetRejected(), BodySize: d.GetBodySize()}
		for _, v := range d.GetViolations() {
			row.Violations = append(row.Violations, violationText(v.GetPath(), v.GetMessage()))
		}
		if rel := released[d.GetEventId()]; rel != nil && !d.GetRejected() {
			row.Released, row.ReleasedBy, row.AlreadyStored = true, rel.GetRequestedBy(), rel.GetAlreadyStored()
		}
		l.Items = append(l.Items, row)
	}
	status := http.StatusOK
	if l.Problem != "" {
		status = http.StatusBadRequest
	}
	return c.page(ec, status, "quarantine", "Quarantine", "quarantine", l)
}

// quarantinedRow is one payload on the quarantine page.
type quarantinedRow struct {
	At            time.Time
	Owner, APIKey string
	EventID, Type string
	Subject       string
	Seq           uint64
	Violations    []string
	Rejected      bool
	BodySize      int64
	Released      bool
	ReleasedBy    string
	AlreadyStored bool
}

// recordDetail decodes a record kept whole; an undecodable one (written by
// a later version) is an empty record, shown as nothing.
func recordDetail(r store.Record) *switchyardv1.AuditRecord {
	var rec switchyardv1.AuditRecord
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(r.Detail, &rec); err != nil {
		return &switchyardv1.AuditRecord{}
	}
	return &rec
}

// violationText is a violation as the CLI shows it (contracts.Violation's
// String): the JSON pointer, "/" for the whole body, and the message.
func violationText(path, msg string) string {
	if path == "" {
		path = "/"
	}
	return path + ": " + msg
}

type rejectionsData struct {
	List     list[store.Rejection]
	BySource []store.SourceActivity
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
