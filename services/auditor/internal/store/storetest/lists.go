package storetest

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/switchyard/switchyard/pkg/auditlog"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/auditor/auditapi"
	"github.com/switchyard/switchyard/services/auditor/internal/store"
)

// listTests are the suite's tests of the list queries: every filter, and
// paging through every list.
var listTests = []struct {
	name string
	fn   func(t *testing.T, st store.Store)
}{
	{"ListEvents", testListEvents},
	{"SubjectPrefixIsLiteral", testSubjectPrefixIsLiteral},
	{"ListDeliveries", testListDeliveries},
	{"ListDeadLetters", testListDeadLetters},
	{"ListRejectionsFilters", testListRejectionsFilters},
	{"ListAlerts", testListAlerts},
	{"ListRecords", testListRecords},
	{"BadCursor", testBadCursor},
	{"AttemptsOverTime", testAttemptsOverTime},
	{"Activity", testActivity},
	{"Retention", testRetention},
}

func isNotFound(err error) bool { return errors.Is(err, store.ErrNotFound) }

// Corpus writes a fixed data set for the list tests: 30 events over 30
// minutes from two sources, three types, each delivered to erp (every
// third dead-lettered, with "connection refused" or "HTTP 503") and some
// to crm; plus rejections.
func Corpus(t *testing.T, st store.Store) {
	t.Helper()
	var b store.Batch
	for i := range 30 {
		id := fmt.Sprintf("ev-%02d", i)
		at := base.Add(time.Duration(i) * time.Minute)
		ev := Event(id, []byte(fmt.Sprintf(`{"n":%d}`, i)))
		ev.ReceivedAt, ev.StreamSeq = at, uint64(100+i)
		ev.Source = []string{"shop", "billing"}[i%2]
		ev.Type = []string{"order.created", "order.paid", "invoice.sent"}[i%3]
		ev.Subject = "webhooks." + ev.Source + "." + ev.Type
		b.Events = append(b.Events, ev)
		seq := uint64(100 + i)
		if i%3 == 0 {
			errText := "HTTP 503 Service Unavailable"
			if i%2 == 0 {
				errText = "dial tcp 10.0.0.1:443: connection refused"
			}
			a := RoundAttempt(id, "erp", seq, 1, at.Add(time.Second), 503, switchyardv1.Outcome_OUTCOME_RETRYABLE, true, "")
			a.GetDeliveryAttempt().Error = errText
			dl := RoundDeadLetter(id, "erp", seq, at.Add(2*time.Second), "")
			dl.GetDeadLettered().LastError = errText
			b.Records = append(b.Records, a, dl)
		} else {
			b.Records = append(b.Records, RoundAttempt(id, "erp", seq, 1, at.Add(time.Second), 200, switchyardv1.Outcome_OUTCOME_DELIVERED, true, ""))
		}
		if i%5 == 0 {
			b.Records = append(b.Records, RoundAttempt(id, "crm", seq, 1, at.Add(3*time.Second), 500, switchyardv1.Outcome_OUTCOME_RETRYABLE, false, ""))
		}
	}
	for i := range 12 {
		rej := Rejection(fmt.Sprintf("rej-%02d", i), base.Add(time.Duration(i)*time.Minute))
		w := rej.GetWebhookRejected()
		w.Source = []string{"shop", "billing", "crm"}[i%3]
		if i%2 == 1 {
			w.Reason, w.Detail = switchyardv1.RejectReason_REJECT_REASON_STALE_TIMESTAMP, "timestamp too old"
		}
		b.Records = append(b.Records, rej)
	}
	write(t, st, b)
}

// all pages through a list with a small page size and returns the ids in
// order, checking that pages neither overlap nor skip.
func all[T any](t *testing.T, what string, list func(p store.Page) ([]T, string, error), id func(T) string) []string {
	t.Helper()
	var ids []string
	p := store.Page{Limit: 4}
	for pages := 0; ; pages++ {
		items, next, err := list(p)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if len(items) > p.Limit {
			t.Fatalf("%s: page of %d, limit %d", what, len(items), p.Limit)
		}
		for _, it := range items {
			ids = append(ids, id(it))
		}
		if next == "" {
			break
		}
		if len(items) != p.Limit {
			t.Fatalf("%s: short page (%d) with a next cursor", what, len(items))
		}
		if pages > 100 {
			t.Fatalf("%s: pages never end", what)
		}
		p.Cursor = next
	}
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			t.Fatalf("%s: %s listed twice: %v", what, id, ids)
		}
		seen[id] = true
	}
	return ids
}

func evIDs(is ...int) []string { return numbered("ev-%02d", is...) }

// numbered formats each of is with format: the ids of numbered fixtures.
func numbered(format string, is ...int) []string {
	var out []string
	for _, i := range is {
		out = append(out, fmt.Sprintf(format, i))
	}
	return out
}

// newest returns the indices 0..n-1 matching keep, newest first.
func newest(n int, keep func(i int) bool) []string {
	var out []int
	for i := n - 1; i >= 0; i-- {
		if keep(i) {
			out = append(out, i)
		}
	}
	return evIDs(out...)
}

func testListEvents(t *testing.T, st store.Store) {
	migrate(t, st)
	Corpus(t, st)
	tests := []struct {
		name string
		f    store.EventFilter
		want []string
	}{
		{"all", store.EventFilter{}, newest(30, func(int) bool { return true })},
		{"source", store.EventFilter{Source: "billing"}, newest(30, func(i int) bool { return i%2 == 1 })},
		{"type", store.EventFilter{Type: "order.paid"}, newest(30, func(i int) bool { return i%3 == 1 })},
		{"subject", store.EventFilter{Subject: "webhooks.shop.invoice.sent"}, newest(30, func(i int) bool { return i%2 == 0 && i%3 == 2 })},
		{"subject prefix", store.EventFilter{Subject: "webhooks.shop.order.>"}, newest(30, func(i int) bool { return i%2 == 0 && i%3 != 2 })},
		{"time range", store.EventFilter{TimeRange: store.TimeRange{Since: base.Add(10 * time.Minute), Until: base.Add(15 * time.Minute)}}, evIDs(14, 13, 12, 11, 10)},
		{"id", store.EventFilter{ID: "ev-07"}, evIDs(7)},
		{"id contains", store.EventFilter{IDContains: "v-1"}, evIDs(19, 18, 17, 16, 15, 14, 13, 12, 11, 10)},
		{"id contains, with case", store.EventFilter{IDContains: "EV-1"}, nil},
		{"id contains, literally", store.EventFilter{IDContains: "ev%1"}, nil},
		{"destination", store.EventFilter{Destination: "crm"}, newest(30, func(i int) bool { return i%5 == 0 })},
		{"status", store.EventFilter{Status: auditapi.StatusDeadLettered}, newest(30, func(i int) bool { return i%3 == 0 })},
		{"destination and status", store.EventFilter{Destination: "crm", Status: auditapi.StatusRetrying}, newest(30, func(i int) bool { return i%5 == 0 })},
		{"free text", store.EventFilter{Q: "refused"}, newest(30, func(i int) bool { return i%6 == 0 })},
		{"combined", store.EventFilter{Source: "shop", Status: auditapi.StatusDeadLettered, TimeRange: store.TimeRange{Since: base.Add(5 * time.Minute)}}, evIDs(24, 18, 12, 6)},
		{"nothing", store.EventFilter{Source: "nope"}, nil},
	}
	for _, tt := range tests {
		got := all(t, "events "+tt.name, func(p store.Page) ([]store.Event, string, error) { return st.ListEvents(ctx(t), tt.f, p) },
			func(e store.Event) string { return e.ID })
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: %v\nwant %v", tt.name, got, tt.want)
		}
	}
	page, _, err := st.ListEvents(ctx(t), store.EventFilter{ID: "ev-03"}, store.Page{})
	if err != nil || len(page) != 1 {
		t.Fatalf("ev-03: %v %v", page, err)
	}
	e := page[0]
	if e.Source != "billing" || e.Type != "order.created" || e.StreamSeq != 103 || e.PayloadSize != 7 || len(e.PayloadHash) != 64 ||
		e.Payload != nil || !e.ReceivedAt.Equal(base.Add(3*time.Minute)) {
		t.Errorf("listed event = %+v (lists carry no payload)", e)
	}
}

// A subject prefix matches literally and with case in both stores: '_' and
// '%' (LIKE's wildcards, both allowed in NATS subjects) and '\' are not
// patterns, and SQLite's LIKE ignoring ASCII case must not show.
func testSubjectPrefixIsLiteral(t *testing.T, st store.Store) {
	migrate(t, st)
	subjects := []string{
		"webhooks.shop.order_created.v1", "webhooks.shop.orderXcreated.v1",
		"events.100%.a", "events.100abc.b",
		"events.order.c", "events.Order.d",
		`events.a\b.e`, "events.ab.f",
	}
	var b store.Batch
	for i, s := range subjects {
		ev := Event(fmt.Sprint("ev-subj-", i), []byte(`{}`))
		ev.Subject, ev.ReceivedAt = s, base.Add(time.Duration(i)*time.Second)
		b.Events = append(b.Events, ev)
	}
	write(t, st, b)
	for prefix, want := range map[string]string{
		"webhooks.shop.order_created.>": "webhooks.shop.order_created.v1",
		"events.100%.>":                 "events.100%.a",
		"events.order.>":                "events.order.c",
		"events.Order.>":                "events.Order.d",
		`events.a\b.>`:                  `events.a\b.e`,
	} {
		evs, _, err := st.ListEvents(ctx(t), store.EventFilter{Subject: prefix}, store.Page{})
		var got []string
		for _, e := range evs {
			got = append(got, e.Subject)
		}
		if err != nil || !slices.Equal(got, []string{want}) {
			t.Errorf("subject %s: %v (%v), want [%s]", prefix, got, err, want)
		}
	}
}

func testListDeliveries(t *testing.T, st store.Store) {
	migrate(t, st)
	Corpus(t, st)
	key := func(d store.Delivery) string { return d.EventID + ">" + d.Destination }
	keys := func(dest string, is ...string) []string {
		var out []string
		for _, id := range is {
			out = append(out, id+">"+dest)
		}
		return out
	}
	tests := []struct {
		name string
		f    store.DeliveryFilter
		want []string
	}{
		{"dead letters of erp", store.DeliveryFilter{Destination: "erp", Status: auditapi.StatusDeadLettered}, keys("erp", newest(30, func(i int) bool { return i%3 == 0 })...)},
		{"status only", store.DeliveryFilter{Status: auditapi.StatusRetrying}, keys("crm", newest(30, func(i int) bool { return i%5 == 0 })...)},
		{"destination only", store.DeliveryFilter{Destination: "crm"}, keys("crm", newest(30, func(i int) bool { return i%5 == 0 })...)},
		{"event", store.DeliveryFilter{EventID: "ev-15"}, []string{"ev-15>crm", "ev-15>erp"}},
		{"free text", store.DeliveryFilter{Q: "503"}, keys("erp", newest(30, func(i int) bool { return i%3 == 0 && i%2 == 1 })...)},
		{"source", store.DeliveryFilter{Source: "billing", Destination: "crm"}, keys("crm", evIDs(25, 15, 5)...)},
		{"type", store.DeliveryFilter{Type: "invoice.sent", Status: auditapi.StatusDelivered}, keys("erp", newest(30, func(i int) bool { return i%3 == 2 })...)},
		{"time range", store.DeliveryFilter{Destination: "erp", TimeRange: store.TimeRange{Since: base.Add(20 * time.Minute), Until: base.Add(23 * time.Minute)}},
			keys("erp", evIDs(22, 21, 20)...)},
	}
	for _, tt := range tests {
		got := all(t, "deliveries "+tt.name, func(p store.Page) ([]store.Delivery, string, error) { return st.ListDeliveries(ctx(t), tt.f, p) }, key)
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: %v\nwant %v", tt.name, got, tt.want)
		}
	}
	everything := all(t, "all deliveries", func(p store.Page) ([]store.Delivery, string, error) {
		return st.ListDeliveries(ctx(t), store.DeliveryFilter{}, p)
	}, key)
	if len(everything) != 36 {
		t.Errorf("%d deliveries in all, want 36", len(everything))
	}
}

func testListDeadLetters(t *testing.T, st store.Store) {
	migrate(t, st)
	Corpus(t, st)
	dlIDs := func(is ...string) []string {
		var out []string
		for _, id := range is {
			var n int
			_, _ = fmt.Sscanf(id, "ev-%d", &n)
			out = append(out, fmt.Sprintf("EVENTS:%d:erp", 100+n))
		}
		return out
	}
	tests := []struct {
		name string
		f    store.DeadLetterFilter
		want []string
	}{
		{"all", store.DeadLetterFilter{}, dlIDs(newest(30, func(i int) bool { return i%3 == 0 })...)},
		{"destination", store.DeadLetterFilter{Destination: "erp"}, dlIDs(newest(30, func(i int) bool { return i%3 == 0 })...)},
		{"other destination", store.DeadLetterFilter{Destination: "crm"}, nil},
		{"event", store.DeadLetterFilter{EventID: "ev-09"}, dlIDs("ev-09")},
		{"reason", store.DeadLetterFilter{Reason: "max_attempts", TimeRange: store.TimeRange{Until: base.Add(7 * time.Minute)}}, dlIDs("ev-06", "ev-03", "ev-00")},
		{"free text", store.DeadLetterFilter{Q: "connection refused"}, dlIDs(newest(30, func(i int) bool { return i%6 == 0 })...)},
	}
	for _, tt := range tests {
		got := all(t, "dead letters "+tt.name, func(p store.Page) ([]store.DeadLetter, string, error) { return st.ListDeadLetters(ctx(t), tt.f, p) },
			func(d store.DeadLetter) string { return d.ID })
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: %v\nwant %v", tt.name, got, tt.want)
		}
	}
}

func testListRejectionsFilters(t *testing.T, st store.Store) {
	migrate(t, st)
	Corpus(t, st)
	rej := func(is ...int) []string { return numbered("rej-%02d", is...) }
	tests := []struct {
		name string
		f    store.RejectionFilter
		want []string
	}{
		{"all", store.RejectionFilter{}, rej(11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0)},
		{"source", store.RejectionFilter{Source: "crm"}, rej(11, 8, 5, 2)},
		{"reason", store.RejectionFilter{Reason: "stale_timestamp"}, rej(11, 9, 7, 5, 3, 1)},
		{"free text", store.RejectionFilter{Q: "old"}, rej(11, 9, 7, 5, 3, 1)},
		{"time range", store.RejectionFilter{TimeRange: store.TimeRange{Since: base.Add(2 * time.Minute), Until: base.Add(4 * time.Minute)}}, rej(3, 2)},
		{"source and reason", store.RejectionFilter{Source: "shop", Reason: "bad_signature"}, rej(6, 0)},
	}
	for _, tt := range tests {
		got := all(t, "rejections "+tt.name, func(p store.Page) ([]store.Rejection, string, error) { return st.ListRejections(ctx(t), tt.f, p) },
			func(r store.Rejection) string { return r.ID })
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: %v\nwant %v", tt.name, got, tt.want)
		}
	}
}

func testListAlerts(t *testing.T, st store.Store) {
	migrate(t, st)
	var b store.Batch
	// al-00..al-11, a minute apart: rules cycle dead letters, partner down,
	// signature failures (labelled by source shop); every third resolved,
	// one given up by its sender; plus records of other kinds.
	for i := range 12 {
		rec := AlertRecord(fmt.Sprintf("al-%02d", i), base.Add(time.Duration(i)*time.Minute))
		a := rec.GetAlert()
		switch i % 3 {
		case 1:
			a.Rule, a.Labels = "PartnerDown", map[string]string{"destination": "crm"}
		case 2:
			a.Rule, a.Labels = "SignatureFailures", map[string]string{"source": "shop"}
		}
		if i%4 == 3 {
			a.State, a.Kind = switchyardv1.AlertState_ALERT_STATE_RESOLVED, "resolved"
		}
		if i == 5 {
			a.Sender, a.Delivered, a.Error, a.StatusCode = "webhook", false, "HTTP 410 Gone", 410
		}
		b.Records = append(b.Records, rec)
	}
	b.Records = append(b.Records, Rejection("rej-x", base), RoundDeadLetter("ev-x", "erp", 9, base, ""))
	write(t, st, b)
	al := func(is ...int) []string { return numbered("al-%02d", is...) }
	yes, no := true, false
	tests := []struct {
		name string
		f    store.AlertFilter
		want []string
	}{
		{"all", store.AlertFilter{}, al(11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0)},
		{"rule", store.AlertFilter{Rule: "PartnerDown"}, al(10, 7, 4, 1)},
		{"destination", store.AlertFilter{Destination: "erp"}, al(9, 6, 3, 0)},
		{"source", store.AlertFilter{Source: "shop"}, al(11, 8, 5, 2)},
		{"resolved", store.AlertFilter{State: auditapi.AlertResolved}, al(11, 7, 3)},
		{"firing on crm", store.AlertFilter{State: auditapi.AlertFiring, Destination: "crm"}, al(10, 4, 1)},
		{"sender", store.AlertFilter{Sender: "webhook"}, al(5)},
		{"given up", store.AlertFilter{Delivered: &no}, al(5)},
		{"delivered", store.AlertFilter{Delivered: &yes, Rule: "SignatureFailures"}, al(11, 8, 2)},
		{"time range", store.AlertFilter{TimeRange: store.TimeRange{Since: base.Add(2 * time.Minute), Until: base.Add(4 * time.Minute)}}, al(3, 2)},
	}
	for _, tt := range tests {
		got := all(t, "alerts "+tt.name, func(p store.Page) ([]store.Alert, string, error) { return st.ListAlerts(ctx(t), tt.f, p) },
			func(a store.Alert) string { return a.ID })
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: %v\nwant %v", tt.name, got, tt.want)
		}
	}
	if _, _, err := st.ListAlerts(ctx(t), store.AlertFilter{State: "sleeping"}, store.Page{}); !errors.Is(err, store.ErrBadFilter) {
		t.Errorf("unknown state: %v, want ErrBadFilter", err)
	}

	// Every field comes back as recorded.
	items, _, err := st.ListAlerts(ctx(t), store.AlertFilter{Sender: "webhook"}, store.Page{})
	if err != nil || len(items) != 1 {
		t.Fatalf("given-up alert: %v %v", items, err)
	}
	first := base.Add(4 * time.Minute)
	want := store.Alert{ID: "al-05", At: base.Add(5 * time.Minute), Rule: "SignatureFailures", Fingerprint: "fp-al-05",
		Labels: map[string]string{"source": "shop"}, State: auditapi.AlertFiring, Kind: "firing", Severity: "critical",
		Summary: "3 deliveries dead-lettered on erp", Sender: "webhook", Delivered: false, Error: "HTTP 410 Gone",
		StatusCode: 410, Attempts: 1, Count: 3, Episode: 1, Sequence: 1, FirstSeen: &first}
	if got := items[0]; !reflect.DeepEqual(got, want) {
		t.Errorf("alert:\n got %+v\nwant %+v", got, want)
	}
}

func testListRecords(t *testing.T, st store.Store) {
	migrate(t, st)
	var b store.Batch
	for i := range 6 {
		at := base.Add(time.Duration(i) * time.Minute)
		source := []string{"shop", "billing"}[i%2]
		b.Records = append(b.Records,
			&switchyardv1.AuditRecord{Id: fmt.Sprintf("dup-%d", i), Time: timestamppb.New(at), Service: "ingress",
				Detail: &switchyardv1.AuditRecord_WebhookDuplicate{WebhookDuplicate: &switchyardv1.WebhookDuplicate{
					Source: source, EventId: fmt.Sprintf("%s:msg_%d", source, i), RemoteAddr: "203.0.113.7"}}},
			&switchyardv1.AuditRecord{Id: fmt.Sprintf("backlog-%d", i), Time: timestamppb.New(at), Service: "dispatcher",
				Detail: &switchyardv1.AuditRecord_Backlog{Backlog: &switchyardv1.BacklogReport{Destination: "erp", NumPending: uint64(i)}}})
	}
	b.Records = append(b.Records, AlertRecord("al-1", base), Rejection("rej-1", base),
		&switchyardv1.AuditRecord{Id: "poll-1", Time: timestamppb.New(base), Service: "ingress",
			Detail: &switchyardv1.AuditRecord_PollRound{PollRound: &switchyardv1.PollRound{
				Source: "shop-orders", Status: switchyardv1.PollStatus_POLL_STATUS_OK, Items: 12, NewItems: 10, Duplicates: 2}}})
	write(t, st, b)

	tests := []struct {
		name string
		f    store.RecordFilter
		want []string
	}{
		{"duplicates", store.RecordFilter{Kind: auditlog.KindDuplicate}, numbered("dup-%d", 5, 4, 3, 2, 1, 0)},
		{"duplicates of a source", store.RecordFilter{Kind: auditlog.KindDuplicate, Key: "billing"}, numbered("dup-%d", 5, 3, 1)},
		{"backlog in a range", store.RecordFilter{Kind: auditlog.KindBacklog,
			TimeRange: store.TimeRange{Since: base.Add(time.Minute), Until: base.Add(3 * time.Minute)}}, numbered("backlog-%d", 2, 1)},
		{"alerts", store.RecordFilter{Kind: auditlog.KindAlert}, []string{"al-1"}},
		{"poll rounds of a source", store.RecordFilter{Kind: auditlog.KindPoll, Key: "shop-orders"}, []string{"poll-1"}},
		{"none yet", store.RecordFilter{Kind: auditlog.KindSilence}, nil},
	}
	for _, tt := range tests {
		got := all(t, "records "+tt.name, func(p store.Page) ([]store.Record, string, error) { return st.ListRecords(ctx(t), tt.f, p) },
			func(r store.Record) string { return r.ID })
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: %v\nwant %v", tt.name, got, tt.want)
		}
	}
	for _, kind := range []string{"", auditlog.KindRejected, "nonsense"} {
		if _, _, err := st.ListRecords(ctx(t), store.RecordFilter{Kind: kind}, store.Page{}); !errors.Is(err, store.ErrBadFilter) {
			t.Errorf("kind %q: %v, want ErrBadFilter", kind, err)
		}
	}

	// A record comes back whole: its detail is the record as protobuf JSON.
	items, _, err := st.ListRecords(ctx(t), store.RecordFilter{Kind: auditlog.KindDuplicate, Key: "shop"}, store.Page{Limit: 1})
	if err != nil || len(items) != 1 {
		t.Fatalf("one duplicate: %v %v", items, err)
	}
	x := items[0]
	if x.ID != "dup-4" || !x.At.Equal(base.Add(4*time.Minute)) || x.Service != "ingress" || x.Kind != auditlog.KindDuplicate || x.Key != "shop" {
		t.Errorf("record = %+v", x)
	}
	var rec switchyardv1.AuditRecord
	if err := protojson.Unmarshal(x.Detail, &rec); err != nil || rec.GetWebhookDuplicate().GetEventId() != "shop:msg_4" {
		t.Errorf("detail %s: %v, %v", x.Detail, rec.GetWebhookDuplicate(), err)
	}
}

func testBadCursor(t *testing.T, st store.Store) {
	migrate(t, st)
	Corpus(t, st)
	_, next, err := st.ListEvents(ctx(t), store.EventFilter{}, store.Page{Limit: 2})
	if err != nil || next == "" {
		t.Fatalf("first page: %q %v", next, err)
	}
	for _, c := range []string{"garbage", "e30", next + "x"} {
		if _, _, err := st.ListEvents(ctx(t), store.EventFilter{}, store.Page{Cursor: c}); !errors.Is(err, store.ErrBadCursor) {
			t.Errorf("cursor %q: %v, want ErrBadCursor", c, err)
		}
	}
	// A cursor of one list is refused by another.
	if _, _, err := st.ListRejections(ctx(t), store.RejectionFilter{}, store.Page{Cursor: next}); !errors.Is(err, store.ErrBadCursor) {
		t.Errorf("events cursor on rejections: %v, want ErrBadCursor", err)
	}
}

// Retention with backdated rows: bodies older than the payload cutoff go,
// metadata stays; rows older than the row cutoff go, in bounded batches.
func testRetention(t *testing.T, st store.Store) {
	migrate(t, st)
	Corpus(t, st) // events at base .. base+29m
	now := base.Add(40 * 24 * time.Hour)
	payloadCutoff := base.Add(10 * time.Minute)

	total := drain(t, "payload retention", 4, 4, func(limit int) (int, error) { return st.DropPayloads(ctx(t), payloadCutoff, now, limit) })
	if total != 10 {
		t.Errorf("dropped %d payloads, want 10 (events before the cutoff)", total)
	}
	old := get(t, st, "ev-03")
	if old.Event == nil || old.Event.Payload != nil || old.Event.PayloadDroppedAt == nil || !old.Event.PayloadDroppedAt.Equal(now) {
		t.Fatalf("old event after retention = %+v, want metadata without payload", old.Event)
	}
	if old.Event.PayloadSize != 7 || len(old.Event.PayloadHash) != 64 || old.Event.Source != "billing" || len(old.Attempts) != 1 {
		t.Errorf("metadata of an old event lost: %+v", old)
	}
	if recent := get(t, st, "ev-12"); recent.Event == nil || string(recent.Event.Payload) != `{"n":12}` || recent.Event.PayloadDroppedAt != nil {
		t.Errorf("recent event lost its payload: %+v", recent.Event)
	}
	if n, err := st.DropPayloads(ctx(t), payloadCutoff, now, 100); err != nil || n != 0 {
		t.Errorf("second payload pass dropped %d (%v), want 0", n, err)
	}

	rowCutoff := base.Add(20 * time.Minute)
	// At most 3 rows per table (and per destination for attempts) a call.
	deleted := drain(t, "row retention", 3, 3*11, func(limit int) (int, error) { return st.DeleteBefore(ctx(t), rowCutoff, limit) })
	if deleted == 0 {
		t.Fatal("nothing deleted")
	}
	for _, id := range []string{"ev-00", "ev-05", "ev-19"} {
		if _, err := st.GetEvent(ctx(t), id); !isNotFound(err) {
			t.Errorf("%s after row retention: %v, want ErrNotFound", id, err)
		}
	}
	kept := all(t, "events after retention", func(p store.Page) ([]store.Event, string, error) {
		return st.ListEvents(ctx(t), store.EventFilter{}, p)
	}, func(e store.Event) string { return e.ID })
	if !slices.Equal(kept, newest(30, func(i int) bool { return i >= 20 })) {
		t.Errorf("events kept = %v", kept)
	}
	if d := get(t, st, "ev-21"); len(d.Attempts) != 1 || len(d.Deliveries) != 1 || len(d.DeadLetters) != 1 {
		t.Errorf("recent event lost rows: %+v", d)
	}
	rs := all(t, "rejections after retention", func(p store.Page) ([]store.Rejection, string, error) {
		return st.ListRejections(ctx(t), store.RejectionFilter{}, p)
	}, func(r store.Rejection) string { return r.ID })
	if len(rs) != 0 {
		t.Errorf("rejections older than the cutoff kept: %v", rs)
	}
}

// drain runs a bounded retention step until it has nothing left to do,
// checking that no call does more than most, and returns how much it did
// in all.
func drain(t *testing.T, what string, limit, most int, step func(limit int) (int, error)) int {
	t.Helper()
	total := 0
	for round := 0; ; round++ {
		n, err := step(limit)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if n > most {
			t.Fatalf("%s: %d rows in one call, at most %d expected", what, n, most)
		}
		total += n
		if n == 0 {
			return total
		}
		if round > 100 {
			t.Fatalf("%s never finishes", what)
		}
	}
}

func testAttemptsOverTime(t *testing.T, st store.Store) {
	migrate(t, st)
	Corpus(t, st)
	b := func(start time.Time, outcome string, n int) store.AttemptBucket {
		return store.AttemptBucket{Start: start, Outcome: outcome, Count: n}
	}
	tests := []struct {
		name         string
		dest         string
		since, until time.Time
		step         time.Duration
		want         []store.AttemptBucket
	}{
		{"three periods", "erp", base, base.Add(30 * time.Minute), 10 * time.Minute, []store.AttemptBucket{
			b(base, "delivered", 6), b(base, "retryable", 4),
			b(base.Add(10*time.Minute), "delivered", 7), b(base.Add(10*time.Minute), "retryable", 3),
			b(base.Add(20*time.Minute), "delivered", 7), b(base.Add(20*time.Minute), "retryable", 3),
		}},
		// Periods count from since; until is exclusive (event 20's attempt
		// starts at 20m01s).
		{"from since to until", "erp", base.Add(5 * time.Minute), base.Add(20*time.Minute + time.Second), 10 * time.Minute, []store.AttemptBucket{
			b(base.Add(5*time.Minute), "delivered", 7), b(base.Add(5*time.Minute), "retryable", 3),
			b(base.Add(15*time.Minute), "delivered", 3), b(base.Add(15*time.Minute), "retryable", 2),
		}},
		{"empty periods left out", "crm", base, base.Add(30 * time.Minute), 4 * time.Minute, []store.AttemptBucket{
			b(base, "retryable", 1), b(base.Add(4*time.Minute), "retryable", 1), b(base.Add(8*time.Minute), "retryable", 1),
			b(base.Add(12*time.Minute), "retryable", 1), b(base.Add(20*time.Minute), "retryable", 1), b(base.Add(24*time.Minute), "retryable", 1),
		}},
		{"other destination", "nope", base, base.Add(time.Hour), time.Minute, nil},
	}
	for _, tt := range tests {
		got, err := st.AttemptsOverTime(ctx(t), tt.dest, tt.since, tt.until, tt.step)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if len(got) != len(tt.want) {
			t.Fatalf("%s: %+v\nwant %+v", tt.name, got, tt.want)
		}
		for i := range got {
			if !got[i].Start.Equal(tt.want[i].Start) || got[i].Outcome != tt.want[i].Outcome || got[i].Count != tt.want[i].Count {
				t.Errorf("%s: [%d] = %+v, want %+v", tt.name, i, got[i], tt.want[i])
			}
		}
	}
	if _, err := st.AttemptsOverTime(ctx(t), "erp", base, base, time.Minute); !errors.Is(err, store.ErrBadFilter) {
		t.Errorf("an empty range: %v, want ErrBadFilter", err)
	}
}

func testActivity(t *testing.T, st store.Store) {
	migrate(t, st)
	Corpus(t, st)
	got, err := st.Activity(ctx(t), base.Add(6*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	// Dead letters of events 6, 9, ..., 27; events 6-29; rejections 6-11.
	if len(got.DeadLetters) != 1 || got.DeadLetters["erp"] != 8 {
		t.Errorf("dead letters = %v, want erp: 8", got.DeadLetters)
	}
	at := func(m int) *time.Time { return ptr(base.Add(time.Duration(m) * time.Minute)) }
	want := []store.SourceActivity{
		{Source: "billing", Events: 12, LastEventAt: at(29), Rejections: 2, LastRejectionAt: at(10)},
		{Source: "crm", Rejections: 2, LastRejectionAt: at(11)},
		{Source: "shop", Events: 12, LastEventAt: at(28), Rejections: 2, LastRejectionAt: at(9)},
	}
	same := func(a, b *time.Time) bool { return (a == nil) == (b == nil) && (a == nil || a.Equal(*b)) }
	if len(got.Sources) != len(want) {
		t.Fatalf("sources = %+v\nwant %+v", got.Sources, want)
	}
	for i, w := range want {
		g := got.Sources[i]
		if g.Source != w.Source || g.Events != w.Events || g.Rejections != w.Rejections || !same(g.LastEventAt, w.LastEventAt) || !same(g.LastRejectionAt, w.LastRejectionAt) {
			t.Errorf("source %d = %+v, want %+v", i, g, w)
		}
	}
	none, err := st.Activity(ctx(t), base.Add(time.Hour))
	if err != nil || len(none.DeadLetters) != 0 || len(none.Sources) != 0 {
		t.Errorf("activity after everything = %+v, %v", none, err)
	}
}
