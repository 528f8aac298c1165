package server

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/events"
	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/signing"
	"github.com/switchyard/switchyard/pkg/subjects"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
)

// schemeCase is a source of one scheme and a partner that signs for it.
type schemeCase struct {
	source config.Source
	// sign returns the headers the partner sends for a delivery, signed
	// with the right secret or, when good is false, with another one.
	sign func(good bool, id string, ts time.Time, body []byte) http.Header
	// sigHeader carries the signature or the credentials.
	sigHeader string
	body      string
	// deliveryID is the id the partner sends ("" when it sends none: the
	// id is then a hash of the source and the body).
	deliveryID string
	wantType   string
	// keep are provider headers that must be stored with the event.
	keep map[string]string
	// secrets are every form of the source's secrets, which must appear
	// nowhere.
	secrets []string
	// badCode and missingCode are the answers' error codes.
	badCode, missingCode string
}

var schemeNow = time.Unix(1_700_000_000, 0)

func hmacSHA256(key string, parts ...string) []byte {
	m := hmac.New(sha256.New, []byte(key))
	for _, p := range parts {
		m.Write([]byte(p))
	}
	return m.Sum(nil)
}

func pick(good bool, right, wrong string) string {
	if good {
		return right
	}
	return wrong
}

func schemeCases(t *testing.T) []schemeCase {
	t.Helper()
	const (
		stdSecret   = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
		otherStd    = "whsec_YW5vdGhlci0yNC1ieXRlLXNlY3JldCE="
		ghSecret    = "It's a Secret to Everybody"
		stripeSec   = "whsec_d6a3f4b1c8e2907d5a6b3c1e4f8a9d2b"
		shopSecret  = "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"
		slackSecret = "8f742231b10e8888abcd99yyyzzz85a5"
		hmacSecret  = "partner-secret-1"
		basicCred   = "acme:correct horse battery"
		bearerTok   = "tok_9f8e7d6c5b4a3928"
		wrong       = "a-secret-that-is-not-configured"
	)
	stdGood, err := signing.NewStandardWebhooks([]string{stdSecret}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	stdBad, err := signing.NewStandardWebhooks([]string{otherStd}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	seed := sha256.Sum256([]byte("switchyard standard webhooks v1a test key"))
	priv := ed25519.NewKeyFromSeed(seed[:])
	otherSeed := sha256.Sum256([]byte("another key"))
	otherPriv := ed25519.NewKeyFromSeed(otherSeed[:])
	pub := "whpk_" + base64.StdEncoding.EncodeToString(priv.Public().(ed25519.PublicKey))
	hmacOpts := signing.HMACOptions{Header: "X-Partner-Signature", Algorithm: "sha512", Encoding: "base64", Prefix: "v1=", TimestampHeader: "X-Partner-Timestamp"}
	hmacSigner := func(secret string) *signing.HMAC {
		v, err := signing.NewHMAC([]string{secret}, hmacOpts, time.Minute, "X-Partner-Delivery", "")
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	src := func(name, scheme string, secrets ...string) config.Source {
		s := config.Source{Name: name, Scheme: scheme, Tolerance: config.DefaultTolerance, MaxBody: config.DefaultMaxBody}
		for _, sec := range secrets {
			s.Secrets = append(s.Secrets, config.Secret(sec))
		}
		return s
	}
	hmacSource := src("partner", "hmac", hmacSecret)
	hmacSource.HMAC = config.SourceHMAC{Header: hmacOpts.Header, Algorithm: hmacOpts.Algorithm, Encoding: hmacOpts.Encoding,
		Prefix: hmacOpts.Prefix, TimestampHeader: hmacOpts.TimestampHeader, SignedContent: "{timestamp}.{body}"}
	hmacSource.IDHeader = "X-Partner-Delivery"
	noIDSource := src("partner-noid", "hmac", hmacSecret)
	noIDSource.HMAC = config.SourceHMAC{Header: "X-Sig", Algorithm: "sha256", Encoding: "hex", SignedContent: "{body}"}
	basicSource := src("courier", "basic", basicCred)
	basicSource.IDHeader, basicSource.TypeHeader = "X-Request-Id", "X-Event-Type"
	h := func(kv ...string) http.Header {
		hd := http.Header{"Content-Type": {"application/json"}}
		for i := 0; i < len(kv); i += 2 {
			hd.Set(kv[i], kv[i+1])
		}
		return hd
	}
	unix := func(ts time.Time) string { return strconv.FormatInt(ts.Unix(), 10) }
	b64 := base64.StdEncoding.EncodeToString
	return []schemeCase{
		{
			source: src("std", "standard-webhooks", stdSecret),
			sign: func(good bool, id string, ts time.Time, body []byte) http.Header {
				sw := stdBad
				if good {
					sw = stdGood
				}
				return h(signing.HeaderWebhookID, id, signing.HeaderWebhookTimestamp, unix(ts), signing.HeaderWebhookSignature, sw.Sign(id, ts, body))
			},
			sigHeader: signing.HeaderWebhookSignature, body: `{"type":"order.created","data":{"id":1}}`, deliveryID: "msg_2Lw",
			wantType: "order.created", secrets: []string{stdSecret, strings.TrimPrefix(stdSecret, "whsec_")},
			badCode: "bad_signature", missingCode: "missing_signature",
		},
		{
			source: src("std-v1a", "standard-webhooks", pub),
			sign: func(good bool, id string, ts time.Time, body []byte) http.Header {
				key := otherPriv
				if good {
					key = priv
				}
				sig := ed25519.Sign(key, []byte(id+"."+unix(ts)+"."+string(body)))
				return h(signing.HeaderWebhookID, id, signing.HeaderWebhookTimestamp, unix(ts), signing.HeaderWebhookSignature, "v1a,"+b64(sig))
			},
			sigHeader: signing.HeaderWebhookSignature, body: `{"type":"user.deleted"}`, deliveryID: "msg_v1a",
			wantType: "user.deleted", secrets: []string{b64(priv), b64(priv.Seed())},
			badCode: "bad_signature", missingCode: "missing_signature",
		},
		{
			source: src("gh", "github", ghSecret),
			sign: func(good bool, id string, _ time.Time, body []byte) http.Header {
				sig := "sha256=" + hex.EncodeToString(hmacSHA256(pick(good, ghSecret, wrong), string(body)))
				return h(signing.HeaderGitHubSignature256, sig, signing.HeaderGitHubDelivery, id, signing.HeaderGitHubEvent, "pull_request", "X-GitHub-Hook-ID", "292430182")
			},
			sigHeader: signing.HeaderGitHubSignature256, body: `{"action":"opened","number":7}`, deliveryID: "72d3162e-cc78-11e3-81ab-4c9367dc0958",
			wantType: "pull_request", keep: map[string]string{"X-Github-Event": "pull_request", "X-Github-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958", "X-Github-Hook-Id": "292430182"},
			secrets: []string{ghSecret}, badCode: "bad_signature", missingCode: "missing_signature",
		},
		{
			source: src("stripe", "stripe", stripeSec),
			sign: func(good bool, _ string, ts time.Time, body []byte) http.Header {
				sig := hex.EncodeToString(hmacSHA256(pick(good, stripeSec, wrong), unix(ts), ".", string(body)))
				return h(signing.HeaderStripeSignature, "t="+unix(ts)+",v1="+sig)
			},
			sigHeader: signing.HeaderStripeSignature, body: `{"id":"evt_1NG8Du2eZvKYlo2C","object":"event","type":"invoice.paid"}`, deliveryID: "evt_1NG8Du2eZvKYlo2C",
			wantType: "invoice.paid", secrets: []string{stripeSec}, badCode: "bad_signature", missingCode: "missing_signature",
		},
		{
			source: src("shop", "shopify", shopSecret),
			sign: func(good bool, id string, _ time.Time, body []byte) http.Header {
				return h(signing.HeaderShopifyHmac, b64(hmacSHA256(pick(good, shopSecret, wrong), string(body))),
					signing.HeaderShopifyWebhookID, id, signing.HeaderShopifyTopic, "orders/create", "X-Shopify-Shop-Domain", "acme.myshopify.com")
			},
			sigHeader: signing.HeaderShopifyHmac, body: `{"id":820982911946154500,"email":"jon@example.com"}`, deliveryID: "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
			wantType: "orders/create", keep: map[string]string{"X-Shopify-Topic": "orders/create", "X-Shopify-Shop-Domain": "acme.myshopify.com"},
			secrets: []string{shopSecret}, badCode: "bad_signature", missingCode: "missing_signature",
		},
		{
			source: src("slack", "slack", slackSecret),
			sign: func(good bool, _ string, ts time.Time, body []byte) http.Header {
				sig := "v0=" + hex.EncodeToString(hmacSHA256(pick(good, slackSecret, wrong), "v0:", unix(ts), ":", string(body)))
				return h(signing.HeaderSlackSignature, sig, signing.HeaderSlackTimestamp, unix(ts), "X-Slack-Retry-Num", "1")
			},
			sigHeader: signing.HeaderSlackSignature, body: `{"type":"event_callback","event_id":"Ev08MFMKH6","event":{"type":"app_mention","text":"hi"}}`,
			deliveryID: "Ev08MFMKH6", wantType: "app_mention", keep: map[string]string{"X-Slack-Retry-Num": "1"},
			secrets: []string{slackSecret}, badCode: "bad_signature", missingCode: "missing_signature",
		},
		{
			source: hmacSource,
			sign: func(good bool, id string, ts time.Time, body []byte) http.Header {
				return h("X-Partner-Signature", hmacSigner(pick(good, hmacSecret, wrong)).Sign(id, ts, body), "X-Partner-Timestamp", unix(ts), "X-Partner-Delivery", id)
			},
			sigHeader: "X-Partner-Signature", body: `{"type":"invoice.paid","id":"inv_1"}`, deliveryID: "d-77",
			wantType: "invoice.paid", keep: map[string]string{"X-Partner-Delivery": "d-77"},
			secrets: []string{hmacSecret}, badCode: "bad_signature", missingCode: "missing_signature",
		},
		{
			source: noIDSource,
			sign: func(good bool, _ string, _ time.Time, body []byte) http.Header {
				return h("X-Sig", hex.EncodeToString(hmacSHA256(pick(good, hmacSecret, wrong), string(body))))
			},
			sigHeader: "X-Sig", body: `{"type":"stock.low","sku":"A-1"}`,
			wantType: "stock.low", secrets: []string{hmacSecret}, badCode: "bad_signature", missingCode: "missing_signature",
		},
		{
			source: basicSource,
			sign: func(good bool, id string, _ time.Time, _ []byte) http.Header {
				return h("Authorization", "Basic "+b64([]byte(pick(good, basicCred, "acme:guess"))), "X-Request-Id", id, "X-Event-Type", "shipment.sent")
			},
			sigHeader: "Authorization", body: `{"tracking":"1Z999"}`, deliveryID: "r-42",
			wantType: "shipment.sent", keep: map[string]string{"X-Request-Id": "r-42", "X-Event-Type": "shipment.sent"},
			secrets: []string{basicCred, b64([]byte(basicCred)), "correct horse battery"}, badCode: "bad_credentials", missingCode: "missing_credentials",
		},
		{
			source: src("notifier", "bearer", bearerTok),
			sign: func(good bool, _ string, _ time.Time, _ []byte) http.Header {
				return h("Authorization", "Bearer "+pick(good, bearerTok, "tok_guess_0000000000"))
			},
			sigHeader: "Authorization", body: `{"type":"ping"}`,
			wantType: "ping", secrets: []string{bearerTok}, badCode: "bad_credentials", missingCode: "missing_credentials",
		},
	}
}

// TestSchemesThroughHTTP sends each scheme's partner requests to the real
// HTTP server on an embedded NATS: a signed request is stored once with
// the headers that matter and none that carry a secret; a forged or
// unsigned one is refused, audited without the secret, and stores nothing.
func TestSchemesThroughHTTP(t *testing.T) {
	t.Parallel()
	cases := schemeCases(t)
	var sources []config.Source
	for _, c := range cases {
		sources = append(sources, c.source)
	}
	e := newEnv(t, withNow(schemeNow), func(cfg *Config) { cfg.Sources = sources })
	base := e.serve(t)
	for _, c := range cases {
		t.Run(c.source.Name, func(t *testing.T) {
			t.Parallel()
			name := c.source.Name
			url := base + "/webhooks/" + name
			body := []byte(c.body)
			noLeak := func(what string, b []byte) {
				t.Helper()
				for _, s := range c.secrets {
					if bytes.Contains(b, []byte(s)) {
						t.Errorf("%s contains a secret of the source", what)
					}
				}
			}

			// Forged: signed with another secret.
			a := send(t, http.MethodPost, url, c.sign(false, c.deliveryID, schemeNow, body), body)
			if a.code != http.StatusUnauthorized || a.reply.Error != c.badCode {
				t.Fatalf("forged request: %d %+v, want 401 %s", a.code, a.reply, c.badCode)
			}
			noLeak("the answer", []byte(a.raw))
			// Unsigned.
			unsigned := c.sign(true, c.deliveryID, schemeNow, body)
			unsigned.Del(c.sigHeader)
			if a := send(t, http.MethodPost, url, unsigned, body); a.code != http.StatusUnauthorized || a.reply.Error != c.missingCode {
				t.Fatalf("unsigned request: %d %+v, want 401 %s", a.code, a.reply, c.missingCode)
			}
			recs, raws := waitAudit(t, e.js, "audit.rejected."+name, 2)
			for i, r := range recs {
				rj := r.GetWebhookRejected()
				if rj.GetSource() != name || rj.RemoteAddr != "127.0.0.1" || rj.StatusCode != http.StatusUnauthorized || rj.Detail == "" {
					t.Errorf("rejection record = %v", rj)
				}
				noLeak("a rejection record", raws[i])
				if bytes.Contains(raws[i], body) {
					t.Error("a rejection record carries the body")
				}
			}
			if n := natstest.Count(t, e.js, natsx.StreamEvents, "webhooks."+name+".>"); n != 0 {
				t.Fatalf("refused requests stored %d events", n)
			}

			// Signed: stored once.
			a = send(t, http.MethodPost, url, c.sign(true, c.deliveryID, schemeNow, body), body)
			if a.code != http.StatusAccepted || a.reply.Status != statusAccepted {
				t.Fatalf("signed request: %d %s, want 202 accepted", a.code, a.raw)
			}
			wantID := name + ":" + c.deliveryID
			if c.deliveryID == "" {
				wantID = name + ":" + deliveryID(name, "", body)
				if !strings.HasPrefix(wantID, name+":h-") || len(wantID) != len(name)+1+2+32 {
					t.Errorf("event id without a provider id = %q, want <source>:h-<32 hex>", wantID)
				}
			}
			if a.reply.ID != wantID {
				t.Errorf("id = %q, want %q", a.reply.ID, wantID)
			}
			if a := send(t, http.MethodPost, url, c.sign(true, c.deliveryID, schemeNow, body), body); a.code != http.StatusOK || a.reply.Status != statusDuplicate || a.reply.ID != wantID {
				t.Errorf("redelivery: %d %s, want 200 duplicate", a.code, a.raw)
			}
			msgs := natstest.StreamMsgs(t, e.js, natsx.StreamEvents, "webhooks."+name+".>")
			if len(msgs) != 1 {
				t.Fatalf("%d events stored, want 1", len(msgs))
			}
			m := msgs[0]
			if want := "webhooks." + name + "." + subjects.Token(c.wantType); m.Subject != want {
				t.Errorf("subject = %q, want %q", m.Subject, want)
			}
			if !bytes.Equal(m.Data, body) {
				t.Errorf("stored body = %q, want the raw body byte for byte", m.Data)
			}
			want := map[string]string{
				nats.MsgIdHdr: wantID, events.HeaderEventID: wantID, events.HeaderSource: name,
				events.HeaderEventType: c.wantType, events.HeaderContentType: "application/json",
			}
			for k, v := range c.keep {
				want[k] = v
			}
			for k, v := range want {
				if got := m.Header.Get(k); got != v {
					t.Errorf("stored header %s = %q, want %q", k, got, v)
				}
			}
			if _, err := time.Parse(time.RFC3339Nano, m.Header.Get(events.HeaderReceivedAt)); err != nil {
				t.Errorf("%s: %v", events.HeaderReceivedAt, err)
			}
			for k, vs := range m.Header {
				l := strings.ToLower(k)
				if strings.Contains(l, "signature") || strings.Contains(l, "hmac") || l == "authorization" ||
					strings.HasSuffix(l, "timestamp") || strings.EqualFold(k, c.sigHeader) {
					t.Errorf("stored event carries the request header %s", k)
				}
				noLeak("stored header "+k, []byte(strings.Join(vs, " ")))
			}
		})
	}
}

// TestProviderIDs: ids that are not short printable text are hashed (the
// same id always gives the same event id), and a source without ids
// recognises an identical redelivery by its body.
func TestProviderIDs(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", maxIDLength+1)
	for _, tt := range []struct {
		in       string
		wantSame bool
	}{
		{"msg_1", true},
		{"72d3162e-cc78-11e3-81ab-4c9367dc0958", true},
		{strings.Repeat("y", maxIDLength), true},
		{long, false},
		{"has space", false},
		{"tab\there", false},
		{"é", false},
	} {
		got := deliveryID("s", tt.in, nil)
		if (got == tt.in) != tt.wantSame {
			t.Errorf("deliveryID(%q) = %q", tt.in, got)
		}
		if got != deliveryID("s", tt.in, []byte("other body")) {
			t.Errorf("deliveryID(%q) depends on the body", tt.in)
		}
		if !printable(got) || len(got) > maxIDLength {
			t.Errorf("deliveryID(%q) = %q is not a short printable id", tt.in, got)
		}
	}
	a, b := deliveryID("s", "", []byte("1")), deliveryID("s", "", []byte("2"))
	if a == b || a != deliveryID("s", "", []byte("1")) || a == deliveryID("t", "", []byte("1")) {
		t.Errorf("body hashes: %q %q", a, b)
	}
}

func TestSlackURLVerification(t *testing.T) {
	t.Parallel()
	c := schemeCases(t)[5]
	if c.source.Scheme != "slack" {
		t.Fatalf("case 5 is %s", c.source.Scheme)
	}
	e := newEnv(t, withNow(schemeNow), func(cfg *Config) { cfg.Sources = []config.Source{c.source} })
	body := []byte(`{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}`)
	url := e.serve(t) + "/webhooks/slack"
	a := send(t, http.MethodPost, url, c.sign(true, "", schemeNow, body), body)
	var got map[string]string
	if err := json.Unmarshal([]byte(a.raw), &got); err != nil || a.code != http.StatusOK || got["challenge"] != "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P" {
		t.Fatalf("url_verification: %d %s, want 200 with the challenge", a.code, a.raw)
	}
	if n := eventCount(t, e.js); n != 0 {
		t.Errorf("the handshake stored %d events", n)
	}
	// Unsigned, it is refused like any request.
	if a := send(t, http.MethodPost, url, http.Header{}, body); a.code != http.StatusUnauthorized {
		t.Errorf("unsigned url_verification: %d, want 401", a.code)
	}
}

func TestRejectReasons(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		err    error
		code   string
		reason switchyardv1.RejectReason
	}{
		{signing.ErrMissingCredentials, "missing_credentials", switchyardv1.RejectReason_REJECT_REASON_UNAUTHORIZED},
		{signing.ErrBadCredentials, "bad_credentials", switchyardv1.RejectReason_REJECT_REASON_UNAUTHORIZED},
		{signing.ErrBadSignature, "bad_signature", switchyardv1.RejectReason_REJECT_REASON_BAD_SIGNATURE},
		{signing.ErrStaleTimestamp, "stale_timestamp", switchyardv1.RejectReason_REJECT_REASON_STALE_TIMESTAMP},
		{signing.ErrMalformed, "malformed_signature", switchyardv1.RejectReason_REJECT_REASON_MALFORMED},
		{signing.ErrMissingSignature, "missing_signature", switchyardv1.RejectReason_REJECT_REASON_MISSING_SIGNATURE},
	} {
		rj := verifyRejection(fmt.Errorf("wrapped: %w", tt.err))
		if rj.code != tt.code || rj.reason != tt.reason || rj.status != http.StatusUnauthorized {
			t.Errorf("%v -> %s %v %d, want %s %v 401", tt.err, rj.code, rj.reason, rj.status, tt.code, tt.reason)
		}
	}
}
