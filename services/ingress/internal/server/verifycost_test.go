package server

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/signing"
)

// v1aHeader is a webhook-signature header of n v1a signatures of the
// request: all by another key except the one at position valid (1-based).
func v1aHeader(t *testing.T, priv ed25519.PrivateKey, id, body string, n, valid int) string {
	t.Helper()
	msg := []byte(id + "." + strconv.Itoa(vecTimestamp) + "." + body)
	forgerSeed := sha256.Sum256([]byte("forger"))
	forged := "v1a," + base64.StdEncoding.EncodeToString(ed25519.Sign(ed25519.NewKeyFromSeed(forgerSeed[:]), msg))
	sigs := make([]string, n)
	for i := range sigs {
		sigs[i] = forged
		if i+1 == valid {
			sigs[i] = "v1a," + base64.StdEncoding.EncodeToString(ed25519.Sign(priv, msg))
		}
	}
	return strings.Join(sigs, " ")
}

// TestV1aSignaturesBeyondTheBoundAreNotTried: through the real HTTP
// server, a request whose valid ed25519 signature comes after the first
// signing.MaxV1aSignatures of its header is refused, 401 with a reason
// that says the others were not tried, and nothing is stored; the same
// signature within the bound is accepted.
func TestV1aSignaturesBeyondTheBoundAreNotTried(t *testing.T) {
	t.Parallel()
	seed := sha256.Sum256([]byte("partner v1a key"))
	priv := ed25519.NewKeyFromSeed(seed[:])
	pub := signing.PrefixStandardPublicKey + base64.StdEncoding.EncodeToString(priv.Public().(ed25519.PublicKey))
	e := newEnv(t, func(c *Config) { c.Sources[0].Secrets = []config.Secret{config.Secret(pub)} })
	base := e.serve(t)
	body := `{"type":"order.created"}`
	post := func(id string, valid int) answer {
		return send(t, http.MethodPost, base+"/webhooks/"+sourceName, http.Header{
			"Content-Type":                 {"application/json"},
			signing.HeaderWebhookID:        {id},
			signing.HeaderWebhookTimestamp: {strconv.Itoa(vecTimestamp)},
			signing.HeaderWebhookSignature: {v1aHeader(t, priv, id, body, signing.MaxSignatures, valid)},
		}, []byte(body))
	}

	a := post("msg_last", signing.MaxSignatures)
	if a.code != http.StatusUnauthorized || a.reply.Error != "bad_signature" {
		t.Fatalf("valid signature in position %d: %d %s, want 401 bad_signature", signing.MaxSignatures, a.code, a.raw)
	}
	want := "only the first 4 v1a signatures are checked, the other 28 were not tried"
	if !strings.Contains(a.reply.Message, want) {
		t.Errorf("message %q does not say %q", a.reply.Message, want)
	}
	if n := eventCount(t, e.js); n != 0 {
		t.Fatalf("EVENTS holds %d events after a refusal", n)
	}
	if a := post("msg_within", signing.MaxV1aSignatures); a.code != http.StatusAccepted {
		t.Fatalf("valid signature in position %d: %d %s, want 202", signing.MaxV1aSignatures, a.code, a.raw)
	}
}

// TestSourceRateLimitedByDefault: a source configured without rate_limit
// is limited all the same, to the documented default: through the real
// HTTP server (and a clock that stands still, so no token comes back), the
// first DefaultSourceRateBurst requests are answered as usual and the next
// one 429 with a Retry-After, before its signature is checked. A source
// with rate_limit.unlimited is not limited.
func TestSourceRateLimitedByDefault(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	base := e.serve(t)
	forged := http.Header{
		"Content-Type":                 {"application/json"},
		signing.HeaderWebhookID:        {vecID},
		signing.HeaderWebhookTimestamp: {strconv.Itoa(vecTimestamp)},
		signing.HeaderWebhookSignature: {"v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="},
	}
	for i := range config.DefaultSourceRateBurst {
		if a := send(t, http.MethodPost, base+"/webhooks/"+sourceName, forged, []byte(vecBody)); a.code != http.StatusUnauthorized {
			t.Fatalf("request %d within the burst: %d %s, want 401 (checked, not limited)", i+1, a.code, a.raw)
		}
	}
	a := send(t, http.MethodPost, base+"/webhooks/"+sourceName, forged, []byte(vecBody))
	if a.code != http.StatusTooManyRequests || a.reply.Error != "rate_limited" {
		t.Fatalf("request %d: %d %s, want 429 rate_limited", config.DefaultSourceRateBurst+1, a.code, a.raw)
	}
	if ra := a.header.Get("Retry-After"); ra != "1" {
		t.Errorf("Retry-After = %q, want 1 (a token every 1/50 s, in whole seconds)", ra)
	}
	if !strings.Contains(a.reply.Message, "50 requests per second") {
		t.Errorf("message %q does not name the limit", a.reply.Message)
	}

	off := newEnvOn(t, e.nats, e.js, func(c *Config) {
		c.Sources[0].Name = "unlimited"
		c.Sources[0].RateLimit = config.SourceRateLimit{Unlimited: true}
	})
	offBase := off.serve(t)
	for i := range config.DefaultSourceRateBurst + 1 {
		if a := send(t, http.MethodPost, offBase+"/webhooks/unlimited", forged, []byte(vecBody)); a.code != http.StatusUnauthorized {
			t.Fatalf("unlimited source, request %d: %d %s, want 401", i+1, a.code, a.raw)
		}
	}
}
