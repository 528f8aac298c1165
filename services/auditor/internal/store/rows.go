package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/switchyard/switchyard/pkg/auditlog"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
)

// rows is a batch split by table.
type rows struct {
	events      []Event
	attempts    []Attempt
	rejections  []Rejection
	deadLetters []DeadLetter
	others      []otherRow
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
func split(b Batch) (rows, error) {
	r := rows{events: make([]Event, len(b.Events))}
	for i, e := range b.Events {
		e.ID, e.Subject, e.Source, e.Type, e.ContentType = safeText(e.ID), safeText(e.Subject), safeText(e.Source), safeText(e.Type), safeText(e.ContentType)
		if len(e.Headers) > 0 {
			h := make(map[string]string, len(e.Headers))
			for k, v := range e.Headers {
				h[safeText(k)] = safeText(v)
			}
			e.Headers = h
		}
		r.events[i] = e
	}
	for _, rec := range b.Records {
		at := rec.GetTime().AsTime()
		switch d := rec.Detail.(type) {
		case *switchyardv1.AuditRecord_DeliveryAttempt:
			a := d.DeliveryAttempt
			r.attempts = append(r.attempts, Attempt{
				ID:              safeText(rec.Id),
				EventID:         safeText(a.EventId),
				Destination:     safeText(a.Destination),
				Attempt:         int(a.Attempt),
				StartedAt:       a.GetStartedAt().AsTime(),
				Duration:        a.GetDuration().AsDuration(),
				StatusCode:      int(a.StatusCode),
				Outcome:         OutcomeName(a.Outcome),
				Error:           safeText(a.Error),
				ResponseSnippet: safeText(a.ResponseSnippet),
				Final:           a.Final,
				ReplayOf:        safeText(a.ReplayOf),
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
			})
		case *switchyardv1.AuditRecord_DeadLettered:
			dl := d.DeadLettered
			r.deadLetters = append(r.deadLetters, DeadLetter{
				ID:              safeText(dl.Id),
				EventID:         safeText(dl.EventId),
				Destination:     safeText(dl.Destination),
				Subject:         safeText(dl.Subject),
				Reason:          enumName(dl.Reason.String(), "DEAD_LETTER_REASON_"),
				Attempts:        int(dl.Attempts),
				LastStatusCode:  int(dl.LastStatusCode),
				LastError:       safeText(dl.LastError),
				ResponseSnippet: safeText(dl.ResponseSnippet),
				DeadLetteredAt:  dl.GetDeadLetteredAt().AsTime(),
				StreamSeq:       dl.StreamSeq,
			})
		default:
			detail, err := protojson.Marshal(rec)
			if err != nil {
				return rows{}, err
			}
			if detail, err = safeJSON(detail); err != nil {
				return rows{}, err
			}
			kind, key := auditlog.Kind(rec)
			r.others = append(r.others, otherRow{ID: safeText(rec.Id), At: at, Service: safeText(rec.Service), Kind: kind, Key: safeText(key), Detail: detail})
		}
	}
	return r, nil
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
