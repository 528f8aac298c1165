package server

import (
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"testing"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/signing"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
	"github.com/switchyard/switchyard/pkg/testing/waitfor"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/ingress/internal/idempotency"
)

// unsignedIDScheme is a scheme whose delivery id (and event type) travel
// in headers the signature does not cover.
type unsignedIDScheme struct {
	source config.Source
	// request returns the headers of a correctly signed request for body,
	// with the delivery id and event type given ("" leaves a header out).
	request func(body, id, eventType string) http.Header
}

func unsignedIDSchemes() map[string]unsignedIDScheme {
	const secret = "replayed-partner-secret"
	src := func(name, scheme string) config.Source {
		return config.Source{Name: name, Scheme: scheme, Secrets: []config.Secret{secret}, MaxBody: config.DefaultMaxBody,
			Tolerance: config.DefaultTolerance}
	}
	set := func(h http.Header, k, v string) {
		if v != "" {
			h.Set(k, v)
		}
	}
	hmacSrc := src("partner", "hmac")
	hmacSrc.HMAC = config.SourceHMAC{Header: "X-Signature", Algorithm: "sha256", Encoding: "hex", SignedContent: "{body}"}
	hmacSrc.IDHeader, hmacSrc.TypeHeader, hmacSrc.UnsignedID = "X-Delivery", "X-Event", config.UnsignedIDAllow
	bearerSrc := src("courier", "bearer")
	bearerSrc.Secrets = []config.Secret{"tok_replayed_0123456789"}
	bearerSrc.IDHeader, bearerSrc.TypeHeader, bearerSrc.UnsignedID = "X-Delivery", "X-Event", config.UnsignedIDAllow
	return map[string]unsignedIDScheme{
		"github": {source: src("gh", "github"), request: func(body, id, typ string) http.Header {
			h := http.Header{"Content-Type": {"application/json"}}
			h.Set(signing.HeaderGitHubSignature256, "sha256="+hex.EncodeToString(hmacSHA256(secret, body)))
			set(h, signing.HeaderGitHubDelivery, id)
			set(h, signing.HeaderGitHubEvent, typ)
			return h
		}},
		"shopify": {source: src("shop", "shopify"), request: func(body, id, typ string) http.Header {
			h := http.Header{"Content-Type": {"application/json"}}
			h.Set(signing.HeaderShopifyHmac, base64.StdEncoding.EncodeToString(hmacSHA256(secret, body)))
			set(h, signing.HeaderShopifyWebhookID, id)
			set(h, signing.HeaderShopifyTopic, typ)
			return h
		}},
		"hmac without {id}": {source: hmacSrc, request: func(body, id, typ string) http.Header {
			h := http.Header{"Content-Type": {"application/json"}}
			h.Set("X-Signature", hex.EncodeToString(hmacSHA256(secret, body)))
			set(h, "X-Delivery", id)
			set(h, "X-Event", typ)
			return h
		}},
		"bearer": {source: bearerSrc, request: func(body, id, typ string) http.Header {
			h := http.Header{"Content-Type": {"application/json"}, "Authorization": {"Bearer tok_replayed_0123456789"}}
			set(h, "X-Delivery", id)
			set(h, "X-Event", typ)
			return h
		}},
	}
}

// TestReplayUnderAFreshDeliveryIDIsADuplicate: for every scheme whose
// delivery id is not signed, a captured request sent again through the
// real HTTP server under a fresh delivery id, with another event type, or
// with no id at all, is answered 200 duplicate; EVENTS on the embedded
// NATS server keeps the one event, on its first subject; each replay is
// audited as a duplicate found by the body's hash (a suspected replay).
// Another body is still a new event.
func TestReplayUnderAFreshDeliveryIDIsADuplicate(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	for name, sc := range unsignedIDSchemes() {
		t.Run(name, func(t *testing.T) {
			e := newEnvOn(t, ns, js, func(c *Config) { c.Sources = []config.Source{sc.source} })
			base := e.serve(t)
			src := sc.source.Name
			url := base + "/webhooks/" + src
			body := `{"action":"opened","number":1347}`
			if a := send(t, http.MethodPost, url, sc.request(body, "d-1", "issues"), []byte(body)); a.code != http.StatusAccepted || a.reply.ID != src+":d-1" {
				t.Fatalf("first delivery: %d %s, want 202", a.code, a.raw)
			}
			e.waitRecord(t, src+":d-1")
			e.waitRecord(t, idempotency.BodyID(src, []byte(body)))

			for _, replay := range []struct{ id, typ, wantID string }{
				{"d-2", "issues", src + ":d-2"},
				{"d-3", "deployment", src + ":d-3"},
				{"", "deployment", WebhookEventID(src, "", []byte(body))},
			} {
				a := send(t, http.MethodPost, url, sc.request(body, replay.id, replay.typ), []byte(body))
				if a.code != http.StatusOK || a.reply.Status != statusDuplicate || a.reply.ID != replay.wantID {
					t.Errorf("replay as %q type %q: %d %s, want 200 duplicate %s", replay.id, replay.typ, a.code, a.raw, replay.wantID)
				}
			}
			if n := natstest.Count(t, js, natsx.StreamEvents, "webhooks."+src+".>"); n != 1 {
				t.Errorf("EVENTS holds %d events of %s, want 1", n, src)
			}
			if n := natstest.Count(t, js, natsx.StreamEvents, "webhooks."+src+".deployment"); n != 0 {
				t.Errorf("the replay under another type was stored (%d)", n)
			}
			recs, _ := waitAudit(t, js, "audit.duplicate."+src, 3)
			for i, r := range recs {
				d := r.GetWebhookDuplicate()
				if d.Via != switchyardv1.DuplicateVia_DUPLICATE_VIA_BODY_HASH || d.Subject != "webhooks."+src+".issues" || d.Source != src {
					t.Errorf("duplicate record %d = %v, want via the body hash, subject of the first", i, d)
				}
			}

			// A redelivery under the same id is an ordinary duplicate.
			if a := send(t, http.MethodPost, url, sc.request(body, "d-1", "issues"), []byte(body)); a.code != http.StatusOK || a.reply.Status != statusDuplicate {
				t.Errorf("redelivery: %d %s, want 200 duplicate", a.code, a.raw)
			}
			other := `{"action":"closed","number":1347}`
			if a := send(t, http.MethodPost, url, sc.request(other, "d-4", "issues"), []byte(other)); a.code != http.StatusAccepted {
				t.Errorf("another body: %d %s, want 202", a.code, a.raw)
			}
			waitfor.True(t, "both events stored", func() bool {
				return natstest.Count(t, js, natsx.StreamEvents, "webhooks."+src+".>") == 2
			})
		})
	}
}

// TestSignedIDIsNotRememberedByBody: where the scheme signs the delivery id
// (Standard Webhooks), no body record is kept: the same body under another
// signed id is another event, as the partner meant.
func TestSignedIDIsNotRememberedByBody(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, id := range []string{"msg_1", "msg_2"} {
		if a := e.post(t, signed(t, id, `{"type":"ping"}`)); a.code != http.StatusAccepted {
			t.Fatalf("%s: %d %s, want 202", id, a.code, a.raw)
		}
	}
	e.waitRecord(t, sourceName+":msg_2")
	if _, found, err := e.srv.idem.Lookup(testCtx(t), idempotency.BodyID(sourceName, []byte(`{"type":"ping"}`))); err != nil || found {
		t.Errorf("body record: found %v, %v; want none", found, err)
	}
}

// TestTypeFieldRoutesByTheBody: with type_field, the subject follows the
// signed body's field, not X-GitHub-Event, which anyone can change.
func TestTypeFieldRoutesByTheBody(t *testing.T) {
	t.Parallel()
	sc := unsignedIDSchemes()["github"]
	sc.source.TypeField = "kind"
	e := newEnv(t, func(c *Config) { c.Sources = []config.Source{sc.source} })
	base := e.serve(t)
	body := `{"kind":"issue.opened","action":"opened"}`
	if a := send(t, http.MethodPost, base+"/webhooks/gh", sc.request(body, "d-1", "deployment"), []byte(body)); a.code != http.StatusAccepted {
		t.Fatalf("delivery: %d %s, want 202", a.code, a.raw)
	}
	if n := natstest.Count(t, e.js, natsx.StreamEvents, "webhooks.gh.issue_opened"); n != 1 {
		t.Errorf("%d events on webhooks.gh.issue_opened, want 1 (the body's kind)", n)
	}
	if n := natstest.Count(t, e.js, natsx.StreamEvents, "webhooks.gh.deployment"); n != 0 {
		t.Errorf("%d events on the header's type, want 0", n)
	}
}
