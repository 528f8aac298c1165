// Package signing verifies the signatures partners put on webhooks and signs
// the webhooks Switchyard sends. Each scheme is a Verifier; comparisons are
// constant-time and every failure is one of the sentinel errors below, so
// that ingress can answer with a reason without ever echoing a secret.
//
// The schemes: standard-webhooks (v1 HMAC and v1a ed25519), github, stripe,
// shopify, slack, a configurable generic hmac, and basic and bearer tokens
// for partners that cannot sign. New builds any of them by name.
package signing

import (
	"crypto/hmac"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Failure reasons. Every error a Verifier returns wraps exactly one.
var (
	// ErrMissingSignature: the request carries no signature (or timestamp)
	// header for the scheme.
	ErrMissingSignature = errors.New("missing signature")
	// ErrBadSignature: a signature is present but none matches any secret.
	ErrBadSignature = errors.New("signature does not match")
	// ErrStaleTimestamp: the signed timestamp is outside the tolerance,
	// in the past or in the future.
	ErrStaleTimestamp = errors.New("timestamp outside tolerance")
	// ErrMalformed: a header is present but cannot be parsed.
	ErrMalformed = errors.New("malformed signature header")
	// ErrMissingCredentials: a basic or bearer source got no Authorization
	// header of its kind.
	ErrMissingCredentials = errors.New("missing credentials")
	// ErrBadCredentials: the Authorization header holds credentials that
	// match none of the source's.
	ErrBadCredentials = errors.New("credentials do not match")
)

// ErrBadSecret is returned by constructors for a secret or an option that is
// not usable. Its messages never contain the secret.
var ErrBadSecret = errors.New("invalid secret")

// SecretError says which of a verifier's secrets cannot be used, counting
// from 0 in the order they are configured; Err says why (it wraps
// ErrBadSecret). It never holds the secret.
type SecretError struct {
	Index int
	Err   error
}

func (e *SecretError) Error() string { return fmt.Sprintf("secret %d: %v", e.Index, e.Err) }

func (e *SecretError) Unwrap() error { return e.Err }

// Request is what a Verifier looks at.
type Request struct {
	Header http.Header
	Body   []byte
	// Now is the verification time, for timestamp tolerance.
	Now time.Time
}

// Verified is what a successful verification learnt about the request.
type Verified struct {
	// DeliveryID is the provider's id for this delivery, from a header or
	// the body; empty when the provider sent none (ingress then derives one
	// from the body). It is untrusted text: bound and sanitise it before
	// using it as an identifier.
	DeliveryID string
	// EventType is the provider's event type, from a header or the body;
	// empty when there is none. Also untrusted text.
	EventType string
	// DeliveryIDSigned says the sender cannot change the delivery id
	// without breaking the signature: the id is in the signed content or
	// the signed body, or the scheme reads no id at all (ingress then
	// derives it from the body). False for github and shopify, and for
	// hmac (without {id} in its signed content), basic and bearer with an
	// id header: anyone holding a captured request can send it again under
	// another id, or none, so ingress also remembers the body
	// (docs/decisions/0404-replays-under-a-fresh-delivery-id.md).
	DeliveryIDSigned bool
	// EventTypeSigned says the signature covers EventType: false when it
	// comes from a header (github, shopify, type_header) or the request is
	// not signed at all (basic, bearer).
	EventTypeSigned bool
	// Timestamp is the signed timestamp, when the scheme has one.
	Timestamp time.Time
}

// Verifier checks one source's requests.
type Verifier interface {
	// Verify checks the request and extracts its delivery id and type.
	Verify(r Request) (Verified, error)
	// ProviderHeaders names the request headers worth storing with the
	// event: the provider's ids, event type and similar metadata. Never a
	// signature, a timestamp that is part of one, or a credential.
	ProviderHeaders() []string
}

// Schemes lists the scheme names New accepts.
var Schemes = []string{"standard-webhooks", "github", "stripe", "shopify", "slack", "hmac", "basic", "bearer"}

// Options configures a scheme; each scheme reads the fields it documents.
type Options struct {
	// Secrets are the active secrets, keys or credentials (all schemes).
	Secrets []string
	// Tolerance bounds the signed timestamp's distance from now, both ways
	// (standard-webhooks, stripe, slack, hmac with a timestamp header).
	Tolerance time.Duration
	// HMAC describes the generic hmac scheme's signature.
	HMAC HMACOptions
	// IDHeader and TypeHeader name the headers with the delivery id and the
	// event type (hmac, basic, bearer).
	IDHeader   string
	TypeHeader string
	// TypeField names a top-level string field of the JSON body that holds
	// the event type, instead of the scheme's type header (github, shopify,
	// hmac, basic, bearer): a header is not signed, the body is (except
	// with basic and bearer, which sign nothing).
	TypeField string
}

// SchemesWithUnsignedType are the schemes whose event type may come from a
// body field (Options.TypeField) instead of an unsigned header.
var SchemesWithUnsignedType = []string{"github", "shopify", "hmac", "basic", "bearer"}

// New returns the Verifier for a scheme by name.
func New(scheme string, o Options) (Verifier, error) {
	v, err := newScheme(scheme, o)
	if err != nil || o.TypeField == "" {
		return v, err
	}
	if !slices.Contains(SchemesWithUnsignedType, scheme) {
		return nil, fmt.Errorf("%w: a type field is only for schemes %s", ErrBadSecret, strings.Join(SchemesWithUnsignedType, ", "))
	}
	if o.TypeHeader != "" {
		return nil, fmt.Errorf("%w: a type header and a type field exclude each other", ErrBadSecret)
	}
	return &typeField{Verifier: v, field: o.TypeField, signed: scheme != "basic" && scheme != "bearer"}, nil
}

// typeField takes the event type from a body field instead of where its
// scheme finds it.
type typeField struct {
	Verifier
	field string
	// signed: the scheme signs the body.
	signed bool
}

func (t *typeField) Verify(r Request) (Verified, error) {
	out, err := t.Verifier.Verify(r)
	if err != nil {
		return out, err
	}
	out.EventType, out.EventTypeSigned = JSONString(r.Body, t.field), t.signed
	return out, nil
}

func newScheme(scheme string, o Options) (Verifier, error) {
	switch scheme {
	case "standard-webhooks":
		return NewStandardWebhooks(o.Secrets, o.Tolerance)
	case "github":
		return NewGitHub(o.Secrets)
	case "stripe":
		return NewStripe(o.Secrets, o.Tolerance)
	case "shopify":
		return NewShopify(o.Secrets)
	case "slack":
		return NewSlack(o.Secrets, o.Tolerance)
	case "hmac":
		return NewHMAC(o.Secrets, o.HMAC, o.Tolerance, o.IDHeader, o.TypeHeader)
	case "basic":
		return NewBasic(o.Secrets, o.IDHeader, o.TypeHeader)
	case "bearer":
		return NewBearer(o.Secrets, o.IDHeader, o.TypeHeader)
	default:
		return nil, fmt.Errorf("%w: unknown scheme %q (known: %s)", ErrBadSecret, scheme, strings.Join(Schemes, ", "))
	}
}

// equal compares MACs in constant time.
func equal(a, b []byte) bool { return hmac.Equal(a, b) }

// checkTolerance accepts ts within tol of now, both ways.
func checkTolerance(ts, now time.Time, tol time.Duration) error {
	d := now.Sub(ts)
	if d > tol || d < -tol {
		return ErrStaleTimestamp
	}
	return nil
}

// staleError explains a timestamp outside the tolerance.
func staleError(ts, now time.Time, tol time.Duration) error {
	return fmt.Errorf("%w: timestamp %d is %s from now (tolerance %s)", ErrStaleTimestamp, ts.Unix(), now.Sub(ts).Round(time.Second), tol)
}

// rawSecrets turns secrets used as HMAC keys byte for byte into keys.
func rawSecrets(scheme string, secrets []string) ([][]byte, error) {
	if len(secrets) == 0 {
		return nil, fmt.Errorf("%w: %s needs at least one secret", ErrBadSecret, scheme)
	}
	keys := make([][]byte, len(secrets))
	for i, s := range secrets {
		if s == "" {
			return nil, &SecretError{Index: i, Err: fmt.Errorf("%w: empty", ErrBadSecret)}
		}
		keys[i] = []byte(s)
	}
	return keys, nil
}

// MaxSignatures bounds the signatures one header may carry, so that a
// request cannot make Verify compute MACs without end.
const MaxSignatures = 32
