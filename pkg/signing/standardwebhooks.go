package signing

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Standard Webhooks header names (https://www.standardwebhooks.com).
const (
	HeaderWebhookID        = "webhook-id"
	HeaderWebhookTimestamp = "webhook-timestamp"
	HeaderWebhookSignature = "webhook-signature"
)

// StandardWebhooks verifies and signs Standard Webhooks v1 signatures:
// HMAC-SHA256 over "<id>.<timestamp>.<body>", base64, keyed by the decoded
// whsec_ secret. Several secrets may be active (rotation); the signature
// header may hold several space-separated signatures.
type StandardWebhooks struct {
	keys      [][]byte
	tolerance time.Duration
}

// ErrBadSecret is returned by constructors for a secret that is not usable.
var ErrBadSecret = errors.New("invalid secret")

// DecodeStandardSecret decodes a whsec_<base64> secret (the prefix is
// optional). The error never contains the secret.
func DecodeStandardSecret(secret string) ([]byte, error) {
	s := strings.TrimPrefix(secret, "whsec_")
	key, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: a Standard Webhooks secret is whsec_ followed by base64", ErrBadSecret)
	}
	if len(key) < 16 {
		return nil, fmt.Errorf("%w: a Standard Webhooks secret must decode to at least 16 bytes", ErrBadSecret)
	}
	return key, nil
}

// NewStandardWebhooks returns a verifier for the given secrets.
func NewStandardWebhooks(secrets []string, tolerance time.Duration) (*StandardWebhooks, error) {
	if len(secrets) == 0 {
		return nil, fmt.Errorf("%w: no secrets", ErrBadSecret)
	}
	sw := &StandardWebhooks{tolerance: tolerance}
	for i, s := range secrets {
		key, err := DecodeStandardSecret(s)
		if err != nil {
			return nil, fmt.Errorf("secret %d: %w", i, err)
		}
		sw.keys = append(sw.keys, key)
	}
	return sw, nil
}

// Verify implements Verifier.
func (sw *StandardWebhooks) Verify(r Request) (Verified, error) {
	id := r.Header.Get(HeaderWebhookID)
	tsRaw := r.Header.Get(HeaderWebhookTimestamp)
	sigHeader := r.Header.Get(HeaderWebhookSignature)
	if sigHeader == "" || id == "" || tsRaw == "" {
		return Verified{}, fmt.Errorf("%w: need %s, %s and %s headers", ErrMissingSignature, HeaderWebhookID, HeaderWebhookTimestamp, HeaderWebhookSignature)
	}
	ts, err := ParseUnixTimestamp(tsRaw)
	if err != nil {
		return Verified{}, fmt.Errorf("%w: %s: %v", ErrMalformed, HeaderWebhookTimestamp, err)
	}
	sigs, err := ParseStandardSignatures(sigHeader)
	if err != nil {
		return Verified{}, err
	}
	// Check the timestamp first: a stale request is refused even when its
	// signature is right, and saying so helps the sender fix its clock.
	if err := checkTolerance(ts, r.Now, sw.tolerance); err != nil {
		return Verified{}, fmt.Errorf("%w: timestamp %d is %s from now (tolerance %s)", err, ts.Unix(), r.Now.Sub(ts).Round(time.Second), sw.tolerance)
	}
	for _, key := range sw.keys {
		want := standardMAC(key, id, tsRaw, r.Body)
		for _, s := range sigs {
			if equal(s, want) {
				return Verified{DeliveryID: id, Timestamp: ts}, nil
			}
		}
	}
	return Verified{}, fmt.Errorf("%w: no v1 signature matches an active secret", ErrBadSignature)
}

// ParseStandardSignatures parses a webhook-signature header: space-separated
// "<version>,<base64>" entries. It returns the v1 signatures; entries of
// other versions (v1a, future ones) are skipped. A header with no v1 entry
// is ErrBadSignature (wrong version); an unparsable one is ErrMalformed.
func ParseStandardSignatures(h string) ([][]byte, error) {
	var out [][]byte
	fields := strings.Fields(h)
	if len(fields) == 0 {
		return nil, fmt.Errorf("%w: %s is empty", ErrMissingSignature, HeaderWebhookSignature)
	}
	if len(fields) > 32 {
		return nil, fmt.Errorf("%w: more than 32 signatures", ErrMalformed)
	}
	for _, f := range fields {
		version, sig, ok := strings.Cut(f, ",")
		if !ok || version == "" {
			return nil, fmt.Errorf("%w: each signature is <version>,<base64>", ErrMalformed)
		}
		if version != "v1" {
			continue
		}
		raw, err := base64.StdEncoding.DecodeString(sig)
		if err != nil || len(raw) != sha256.Size {
			// A truncated or garbled signature cannot match; report it as a
			// mismatch only if nothing else matches, so keep going.
			continue
		}
		out = append(out, raw)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no well-formed v1 signature in %s", ErrBadSignature, HeaderWebhookSignature)
	}
	return out, nil
}

// ParseUnixTimestamp parses whole seconds since the epoch.
func ParseUnixTimestamp(s string) (time.Time, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n < 0 || n > 1<<40 {
		return time.Time{}, fmt.Errorf("want whole seconds since 1970")
	}
	return time.Unix(n, 0), nil
}

func standardMAC(key []byte, id, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Sign returns the webhook-signature header value for a message: one v1
// signature per secret, space-separated, so receivers holding either the old
// or the new secret accept it during a rotation.
func (sw *StandardWebhooks) Sign(id string, ts time.Time, body []byte) string {
	tsRaw := strconv.FormatInt(ts.Unix(), 10)
	parts := make([]string, 0, len(sw.keys))
	for _, key := range sw.keys {
		parts = append(parts, "v1,"+base64.StdEncoding.EncodeToString(standardMAC(key, id, tsRaw, body)))
	}
	return strings.Join(parts, " ")
}
