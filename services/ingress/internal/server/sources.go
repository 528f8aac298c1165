package server

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"time"

	"golang.org/x/time/rate"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/signing"
)

// source is a configured webhook source ready to verify requests.
type source struct {
	cfg      config.Source
	verifier signing.Verifier
	// keep are the provider's headers stored with each event, in canonical
	// form.
	keep []string
	// auditIDHeader holds the provider's delivery id, read from rejected
	// (unverified) requests for the audit record only.
	auditIDHeader string
	// limiter is nil when the source's rate limit is off (unlimited).
	limiter *rate.Limiter
	// gate bounds the audit records of refused requests.
	gate    *rejectionGate
	metrics *sourceMetrics
}

func newSource(cfg config.Source, m *metrics) (*source, error) {
	secrets := make([]string, len(cfg.Secrets))
	for i, s := range cfg.Secrets {
		secrets[i] = s.Reveal()
	}
	v, err := signing.New(cfg.Scheme, signing.Options{
		Secrets:   secrets,
		Tolerance: cfg.Tolerance.D(),
		HMAC: signing.HMACOptions{
			Header: cfg.HMAC.Header, Algorithm: cfg.HMAC.Algorithm, Encoding: cfg.HMAC.Encoding, Prefix: cfg.HMAC.Prefix,
			TimestampHeader: cfg.HMAC.TimestampHeader, SignedContent: cfg.HMAC.SignedContent,
		},
		IDHeader:   cfg.IDHeader,
		TypeHeader: cfg.TypeHeader,
		TypeField:  cfg.TypeField,
	})
	if err != nil {
		return nil, fmt.Errorf("source %q: %w", cfg.Name, err)
	}
	src := &source{cfg: cfg, verifier: v, metrics: m.forSource(cfg.Name)}
	for _, h := range v.ProviderHeaders() {
		src.keep = append(src.keep, http.CanonicalHeaderKey(h))
	}
	switch cfg.Scheme {
	case "standard-webhooks":
		src.auditIDHeader = signing.HeaderWebhookID
	case "github":
		src.auditIDHeader = signing.HeaderGitHubDelivery
	case "shopify":
		src.auditIDHeader = signing.HeaderShopifyWebhookID
	default:
		src.auditIDHeader = cfg.IDHeader
	}
	if !cfg.RateLimit.Unlimited && cfg.RateLimit.PerSecond > 0 {
		src.limiter = rate.NewLimiter(rate.Limit(cfg.RateLimit.PerSecond), max(1, cfg.RateLimit.Burst))
	}
	return src, nil
}

// limited reports whether a request arriving now is over the source's rate
// limit, and when one would be allowed.
func (s *source) limited(now time.Time) (time.Duration, bool) {
	if s.limiter == nil {
		return 0, false
	}
	r := s.limiter.ReserveN(now, 1)
	if !r.OK() {
		return time.Second, true
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return d, true
	}
	return 0, false
}

// maxIDLength bounds a provider's delivery id used as is.
const maxIDLength = 200

// deliveryID is the delivery id part of an event id: the provider's id
// when it is short printable ASCII; a hash of it when it is not (still
// stable across redeliveries; this is also what keeps invalid UTF-8 out of
// ids, which end up in protobuf strings); and a hash of the source and the
// body when the provider sent none, so that an identical redelivery is
// recognised.
func deliveryID(source, providerID string, body []byte) string {
	if providerID == "" {
		h := sha256.New()
		h.Write([]byte(source))
		h.Write([]byte{0})
		h.Write(body)
		return "h-" + hex.EncodeToString(h.Sum(nil)[:16])
	}
	if len(providerID) <= maxIDLength && printable(providerID) {
		return providerID
	}
	sum := sha256.Sum256([]byte(providerID))
	return "h-" + hex.EncodeToString(sum[:16])
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
