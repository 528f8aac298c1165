package ui

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/switchyard/switchyard/pkg/events"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/auditor/internal/store"
	"github.com/switchyard/switchyard/services/auditor/internal/store/storetest"
)

// story writes to the store what the services would record around now:
// event id to erp failed three times and was dead-lettered (with crm it
// was delivered), a firing DeliveryDeadLettered alert on erp, a refused
// webhook of shop, and erp's backlog report. It returns the dead letter id.
func (e *env) story(t *testing.T, id string) string {
	t.Helper()
	st, now := e.st, time.Unix(0, e.now.Load())
	at := now.Add(-10 * time.Minute)
	body := []byte(`{"order":1042,"items":[{"sku":"A-1","qty":2}]}`)
	// In EVENTS too, so that a replay is a later message, as it is.
	pub, err := events.Publish(testCtx(t), e.js, events.Event{ID: id, Type: "order.created", Data: body})
	if err != nil {
		t.Fatal(err)
	}
	seq := pub.Sequence
	ev := storetest.Event(id, body)
	ev.ReceivedAt, ev.StreamSeq, ev.Subject = at, seq, "events.order.created"
	ev.Headers["traceparent"] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	ev.Destinations = []string{"erp", "crm"}
	var recs []*switchyardv1.AuditRecord
	for n := 1; n <= 3; n++ {
		a := storetest.RoundAttempt(id, "erp", seq, n, at.Add(time.Duration(n)*time.Second), 503, switchyardv1.Outcome_OUTCOME_RETRYABLE, n == 3, "")
		a.GetDeliveryAttempt().Error = "HTTP 503 Service Unavailable"
		a.GetDeliveryAttempt().ResponseSnippet = `{"error":"maintenance"}`
		recs = append(recs, a)
	}
	recs = append(recs, storetest.RoundAttempt(id, "crm", seq, 1, at.Add(time.Second), 200, switchyardv1.Outcome_OUTCOME_DELIVERED, true, ""))
	dl := storetest.RoundDeadLetter(id, "erp", seq, at.Add(4*time.Second), "")
	dl.GetDeadLettered().Subject = ev.Subject
	recs = append(recs, dl)
	alert := storetest.AlertRecord("alert-"+id, now.Add(-5*time.Minute))
	alert.GetAlert().FirstSeen = timestamppb.New(now.Add(-6 * time.Minute))
	recs = append(recs, alert, storetest.Rejection("rej-"+id, now.Add(-3*time.Minute)),
		&switchyardv1.AuditRecord{Id: "backlog-" + id, Time: timestamppb.New(now.Add(-20 * time.Second)), Service: "dispatcher",
			Detail: &switchyardv1.AuditRecord_Backlog{Backlog: &switchyardv1.BacklogReport{Destination: "erp", NumPending: 3, NumAckPending: 1,
				OldestPendingAge: durationpb.New(95 * time.Second)}}})
	if err := st.Write(testCtx(t), store.Batch{Events: []store.Routed{ev}, Records: recs}); err != nil {
		t.Fatal(err)
	}
	return dl.GetDeadLettered().Id
}

func mustOK(t *testing.T, r response, what string) *html.Node {
	t.Helper()
	if r.StatusCode != http.StatusOK {
		t.Fatalf("%s: %d %s", what, r.StatusCode, r.body)
	}
	return parse(t, r.body)
}

// withStory runs fn, on each backend, with a console where alice is logged
// in, over a store holding the story of shop:ord-1042 (and its dead letter
// id).
func withStory(t *testing.T, fn func(t *testing.T, e *env, dlID string)) {
	t.Helper()
	forEachBackend(t, func(t *testing.T, st store.Store) {
		e := newEnv(t, st)
		dlID := e.story(t, "shop:ord-1042")
		e.login(t, "alice", "")
		fn(t, e, dlID)
	})
}

func TestPagesRender(t *testing.T) {
	t.Parallel()
	withStory(t, func(t *testing.T, e *env, dlID string) {

		t.Run("overview", func(t *testing.T) {
			doc := mustOK(t, e.get(t, "/ui/"), "overview")
			alerts := text(find(doc, func(n *html.Node) bool { return n.Data == "section" && attr(n, "aria-labelledby") == "alerts-h" }))
			for _, want := range []string{"DeliveryDeadLettered", "destination=erp", "critical", "3 deliveries dead-lettered on erp", "6m 0s ago", "Silence…"} {
				if !strings.Contains(alerts, want) {
					t.Errorf("alerts section lacks %q: %s", want, alerts)
				}
			}
			dests := text(find(doc, func(n *html.Node) bool { return n.Data == "section" && attr(n, "aria-labelledby") == "dest-h" }))
			// erp: 3 failed attempts, a dead letter to replay, its backlog's
			// oldest event; crm: one delivered attempt.
			for _, want := range []string{"erp closed 0.0%", "1m 35s (reported 20s ago)", "1 1 to replay", "HTTP 503 Service Unavailable", "crm closed 100.0% 1 ms 1"} {
				if !strings.Contains(dests, want) {
					t.Errorf("destinations section lacks %q: %s", want, dests)
				}
			}
			sources := text(find(doc, func(n *html.Node) bool { return n.Data == "section" && attr(n, "aria-labelledby") == "src-h" }))
			if !strings.Contains(sources, "shop 1 10m ago 1 3m 0s ago") {
				t.Errorf("sources section: %s", sources)
			}
			svg := find(doc, tag("svg"))
			if attr(svg, "role") != "img" || len(findAll(svg, tag("rect"))) != 2 {
				t.Fatalf("chart: %v with %d bars", svg.Attr, len(findAll(svg, tag("rect"))))
			}
			if desc := text(find(svg, tag("desc"))); !strings.Contains(desc, "4 in all, 1 delivered, 3 retryable, 0 permanent") {
				t.Errorf("chart description = %q", desc)
			}
			doc = mustOK(t, e.get(t, "/ui/?window=24h"), "overview, last day")
			if d := text(find(doc, tag("desc"))); !strings.Contains(d, "last 24h") || !strings.Contains(d, "4 in all") {
				t.Errorf("24h chart description = %q", d)
			}
		})

		t.Run("live fragments", func(t *testing.T) {
			for _, path := range []string{"/ui/overview/live?window=1h", "/ui/overview/chart?window=24h", "/ui/event/live?id=shop%3Aord-1042"} {
				doc := mustOK(t, e.get(t, path, "HX-Request", "true"), path)
				live := find(doc, func(n *html.Node) bool { return attr(n, "hx-get") != "" })
				poll := attr(live, "hx-get")
				if !strings.Contains(poll, "v=") || !strings.HasPrefix(attr(live, "hx-trigger"), "every ") || attr(live, "hx-swap") != "outerHTML" {
					t.Fatalf("%s: live element %v", path, live.Attr)
				}
				// Nothing changed: nothing to swap.
				if r := e.get(t, poll, "HX-Request", "true"); r.StatusCode != http.StatusNoContent {
					t.Errorf("%s polled again unchanged = %d, want 204", path, r.StatusCode)
				}
			}
		})

		t.Run("events", func(t *testing.T) {
			doc := mustOK(t, e.get(t, "/ui/events?id_contains=1042&status=dead_lettered&destination=erp"), "events search")
			links := findAll(doc, func(n *html.Node) bool { return n.Data == "a" && attr(n, "href") == "/ui/event?id=shop%3Aord-1042" })
			if len(links) != 1 || text(links[0]) != "shop:ord-1042" {
				t.Errorf("search by order number: %d links to the event", len(links))
			}
			// The form shows the filters it searched with.
			if attr(find(doc, byID("f-id")), "value") != "1042" {
				t.Error("the search field lost its value")
			}
			doc = mustOK(t, e.get(t, "/ui/events?status=delivered&destination=erp"), "events none")
			if !strings.Contains(text(doc), "No event matches") {
				t.Error("an empty search does not say so")
			}
			r := e.get(t, "/ui/events?since=yesterday")
			if r.StatusCode != http.StatusBadRequest || !strings.Contains(r.body, "since must be an RFC 3339 time") {
				t.Errorf("a bad filter = %d, want 400 with the API's message", r.StatusCode)
			}
		})

		t.Run("event", func(t *testing.T) {
			doc := mustOK(t, e.get(t, "/ui/event?id=shop%3Aord-1042"), "event page")
			if h1 := text(find(doc, tag("h1"))); h1 != "Event shop:ord-1042" {
				t.Errorf("h1 = %q", h1)
			}
			attempts := findAll(doc, func(n *html.Node) bool { return n.Data == "tr" && attr(n, "data-outcome") == "retryable" })
			if len(attempts) != 3 {
				t.Errorf("%d failed attempts shown, want 3", len(attempts))
			}
			for i, a := range attempts {
				if got := text(a); !strings.Contains(got, fmt.Sprintf("erp trace %032x transform %012x %d", i+1, 0xabc000+i+1, i+1)) || !strings.Contains(got, "503") || !strings.Contains(got, `{"error":"maintenance"}`) {
					t.Errorf("attempt %d row = %q", i+1, got)
				}
			}
			erp := find(doc, func(n *html.Node) bool { return n.Data == "tr" && attr(n, "data-destination") == "erp" })
			if got := text(erp); !strings.Contains(got, "dead_lettered") || find(erp, tag("button")) == nil {
				t.Errorf("erp delivery row = %q, want dead_lettered with a Replay button", got)
			}
			replay := find(erp, func(n *html.Node) bool { return attr(n, "name") == "id" })
			if attr(replay, "value") != dlID {
				t.Errorf("the replay button replays %q, want %q", attr(replay, "value"), dlID)
			}
			if crm := text(find(doc, func(n *html.Node) bool { return attr(n, "data-destination") == "crm" })); !strings.Contains(crm, "delivered") {
				t.Errorf("crm delivery row = %q", crm)
			}
			payload := text(find(doc, func(n *html.Node) bool { return n.Data == "pre" && strings.Contains(attr(n, "class"), "payload") }))
			if !strings.Contains(find(doc, func(n *html.Node) bool { return n.Data == "pre" && strings.Contains(attr(n, "class"), "payload") }).FirstChild.FirstChild.Data, "{\n  \"order\": 1042,") || !strings.Contains(payload, `"sku": "A-1"`) {
				t.Errorf("payload not pretty-printed: %q", payload)
			}
			if facts := text(find(doc, tag("dl"))); !strings.Contains(facts, "Trace id 4bf92f3577b34da6a3ce929d0e0e4736") {
				t.Errorf("facts = %q, want the trace id of the traceparent header", facts)
			}
			if hs := text(find(doc, func(n *html.Node) bool { return n.Data == "table" && attr(n, "class") == "kv" })); !strings.Contains(hs, "Switchyard-Source shop") {
				t.Errorf("headers = %q", hs)
			}
			r := e.get(t, "/ui/event?id=nope")
			if r.StatusCode != http.StatusNotFound || !strings.Contains(r.body, `No event with id &#34;nope&#34;`) {
				t.Errorf("an unknown event = %d", r.StatusCode)
			}
			if n := len(findAll(doc, func(n *html.Node) bool { return n.Data == "tr" && attr(n, "class") == "incarnation" })); n != 0 {
				t.Errorf("%d incarnations listed for an id stored once", n)
			}

			// The id stored again for another EVENTS message: both listed.
			again := storetest.Event("shop:ord-1042", []byte(`{"order":1042,"again":true}`))
			again.StreamSeq, again.Incarnation = 9042, "inc-later"
			if err := e.st.Write(testCtx(t), store.Batch{Events: []store.Routed{again}}); err != nil {
				t.Fatal(err)
			}
			doc = mustOK(t, e.get(t, "/ui/event?id=shop%3Aord-1042"), "event page with two incarnations")
			rows := findAll(doc, func(n *html.Node) bool { return n.Data == "tr" && attr(n, "class") == "incarnation" })
			if len(rows) != 2 || !strings.Contains(text(rows[1]), "9042") || !strings.Contains(text(rows[1]), "inc-later") {
				t.Errorf("incarnation rows = %d (%v), want the first and #9042", len(rows), rows)
			}
		})

		t.Run("dead letters", func(t *testing.T) {
			doc := mustOK(t, e.get(t, "/ui/dead-letters?destination=erp"), "dead letters")
			row := find(doc, func(n *html.Node) bool {
				return n.Data == "tr" && find(n, func(a *html.Node) bool { return attr(a, "value") == dlID }) != nil
			})
			if got := text(row); !strings.Contains(got, "shop:ord-1042 erp max_attempts 3 HTTP 503 Service Unavailable 0 Replay") {
				t.Errorf("dead letter row = %q", got)
			}
			if sel := find(doc, byID("b-dest")); sel == nil || !strings.Contains(text(sel), "erp") {
				t.Error("the bulk replay form does not offer erp")
			}
		})

		t.Run("rejections", func(t *testing.T) {
			doc := mustOK(t, e.get(t, "/ui/rejections?source=shop"), "rejections")
			if got := text(find(doc, tag("tbody"))); !strings.Contains(got, "shop bad_signature signature does not match 401 203.0.113.7 partner/1.0 msg_rej-shop:ord-1042 20 B") {
				t.Errorf("rejection row = %q", got)
			}
			if chips := text(find(doc, func(n *html.Node) bool { return attr(n, "class") == "chips" })); !strings.Contains(chips, "shop: 1") {
				t.Errorf("per source = %q", chips)
			}
		})

		t.Run("quarantine", func(t *testing.T) {
			now := time.Unix(0, e.now.Load())
			quarantined := func(id, eventID string, seq uint64, rejected bool, at time.Time) *switchyardv1.AuditRecord {
				return &switchyardv1.AuditRecord{Id: id, Time: timestamppb.New(at), Service: "ingress",
					Detail: &switchyardv1.AuditRecord_PayloadQuarantined{PayloadQuarantined: &switchyardv1.PayloadQuarantined{
						Source: "shop", EventId: eventID, EventType: "orders/create", Subject: "webhooks.shop.orders_create",
						QuarantineSeq: seq, Rejected: rejected, BodySize: 321,
						Violations: []*switchyardv1.Violation{{Path: "", Message: "missing property 'email'"}, {Path: "/total", Message: "got string, want number"}}}}}
			}
			recs := []*switchyardv1.AuditRecord{
				quarantined("q-1", "shop:bad-1", 7, false, now.Add(-9*time.Minute)),
				quarantined("q-2", "shop:bad-2", 8, false, now.Add(-8*time.Minute)),
				quarantined("q-3", "shop:bad-3", 0, true, now.Add(-7*time.Minute)),
				{Id: "r-1", Time: timestamppb.New(now.Add(-time.Minute)), Service: "switchyard",
					Detail: &switchyardv1.AuditRecord_QuarantineReleased{QuarantineReleased: &switchyardv1.QuarantineReleased{
						EventId: "shop:bad-1", Source: "shop", Subject: "webhooks.shop.orders_create", StreamSeq: 99, QuarantineSeq: 7, RequestedBy: "cli:alice"}}},
			}
			if err := e.st.Write(testCtx(t), store.Batch{Records: recs}); err != nil {
				t.Fatal(err)
			}
			doc := mustOK(t, e.get(t, "/ui/quarantine?key=shop"), "quarantine")
			rows := findAll(doc, func(n *html.Node) bool { return n.Data == "tr" && attr(n, "class") == "quarantined" })
			if len(rows) != 3 {
				t.Fatalf("%d rows, want the 3 payloads", len(rows))
			}
			for i, want := range []string{
				"shop shop:bad-3 orders/create /: missing property 'email' /total: got string, want number 321 B rejected answered 422, stored nowhere",
				"shop shop:bad-2 orders/create /: missing property 'email' /total: got string, want number 321 B quarantined QUARANTINE #8",
				"shop shop:bad-1 orders/create /: missing property 'email' /total: got string, want number 321 B released by cli:alice event",
			} {
				if got := strings.Join(strings.Fields(text(rows[i])), " "); !strings.Contains(got, want) {
					t.Errorf("row %d = %q, want it to hold %q", i, got, want)
				}
			}
			if nav := find(doc, func(n *html.Node) bool { return n.Data == "a" && attr(n, "aria-current") == "page" }); nav == nil || text(nav) != "Quarantine" {
				t.Error("the navigation does not mark Quarantine as the current page")
			}
			doc = mustOK(t, e.get(t, "/ui/quarantine?key=billing"), "quarantine of another key")
			if !strings.Contains(text(doc), "No payload broke its contract.") {
				t.Error("an empty list does not say so")
			}
			if r := e.get(t, "/ui/quarantine?since=yesterday"); r.StatusCode != http.StatusBadRequest {
				t.Errorf("a bad since: %d, want 400 with the problem shown", r.StatusCode)
			}
		})

		t.Run("silences", func(t *testing.T) {
			doc := mustOK(t, e.get(t, "/ui/silences?matcher=rule%3DDeliveryDeadLettered&matcher=destination%3Derp"), "silences")
			if got := text(find(doc, byID("s-matchers"))); got != "rule=DeliveryDeadLettered destination=erp" {
				t.Errorf("matchers filled in from the alert = %q", got)
			}
			if !strings.Contains(text(doc), "No silence.") {
				t.Error("an empty list does not say so")
			}
		})
	})
}

func TestActions(t *testing.T) {
	t.Parallel()
	withStory(t, func(t *testing.T, e *env, dlID string) {
		st := e.st

		t.Run("replay one", func(t *testing.T) {
			r := e.post(t, "/ui/dead-letters/replay", url.Values{"id": {dlID}, "next": {"/ui/event?id=shop%3Aord-1042"}}, "HX-Request", "true")
			if r.StatusCode != http.StatusAccepted || !strings.Contains(text(parse(t, r.body)), "Replay sent. Dead letter "+dlID+" of event shop:ord-1042 goes to erp again") {
				t.Fatalf("replay = %d %s", r.StatusCode, r.body)
			}
			// The page's live blocks refresh at once.
			if r.Header.Get("HX-Trigger") != changedEvent {
				t.Errorf("HX-Trigger = %q, want %q", r.Header.Get("HX-Trigger"), changedEvent)
			}
			d, err := st.GetEvent(testCtx(t), "shop:ord-1042")
			if err != nil || len(d.Replays) != 1 || d.Replays[0].RequestedBy != "console:alice" {
				t.Fatalf("replays = %+v, %v: want one requested by console:alice", d.Replays, err)
			}
			// A double click sends nothing more.
			r = e.post(t, "/ui/dead-letters/replay", url.Values{"id": {dlID}}, "HX-Request", "true")
			if r.StatusCode != http.StatusOK || !strings.Contains(r.body, "Already sent") {
				t.Errorf("second replay = %d %s", r.StatusCode, r.body)
			}
			// Without JavaScript the answer is a page.
			r = e.post(t, "/ui/dead-letters/replay", url.Values{"id": {dlID}, "next": {"/ui/dead-letters"}})
			if doc := mustOK(t, r, "replay page"); find(doc, func(n *html.Node) bool { return n.Data == "a" && attr(n, "href") == "/ui/dead-letters" }) == nil {
				t.Error("the replay page has no way back")
			}
			r = e.post(t, "/ui/dead-letters/replay", url.Values{"id": {"EVENTS:1:nope"}}, "HX-Request", "true")
			if r.StatusCode != http.StatusNotFound || !strings.Contains(r.body, `no dead letter with id &#34;EVENTS:1:nope&#34;`) {
				t.Errorf("replay of an unknown dead letter = %d %s", r.StatusCode, r.body)
			}
		})

		t.Run("bulk replay", func(t *testing.T) {
			e.story(t, "shop:ord-2001")
			e.story(t, "shop:ord-2002")
			form := url.Values{"action": {"count"}, "destination": {"erp"}, "since": {"1h"}, "limit": {"100"}}
			r := e.post(t, "/ui/dead-letters/bulk", form, "HX-Request", "true")
			doc := mustOK(t, r, "dry run")
			if got := text(find(doc, byID("bulk-matched"))); got != "2" {
				t.Fatalf("dry run matched %q, want 2 (ord-1042 was replayed already): %s", got, text(doc))
			}
			d, _ := st.GetEvent(testCtx(t), "shop:ord-2001")
			if len(d.Replays) != 0 {
				t.Fatal("the dry run replayed")
			}
			// The confirmation replays what was counted.
			confirm := url.Values{}
			f := find(doc, func(n *html.Node) bool { return n.Data == "form" && find(n, byID("bulk-confirm")) != nil })
			for _, in := range findAll(f, tag("input")) {
				confirm.Set(attr(in, "name"), attr(in, "value"))
			}
			if confirm.Get("action") != "replay" || confirm.Get("limit") != "2" || confirm.Get("until") == "" {
				t.Fatalf("confirmation form = %v", confirm)
			}
			r = e.post(t, "/ui/dead-letters/bulk", confirm, "HX-Request", "true")
			if got := text(mustOK(t, r, "bulk replay")); !strings.Contains(got, "Replayed 2 of 2 matched") {
				t.Errorf("bulk replay result = %q", got)
			}
			for _, id := range []string{"shop:ord-2001", "shop:ord-2002"} {
				if d, err := st.GetEvent(testCtx(t), id); err != nil || len(d.Replays) != 1 || d.Replays[0].RequestedBy != "console:alice" {
					t.Errorf("%s replays = %+v, %v", id, d.Replays, err)
				}
			}
			r = e.post(t, "/ui/dead-letters/bulk", url.Values{"action": {"count"}, "destination": {"nowhere"}}, "HX-Request", "true")
			if r.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(r.body, "not configured") {
				t.Errorf("bulk replay to an unknown destination = %d %s", r.StatusCode, r.body)
			}
			r = e.post(t, "/ui/dead-letters/bulk", url.Values{"action": {"count"}, "destination": {"erp"}, "since": {"soon"}})
			if r.StatusCode != http.StatusBadRequest || !strings.Contains(r.body, "since must be an RFC 3339 time") {
				t.Errorf("bulk replay with a bad time = %d", r.StatusCode)
			}
		})

		t.Run("silence mutes the alert", func(t *testing.T) {
			r := e.post(t, "/ui/silences", url.Values{"matchers": {"rule=~Delivery.*\n destination=erp \n"}, "duration": {"2h"}, "comment": {"ERP upgrade"}})
			if r.StatusCode != http.StatusSeeOther {
				t.Fatalf("create silence = %d %s", r.StatusCode, r.body)
			}
			loc := r.Header.Get("Location")
			doc := mustOK(t, e.get(t, loc), "silences after create")
			id := strings.TrimPrefix(loc, "/ui/silences?created=")
			if got := text(find(doc, func(n *html.Node) bool {
				return attr(n, "role") == "status" && strings.Contains(attr(n, "class"), "notice")
			})); !strings.Contains(got, "Silence "+id+" created") {
				t.Errorf("notice = %q", got)
			}
			row := text(find(doc, func(n *html.Node) bool { return attr(n, "data-id") == id }))
			for _, want := range []string{"active", "rule=~Delivery.*", "destination=erp", "console:alice", "ERP upgrade", "End now"} {
				if !strings.Contains(row, want) {
					t.Errorf("silence row lacks %q: %s", want, row)
				}
			}
			alert := find(mustOK(t, e.get(t, "/ui/"), "overview"), func(n *html.Node) bool { return strings.Contains(attr(n, "class"), "alert-row") })
			if !strings.Contains(attr(alert, "class"), "muted") || !strings.Contains(text(alert), "muted by "+id) {
				t.Errorf("alert row = %q, want muted by %s", text(alert), id)
			}
			// A notice only ever names a silence that exists.
			if got := text(mustOK(t, e.get(t, "/ui/silences?created=<b>forged</b>"), "forged notice")); strings.Contains(got, "forged") {
				t.Error("the page repeats a silence id from the URL that does not exist")
			}

			r = e.post(t, "/ui/silences/expire", url.Values{"id": {id}})
			if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/ui/silences?ended="+id {
				t.Fatalf("end silence = %d %s", r.StatusCode, r.Header.Get("Location"))
			}
			sils, err := e.console.cfg.Ops.Silences(testCtx(t))
			if err != nil || len(sils) != 1 || sils[0].State != "expired" || sils[0].ExpiredBy != "console:alice" {
				t.Errorf("silences after ending = %+v, %v", sils, err)
			}
			alert = find(mustOK(t, e.get(t, "/ui/"), "overview"), func(n *html.Node) bool { return strings.Contains(attr(n, "class"), "alert-row") })
			if strings.Contains(attr(alert, "class"), "muted") {
				t.Error("the alert is still shown muted after the silence ended")
			}

			r = e.post(t, "/ui/silences", url.Values{"matchers": {"dest=erp"}, "duration": {"2h"}, "comment": {"typo"}})
			doc = parse(t, r.body)
			if r.StatusCode != http.StatusBadRequest || !strings.Contains(text(doc), `matcher label "dest"`) || text(find(doc, byID("s-matchers"))) != "dest=erp" {
				t.Errorf("an invalid silence = %d: %s", r.StatusCode, text(find(doc, tag("main"))))
			}
		})
	})
}

func TestEventPagePayloads(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		ev   *store.Event
		kind string
		want string
	}{
		{"json", &store.Event{Payload: []byte(`{"a":[1,2]}`)}, "json", "{\n  \"a\": [\n    1,\n    2\n  ]\n}"},
		{"text", &store.Event{Payload: []byte("id,total\n1,42.00\n")}, "text", "id,total\n1,42.00\n"},
		{"bytes", &store.Event{Payload: []byte{0xff, 0x00, 'a', 0x1b}}, "binary", "00000000  ff 00 61 1b"},
		{"empty", &store.Event{Payload: []byte{}}, "empty", ""},
		{"dropped", &store.Event{}, "dropped", ""},
		{"unknown", nil, "unknown", ""},
	} {
		p := showPayload(tt.ev)
		if p.Kind != tt.kind || !strings.HasPrefix(p.Text, tt.want) {
			t.Errorf("%s: %+v, want %s %q", tt.name, p, tt.kind, tt.want)
		}
	}
	big := make([]byte, maxPayloadShown+10)
	for i := range big {
		big[i] = 'x'
	}
	if p := showPayload(&store.Event{Payload: big}); !p.Truncated || len(p.Text) != maxPayloadShown {
		t.Errorf("a large body: truncated %v, %d bytes shown", p.Truncated, len(p.Text))
	}
	for header, want := range map[string]string{
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01": "4bf92f3577b34da6a3ce929d0e0e4736",
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01": "",
		"<script>": "",
	} {
		if got := traceID(&store.Event{Headers: map[string]string{"Traceparent": header}}); got != want {
			t.Errorf("traceID(%q) = %q, want %q", header, got, want)
		}
	}
}

func TestChart(t *testing.T) {
	t.Parallel()
	since := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ch := newChart("1h", since, since.Add(time.Hour), 2*time.Minute, []store.AttemptBucket{
		{Start: since, Outcome: "delivered", Count: 8},
		{Start: since, Outcome: "retryable", Count: 2},
		{Start: since.Add(58 * time.Minute), Outcome: "permanent", Count: 3},
		{Start: since.Add(2 * time.Hour), Outcome: "delivered", Count: 99}, // outside: ignored
	})
	if ch.Total != 13 || len(ch.Bars) != 2 || len(ch.Bars[0].Segs) != 2 || ch.Bars[0].Segs[0].Class != "ok" || ch.Bars[0].Segs[1].Class != "warn" {
		t.Fatalf("chart = %+v", ch)
	}
	// The tallest bar (10) fills the plot up to the axis' top, 10.
	if got := ch.Bars[0].Segs[1].Y; got != ch.Top {
		t.Errorf("top of the tallest bar at %v, want %v", got, ch.Top)
	}
	if ch.Bars[0].Title != "12:00–12:02: 8 delivered, 2 retryable" || ch.Bars[1].Title != "12:58–13:00: 3 permanent" {
		t.Errorf("bar titles = %q, %q", ch.Bars[0].Title, ch.Bars[1].Title)
	}
	if len(ch.YTicks) != 3 || ch.YTicks[2].Label != "10" || ch.XTicks[0].Label != "12:00" || ch.XTicks[4].Label != "13:00" {
		t.Errorf("ticks = %+v %+v", ch.YTicks, ch.XTicks)
	}
	for v, want := range map[int]int{0: 1, 1: 1, 3: 5, 10: 10, 11: 20, 130: 200, 501: 1000} {
		if got := niceCeil(v); got != want {
			t.Errorf("niceCeil(%d) = %d, want %d", v, got, want)
		}
	}
}
