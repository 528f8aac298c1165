package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/switchyard/switchyard/pkg/auditlog"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/auditor/auditapi"
)

// rows is a batch split by table.
type tableRows struct {
	events      []Routed
	attempts    []Attempt
	rejections  []Rejection
	deadLetters []DeadLetter
	replays     []Replay
	circuits    []CircuitChange
	// filtered are the deliveries a destination's filter left out; their
	// records are kept whole in others too.
	filtered []filteredRow
	others   []otherRow
	// deliveries are the changes the batch makes to the deliveries table,
	// one per (event, destination).
	deliveries []deliveryChange
}

type filteredRow struct {
	EventID, Destination, ReplayOf string
	StreamSeq                      uint64
	At                             time.Time
}

type otherRow struct {
	ID      string
	At      time.Time
	Service string
	Kind    string
	Key     string
	Detail  []byte
}

// split sorts a batch's records into table rows.
func split(b Batch) (tableRows, error) {
	r := tableRows{events: make([]Routed, len(b.Events))}
	for i, e := range b.Events {
		e.ID, e.Subject, e.Source, e.Type, e.ContentType = safeText(e.ID), safeText(e.Subject), safeText(e.Source), safeText(e.Type), safeText(e.ContentType)
		e.Headers = safeHeaders(e.Headers)
		r.events[i] = e
	}
	for _, rec := range b.Records {
		at := rec.GetTime().AsTime()
		switch d := rec.Detail.(type) {
		case *switchyardv1.AuditRecord_DeliveryAttempt:
			a := d.DeliveryAttempt
			dur := a.GetDuration().AsDuration()
			r.attempts = append(r.attempts, Attempt{
				ID:               safeText(rec.Id),
				EventID:          safeText(a.EventId),
				Destination:      safeText(a.Destination),
				Attempt:          int(a.Attempt),
				StreamSeq:        a.StreamSeq,
				StartedAt:        a.GetStartedAt().AsTime(),
				Duration:         dur,
				DurationMS:       float64(dur.Microseconds()) / 1000,
				StatusCode:       int(a.StatusCode),
				Outcome:          OutcomeName(a.Outcome),
				Error:            safeText(a.Error),
				ResponseSnippet:  safeText(a.ResponseSnippet),
				Final:            a.Final,
				ReplayOf:         safeText(a.ReplayOf),
				TraceID:          traceID(a.TraceId),
				TransformVersion: transformVersion(a.TransformVersion),
			})
		case *switchyardv1.AuditRecord_WebhookRejected:
			w := d.WebhookRejected
			r.rejections = append(r.rejections, Rejection{
				ID:         safeText(rec.Id),
				At:         at,
				Source:     safeText(w.Source),
				Reason:     enumName(w.Reason.String(), "REJECT_REASON_"),
				Detail:     safeText(w.Detail),
				RemoteAddr: safeText(w.RemoteAddr),
				StatusCode: int(w.StatusCode),
				EventID:    safeText(w.EventId),
				APIKey:     safeText(w.ApiKey),
				UserAgent:  safeText(w.UserAgent),
				BodySize:   w.BodySize,
			})
		case *switchyardv1.AuditRecord_DeadLettered:
			dl := d.DeadLettered
			r.deadLetters = append(r.deadLetters, DeadLetter{
				ID:              safeText(dl.Id),
				EventID:         safeText(deadLetterEventID(dl)),
				Destination:     safeText(dl.Destination),
				Subject:         safeText(dl.Subject),
				Reason:          enumName(dl.Reason.String(), "DEAD_LETTER_REASON_"),
				Attempts:        int(dl.Attempts),
				LastStatusCode:  int(dl.LastStatusCode),
				LastError:       safeText(dl.LastError),
				ResponseSnippet: safeText(dl.ResponseSnippet),
				DeadLetteredAt:  dl.GetDeadLetteredAt().AsTime(),
				StreamSeq:       dl.StreamSeq,
				ReplayOf:        safeText(dl.ReplayOf),
			})
		case *switchyardv1.AuditRecord_Replayed:
			rp := d.Replayed
			r.replays = append(r.replays, Replay{
				ID:           safeText(rec.Id),
				DeadLetterID: safeText(rp.DeadLetterId),
				EventID:      safeText(rp.EventId),
				Destination:  safeText(rp.Destination),
				Subject:      safeText(rp.Subject),
				StreamSeq:    rp.StreamSeq,
				RequestedBy:  safeText(rp.RequestedBy),
				At:           at,
			})
		case *switchyardv1.AuditRecord_CircuitChanged:
			c := d.CircuitChanged
			r.circuits = append(r.circuits, CircuitChange{
				ID:          safeText(rec.Id),
				At:          at,
				Destination: safeText(c.Destination),
				From:        enumName(c.From.String(), "CIRCUIT_STATE_"),
				To:          enumName(c.To.String(), "CIRCUIT_STATE_"),
				Reason:      safeText(c.Reason),
				LastError:   safeText(c.LastError),
			})
		default:
			if f := rec.GetDeliveryFiltered(); f != nil {
				r.filtered = append(r.filtered, filteredRow{EventID: safeText(f.EventId), Destination: safeText(f.Destination),
					ReplayOf: safeText(f.ReplayOf), StreamSeq: f.StreamSeq, At: f.GetFilteredAt().AsTime()})
			}
			detail, err := protojson.Marshal(rec)
			if err != nil {
				return tableRows{}, err
			}
			if detail, err = safeJSON(detail); err != nil {
				return tableRows{}, err
			}
			kind, key := auditlog.Kind(rec)
			r.others = append(r.others, otherRow{ID: safeText(rec.Id), At: at, Service: safeText(rec.Service), Kind: kind, Key: safeText(key), Detail: detail})
		}
	}
	r.deliveries = deliveryChanges(r)
	return r, nil
}

func safeHeaders(in map[string]string) map[string]string {
	if len(in) == 0 {
		return in
	}
	h := make(map[string]string, len(in))
	for k, v := range in {
		h[safeText(k)] = safeText(v)
	}
	return h
}

// UnknownEventPrefix starts the event id of a dead letter whose event is
// not known: the dispatcher's advisory reconciler found the event gone from
// EVENTS (aged out) and could not read its id. Such a dead letter is stored
// and listed, but it has no delivery row (there is no event to key it by).
const UnknownEventPrefix = "unknown:"

// UnknownEventID is the placeholder event id of a dead letter of stream
// message seq whose event is not known; older dispatchers sent an empty id,
// which the store turns into this one, so that both forms are the same row.
func UnknownEventID(stream string, seq uint64) string {
	if stream == "" {
		stream = "EVENTS"
	}
	return fmt.Sprintf("%s%s:%d", UnknownEventPrefix, stream, seq)
}

// knownEvent reports whether id names a real event (one a delivery row can
// be keyed by).
func knownEvent(id string) bool { return id != "" && !strings.HasPrefix(id, UnknownEventPrefix) }

func deadLetterEventID(dl *switchyardv1.DeadLetter) string {
	if dl.EventId != "" {
		return dl.EventId
	}
	return UnknownEventID(dl.Stream, dl.StreamSeq)
}

// Mark kinds: where a happening sits in its round of a delivery. A round is
// one stream message: the original event, or one replay of it. A delivered
// attempt outranks everything else in its round, the dead letter included:
// a round can end dead-lettered after a delivery that succeeded (the ack
// was lost and a later attempt failed, or the reconciler dead-lettered an
// attempt whose outcome it could not know), and the partner has the event
// then, so the row must say delivered (a replay would deliver it twice).
const (
	markRouted     = -1
	markReplay     = 0
	markAttempt    = 1
	markDeadLetter = 2
	markDelivered  = 3
)

// markFilteredN places a filter's decision after every attempt of its
// round (mark kind markAttempt; attempt numbers are far below it), and
// before the round's dead letter or delivery: a filter that leaves out an
// event already attempted (the configuration changed between deliveries)
// ends the round, and no attempt follows it.
const markFilteredN = 1<<31 - 1

// mark orders the happenings of one delivery: by round (the EVENTS stream
// sequence, which the server assigns in order, so no clock is involved),
// then kind, then attempt number (the JetStream delivery count).
type mark struct {
	seq  uint64
	kind int
	n    int
}

func (m mark) after(o mark) bool {
	if m.seq != o.seq {
		return m.seq > o.seq
	}
	if m.kind != o.kind {
		return m.kind > o.kind
	}
	return m.n > o.n
}

// deliveryChange is what a batch says about one delivery. The store merges
// it into the stored row: the status and the time follow the later mark;
// the last status code and error follow the later attempt (info); times
// take their earliest or latest; the dead letter follows the later round.
// Merging the same change twice, or changes in any order, gives the same
// row, so replaying AUDIT changes nothing.
type deliveryChange struct {
	EventID, Destination string
	Status               string
	UpdatedAt            time.Time
	ReplayOf             string
	Mark                 mark
	// Info is the position of the attempt (n >= 1) or dead letter (n = 0)
	// that LastStatusCode and LastError come from; seq -1 when none.
	InfoSeq        int64
	InfoN          int
	LastStatusCode int
	LastError      string
	FirstAttemptAt *time.Time
	LastAttemptAt  *time.Time
	DeliveredAt    *time.Time
	// DeadLetterSeq is the round of DeadLetterID; -1 when none.
	DeadLetterSeq int64
	DeadLetterID  string
}

func deliveryChanges(r tableRows) []deliveryChange {
	type key struct{ ev, dest string }
	byKey := map[key]*deliveryChange{}
	var order []key
	get := func(ev, dest string) *deliveryChange {
		k := key{ev, dest}
		c, ok := byKey[k]
		if !ok {
			c = &deliveryChange{EventID: ev, Destination: dest, Mark: mark{kind: markRouted}, InfoSeq: -1, DeadLetterSeq: -1}
			byKey[k] = c
			order = append(order, k)
		}
		return c
	}
	// happened moves the status mark forward.
	happened := func(c *deliveryChange, m mark, status string, at time.Time, replayOf string) {
		if m.after(c.Mark) || c.Status == "" {
			c.Mark, c.Status, c.UpdatedAt, c.ReplayOf = m, status, at, replayOf
		}
	}
	info := func(c *deliveryChange, seq uint64, n, code int, errText string) {
		if int64(seq) > c.InfoSeq || (int64(seq) == c.InfoSeq && n > c.InfoN) {
			c.InfoSeq, c.InfoN, c.LastStatusCode, c.LastError = int64(seq), n, code, errText
		}
	}
	for _, a := range r.attempts {
		if !knownEvent(a.EventID) {
			continue
		}
		c := get(a.EventID, a.Destination)
		status, kind := auditapi.StatusRetrying, markAttempt
		switch {
		case a.Outcome == OutcomeName(switchyardv1.Outcome_OUTCOME_DELIVERED):
			status, kind = auditapi.StatusDelivered, markDelivered
			done := a.StartedAt.Add(a.Duration)
			c.DeliveredAt = earliest(c.DeliveredAt, &done)
		case a.Final:
			// Its dead letter is on the way (or its record is).
			status = auditapi.StatusDeadLettered
		}
		happened(c, mark{a.StreamSeq, kind, a.Attempt}, status, a.StartedAt.Add(a.Duration), a.ReplayOf)
		info(c, a.StreamSeq, a.Attempt, a.StatusCode, a.Error)
		started := a.StartedAt
		c.FirstAttemptAt = earliest(c.FirstAttemptAt, &started)
		c.LastAttemptAt = latest(c.LastAttemptAt, &started)
	}
	for _, d := range r.deadLetters {
		if !knownEvent(d.EventID) {
			continue
		}
		c := get(d.EventID, d.Destination)
		happened(c, mark{d.StreamSeq, markDeadLetter, 0}, auditapi.StatusDeadLettered, d.DeadLetteredAt, d.ReplayOf)
		info(c, d.StreamSeq, 0, d.LastStatusCode, d.LastError)
		if int64(d.StreamSeq) > c.DeadLetterSeq {
			c.DeadLetterSeq, c.DeadLetterID = int64(d.StreamSeq), d.ID
		}
	}
	for _, f := range r.filtered {
		if !knownEvent(f.EventID) {
			continue
		}
		happened(get(f.EventID, f.Destination), mark{f.StreamSeq, markAttempt, markFilteredN}, auditapi.StatusFiltered, f.At, f.ReplayOf)
	}
	for _, p := range r.replays {
		if !knownEvent(p.EventID) {
			continue
		}
		c := get(p.EventID, p.Destination)
		happened(c, mark{p.StreamSeq, markReplay, 0}, auditapi.StatusReplayed, p.At, p.DeadLetterID)
	}
	out := make([]deliveryChange, len(order))
	for i, k := range order {
		out[i] = *byKey[k]
	}
	return out
}

func earliest(a, b *time.Time) *time.Time {
	if a == nil || (b != nil && b.Before(*a)) {
		return b
	}
	return a
}

func latest(a, b *time.Time) *time.Time {
	if a == nil || (b != nil && b.After(*a)) {
		return b
	}
	return a
}

// mergeDeliverySQL merges one change per row into deliveries (see
// deliveryChange). src is the SELECT list or source producing the columns
// in deliveryInsertCols order; the attempt counts are recounted from the
// attempts table (written earlier in the same transaction), which keeps
// them exact however often a record arrives.
func mergeDeliverySQL(d dialect, src string) string {
	newer := "(excluded.mark_seq, excluded.mark_kind, excluded.mark_n) > (d.mark_seq, d.mark_kind, d.mark_n)"
	infoNewer := "(excluded.info_seq, excluded.info_n) > (d.info_seq, d.info_n)"
	pick := func(cond, col string) string {
		return fmt.Sprintf("%[2]s = CASE WHEN %[1]s THEN excluded.%[2]s ELSE d.%[2]s END", cond, col)
	}
	minmax := func(fn, col string) string {
		return fmt.Sprintf("%[2]s = %[1]s(coalesce(d.%[2]s, excluded.%[2]s), coalesce(excluded.%[2]s, d.%[2]s))", fn, col)
	}
	count := func(seq string) string {
		q := "(SELECT count(*) FROM attempts a WHERE a.event_id = d.event_id AND a.destination = d.destination"
		if seq != "" {
			q += " AND a.stream_seq = " + seq
		}
		return q + ")"
	}
	return `INSERT INTO deliveries AS d (` + deliveryInsertCols + `, attempts, total_attempts)
	` + src + `
	ON CONFLICT (event_id, destination) DO UPDATE SET
		` + strings.Join([]string{
		pick(newer, "status"), pick(newer, "updated_at"), pick(newer, "replay_of"),
		pick(newer, "mark_seq"), pick(newer, "mark_kind"), pick(newer, "mark_n"),
		pick(infoNewer, "last_status_code"), pick(infoNewer, "last_error"), pick(infoNewer, "info_seq"), pick(infoNewer, "info_n"),
		minmax(d.least(), "first_attempt_at"), minmax(d.greatest(), "last_attempt_at"), minmax(d.least(), "delivered_at"),
		pick("excluded.dead_letter_seq > d.dead_letter_seq", "dead_letter_id"),
		pick("excluded.dead_letter_seq > d.dead_letter_seq", "dead_letter_seq"),
		"attempts = " + count(d.greatest()+"(d.mark_seq, excluded.mark_seq)"),
		"total_attempts = " + count(""),
	}, ",\n\t\t")
}

const deliveryInsertCols = "event_id, destination, status, updated_at, replay_of, mark_seq, mark_kind, mark_n, " +
	"last_status_code, last_error, info_seq, info_n, first_attempt_at, last_attempt_at, delivered_at, dead_letter_id, dead_letter_seq"

// newDeliveryCounts is the attempt counts of a row being inserted, for the
// SELECT that feeds mergeDeliverySQL (ev, dest, seq: its columns).
func newDeliveryCounts(ev, dest, seq string) string {
	base := "(SELECT count(*) FROM attempts a WHERE a.event_id = " + ev + " AND a.destination = " + dest
	return base + " AND a.stream_seq = " + seq + "), " + base + ")"
}

// OutcomeName is the stored name of an attempt outcome.
func OutcomeName(o switchyardv1.Outcome) string {
	return enumName(o.String(), "OUTCOME_")
}

// enumName turns REJECT_REASON_BAD_SIGNATURE into bad_signature.
func enumName(s, prefix string) string {
	return strings.ToLower(strings.TrimPrefix(s, prefix))
}

func payloadHash(p []byte) []byte {
	h := sha256.Sum256(p)
	return h[:]
}

// safeText replaces NUL characters, which Postgres refuses in text and jsonb
// values, with U+FFFD. Partners control some of this text (a response
// snippet, a webhook's event type): a row that can never be written would
// stop the audit writer for good. Both stores apply it, so that they store
// the same thing.
func safeText(s string) string {
	if strings.IndexByte(s, 0) < 0 {
		return s
	}
	return strings.ReplaceAll(s, "\x00", "\uFFFD")
}

// safeJSON applies safeText to every string (keys included) of a JSON
// document that contains an escaped NUL.
func safeJSON(doc []byte) ([]byte, error) {
	if !bytes.Contains(doc, []byte(`\u0000`)) {
		return doc, nil
	}
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return json.Marshal(safeValue(v))
}

func safeValue(v any) any {
	switch x := v.(type) {
	case string:
		return safeText(x)
	case []any:
		for i := range x {
			x[i] = safeValue(x[i])
		}
		return x
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[safeText(k)] = safeValue(e)
		}
		return out
	default:
		return v
	}
}

// transformVersion keeps a transformation version only if it is one (12
// lower-case hex digits, pkg/mapping's short hash), for the same reason.
func transformVersion(s string) string {
	if len(s) != 12 || !lowerHex(s) {
		return ""
	}
	return s
}

// traceID keeps a trace id only if it is one (32 lower-case hex digits):
// the field comes from a record anyone on AUDIT could have written.
func traceID(s string) string {
	if len(s) != 32 || !lowerHex(s) {
		return ""
	}
	return s
}

// lowerHex reports whether s is made of lower-case hex digits only.
func lowerHex(s string) bool {
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
