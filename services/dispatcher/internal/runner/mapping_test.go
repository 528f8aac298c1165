package runner

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/events"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
)

// mappingTestdata holds the Shopify order and the marketplace mapping that
// pkg/mapping's tests check against the same fixture.
var mappingTestdata = filepath.Join("..", "..", "..", "..", "pkg", "mapping", "testdata")

func readMappingTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(mappingTestdata, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("%s: %v", a, err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return reflect.DeepEqual(x, y)
}

func (p *partner) paths() []string {
	var out []string
	for _, h := range p.received() {
		out = append(out, h.path)
	}
	return out
}

func shippedTo(id, country string) events.Event {
	return events.Event{ID: id, Type: "order.created", ContentType: "application/json",
		Data: []byte(`{"id":"` + id + `","shipping_address":{"country_code":"` + country + `"},"total":120}`)}
}

// A CEL filter sends EU orders to one destination and the rest to another;
// the events a filter leaves out are acknowledged without an attempt, and
// recorded as filtered.
func TestFilterSendsEUOrdersToOneDestination(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	euPartner := newPartner(t, reply{status: http.StatusOK})
	restPartner := newPartner(t, reply{status: http.StatusOK})
	const isEU = `data.shipping_address.country_code in ["AT", "DE", "FR", "IT", "NL"] && data.total > 100`
	eu := destinationFor("eu", euPartner.URL, 3)
	eu.Filter = isEU
	rest := destinationFor("rest", restPartner.URL, 3)
	rest.Filter = "!(" + isEU + ")"
	d := e.start(t, eu, rest)

	for _, ev := range []events.Event{shippedTo("o1", "DE"), shippedTo("o2", "US"), shippedTo("o3", "FR"), shippedTo("o4", "JP"), shippedTo("o5", "GB")} {
		e.publish(t, ev)
	}
	e.waitSettled(t, "eu", 5)
	e.waitSettled(t, "rest", 5)
	ids := func(p *partner) []string {
		var out []string
		for _, h := range p.received() {
			out = append(out, h.header.Get("Idempotency-Key"))
		}
		slices.Sort(out) // four workers: any order
		return out
	}
	if got := ids(euPartner); !reflect.DeepEqual(got, []string{"o1", "o3"}) {
		t.Errorf("the EU destination got %v, want [o1 o3]", got)
	}
	if got := ids(restPartner); !reflect.DeepEqual(got, []string{"o2", "o4", "o5"}) {
		t.Errorf("the other destination got %v, want [o2 o4 o5]", got)
	}
	// Unchanged without a transformation.
	for _, h := range euPartner.received() {
		if id := h.header.Get("Idempotency-Key"); !bytes.Contains(h.body, []byte(`"id":"`+id+`"`)) {
			t.Errorf("%s: body %s", id, h.body)
		}
	}
	if _, as := attempts(t, e.js, "eu"); len(as) != 2 {
		t.Errorf("%d attempt records for eu, want 2 (none for the events left out)", len(as))
	}
	// Each event left out is recorded once, so the audit log says filtered
	// rather than pending.
	var left []string
	for _, rec := range natstest.AuditRecords(t, e.js, "audit."+auditlog.KindFiltered+".eu") {
		f := rec.GetDeliveryFiltered()
		if f.GetDestination() != "eu" || f.GetStreamSeq() == 0 || f.GetSubject() == "" || !f.GetFilteredAt().IsValid() {
			t.Errorf("filtered record %v", rec)
		}
		left = append(left, f.GetEventId())
	}
	slices.Sort(left)
	if !reflect.DeepEqual(left, []string{"o2", "o4", "o5"}) {
		t.Errorf("filtered records of eu for %v, want [o2 o4 o5]", left)
	}
	if v := testutil.ToFloat64(d.metrics.filtered.WithLabelValues("eu")); v != 3 {
		t.Errorf("filtered{eu} = %v, want 3", v)
	}
	if v := testutil.ToFloat64(d.metrics.filtered.WithLabelValues("rest")); v != 2 {
		t.Errorf("filtered{rest} = %v, want 2", v)
	}
}

// The marketplace transformation reshapes a Shopify order (the fixture of
// pkg/mapping), with a path and a header template; the stored event is
// unchanged and a replay runs the transformation current then.
func TestTransformReshapesTheRequest(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := newPartner(t, reply{status: http.StatusAccepted})
	dest := destinationFor("marketplace", p.URL+"/api/", 3)
	dest.Transform = config.Transform{
		JQ:      string(readMappingTestdata(t, "marketplace.jq")),
		Headers: map[string]string{"X-Order-Ref": "{{ .data.name }}"},
		Path:    "/orders/{{ .body.external_id }}",
	}
	d := e.start(t, dest)

	order := readMappingTestdata(t, "shopify_order.in.json")
	ev := events.Event{ID: "shop:1", Type: "order.created", ContentType: "application/json", Data: order}
	e.publish(t, ev)
	e.waitSettled(t, "marketplace", 1)
	hits := p.received()
	if len(hits) != 1 {
		t.Fatalf("%d requests, want 1", len(hits))
	}
	h := hits[0]
	// The fixture's source is "shop"; events published here have none.
	want := bytes.Replace(readMappingTestdata(t, "shopify_order.out.json"), []byte(`"source": "shop"`), []byte(`"source": ""`), 1)
	if !jsonEqual(t, h.body, want) {
		t.Errorf("partner got\n%s\nwant the fixture\n%s", h.body, want)
	}
	if ct := h.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	if got := h.header.Get("X-Order-Ref"); got != "#1001" {
		t.Errorf("X-Order-Ref %q", got)
	}
	if got := h.header.Get("Idempotency-Key"); got != "shop:1" {
		t.Errorf("Idempotency-Key %q", got)
	}
	_, as := attempts(t, e.js, "marketplace")
	if len(as) != 1 || as[0].Outcome != switchyardv1.Outcome_OUTCOME_DELIVERED {
		t.Errorf("attempts %v", as)
	}
	if v := testutil.ToFloat64(d.metrics.transformInfo.WithLabelValues("marketplace", d.dests[0].mapping.Version())); v != 1 {
		t.Errorf("transform_info = %v", v)
	}
	paths := p.paths()
	if len(paths) != 1 || paths[0] != "/api/orders/820982911946154508" {
		t.Errorf("paths %v", paths)
	}
}

// The attempt record of a transformed delivery names the transformation's
// version (the audit log keeps the stored payload, so the delivered body is
// known from both); a destination without one records none, and a
// filter alone is no transformation.
func TestAttemptRecordsTheTransformVersion(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := newPartner(t, reply{status: http.StatusOK})
	shaped := destinationFor("shaped", p.URL, 3)
	shaped.Transform.JQ = `{ref: .id}`
	plain := destinationFor("plain", p.URL, 3)
	filtered := destinationFor("filtered", p.URL, 3)
	filtered.Filter = `data.total > 100`
	d := e.start(t, shaped, plain, filtered)
	e.publish(t, shippedTo("o1", "DE"))
	for _, name := range []string{"shaped", "plain", "filtered"} {
		e.waitSettled(t, name, 1)
	}
	want := map[string]string{"shaped": "", "plain": "", "filtered": ""}
	for _, dest := range d.dests {
		if dest.cfg.Name == "shaped" {
			want["shaped"] = dest.mapping.Version()
		}
	}
	if len(want["shaped"]) != 12 {
		t.Fatalf("the transformation's version is %q, want 12 hex digits", want["shaped"])
	}
	for name, version := range want {
		_, as := attempts(t, e.js, name)
		if len(as) != 1 || as[0].TransformVersion != version {
			t.Errorf("%s: attempt records %v, want one with transform_version %q", name, as, version)
		}
	}
}

// A replay runs the transformation configured now over the stored payload.
func TestReplayRunsTheCurrentTransformation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := newPartner(t, reply{status: http.StatusOK})
	dest := destinationFor("erp", p.URL, 3)
	dest.Transform.JQ = `{ref: .order, replayed: ($event.headers["switchyard-replay-of"] != null)}`
	e.start(t, dest)
	e.publishReplay(t, "erp", "ev-7", "EVENTS:7:erp")
	e.waitSettled(t, "erp", 1)
	hits := p.received()
	if len(hits) != 1 || !jsonEqual(t, hits[0].body, []byte(`{"ref":"ev-7","replayed":true}`)) {
		t.Fatalf("requests %d, body %s", len(hits), hits[0].body)
	}
}

// A transformation that fails dead-letters the event at once with the
// reason, without a request, an attempt record or a retry; the dead letter
// keeps the stored payload.
func TestTransformFailureDeadLetters(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := newPartner(t, reply{status: http.StatusOK})
	dest := destinationFor("erp", p.URL, 5)
	dest.Transform.JQ = `{lines: [.line_items[] | {sku}]}`
	d := e.start(t, dest)

	bad := events.Event{ID: "ev-bad", Type: "order.created", ContentType: "application/json", Data: []byte(`{"line_items": "none"}`)}
	seq := e.publish(t, bad)
	good := events.Event{ID: "ev-good", Type: "order.created", ContentType: "application/json", Data: []byte(`{"line_items": [{"sku": "a", "qty": 1}]}`)}
	e.publish(t, good)
	info := e.waitSettled(t, "erp", 2)
	if info.Delivered.Consumer != 2 {
		t.Errorf("%d deliveries, want 2: the failed event is not retried", info.Delivered.Consumer)
	}
	hits := p.received()
	if len(hits) != 1 || hits[0].header.Get("Idempotency-Key") != "ev-good" || !jsonEqual(t, hits[0].body, []byte(`{"lines":[{"sku":"a"}]}`)) {
		t.Fatalf("partner requests %+v", hits)
	}
	_, dls := deadLetters(t, e.js, "erp")
	if len(dls) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dls))
	}
	dl := dls[0]
	version := d.dests[0].mapping.Version()
	if dl.EventId != "ev-bad" || dl.StreamSeq != seq || dl.Attempts != 1 || dl.LastStatusCode != 0 ||
		dl.Reason != switchyardv1.DeadLetterReason_DEAD_LETTER_REASON_PERMANENT_FAILURE ||
		!strings.Contains(dl.LastError, "transformation "+version+": transform") || !strings.Contains(dl.LastError, "cannot iterate over") {
		t.Errorf("dead letter = %v", dl)
	}
	if dl.TransformVersion != version {
		t.Errorf("dead letter transform_version %q, want %q", dl.TransformVersion, version)
	}
	if !bytes.Equal(dl.Payload, bad.Data) {
		t.Errorf("dead letter payload %q, want the stored body", dl.Payload)
	}
	if _, as := attempts(t, e.js, "erp"); len(as) != 1 || as[0].EventId != "ev-good" {
		t.Errorf("attempt records %v, want only ev-good's", as)
	}
	if v := testutil.ToFloat64(d.metrics.mappingFailures.WithLabelValues("erp", "transform")); v != 1 {
		t.Errorf("mapping_failures{transform} = %v", v)
	}
	if v := testutil.ToFloat64(d.metrics.deadLetters.WithLabelValues("erp")); v != 1 {
		t.Errorf("dead_letters = %v", v)
	}
}

// An invalid expression stops the dispatcher before it starts, naming the
// destination and the expression.
func TestNewRefusesAnInvalidFilter(t *testing.T) {
	t.Parallel()
	dest := destinationFor("eu-orders", "http://127.0.0.1:1", 3)
	dest.Filter = `data.country = "DE"`
	_, err := New(nil, nil, Config{Logger: natstest.Logger(t), Destinations: []config.Destination{dest}})
	if err == nil || !strings.Contains(err.Error(), `destination "eu-orders"`) || !strings.Contains(err.Error(), `data.country = \"DE\"`) {
		t.Fatalf("New = %v, want an error naming the destination and the expression", err)
	}
}
