package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/events"
	"github.com/switchyard/switchyard/pkg/httpserve"
	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/publish"
	"github.com/switchyard/switchyard/pkg/signing"
	"github.com/switchyard/switchyard/pkg/subjects"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
	"github.com/switchyard/switchyard/pkg/testing/waitfor"
	"github.com/switchyard/switchyard/pkg/untrusted"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
)

// The Standard Webhooks specification's test vector.
const (
	vecSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vecSecretB64 = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vecID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vecTimestamp = 1614265330
	vecBody      = `{"test": 2432232314}`
	vecSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

	sourceName = "shop"
	remoteIP   = "203.0.113.7"
)

var vecTime = time.Unix(vecTimestamp, 0)

// testEnv is an ingress server on a fresh embedded JetStream.
type testEnv struct {
	nats *natstest.Server
	js   jetstream.JetStream
	srv  *Server
}

type envOption func(*Config)

func withNow(t time.Time) envOption { return func(c *Config) { c.Now = func() time.Time { return t } } }

func withMaxBody(n config.ByteSize) envOption {
	return func(c *Config) { c.Sources[0].MaxBody = n }
}

func withPublishTimeout(d time.Duration) envOption {
	return func(c *Config) { c.PublishTimeout = d }
}

func newEnv(t *testing.T, opts ...envOption) *testEnv {
	t.Helper()
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	return newEnvOn(t, ns, js, opts...)
}

// newEnvOn is newEnv on a server that is already running: table tests
// share one.
func newEnvOn(t *testing.T, ns *natstest.Server, js jetstream.JetStream, opts ...envOption) *testEnv {
	t.Helper()
	cfg := Config{
		Sources: []config.Source{{
			Name:      sourceName,
			Scheme:    "standard-webhooks",
			Secrets:   []config.Secret{vecSecret},
			Tolerance: config.Duration(5 * time.Minute),
			MaxBody:   config.DefaultMaxBody,
		}},
		PublishTimeout: 2 * time.Second,
		Logger:         natstest.Logger(t),
		Now:            func() time.Time { return vecTime },
	}
	for _, o := range opts {
		o(&cfg)
	}
	srv, err := New(js, auditlog.NewEmitter(js, "ingress"), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Provision(ctx); err != nil {
		t.Fatalf("Provision: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Close(ctx)
	})
	return &testEnv{nats: ns, js: js, srv: srv}
}

// webhook is one request to send.
type webhook struct {
	source    string
	id        string
	timestamp string
	signature string
	body      string
	header    http.Header
}

// vector is the specification's signed request.
func vector() webhook {
	return webhook{source: sourceName, id: vecID, timestamp: strconv.Itoa(vecTimestamp), signature: vecSignature, body: vecBody}
}

// signed returns a correctly signed request for body.
func signed(t *testing.T, id, body string) webhook {
	t.Helper()
	sw, err := signing.NewStandardWebhooks([]string{vecSecret}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return webhook{
		source: sourceName, id: id, timestamp: strconv.Itoa(vecTimestamp),
		signature: sw.Sign(id, vecTime, []byte(body)), body: body,
	}
}

type answer struct {
	code   int
	header http.Header
	reply  reply
	raw    string
}

func (e *testEnv) post(t *testing.T, w webhook) answer {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/webhooks/"+w.source, strings.NewReader(w.body))
	req.RemoteAddr = remoteIP + ":40123"
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "partner-test/1.0")
	if w.id != "" {
		req.Header.Set(signing.HeaderWebhookID, w.id)
	}
	if w.timestamp != "" {
		req.Header.Set(signing.HeaderWebhookTimestamp, w.timestamp)
	}
	if w.signature != "" {
		req.Header.Set(signing.HeaderWebhookSignature, w.signature)
	}
	return e.handle(t, req, w.header)
}

// handle serves req with the server's handler, after adding header, and
// decodes the JSON answer.
func (e *testEnv) handle(t *testing.T, req *http.Request, header http.Header) answer {
	t.Helper()
	for k, vs := range header {
		req.Header[k] = vs
	}
	rec := httptest.NewRecorder()
	e.srv.Handler().ServeHTTP(rec, req)
	a := answer{code: rec.Code, header: rec.Header(), raw: rec.Body.String()}
	if err := json.Unmarshal(rec.Body.Bytes(), &a.reply); err != nil {
		t.Fatalf("answer %d is not JSON: %v: %q", rec.Code, err, rec.Body.String())
	}
	return a
}

// serve runs the server on a loopback listener for the rest of the test
// and returns its base URL: the real HTTP server, not just the handler.
func (e *testEnv) serve(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	natstest.Go(t, "ingress HTTP server", func(ctx context.Context) error {
		return httpserve.Serve(ctx, "ingress", ln, e.srv.Handler(), natstest.Logger(t), httpserve.WithReadTimeout(e.srv.cfg.ReadTimeout))
	})
	return "http://" + ln.Addr().String()
}

// send makes a real HTTP request and decodes the JSON answer into into
// (a reply when nil).
func send(t *testing.T, method, url string, h http.Header, body []byte) answer {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range h {
		req.Header[k] = vs
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	a := answer{code: resp.StatusCode, header: resp.Header, raw: string(raw)}
	if err := json.Unmarshal(raw, &a.reply); err != nil {
		t.Fatalf("answer %d is not JSON: %v: %q", resp.StatusCode, err, raw)
	}
	return a
}

// waitAudit waits until exactly n audit records match filter and returns
// them with their raw bytes.
func waitAudit(t *testing.T, js jetstream.JetStream, filter string, n int) ([]*switchyardv1.AuditRecord, [][]byte) {
	t.Helper()
	var msgs []*jetstream.RawStreamMsg
	waitfor.True(t, "audit records on "+filter, func() bool {
		msgs = natstest.StreamMsgs(t, js, natsx.StreamAudit, filter)
		return len(msgs) >= n
	})
	if len(msgs) != n {
		t.Fatalf("%d audit records on %s, want %d", len(msgs), filter, n)
	}
	var recs []*switchyardv1.AuditRecord
	var raws [][]byte
	for _, m := range msgs {
		rec, err := auditlog.Decode(m.Data)
		if err != nil {
			t.Fatalf("decode audit record on %s: %v", m.Subject, err)
		}
		if got := m.Header.Get(nats.MsgIdHdr); got != rec.Id {
			t.Errorf("audit record Nats-Msg-Id = %q, want the record id %q", got, rec.Id)
		}
		recs = append(recs, rec)
		raws = append(raws, m.Data)
	}
	return recs, raws
}

func eventCount(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, natsx.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// secretFree fails if b contains the source secret in any form.
func secretFree(t *testing.T, what string, b []byte) {
	t.Helper()
	key, err := base64.StdEncoding.DecodeString(vecSecretB64)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range [][]byte{[]byte(vecSecret), []byte(vecSecretB64), key} {
		if bytes.Contains(b, s) {
			t.Errorf("%s contains the source secret", what)
		}
	}
}

func TestVectorIsValid(t *testing.T) {
	t.Parallel()
	// Guards the fixtures: the helper signs the way the specification's
	// vector was signed.
	if got := signed(t, vecID, vecBody).signature; got != vecSignature {
		t.Fatalf("signature of the test vector = %q, want %q", got, vecSignature)
	}
}

func TestAcceptsSignedWebhook(t *testing.T) {
	t.Parallel()
	e := newEnv(t)

	a := e.post(t, vector())
	if a.code != http.StatusAccepted {
		t.Fatalf("status = %d (%s), want 202", a.code, a.raw)
	}
	wantID := sourceName + ":" + vecID
	if a.reply.ID != wantID || a.reply.Status != "accepted" {
		t.Errorf("reply = %+v, want id %q status accepted", a.reply, wantID)
	}

	msgs := natstest.StreamMsgs(t, e.js, natsx.StreamEvents, ">")
	if len(msgs) != 1 {
		t.Fatalf("EVENTS holds %d messages, want 1", len(msgs))
	}
	m := msgs[0]
	if want := "webhooks." + sourceName + ".unknown"; m.Subject != want {
		t.Errorf("subject = %q, want %q (the body has no type)", m.Subject, want)
	}
	if string(m.Data) != vecBody {
		t.Errorf("stored body = %q, want the raw body %q byte for byte", m.Data, vecBody)
	}
	for k, want := range map[string]string{
		nats.MsgIdHdr:                  wantID,
		events.HeaderEventID:           wantID,
		events.HeaderSource:            sourceName,
		events.HeaderContentType:       "application/json",
		events.HeaderEventType:         "",
		events.HeaderReceivedAt:        m.Header.Get(events.HeaderReceivedAt),
		signing.HeaderWebhookID:        "",
		signing.HeaderWebhookTimestamp: "",
		signing.HeaderWebhookSignature: "",
	} {
		if got := m.Header.Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	if _, err := time.Parse(time.RFC3339Nano, m.Header.Get(events.HeaderReceivedAt)); err != nil {
		t.Errorf("%s is not RFC 3339: %v", events.HeaderReceivedAt, err)
	}
	for k := range m.Header {
		lk := strings.ToLower(k)
		if strings.HasPrefix(lk, "webhook-") || strings.Contains(lk, "signature") || lk == "authorization" || lk == "user-agent" {
			t.Errorf("request header %s was copied into the stored event", k)
		}
	}
	secretFree(t, "stored event", m.Data)
	for k, vs := range m.Header {
		secretFree(t, "stored header "+k, []byte(strings.Join(vs, " ")))
		if strings.Contains(strings.Join(vs, " "), strings.TrimPrefix(vecSignature, "v1,")) {
			t.Errorf("stored header %s carries the signature", k)
		}
	}
}

func TestSubjectFromEventType(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		body        string
		wantSubject string
		wantType    string
	}{
		{"dotted type", `{"type":"order.created","data":{}}`, "webhooks.shop.order_created", "order.created"},
		{"wildcards", `{"type":"a.*.>"}`, "webhooks.shop.a____", "a.*.>"},
		{"only wildcards", `{"type":">"}`, "webhooks.shop.unknown", ">"},
		{"not a string", `{"type":42}`, "webhooks.shop.unknown", ""},
		{"not JSON", `type=order.created`, "webhooks.shop.unknown", ""},
		{"nested type ignored", `{"data":{"type":"x"}}`, "webhooks.shop.unknown", ""},
	}
	e := newEnv(t)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := "msg_type_" + strconv.Itoa(i)
			a := e.post(t, signed(t, id, tt.body))
			if a.code != http.StatusAccepted {
				t.Fatalf("status = %d (%s), want 202", a.code, a.raw)
			}
			var found *jetstream.RawStreamMsg
			for _, m := range natstest.StreamMsgs(t, e.js, natsx.StreamEvents, ">") {
				if m.Header.Get(events.HeaderEventID) == sourceName+":"+id {
					found = m
				}
			}
			if found == nil {
				t.Fatal("event not stored")
			}
			if found.Subject != tt.wantSubject {
				t.Errorf("subject = %q, want %q", found.Subject, tt.wantSubject)
			}
			if got := found.Header.Get(events.HeaderEventType); got != tt.wantType {
				t.Errorf("%s = %q, want the original %q", events.HeaderEventType, got, tt.wantType)
			}
			if string(found.Data) != tt.body {
				t.Errorf("body = %q, want %q", found.Data, tt.body)
			}
		})
	}
}

func TestDuplicateWebhookStoredOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)

	first := e.post(t, vector())
	if first.code != http.StatusAccepted {
		t.Fatalf("first: status = %d (%s), want 202", first.code, first.raw)
	}
	e.waitRecord(t, sourceName+":"+vecID)
	second := e.post(t, vector())
	if second.code != http.StatusOK || second.reply.Status != "duplicate" {
		t.Fatalf("second: status = %d %+v, want 200 duplicate", second.code, second.reply)
	}
	if second.reply.ID != sourceName+":"+vecID {
		t.Errorf("second: id = %q", second.reply.ID)
	}
	if n := eventCount(t, e.js); n != 1 {
		t.Errorf("EVENTS holds %d messages, want 1", n)
	}

	recs, _ := waitAudit(t, e.js, "audit."+auditlog.KindDuplicate+"."+sourceName, 1)
	d := recs[0].GetWebhookDuplicate()
	if d == nil {
		t.Fatalf("record is %T, want a webhook duplicate", recs[0].Detail)
	}
	if d.Source != sourceName || d.EventId != sourceName+":"+vecID || d.RemoteAddr != remoteIP ||
		d.Subject != "webhooks.shop.unknown" || d.Via != switchyardv1.DuplicateVia_DUPLICATE_VIA_IDEMPOTENCY_RECORD {
		t.Errorf("duplicate record = %v", d)
	}
	if recs[0].Service != "ingress" {
		t.Errorf("service = %q, want ingress", recs[0].Service)
	}
	// The first, accepted, delivery is not a rejection.
	if got := natstest.StreamMsgs(t, e.js, natsx.StreamAudit, "audit.rejected.>"); len(got) != 0 {
		t.Errorf("%d rejection records, want none", len(got))
	}
}

func TestUnknownSource(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tests := []struct {
		path, token string
	}{
		{"nope", "nope"},
		{"a.b*c", "a_b_c"},
	}
	for _, tt := range tests {
		w := vector()
		w.source = tt.path
		a := e.post(t, w)
		if a.code != http.StatusNotFound || a.reply.Error != "unknown_source" {
			t.Errorf("POST /webhooks/%s: %d %+v, want 404 unknown_source", tt.path, a.code, a.reply)
		}
		recs, _ := waitAudit(t, e.js, "audit.rejected."+tt.token, 1)
		r := recs[0].GetWebhookRejected()
		if r.GetReason() != switchyardv1.RejectReason_REJECT_REASON_UNKNOWN_SOURCE || r.Source != tt.token ||
			r.StatusCode != http.StatusNotFound || r.RemoteAddr != remoteIP {
			t.Errorf("rejection record = %v", r)
		}
	}
	if n := eventCount(t, e.js); n != 0 {
		t.Errorf("EVENTS holds %d messages, want 0", n)
	}
}

func TestRejectsUnverifiedWebhook(t *testing.T) {
	t.Parallel()
	otherSecret := "whsec_" + base64.StdEncoding.EncodeToString([]byte("another-32-byte-secret-for-tests"))
	other, err := signing.NewStandardWebhooks([]string{otherSecret}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		modify     func(*webhook)
		now        time.Time
		wantCode   string
		wantReason switchyardv1.RejectReason
	}{
		{
			name:     "signed with another secret",
			modify:   func(w *webhook) { w.signature = other.Sign(w.id, vecTime, []byte(w.body)) },
			wantCode: "bad_signature", wantReason: switchyardv1.RejectReason_REJECT_REASON_BAD_SIGNATURE,
		},
		{
			name:     "body changed after signing",
			modify:   func(w *webhook) { w.body = `{"test": 2432232315}` },
			wantCode: "bad_signature", wantReason: switchyardv1.RejectReason_REJECT_REASON_BAD_SIGNATURE,
		},
		{
			name:     "id changed after signing",
			modify:   func(w *webhook) { w.id = "msg_other" },
			wantCode: "bad_signature", wantReason: switchyardv1.RejectReason_REJECT_REASON_BAD_SIGNATURE,
		},
		{
			name:     "only a v1a signature",
			modify:   func(w *webhook) { w.signature = "v1a,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=" },
			wantCode: "bad_signature", wantReason: switchyardv1.RejectReason_REJECT_REASON_BAD_SIGNATURE,
		},
		{
			name:     "no signature header",
			modify:   func(w *webhook) { w.signature = "" },
			wantCode: "missing_signature", wantReason: switchyardv1.RejectReason_REJECT_REASON_MISSING_SIGNATURE,
		},
		{
			name:     "no id header",
			modify:   func(w *webhook) { w.id = "" },
			wantCode: "missing_signature", wantReason: switchyardv1.RejectReason_REJECT_REASON_MISSING_SIGNATURE,
		},
		{
			name:     "no timestamp header",
			modify:   func(w *webhook) { w.timestamp = "" },
			wantCode: "missing_signature", wantReason: switchyardv1.RejectReason_REJECT_REASON_MISSING_SIGNATURE,
		},
		{
			name:     "timestamp not a number",
			modify:   func(w *webhook) { w.timestamp = "yesterday" },
			wantCode: "malformed_signature", wantReason: switchyardv1.RejectReason_REJECT_REASON_MALFORMED,
		},
		{
			name:     "signature without version",
			modify:   func(w *webhook) { w.signature = "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=" },
			wantCode: "malformed_signature", wantReason: switchyardv1.RejectReason_REJECT_REASON_MALFORMED,
		},
		{
			name:     "stale timestamp",
			now:      vecTime.Add(10 * time.Minute),
			wantCode: "stale_timestamp", wantReason: switchyardv1.RejectReason_REJECT_REASON_STALE_TIMESTAMP,
		},
		{
			name:     "timestamp in the future",
			now:      vecTime.Add(-10 * time.Minute),
			wantCode: "stale_timestamp", wantReason: switchyardv1.RejectReason_REJECT_REASON_STALE_TIMESTAMP,
		},
	}
	// One NATS server for the table; each case has its own source, so its
	// audit records are on its own subject.
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := vecTime
			if !tt.now.IsZero() {
				now = tt.now
			}
			source := fmt.Sprintf("case%d", i)
			e := newEnvOn(t, ns, js, withNow(now), func(c *Config) { c.Sources[0].Name = source })
			w := vector()
			w.source = source
			if tt.modify != nil {
				tt.modify(&w)
			}
			a := e.post(t, w)
			if a.code != http.StatusUnauthorized {
				t.Fatalf("status = %d (%s), want 401", a.code, a.raw)
			}
			if a.reply.Error != tt.wantCode {
				t.Errorf("error = %q, want %q", a.reply.Error, tt.wantCode)
			}
			if a.reply.Message == "" {
				t.Error("the answer does not say what was wrong")
			}
			secretFree(t, "answer", []byte(a.raw))

			recs, raws := waitAudit(t, e.js, "audit.rejected."+source, 1)
			r := recs[0].GetWebhookRejected()
			if r == nil {
				t.Fatalf("record is %T, want a rejection", recs[0].Detail)
			}
			if r.Source != source || r.Reason != tt.wantReason || r.RemoteAddr != remoteIP ||
				r.StatusCode != http.StatusUnauthorized || r.UserAgent != "partner-test/1.0" {
				t.Errorf("rejection record = %v", r)
			}
			// The id the event would have had, as for 503s (unavailable).
			if want := source + ":" + w.id; w.id != "" && r.EventId != want {
				t.Errorf("record event id = %q, want the unverified delivery id namespaced, %q", r.EventId, want)
			}
			if w.id == "" && r.EventId != "" {
				t.Errorf("record event id = %q, want none: the request had no delivery id", r.EventId)
			}
			if r.BodySize != int64(len(w.body)) {
				t.Errorf("record body size = %d, want %d", r.BodySize, len(w.body))
			}
			secretFree(t, "audit record", raws[0])
			if bytes.Contains(raws[0], []byte(w.body)) {
				t.Error("the audit record carries the body")
			}
			if w.signature != "" && bytes.Contains(raws[0], []byte(w.signature)) {
				t.Error("the audit record carries the signature")
			}
			if n := eventCount(t, e.js); n != 0 {
				t.Errorf("EVENTS holds %d messages, want 0", n)
			}
		})
	}
}

func TestRemoteAddressIgnoresForwardedFor(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := vector()
	w.signature = "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
	w.header = http.Header{"X-Forwarded-For": {"198.51.100.1"}, "X-Real-Ip": {"198.51.100.2"}}
	if a := e.post(t, w); a.code != http.StatusUnauthorized {
		t.Fatalf("status = %d, want 401", a.code)
	}
	recs, _ := waitAudit(t, e.js, "audit.rejected."+sourceName, 1)
	if got := recs[0].GetWebhookRejected().RemoteAddr; got != remoteIP {
		t.Errorf("remote address = %q, want the peer %q, not a forwarded one", got, remoteIP)
	}
}

func TestBodyTooLarge(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withMaxBody(64))
	body := `{"type":"order.created","padding":"` + strings.Repeat("x", 100) + `"}`
	a := e.post(t, signed(t, "msg_big", body))
	if a.code != http.StatusRequestEntityTooLarge || a.reply.Error != "body_too_large" {
		t.Fatalf("answer = %d %+v, want 413 body_too_large", a.code, a.reply)
	}
	recs, _ := waitAudit(t, e.js, "audit.rejected."+sourceName, 1)
	if r := recs[0].GetWebhookRejected(); r.Reason != switchyardv1.RejectReason_REJECT_REASON_BODY_TOO_LARGE || r.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("rejection record = %v", r)
	}
	if n := eventCount(t, e.js); n != 0 {
		t.Errorf("EVENTS holds %d messages, want 0", n)
	}

	// A body exactly at the limit is accepted.
	exact := `{"p":"` + strings.Repeat("y", 64-len(`{"p":""}`)) + `"}`
	if len(exact) != 64 {
		t.Fatalf("fixture is %d bytes", len(exact))
	}
	if a := e.post(t, signed(t, "msg_exact", exact)); a.code != http.StatusAccepted {
		t.Errorf("body at the limit: status = %d (%s), want 202", a.code, a.raw)
	}
}

func TestUnavailableWhenStreamMissing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.js.DeleteStream(ctx, natsx.StreamEvents); err != nil {
		t.Fatal(err)
	}
	a := e.post(t, vector())
	assertUnavailable(t, a)
	recs, _ := waitAudit(t, e.js, "audit.rejected."+sourceName, 1)
	if r := recs[0].GetWebhookRejected(); r.Reason != switchyardv1.RejectReason_REJECT_REASON_UNAVAILABLE || r.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("rejection record = %v", r)
	}
}

func TestUnavailableWhenServerDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withPublishTimeout(300*time.Millisecond))
	e.nats.NS.Shutdown()
	e.nats.NS.WaitForShutdown()
	for range 2 {
		assertUnavailable(t, e.post(t, vector()))
	}
}

// A store with no room left (the disk under NATS close to full): every
// webhook is answered 503 with Retry-After at once, never 2xx, nothing is
// stored, and the same webhooks sent again once room returns are stored.
func TestUnavailableWhileTheStoreIsFull(t *testing.T) {
	t.Parallel()
	ns := natstest.StartWithStoreLimit(t, 512<<10)
	_, js := ns.Connect(t)
	// A refusal for want of room comes back at once (publish.NoRoom): the
	// long publish timeout is not waited out.
	e := newEnvOn(t, ns.Server, js, withPublishTimeout(time.Minute))
	filler := make([]byte, 4<<10)
	for {
		_, err := js.Publish(t.Context(), "events.fill", filler)
		if publish.NoRoom(err) {
			break
		}
		if err != nil {
			t.Fatalf("filling the store: %v", err)
		}
	}
	before := eventCount(t, js)
	hooks := make([]webhook, 3)
	for i := range hooks {
		hooks[i] = signed(t, fmt.Sprintf("msg_full_%d", i), fmt.Sprintf(`{"type":"order.created","n":%d,"pad":%q}`, i, strings.Repeat("p", 4<<10)))
		assertUnavailable(t, e.post(t, hooks[i]))
	}
	if n := eventCount(t, js); n != before {
		t.Fatalf("EVENTS holds %d messages after refusals, want %d", n, before)
	}
	ns.RaiseStoreLimit(t, 64<<20)
	for _, h := range hooks {
		if a := e.post(t, h); a.code != http.StatusAccepted || a.reply.Status != statusAccepted {
			t.Errorf("after room returned: %d %+v, want 202 accepted", a.code, a.reply)
		}
	}
	if n := eventCount(t, js); n != before+uint64(len(hooks)) {
		t.Errorf("EVENTS holds %d messages, want %d", n, before+uint64(len(hooks)))
	}
}

func assertUnavailable(t *testing.T, a answer) {
	t.Helper()
	if a.code >= 200 && a.code < 300 {
		t.Fatalf("status = %d: an event that was not stored must never be acknowledged", a.code)
	}
	if a.code != http.StatusServiceUnavailable || a.reply.Error != "unavailable" {
		t.Errorf("answer = %d %+v, want 503 unavailable", a.code, a.reply)
	}
	ra, err := strconv.Atoi(a.header.Get("Retry-After"))
	if err != nil || ra <= 0 {
		t.Errorf("Retry-After = %q, want a positive number of seconds", a.header.Get("Retry-After"))
	}
}

func TestHealthz(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rec := httptest.NewRecorder()
	e.srv.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	if rec.Code != http.StatusOK {
		t.Errorf("healthz = %d", rec.Code)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	log := natstest.Logger(t)
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no logger", Config{}},
		{"bad secret", Config{Logger: log, Sources: []config.Source{{Name: "s", Scheme: "standard-webhooks", Secrets: []config.Secret{"whsec_%%%"}}}}},
		{"no secret", Config{Logger: log, Sources: []config.Source{{Name: "s", Scheme: "standard-webhooks"}}}},
		{"unknown scheme", Config{Logger: log, Sources: []config.Source{{Name: "s", Scheme: "carrier-pigeon", Secrets: []config.Secret{vecSecret}}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := New(nil, nil, tt.cfg)
			if err == nil {
				t.Fatal("New succeeded")
			}
			secretFree(t, "error", []byte(err.Error()))
		})
	}
}

// FuzzWebhookSubject checks that whatever type a partner puts in its body,
// the subject is webhooks.<source>.<one safe token>.
func FuzzWebhookSubject(f *testing.F) {
	for _, s := range []string{
		`{"type":"order.created"}`, `{"type":"a.*.>"}`, `{"type":""}`, `{"type":" \t\n"}`,
		`{"type":"é.ü"}`, `{"type":null}`, `[]`, `{"type":"` + strings.Repeat("a", 300) + `"}`,
		`{"type":"\u0000"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		subject := "webhooks.shop." + subjects.Token(untrusted.Text(signing.JSONString(body, "type"), maxHeaderValue))
		toks := strings.Split(subject, ".")
		if len(toks) != 3 || toks[2] == "" {
			t.Fatalf("subject %q is not three tokens", subject)
		}
		if err := subjects.Check(subject); err != nil {
			t.Fatalf("subject %q: %v", subject, err)
		}
		if strings.ContainsAny(toks[2], "*> \t\r\n") || len(toks[2]) > 128 {
			t.Fatalf("token %q is not safe", toks[2])
		}
	})
}

func TestSecretRotationAcceptsEitherSecret(t *testing.T) {
	t.Parallel()
	newSecret := "whsec_" + base64.StdEncoding.EncodeToString([]byte("the-new-secret-after-rotation-32"))
	e := newEnv(t, func(c *Config) { c.Sources[0].Secrets = []config.Secret{config.Secret(newSecret), vecSecret} })
	if a := e.post(t, vector()); a.code != http.StatusAccepted {
		t.Errorf("signed with the old secret: %d (%s), want 202", a.code, a.raw)
	}
	sw, err := signing.NewStandardWebhooks([]string{newSecret}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	w := webhook{source: sourceName, id: "msg_new", timestamp: strconv.Itoa(vecTimestamp), body: `{"type":"x"}`}
	w.signature = sw.Sign(w.id, vecTime, []byte(w.body))
	if a := e.post(t, w); a.code != http.StatusAccepted {
		t.Errorf("signed with the new secret: %d (%s), want 202", a.code, a.raw)
	}
	// A sender signing with both (Standard Webhooks allows several).
	w2 := vector()
	w2.signature = "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= " + vecSignature
	w2.id = vecID // same delivery: a duplicate, still 2xx
	if a := e.post(t, w2); a.code != http.StatusOK {
		t.Errorf("several signatures, one valid: %d (%s), want 200 duplicate", a.code, a.raw)
	}
	if n := eventCount(t, e.js); n != 2 {
		t.Errorf("EVENTS holds %d messages, want 2", n)
	}
}

// The raw event type travels in a header: a partner must not be able to
// add headers of its own through it.
func TestEventTypeCannotInjectHeaders(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	body := `{"type":"order.created\r\nSwitchyard-Replay-Of: EVENTS:1:erp\r\nSwitchyard-Source: other"}`
	if a := e.post(t, signed(t, "msg_inject", body)); a.code != http.StatusAccepted {
		t.Fatalf("status = %d (%s), want 202", a.code, a.raw)
	}
	msgs := natstest.StreamMsgs(t, e.js, natsx.StreamEvents, ">")
	if len(msgs) != 1 {
		t.Fatalf("%d events", len(msgs))
	}
	h := msgs[0].Header
	if _, ok := h[events.HeaderReplayOf]; ok {
		t.Errorf("the body injected a %s header", events.HeaderReplayOf)
	}
	if got := h.Values(events.HeaderSource); len(got) != 1 || got[0] != sourceName {
		t.Errorf("%s = %q, want only %q", events.HeaderSource, got, sourceName)
	}
	if strings.ContainsAny(h.Get(events.HeaderEventType), "\r\n") {
		t.Errorf("%s keeps line breaks: %q", events.HeaderEventType, h.Get(events.HeaderEventType))
	}
}
