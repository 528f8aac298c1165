package ui

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"
	"google.golang.org/protobuf/types/known/timestamppb"

	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/auditor/auditapi"
	"github.com/switchyard/switchyard/services/auditor/internal/store"
	"github.com/switchyard/switchyard/services/auditor/internal/store/storetest"
)

// Hostile values, as a partner or an attacker could get them into the
// audit log: each must show as the text it is.
const (
	hostileID      = `shop:"><img src=x onerror=alert('id')>`
	hostileType    = `<script>alert("type")</script>`
	hostileHeader  = `"><script>alert("header")</script>`
	hostileError   = `</pre></td><script>alert("partner")</script>`
	hostileBody    = `<svg onload=alert("body")></svg>`
	hostilePayload = `<script>alert("payload")</script>`
	hostileDetail  = `<iframe src="javascript:alert('detail')"></iframe>`
	hostileAgent   = `<b onmouseover=alert("agent")>ua</b>`
	hostileSummary = `<script>alert("summary")</script>`
	hostileDest    = `erp"><script>alert("label")</script>`
	hostileComment = `<img src=x onerror=alert("silence")>`
)

func TestHostileDataIsText(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, st store.Store) {
		e := newEnv(t, st)
		now := time.Unix(0, e.now.Load())
		at := now.Add(-5 * time.Minute)

		ev := storetest.Event(hostileID, []byte(hostilePayload))
		ev.Type, ev.ContentType, ev.ReceivedAt = hostileType, "text/html", at
		ev.Headers = map[string]string{"X-Partner-Note": hostileHeader}
		ev.Destinations = []string{"erp"}
		a := storetest.RoundAttempt(hostileID, "erp", 42, 1, at.Add(time.Second), 500, switchyardv1.Outcome_OUTCOME_PERMANENT, true, "")
		a.GetDeliveryAttempt().Error, a.GetDeliveryAttempt().ResponseSnippet = hostileError, hostileBody
		dl := storetest.RoundDeadLetter(hostileID, "erp", 42, at.Add(2*time.Second), "")
		dl.GetDeadLettered().LastError, dl.GetDeadLettered().ResponseSnippet = hostileError, hostileBody
		rej := storetest.Rejection("rej-hostile", at)
		rej.GetWebhookRejected().Detail, rej.GetWebhookRejected().UserAgent, rej.GetWebhookRejected().EventId = hostileDetail, hostileAgent, hostileID
		alert := storetest.AlertRecord("alert-hostile", at)
		alert.GetAlert().Summary, alert.GetAlert().Labels = hostileSummary, map[string]string{"destination": hostileDest}
		circuit := &switchyardv1.AuditRecord{Id: "cc-hostile", Time: timestamppb.New(at), Detail: &switchyardv1.AuditRecord_CircuitChanged{
			CircuitChanged: &switchyardv1.CircuitChanged{Destination: "erp", To: switchyardv1.CircuitState_CIRCUIT_STATE_OPEN, LastError: hostileError}}}
		quarantined := &switchyardv1.AuditRecord{Id: "q-hostile", Time: timestamppb.New(at), Detail: &switchyardv1.AuditRecord_PayloadQuarantined{
			PayloadQuarantined: &switchyardv1.PayloadQuarantined{Source: "shop", EventId: hostileID, EventType: hostileType,
				Violations: []*switchyardv1.Violation{{Path: hostileHeader, Message: hostileDetail}}}}}
		if err := st.Write(testCtx(t), store.Batch{Events: []store.Routed{ev}, Records: []*switchyardv1.AuditRecord{a, dl, rej, alert, circuit, quarantined}}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.console.cfg.Ops.CreateSilence(testCtx(t), auditapi.NewSilence{Matchers: []string{"severity=info"}, Duration: "1h", Comment: hostileComment}); err != nil {
			t.Fatal(err)
		}
		e.login(t, `<script>alert("name")</script>`, "")

		pages := map[string][]string{
			"/ui/": {hostileSummary, hostileDest, hostileError},
			"/ui/events?type=" + url.QueryEscape(hostileType): {hostileID, hostileType},
			"/ui/event?id=" + url.QueryEscape(hostileID):      {hostileID, hostileType, hostileHeader, hostileError, hostileBody, hostilePayload},
			"/ui/event/live?id=" + url.QueryEscape(hostileID): {hostileError, hostileBody},
			"/ui/dead-letters":  {hostileID, hostileError},
			"/ui/rejections":    {hostileDetail, hostileAgent, hostileID},
			"/ui/quarantine":    {hostileID, hostileType, hostileHeader, hostileDetail},
			"/ui/silences":      {hostileComment, `<script>alert("name")</script>`},
			"/ui/overview/live": {hostileSummary},
		}
		for path, want := range pages {
			r := e.get(t, path)
			doc := mustOK(t, r, path)
			checkNoInjection(t, path, doc)
			body := text(doc)
			for _, w := range want {
				if !strings.Contains(body, w) {
					t.Errorf("%s: the text %q is not shown as text", path, w)
				}
			}
		}
		// The replay result names the event.
		r := e.post(t, "/ui/dead-letters/replay", url.Values{"id": {dl.GetDeadLettered().Id}}, "HX-Request", "true")
		checkNoInjection(t, "replay result", parse(t, r.body))
		if !strings.Contains(text(parse(t, r.body)), hostileID) {
			t.Errorf("replay result: %s", r.body)
		}
	})
}

// checkNoInjection fails if the page has any element or attribute that
// hostile text could have made: a script other than the embedded htmx, an
// event handler attribute, a javascript: URL, or an element the console
// never writes.
func checkNoInjection(t *testing.T, page string, doc *html.Node) {
	t.Helper()
	for _, n := range findAll(doc, func(*html.Node) bool { return true }) {
		switch n.Data {
		case "script":
			if !strings.HasPrefix(attr(n, "src"), "/ui/static/htmx.min.js?v=") || n.FirstChild != nil {
				t.Errorf("%s: an injected <script> %v", page, n.Attr)
			}
		case "img", "iframe", "b", "object", "embed":
			t.Errorf("%s: an injected <%s> %v", page, n.Data, n.Attr)
		case "svg":
			if attr(n, "role") != "img" {
				t.Errorf("%s: an injected <svg> %v", page, n.Attr)
			}
		}
		for _, a := range n.Attr {
			if strings.HasPrefix(strings.ToLower(a.Key), "on") {
				t.Errorf("%s: <%s> has an event handler %s=%q", page, n.Data, a.Key, a.Val)
			}
			if v := strings.ToLower(strings.TrimSpace(a.Val)); (a.Key == "href" || a.Key == "src" || a.Key == "action" || strings.HasPrefix(a.Key, "hx-")) &&
				strings.HasPrefix(v, "javascript:") {
				t.Errorf("%s: <%s %s=%q>", page, n.Data, a.Key, a.Val)
			}
		}
	}
}
