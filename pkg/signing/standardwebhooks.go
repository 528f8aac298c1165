package signing

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/textproto"
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

// Standard Webhooks secret prefixes: whsec_ for the symmetric v1 secret,
// whpk_ for the ed25519 public key that verifies v1a signatures.
const (
	PrefixStandardSecret    = "whsec_"
	PrefixStandardPublicKey = "whpk_"
)

// StandardWebhooks verifies and signs Standard Webhooks signatures over
// "<id>.<timestamp>.<body>": v1 is HMAC-SHA256 keyed by the decoded whsec_
// secret, v1a is ed25519 checked with a whpk_ public key. Several secrets
// and keys may be active (rotation); the signature header may hold several
// space-separated signatures. The event type is the body's "type" field.
type StandardWebhooks struct {
	keys       [][]byte
	publicKeys []ed25519.PublicKey
	tolerance  time.Duration
}

// DecodeStandardSecret decodes a whsec_<base64> secret (the prefix is
// optional). The error never contains the secret.
func DecodeStandardSecret(secret string) ([]byte, error) {
	s := strings.TrimPrefix(secret, PrefixStandardSecret)
	key, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: a Standard Webhooks secret is whsec_ followed by base64", ErrBadSecret)
	}
	if len(key) < 16 {
		return nil, fmt.Errorf("%w: a Standard Webhooks secret must decode to at least 16 bytes", ErrBadSecret)
	}
	return key, nil
}

// DecodeStandardPublicKey decodes a whpk_<base64> ed25519 public key.
func DecodeStandardPublicKey(key string) (ed25519.PublicKey, error) {
	s, ok := strings.CutPrefix(key, PrefixStandardPublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: a Standard Webhooks public key is whpk_ followed by base64", ErrBadSecret)
	}
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(raw) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: a Standard Webhooks public key is whpk_ followed by the base64 of a 32-byte ed25519 key", ErrBadSecret)
	}
	return ed25519.PublicKey(raw), nil
}

// NewStandardWebhooks returns a verifier for the given secrets: whsec_
// secrets (or bare base64) verify v1 signatures, whpk_ public keys verify
// v1a signatures.
func NewStandardWebhooks(secrets []string, tolerance time.Duration) (*StandardWebhooks, error) {
	if len(secrets) == 0 {
		return nil, fmt.Errorf("%w: no secrets", ErrBadSecret)
	}
	sw := &StandardWebhooks{tolerance: tolerance}
	for i, s := range secrets {
		if strings.HasPrefix(s, PrefixStandardPublicKey) {
			pk, err := DecodeStandardPublicKey(s)
			if err != nil {
				return nil, &SecretError{Index: i, Err: err}
			}
			sw.publicKeys = append(sw.publicKeys, pk)
			continue
		}
		key, err := DecodeStandardSecret(s)
		if err != nil {
			return nil, &SecretError{Index: i, Err: err}
		}
		sw.keys = append(sw.keys, key)
	}
	return sw, nil
}

// ProviderHeaders implements Verifier: the delivery id is in the event id
// and the type in the body, so no header is worth keeping.
func (sw *StandardWebhooks) ProviderHeaders() []string { return nil }

// Verify implements Verifier.
func (sw *StandardWebhooks) Verify(r Request) (Verified, error) {
	id := r.Header.Get(HeaderWebhookID)
	tsRaw := r.Header.Get(HeaderWebhookTimestamp)
	sigHeader := r.Header.Get(HeaderWebhookSignature)
	if sigHeader == "" || id == "" || tsRaw == "" {
		return Verified{}, fmt.Errorf("%w: need %s, %s and %s headers", ErrMissingSignature, HeaderWebhookID, HeaderWebhookTimestamp, HeaderWebhookSignature)
	}
	ts, err := parseTimestampHeader(HeaderWebhookTimestamp, tsRaw)
	if err != nil {
		return Verified{}, err
	}
	sigs, err := ParseStandardSignatureHeader(sigHeader)
	if err != nil {
		return Verified{}, err
	}
	if (len(sigs.V1) == 0 || len(sw.keys) == 0) && (len(sigs.V1a) == 0 || len(sw.publicKeys) == 0) {
		return Verified{}, fmt.Errorf("%w: no well-formed %s signature in %s", ErrBadSignature, sw.versions(), HeaderWebhookSignature)
	}
	// Check the timestamp first: a stale request is refused even when its
	// signature is right, and saying so helps the sender fix its clock.
	if checkTolerance(ts, r.Now, sw.tolerance) != nil {
		return Verified{}, staleError(ts, r.Now, sw.tolerance)
	}
	if sw.matches(sigs, id, tsRaw, r.Body) {
		return Verified{DeliveryID: id, EventType: JSONString(r.Body, "type"), Timestamp: ts, DeliveryIDSigned: true, EventTypeSigned: true}, nil
	}
	if n := len(sigs.V1a); n > MaxV1aSignatures && len(sw.publicKeys) > 0 {
		return Verified{}, fmt.Errorf("%w: no %s signature matches an active secret; only the first %d v1a signatures are checked, the other %d were not tried",
			ErrBadSignature, sw.versions(), MaxV1aSignatures, n-MaxV1aSignatures)
	}
	return Verified{}, fmt.Errorf("%w: no %s signature matches an active secret", ErrBadSignature, sw.versions())
}

// MaxV1aSignatures bounds the v1a (ed25519) signatures of a header that
// are checked, against each whpk_ key: a sender signs with its current key,
// and with the next one during a rotation, so a few cover every honest
// request. Unlike v1's HMAC, computed once per secret and compared with
// every signature, an ed25519 check hashes the whole message again for
// each pair of key and signature (the hash covers the signature's R and the
// key before the message), so this bound is what keeps a forged 1 MiB
// request from costing tens of milliseconds of CPU. Signatures beyond it
// are not tried, and the refusal says so.
const MaxV1aSignatures = 4

func (sw *StandardWebhooks) matches(sigs StandardSignatures, id, tsRaw string, body []byte) bool {
	if len(sigs.V1) > 0 {
		for _, key := range sw.keys {
			want := standardMAC(key, id, tsRaw, body)
			for _, s := range sigs.V1 {
				if equal(s, want) {
					return true
				}
			}
		}
	}
	if len(sigs.V1a) > 0 && len(sw.publicKeys) > 0 {
		msg := make([]byte, 0, len(id)+len(tsRaw)+2+len(body))
		msg = append(append(append(append(append(msg, id...), '.'), tsRaw...), '.'), body...)
		tried := sigs.V1a[:min(len(sigs.V1a), MaxV1aSignatures)]
		for _, pk := range sw.publicKeys {
			for _, s := range tried {
				if ed25519.Verify(pk, msg, s) {
					return true
				}
			}
		}
	}
	return false
}

// versions names the signature versions this verifier checks.
func (sw *StandardWebhooks) versions() string {
	switch {
	case len(sw.keys) > 0 && len(sw.publicKeys) > 0:
		return "v1 or v1a"
	case len(sw.publicKeys) > 0:
		return "v1a"
	default:
		return "v1"
	}
}

// StandardSignatures are the well-formed signatures of a webhook-signature
// header, by version.
type StandardSignatures struct {
	// V1 are 32-byte HMAC-SHA256 signatures.
	V1 [][]byte
	// V1a are 64-byte ed25519 signatures.
	V1a [][]byte
}

// ParseStandardSignatureHeader parses a webhook-signature header:
// whitespace-separated "<version>,<base64>" entries, at most MaxSignatures.
// Entries of other versions (future ones) and garbled or truncated entries
// are skipped, since they cannot match; an entry without a version is
// ErrMalformed, an empty header ErrMissingSignature.
func ParseStandardSignatureHeader(h string) (StandardSignatures, error) {
	var out StandardSignatures
	fields := strings.Fields(h)
	if len(fields) == 0 {
		return out, fmt.Errorf("%w: %s is empty", ErrMissingSignature, HeaderWebhookSignature)
	}
	if len(fields) > MaxSignatures {
		return out, fmt.Errorf("%w: more than %d signatures", ErrMalformed, MaxSignatures)
	}
	for _, f := range fields {
		version, sig, ok := strings.Cut(f, ",")
		if !ok || version == "" {
			return StandardSignatures{}, fmt.Errorf("%w: each signature is <version>,<base64>", ErrMalformed)
		}
		switch version {
		case "v1":
			if raw, err := base64.StdEncoding.DecodeString(sig); err == nil && len(raw) == sha256.Size {
				out.V1 = append(out.V1, raw)
			}
		case "v1a":
			if raw, err := base64.StdEncoding.DecodeString(sig); err == nil && len(raw) == ed25519.SignatureSize {
				out.V1a = append(out.V1a, raw)
			}
		}
	}
	return out, nil
}

// ParseStandardSignatures parses a webhook-signature header and returns its
// v1 signatures. A header with no usable v1 entry is ErrBadSignature (wrong
// version); an unparsable one is ErrMalformed.
func ParseStandardSignatures(h string) ([][]byte, error) {
	sigs, err := ParseStandardSignatureHeader(h)
	if err != nil {
		return nil, err
	}
	if len(sigs.V1) == 0 {
		return nil, fmt.Errorf("%w: no well-formed v1 signature in %s", ErrBadSignature, HeaderWebhookSignature)
	}
	return sigs.V1, nil
}

// ParseUnixTimestamp parses whole seconds since the epoch.
func ParseUnixTimestamp(s string) (time.Time, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n < 0 || n > 1<<40 {
		return time.Time{}, fmt.Errorf("want whole seconds since 1970")
	}
	return time.Unix(n, 0), nil
}

// parseTimestampHeader parses a signed Unix timestamp header's value.
func parseTimestampHeader(name, v string) (time.Time, error) {
	ts, err := ParseUnixTimestamp(v)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: %s: %v", ErrMalformed, textproto.CanonicalMIMEHeaderKey(name), err)
	}
	return ts, nil
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
// or the new secret accept it during a rotation. Public keys cannot sign:
// a verifier holding only whpk_ keys returns "".
func (sw *StandardWebhooks) Sign(id string, ts time.Time, body []byte) string {
	tsRaw := strconv.FormatInt(ts.Unix(), 10)
	parts := make([]string, 0, len(sw.keys))
	for _, key := range sw.keys {
		parts = append(parts, "v1,"+base64.StdEncoding.EncodeToString(standardMAC(key, id, tsRaw, body)))
	}
	return strings.Join(parts, " ")
}
