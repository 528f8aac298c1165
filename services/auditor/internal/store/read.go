package store

import (
	"context"
	"encoding/hex"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/switchyard/switchyard/pkg/auditlog"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/auditor/auditapi"
)

const eventCols = "id, subject, source, type, stream_seq, received_at, content_type, payload_size, payload_sha256, payload_dropped_at, incarnation"

func scanEvent(r rows, extra ...any) (Event, error) {
	var e Event
	var hash []byte
	dest := append([]any{&e.ID, &e.Subject, &e.Source, &e.Type, &u64{&e.StreamSeq}, &ts{&e.ReceivedAt}, &e.ContentType, &e.PayloadSize, &hash, &nts{&e.PayloadDroppedAt}, &e.Incarnation}, extra...)
	err := r.Scan(dest...)
	e.PayloadHash = hex.EncodeToString(hash)
	return e, err
}

const deliveryCols = "event_id, destination, status, attempts, total_attempts, last_status_code, last_error, first_attempt_at, last_attempt_at, delivered_at, dead_letter_id, replay_of, updated_at"

func scanDelivery(r rows) (Delivery, error) {
	var d Delivery
	err := r.Scan(&d.EventID, &d.Destination, &d.Status, &d.Attempts, &d.TotalAttempts, &d.LastStatusCode, &d.LastError,
		&nts{&d.FirstAttemptAt}, &nts{&d.LastAttemptAt}, &nts{&d.DeliveredAt}, &d.DeadLetterID, &d.ReplayOf, &ts{&d.UpdatedAt})
	return d, err
}

const attemptCols = "id, event_id, destination, attempt, stream_seq, started_at, duration_us, status_code, outcome, error, response_snippet, final, replay_of, trace_id, transform_version"

func scanAttempt(r rows) (Attempt, error) {
	var a Attempt
	err := r.Scan(&a.ID, &a.EventID, &a.Destination, &a.Attempt, &u64{&a.StreamSeq}, &ts{&a.StartedAt}, &dur{&a.Duration},
		&a.StatusCode, &a.Outcome, &a.Error, &a.ResponseSnippet, &a.Final, &a.ReplayOf, &a.TraceID, &a.TransformVersion)
	a.DurationMS = float64(a.Duration.Microseconds()) / 1000
	return a, err
}

const deadLetterCols = "id, event_id, destination, subject, reason, attempts, last_status_code, last_error, response_snippet, dead_lettered_at, stream_seq, replay_of, " +
	"(SELECT count(*) FROM replays r WHERE r.dead_letter_id = dead_letters.id)"

func scanDeadLetter(r rows) (DeadLetter, error) {
	var x DeadLetter
	err := r.Scan(&x.ID, &x.EventID, &x.Destination, &x.Subject, &x.Reason, &x.Attempts, &x.LastStatusCode, &x.LastError,
		&x.ResponseSnippet, &ts{&x.DeadLetteredAt}, &u64{&x.StreamSeq}, &x.ReplayOf, &x.Replays)
	return x, err
}

const replayCols = "id, dead_letter_id, event_id, destination, subject, stream_seq, requested_by, at"

func scanReplay(r rows) (Replay, error) {
	var x Replay
	err := r.Scan(&x.ID, &x.DeadLetterID, &x.EventID, &x.Destination, &x.Subject, &u64{&x.StreamSeq}, &x.RequestedBy, &ts{&x.At})
	return x, err
}

const rejectionCols = "id, at, source, reason, detail, remote_addr, status_code, event_id, api_key, user_agent, body_size"

func scanRejection(r rows) (Rejection, error) {
	var j Rejection
	err := r.Scan(&j.ID, &ts{&j.At}, &j.Source, &j.Reason, &j.Detail, &j.RemoteAddr, &j.StatusCode, &j.EventID, &j.APIKey, &j.UserAgent, &j.BodySize)
	return j, err
}

// GetEvent implements Store.
func (r *reader) GetEvent(ctx context.Context, id string) (EventDetail, error) {
	var d EventDetail
	b := &builder{d: r.d}
	ph := b.arg(id)
	evs, err := collect(ctx, r, "get event", "SELECT "+eventCols+", payload, headers FROM events WHERE id = "+ph, b.args, func(rs rows) (Event, error) {
		var payload []byte
		var headers map[string]string
		e, err := scanEvent(rs, &payload, &jsonMap{&headers})
		e.Payload, e.Headers = payload, headers
		if e.PayloadDroppedAt == nil && e.Payload == nil {
			e.Payload = []byte{}
		}
		return e, err
	})
	if err != nil {
		return d, err
	}
	if len(evs) == 1 {
		d.Event = &evs[0]
	}
	if d.Deliveries, err = collect(ctx, r, "get deliveries", "SELECT "+deliveryCols+" FROM deliveries WHERE event_id = "+ph+" ORDER BY destination", b.args, scanDelivery); err != nil {
		return d, err
	}
	if d.Attempts, err = collect(ctx, r, "get attempts", "SELECT "+attemptCols+" FROM attempts WHERE event_id = "+ph+" ORDER BY started_at, destination, stream_seq, attempt", b.args, scanAttempt); err != nil {
		return d, err
	}
	if d.DeadLetters, err = collect(ctx, r, "get dead letters", "SELECT "+deadLetterCols+" FROM dead_letters WHERE event_id = "+ph+" ORDER BY dead_lettered_at, id", b.args, scanDeadLetter); err != nil {
		return d, err
	}
	if d.Replays, err = collect(ctx, r, "get replays", "SELECT "+replayCols+" FROM replays WHERE event_id = "+ph+" ORDER BY at, id", b.args, scanReplay); err != nil {
		return d, err
	}
	if d.Event == nil && len(d.Deliveries) == 0 && len(d.Attempts) == 0 && len(d.DeadLetters) == 0 && len(d.Replays) == 0 {
		return d, ErrNotFound
	}
	if d.Event != nil {
		d.Incarnations = []EventIncarnation{{Incarnation: d.Event.Incarnation, StreamSeq: d.Event.StreamSeq, Subject: d.Event.Subject,
			ReceivedAt: d.Event.ReceivedAt, PayloadSize: d.Event.PayloadSize, PayloadHash: d.Event.PayloadHash}}
		later, err := collect(ctx, r, "get event incarnations", "SELECT incarnation, stream_seq, subject, received_at, payload_size, payload_sha256 FROM event_incarnations WHERE event_id = "+ph+
			" ORDER BY received_at, stream_seq", b.args, func(rs rows) (EventIncarnation, error) {
			var x EventIncarnation
			var hash []byte
			err := rs.Scan(&x.Incarnation, &u64{&x.StreamSeq}, &x.Subject, &ts{&x.ReceivedAt}, &x.PayloadSize, &hash)
			x.PayloadHash = hex.EncodeToString(hash)
			return x, err
		})
		if err != nil {
			return d, err
		}
		d.Incarnations = append(d.Incarnations, later...)
	}
	return d, nil
}

// ListEvents implements Store.
func (r *reader) ListEvents(ctx context.Context, f EventFilter, p Page) ([]Event, string, error) {
	b := &builder{d: r.d}
	b.eq("id", f.ID)
	b.eq("source", f.Source)
	b.eq("type", f.Type)
	if prefix, ok := strings.CutSuffix(f.Subject, ".>"); ok {
		// '_' is common in subjects (webhooks.shop.order_created) and
		// NATS allows '%' too: both are LIKE wildcards, so they are
		// escaped. SQLite's LIKE ignores ASCII case, Postgres' does not:
		// the substr comparison makes the match exact in both.
		b.and("subject LIKE %s ESCAPE '\\' AND substr(subject, 1, %s) = %s",
			likeEscape(prefix)+".%", utf8.RuneCountInString(prefix)+1, prefix+".")
	} else {
		b.eq("subject", f.Subject)
	}
	if f.IDContains != "" {
		b.conds = append(b.conds, r.d.contains("id", b.arg(f.IDContains)))
	}
	b.timeRange("received_at", f.TimeRange)
	if f.Destination != "" || f.Status != "" || strings.TrimSpace(f.Q) != "" {
		sub := &builder{d: r.d, args: b.args}
		sub.conds = []string{"dv.event_id = events.id"}
		sub.eq("dv.destination", f.Destination)
		sub.eq("dv.status", f.Status)
		sub.text("dv.last_error", f.Q)
		b.args = sub.args
		b.conds = append(b.conds, "EXISTS (SELECT 1 FROM deliveries dv"+sub.where()+")")
	}
	limit, err := b.page("events", p, "received_at", "id")
	if err != nil {
		return nil, "", err
	}
	q := "SELECT " + eventCols + " FROM events" + b.where() + orderBy("received_at", "id") + " LIMIT " + b.arg(limit)
	out, err := collect(ctx, r, "list events", q, b.args, func(rs rows) (Event, error) { return scanEvent(rs) })
	if err != nil {
		return nil, "", err
	}
	items, next := trim(out, limit, func(e Event) (time.Time, []string) { return e.ReceivedAt, []string{e.ID} }, "events")
	return items, next, nil
}

// ListDeliveries implements Store.
func (r *reader) ListDeliveries(ctx context.Context, f DeliveryFilter, p Page) ([]Delivery, string, error) {
	b := r.deliveryWhere(f)
	limit, err := b.page("deliveries", p, "updated_at", "event_id", "destination")
	if err != nil {
		return nil, "", err
	}
	q := "SELECT " + deliveryCols + " FROM deliveries" + b.where() + orderBy("updated_at", "event_id", "destination") + " LIMIT " + b.arg(limit)
	out, err := collect(ctx, r, "list deliveries", q, b.args, scanDelivery)
	if err != nil {
		return nil, "", err
	}
	items, next := trim(out, limit, func(d Delivery) (time.Time, []string) {
		return d.UpdatedAt, []string{d.EventID, d.Destination}
	}, "deliveries")
	return items, next, nil
}

func (r *reader) deliveryWhere(f DeliveryFilter) *builder {
	b := &builder{d: r.d}
	b.eq("event_id", f.EventID)
	b.eq("destination", f.Destination)
	b.eq("status", f.Status)
	b.timeRange("updated_at", f.TimeRange)
	b.text("last_error", f.Q)
	if f.Source != "" || f.Type != "" {
		sub := &builder{d: r.d, args: b.args}
		sub.conds = []string{"ev.id = deliveries.event_id"}
		sub.eq("ev.source", f.Source)
		sub.eq("ev.type", f.Type)
		b.args = sub.args
		b.conds = append(b.conds, "EXISTS (SELECT 1 FROM events ev"+sub.where()+")")
	}
	return b
}

// ListDeadLetters implements Store.
func (r *reader) ListDeadLetters(ctx context.Context, f DeadLetterFilter, p Page) ([]DeadLetter, string, error) {
	b := &builder{d: r.d}
	b.eq("event_id", f.EventID)
	b.eq("destination", f.Destination)
	b.eq("reason", f.Reason)
	b.timeRange("dead_lettered_at", f.TimeRange)
	b.text("last_error", f.Q)
	limit, err := b.page("dead_letters", p, "dead_lettered_at", "id")
	if err != nil {
		return nil, "", err
	}
	q := "SELECT " + deadLetterCols + " FROM dead_letters" + b.where() + orderBy("dead_lettered_at", "id") + " LIMIT " + b.arg(limit)
	out, err := collect(ctx, r, "list dead letters", q, b.args, scanDeadLetter)
	if err != nil {
		return nil, "", err
	}
	items, next := trim(out, limit, func(d DeadLetter) (time.Time, []string) { return d.DeadLetteredAt, []string{d.ID} }, "dead_letters")
	return items, next, nil
}

// GetDeadLetter implements Store.
func (r *reader) GetDeadLetter(ctx context.Context, id string) (DeadLetter, error) {
	b := &builder{d: r.d}
	out, err := collect(ctx, r, "get dead letter", "SELECT "+deadLetterCols+" FROM dead_letters WHERE id = "+b.arg(id), b.args, scanDeadLetter)
	if err != nil {
		return DeadLetter{}, err
	}
	if len(out) == 0 {
		return DeadLetter{}, ErrNotFound
	}
	return out[0], nil
}

// ListRejections implements Store.
func (r *reader) ListRejections(ctx context.Context, f RejectionFilter, p Page) ([]Rejection, string, error) {
	b := &builder{d: r.d}
	b.eq("source", f.Source)
	b.eq("reason", f.Reason)
	b.timeRange("at", f.TimeRange)
	b.text("detail", f.Q)
	limit, err := b.page("rejections", p, "at", "id")
	if err != nil {
		return nil, "", err
	}
	q := "SELECT " + rejectionCols + " FROM rejections" + b.where() + orderBy("at", "id") + " LIMIT " + b.arg(limit)
	out, err := collect(ctx, r, "list rejections", q, b.args, scanRejection)
	if err != nil {
		return nil, "", err
	}
	items, next := trim(out, limit, func(j Rejection) (time.Time, []string) { return j.At, []string{j.ID} }, "rejections")
	return items, next, nil
}

// ListAlerts implements Store. Alert messages are kept whole as protojson
// in audit_records (kind alert, key the rule): they are few (a notifier
// sends at most about one a second per sender), so the label and state
// filters read the JSON of the rule's (or all) alert rows in time order.
func (r *reader) ListAlerts(ctx context.Context, f AlertFilter, p Page) ([]Alert, string, error) {
	b := &builder{d: r.d}
	b.and("kind = %s", auditlog.KindAlert)
	b.eq("key", f.Rule)
	if f.Destination != "" {
		b.and(r.d.jsonText("detail", "alert", "labels", "destination")+" = %s", f.Destination)
	}
	if f.Source != "" {
		b.and(r.d.jsonText("detail", "alert", "labels", "source")+" = %s", f.Source)
	}
	switch f.State {
	case "":
	case auditapi.AlertFiring, auditapi.AlertResolved:
		b.and(r.d.jsonText("detail", "alert", "state")+" = %s", "ALERT_STATE_"+strings.ToUpper(f.State))
	default:
		return nil, "", fmt.Errorf("list alerts: state %q: %w", f.State, ErrBadFilter)
	}
	if f.Sender != "" {
		b.and(r.d.jsonText("detail", "alert", "sender")+" = %s", f.Sender)
	}
	if f.Delivered != nil {
		cond := r.d.jsonTrue("detail", "alert", "delivered")
		if !*f.Delivered {
			cond = "NOT " + cond
		}
		b.conds = append(b.conds, cond)
	}
	b.timeRange("at", f.TimeRange)
	limit, err := b.page("alerts", p, "at", "id")
	if err != nil {
		return nil, "", err
	}
	q := "SELECT id, at, detail FROM audit_records" + b.where() + orderBy("at", "id") + " LIMIT " + b.arg(limit)
	out, err := collect(ctx, r, "list alerts", q, b.args, scanAlert)
	if err != nil {
		return nil, "", err
	}
	items, next := trim(out, limit, func(a Alert) (time.Time, []string) { return a.At, []string{a.ID} }, "alerts")
	return items, next, nil
}

// ListRecords implements Store.
func (r *reader) ListRecords(ctx context.Context, f RecordFilter, p Page) ([]Record, string, error) {
	if !slices.Contains(RecordKinds, f.Kind) {
		return nil, "", fmt.Errorf("list records: kind %q is not one of %s: %w", f.Kind, strings.Join(RecordKinds, ", "), ErrBadFilter)
	}
	b := &builder{d: r.d}
	b.and("kind = %s", f.Kind)
	b.eq("key", f.Key)
	b.timeRange("at", f.TimeRange)
	limit, err := b.page("records", p, "at", "id")
	if err != nil {
		return nil, "", err
	}
	q := "SELECT id, at, service, kind, key, detail FROM audit_records" + b.where() + orderBy("at", "id") + " LIMIT " + b.arg(limit)
	out, err := collect(ctx, r, "list records", q, b.args, func(rs rows) (Record, error) {
		var x Record
		var detail []byte
		err := rs.Scan(&x.ID, &ts{&x.At}, &x.Service, &x.Kind, &x.Key, &detail)
		x.Detail = detail
		return x, err
	})
	if err != nil {
		return nil, "", err
	}
	items, next := trim(out, limit, func(x Record) (time.Time, []string) { return x.At, []string{x.ID} }, "records")
	return items, next, nil
}

// scanAlert reads an alert row: its id, time and protojson record.
func scanAlert(r rows) (Alert, error) {
	var a Alert
	var detail []byte
	if err := r.Scan(&a.ID, &ts{&a.At}, &detail); err != nil {
		return a, err
	}
	var rec switchyardv1.AuditRecord
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(detail, &rec); err != nil {
		return a, fmt.Errorf("alert %s: %w", a.ID, err)
	}
	n := rec.GetAlert()
	a.Rule, a.Fingerprint, a.Labels = n.GetRule(), n.GetFingerprint(), n.GetLabels()
	a.State = strings.ToLower(strings.TrimPrefix(n.GetState().String(), "ALERT_STATE_"))
	a.Kind, a.Severity, a.Summary, a.Sender = n.GetKind(), n.GetSeverity(), n.GetSummary(), n.GetSender()
	a.Delivered, a.Error, a.StatusCode, a.Attempts = n.GetDelivered(), n.GetError(), int(n.GetStatusCode()), int(n.GetAttempts())
	a.Count, a.Episode, a.Sequence = n.GetCount(), n.GetEpisode(), n.GetSequence()
	if n.GetFirstSeen() != nil {
		t := n.GetFirstSeen().AsTime().UTC()
		a.FirstSeen = &t
	}
	return a, nil
}

// ListParked implements Store.
func (r *reader) ListParked(ctx context.Context, p Page) ([]Parked, string, error) {
	b := &builder{d: r.d}
	limit, err := b.page("parked", p, "parked_at", "id")
	if err != nil {
		return nil, "", err
	}
	q := "SELECT id, stream, subject, stream_seq, error, parked_at, data, headers FROM parked" + b.where() + orderBy("parked_at", "id") + " LIMIT " + b.arg(limit)
	out, err := collect(ctx, r, "list parked", q, b.args, func(rs rows) (Parked, error) {
		var x Parked
		err := rs.Scan(&x.ID, &x.Stream, &x.Subject, &u64{&x.StreamSeq}, &x.Error, &ts{&x.ParkedAt}, &x.Data, &jsonMap{&x.Headers})
		return x, err
	})
	if err != nil {
		return nil, "", err
	}
	items, next := trim(out, limit, func(x Parked) (time.Time, []string) { return x.ParkedAt, []string{x.ID} }, "parked")
	return items, next, nil
}

// distinctSQL lists the distinct values of an indexed column by skipping
// through the index (a loose index scan), so that it costs one index probe
// per value rather than a scan of the table.
func distinctSQL(table, col string) string {
	return fmt.Sprintf(`WITH RECURSIVE v(x) AS (
		SELECT min(%[2]s) FROM %[1]s
		UNION ALL
		SELECT (SELECT min(%[2]s) FROM %[1]s WHERE %[2]s > v.x) FROM v WHERE v.x IS NOT NULL
	) SELECT x FROM v WHERE x IS NOT NULL`, table, col)
}

// Destinations implements Store.
func (r *reader) Destinations(ctx context.Context) ([]string, error) {
	return collect(ctx, r, "list destinations", distinctSQL("deliveries", "destination"), nil, func(rs rows) (string, error) {
		var s string
		return s, rs.Scan(&s)
	})
}

// DestinationStatus implements Store.
func (r *reader) DestinationStatus(ctx context.Context, name string, since time.Time) (DestinationStatus, error) {
	st := DestinationStatus{Name: name, Breaker: "closed"}
	b := &builder{d: r.d}
	pn, ps := b.arg(name), b.arg(r.d.t(since))
	nameArg := []any{name}
	counts, err := collect(ctx, r, "destination attempts", `SELECT count(*), coalesce(sum(CASE WHEN outcome = 'delivered' THEN 1 ELSE 0 END), 0)
		FROM attempts WHERE destination = `+pn+` AND started_at >= `+ps, b.args, func(rs rows) ([2]int, error) {
		var c [2]int
		return c, rs.Scan(&c[0], &c[1])
	})
	if err != nil {
		return st, err
	}
	st.Attempts, st.Delivered = counts[0][0], counts[0][1]
	if st.Attempts > 0 {
		st.SuccessRate = float64(st.Delivered) / float64(st.Attempts)
		// Nearest-rank p95: the smallest duration with at least 95% of the
		// attempts at or below it.
		rank := int(math.Ceil(0.95*float64(st.Attempts))) - 1
		p95, err := collect(ctx, r, "destination latency", `SELECT duration_us FROM attempts WHERE destination = `+pn+` AND started_at >= `+ps+
			` ORDER BY duration_us LIMIT 1 OFFSET `+r.d.ph(3), []any{name, r.d.t(since), rank}, func(rs rows) (time.Duration, error) {
			var d time.Duration
			return d, rs.Scan(&dur{&d})
		})
		if err != nil {
			return st, err
		}
		if len(p95) == 1 {
			st.P95LatencyMS = float64(p95[0].Microseconds()) / 1000
		}
	}
	cc, err := collect(ctx, r, "destination breaker", `SELECT to_state, at FROM circuit_changes WHERE destination = `+pn+` ORDER BY at DESC, id DESC LIMIT 1`,
		nameArg, func(rs rows) (CircuitChange, error) {
			var c CircuitChange
			return c, rs.Scan(&c.To, &ts{&c.At})
		})
	if err != nil {
		return st, err
	}
	if len(cc) == 1 {
		st.Breaker, st.BreakerSince = cc[0].To, &cc[0].At
	}
	last, err := collect(ctx, r, "destination last error", `SELECT error, status_code, started_at FROM attempts WHERE destination = `+pn+
		` AND outcome <> 'delivered' ORDER BY started_at DESC LIMIT 1`, nameArg, func(rs rows) (Attempt, error) {
		var a Attempt
		return a, rs.Scan(&a.Error, &a.StatusCode, &ts{&a.StartedAt})
	})
	if err != nil {
		return st, err
	}
	if len(last) == 1 {
		st.LastError, st.LastErrorAt = last[0].Error, &last[0].StartedAt
		if st.LastError == "" {
			st.LastError = fmt.Sprintf("HTTP %d", last[0].StatusCode)
		}
	}
	dead, err := collect(ctx, r, "destination dead letters", `SELECT count(*) FROM deliveries WHERE destination = `+pn+` AND status = '`+auditapi.StatusDeadLettered+`'`,
		nameArg, func(rs rows) (int, error) {
			var n int
			return n, rs.Scan(&n)
		})
	if err != nil {
		return st, err
	}
	st.DeadLettered = dead[0]
	return st, nil
}

// AttemptsOverTime implements Store. It reads the destination's attempts
// through the (destination, started_at) index.
func (r *reader) AttemptsOverTime(ctx context.Context, destination string, since, until time.Time, step time.Duration) ([]AttemptBucket, error) {
	if step <= 0 || !since.Before(until) {
		return nil, fmt.Errorf("attempts over time: step %v from %v to %v: %w", step, since, until, ErrBadFilter)
	}
	b := &builder{d: r.d}
	pd, ps, pu, pstep := b.arg(destination), b.arg(r.d.t(since)), b.arg(r.d.t(until)), b.arg(r.d.bucketStep(step))
	q := "SELECT " + r.d.bucket("started_at", ps, pstep) + ", outcome, count(*) FROM attempts WHERE destination = " + pd +
		" AND started_at >= " + ps + " AND started_at < " + pu + " GROUP BY 1, 2 ORDER BY 1, 2"
	return collect(ctx, r, "attempts over time", q, b.args, func(rs rows) (AttemptBucket, error) {
		var x AttemptBucket
		var n int64
		err := rs.Scan(&n, &x.Outcome, &x.Count)
		x.Start = since.Add(time.Duration(n) * step).UTC()
		return x, err
	})
}

// Activity implements Store. Each count reads the window through its
// table's time index.
func (r *reader) Activity(ctx context.Context, since time.Time) (Activity, error) {
	out := Activity{DeadLetters: map[string]int{}}
	args := []any{r.d.t(since)}
	type count struct {
		key  string
		n    int
		last *time.Time
	}
	scan := func(rs rows) (count, error) {
		var c count
		return c, rs.Scan(&c.key, &c.n, &nts{&c.last})
	}
	dead, err := collect(ctx, r, "dead letters per destination", "SELECT destination, count(*), max(dead_lettered_at) FROM dead_letters WHERE dead_lettered_at >= "+r.d.ph(1)+" GROUP BY destination", args, scan)
	if err != nil {
		return out, err
	}
	for _, c := range dead {
		out.DeadLetters[c.key] = c.n
	}
	evs, err := collect(ctx, r, "events per source", "SELECT source, count(*), max(received_at) FROM events WHERE received_at >= "+r.d.ph(1)+" GROUP BY source", args, scan)
	if err != nil {
		return out, err
	}
	rej, err := collect(ctx, r, "rejections per source", "SELECT source, count(*), max(at) FROM rejections WHERE at >= "+r.d.ph(1)+" GROUP BY source", args, scan)
	if err != nil {
		return out, err
	}
	bySource := map[string]*SourceActivity{}
	get := func(name string) *SourceActivity {
		if bySource[name] == nil {
			bySource[name] = &SourceActivity{Source: name}
		}
		return bySource[name]
	}
	for _, c := range evs {
		s := get(c.key)
		s.Events, s.LastEventAt = c.n, c.last
	}
	for _, c := range rej {
		s := get(c.key)
		s.Rejections, s.LastRejectionAt = c.n, c.last
	}
	for _, s := range bySource {
		out.Sources = append(out.Sources, *s)
	}
	slices.SortFunc(out.Sources, func(a, b SourceActivity) int { return strings.Compare(a.Source, b.Source) })
	return out, nil
}

// DropPayloads implements Store.
func (r *reader) DropPayloads(ctx context.Context, cutoff, now time.Time, limit int) (int, error) {
	b := &builder{d: r.d}
	q := `UPDATE events SET payload = NULL, payload_dropped_at = ` + b.arg(r.d.t(now)) + ` WHERE id IN (
		SELECT id FROM events WHERE payload IS NOT NULL AND received_at < ` + b.arg(r.d.t(cutoff)) + ` ORDER BY received_at LIMIT ` + b.arg(limit) + `)`
	n, err := r.db.exec(ctx, q, b.args...)
	if err != nil {
		return 0, fmt.Errorf("drop payloads: %w", r.wrap(err))
	}
	return int(n), nil
}

// retained lists the tables retention deletes from, with their time column
// and key. Attempts are deleted per destination, so that the deletion walks
// the (destination, started_at) index instead of needing another one.
var retained = []struct{ table, timeCol, key string }{
	{"events", "received_at", "id"},
	{"event_incarnations", "received_at", "event_id, incarnation, stream_seq"},
	{"deliveries", "updated_at", "event_id, destination"},
	{"dead_letters", "dead_lettered_at", "id"},
	{"replays", "at", "id"},
	{"rejections", "at", "id"},
	{"circuit_changes", "at", "id"},
	{"audit_records", "at", "id"},
	{"parked", "parked_at", "id"},
}

// DeleteBefore implements Store. Each statement deletes at most limit rows
// found through an index on the time column, so no lock is held long.
func (r *reader) DeleteBefore(ctx context.Context, cutoff time.Time, limit int) (int, error) {
	total := 0
	del := func(table, key string, cond func(b *builder) string) error {
		b := &builder{d: r.d}
		where := cond(b)
		q := fmt.Sprintf(`DELETE FROM %[1]s WHERE (%[2]s) IN (SELECT %[2]s FROM %[1]s WHERE %[3]s LIMIT %[4]s)`, table, key, where, b.arg(limit))
		n, err := r.db.exec(ctx, q, b.args...)
		if err != nil {
			return fmt.Errorf("delete old %s: %w", table, r.wrap(err))
		}
		total += int(n)
		return nil
	}
	for _, t := range retained {
		if err := del(t.table, t.key, func(b *builder) string { return t.timeCol + " < " + b.arg(r.d.t(cutoff)) }); err != nil {
			return total, err
		}
	}
	dests, err := collect(ctx, r, "list attempt destinations", distinctSQL("attempts", "destination"), nil, func(rs rows) (string, error) {
		var s string
		return s, rs.Scan(&s)
	})
	if err != nil {
		return total, err
	}
	for _, d := range dests {
		err := del("attempts", "id", func(b *builder) string {
			return "destination = " + b.arg(d) + " AND started_at < " + b.arg(r.d.t(cutoff))
		})
		if err != nil {
			return total, err
		}
	}
	return total, nil
}
