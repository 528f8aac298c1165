package signing

import (
	"cmp"
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // some partners still sign with HMAC-SHA1; it is still sound as a MAC.
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"hash"
	"net/textproto"
	"strconv"
	"strings"
	"time"
)

// HMACOptions describes a partner's own HMAC signature, for the generic
// hmac scheme.
type HMACOptions struct {
	// Header carries the signature. Required.
	Header string
	// Algorithm is sha256, sha512 or sha1. Default DefaultHMACAlgorithm.
	Algorithm string
	// Encoding is hex or base64. Default DefaultHMACEncoding.
	Encoding string
	// Prefix precedes each signature in the header ("sha256=").
	Prefix string
	// TimestampHeader carries a signed Unix timestamp in seconds.
	TimestampHeader string
	// SignedContent is what the MAC covers: a template of {body},
	// {timestamp} and {id} between literal text. Default
	// DefaultSignedContent(TimestampHeader).
	SignedContent string
}

// The defaults of HMACOptions, which the configuration's defaults for the
// hmac scheme are too.
const (
	DefaultHMACAlgorithm = "sha256"
	DefaultHMACEncoding  = "hex"
)

// DefaultSignedContent is what the MAC covers when SignedContent is unset:
// the body, preceded by the timestamp when a timestamp header is named.
func DefaultSignedContent(timestampHeader string) string {
	if timestampHeader != "" {
		return PlaceholderTimestamp + "." + PlaceholderBody
	}
	return PlaceholderBody
}

// SignedContent placeholders.
const (
	PlaceholderBody      = "{body}"
	PlaceholderTimestamp = "{timestamp}"
	PlaceholderID        = "{id}"
)

// contentPart is a literal or a placeholder of a signed-content template.
type contentPart struct {
	literal     string
	placeholder string
}

// ParseSignedContent checks a signed-content template and returns its
// parts. It must contain {body} once; {timestamp} and {id} at most once
// each; any other {...} is an error (a typo would otherwise be signed as
// literal text and every request refused).
func ParseSignedContent(tmpl string) ([]contentPart, error) {
	var parts []contentPart
	seen := map[string]bool{}
	rest := tmpl
	for rest != "" {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			parts = append(parts, contentPart{literal: rest})
			break
		}
		if i > 0 {
			parts = append(parts, contentPart{literal: rest[:i]})
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			return nil, fmt.Errorf("signed content %q: unclosed {", tmpl)
		}
		ph := rest[i : i+j+1]
		switch ph {
		case PlaceholderBody, PlaceholderTimestamp, PlaceholderID:
		default:
			return nil, fmt.Errorf("signed content %q: unknown placeholder %s (use {body}, {timestamp}, {id})", tmpl, ph)
		}
		if seen[ph] {
			return nil, fmt.Errorf("signed content %q: %s appears twice", tmpl, ph)
		}
		seen[ph] = true
		parts = append(parts, contentPart{placeholder: ph})
		rest = rest[i+j+1:]
	}
	if !seen[PlaceholderBody] {
		return nil, fmt.Errorf("signed content %q must contain {body}", tmpl)
	}
	return parts, nil
}

// HMAC verifies a partner's own HMAC scheme, described by HMACOptions.
type HMAC struct {
	keys       [][]byte
	o          HMACOptions
	parts      []contentPart
	newHash    func() hash.Hash
	size       int
	tolerance  time.Duration
	idHeader   string
	typeHeader string
}

// NewHMAC returns a verifier for a generic HMAC scheme. idHeader and
// typeHeader name the headers with the delivery id and the event type;
// without a type header the type is the body's "type" field.
func NewHMAC(secrets []string, o HMACOptions, tolerance time.Duration, idHeader, typeHeader string) (*HMAC, error) {
	keys, err := rawSecrets("hmac", secrets)
	if err != nil {
		return nil, err
	}
	v := &HMAC{keys: keys, o: o, tolerance: tolerance, idHeader: idHeader, typeHeader: typeHeader}
	if strings.TrimSpace(o.Header) == "" {
		return nil, fmt.Errorf("%w: hmac needs the name of the signature header", ErrBadSecret)
	}
	switch cmp.Or(o.Algorithm, DefaultHMACAlgorithm) {
	case "sha256":
		v.newHash, v.size = sha256.New, sha256.Size
	case "sha512":
		v.newHash, v.size = sha512.New, sha512.Size
	case "sha1":
		v.newHash, v.size = sha1.New, sha1.Size
	default:
		return nil, fmt.Errorf("%w: hmac algorithm %q is not sha256, sha512 or sha1", ErrBadSecret, o.Algorithm)
	}
	switch cmp.Or(o.Encoding, DefaultHMACEncoding) {
	case "hex", "base64":
	default:
		return nil, fmt.Errorf("%w: hmac encoding %q is not hex or base64", ErrBadSecret, o.Encoding)
	}
	tmpl := cmp.Or(o.SignedContent, DefaultSignedContent(o.TimestampHeader))
	if v.parts, err = ParseSignedContent(tmpl); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSecret, err)
	}
	hasTS, hasID := strings.Contains(tmpl, PlaceholderTimestamp), strings.Contains(tmpl, PlaceholderID)
	switch {
	case hasTS && o.TimestampHeader == "":
		return nil, fmt.Errorf("%w: signed content uses {timestamp} but there is no timestamp header", ErrBadSecret)
	case !hasTS && o.TimestampHeader != "":
		return nil, fmt.Errorf("%w: a timestamp header that is not signed ({timestamp} in the signed content) protects nothing", ErrBadSecret)
	case hasID && idHeader == "":
		return nil, fmt.Errorf("%w: signed content uses {id} but there is no id header", ErrBadSecret)
	}
	return v, nil
}

// ProviderHeaders implements Verifier.
func (v *HMAC) ProviderHeaders() []string { return nonEmpty(v.idHeader, v.typeHeader) }

// ParseSignatures splits a signature header into decoded signatures of the
// scheme's size: entries are separated by whitespace (and by commas unless
// the prefix holds one); entries without the prefix or of another size are
// skipped. None usable is ErrBadSignature.
func (v *HMAC) ParseSignatures(h string) ([][]byte, error) {
	sep := func(r rune) bool { return r == ' ' || r == '\t' || (r == ',' && !strings.Contains(v.o.Prefix, ",")) }
	fields := strings.FieldsFunc(h, sep)
	if len(fields) == 0 {
		return nil, fmt.Errorf("%w: %s is empty", ErrMissingSignature, v.o.Header)
	}
	if len(fields) > MaxSignatures {
		return nil, fmt.Errorf("%w: more than %d signatures", ErrMalformed, MaxSignatures)
	}
	var out [][]byte
	for _, f := range fields {
		s, ok := strings.CutPrefix(f, v.o.Prefix)
		if !ok {
			continue
		}
		var sig []byte
		var err error
		if v.o.Encoding == "base64" {
			sig, err = base64.StdEncoding.DecodeString(s)
		} else {
			sig, err = hex.DecodeString(s)
		}
		if err == nil && len(sig) == v.size {
			out = append(out, sig)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: %s holds no %s%s signature of the right length", ErrBadSignature, v.o.Header, v.o.Prefix, v.o.Encoding)
	}
	return out, nil
}

// Verify implements Verifier.
func (v *HMAC) Verify(r Request) (Verified, error) {
	h := r.Header.Get(v.o.Header)
	if h == "" {
		return Verified{}, fmt.Errorf("%w: need the %s header", ErrMissingSignature, textproto.CanonicalMIMEHeaderKey(v.o.Header))
	}
	var out Verified
	var tsRaw string
	if v.o.TimestampHeader != "" {
		tsRaw = r.Header.Get(v.o.TimestampHeader)
		if tsRaw == "" {
			return Verified{}, fmt.Errorf("%w: need the %s header", ErrMissingSignature, textproto.CanonicalMIMEHeaderKey(v.o.TimestampHeader))
		}
		ts, err := parseTimestampHeader(v.o.TimestampHeader, tsRaw)
		if err != nil {
			return Verified{}, err
		}
		out.Timestamp = ts
	}
	if v.idHeader != "" {
		out.DeliveryID = r.Header.Get(v.idHeader)
	}
	for _, p := range v.parts {
		if p.placeholder == PlaceholderID && out.DeliveryID == "" {
			return Verified{}, fmt.Errorf("%w: need the %s header (it is signed)", ErrMissingSignature, textproto.CanonicalMIMEHeaderKey(v.idHeader))
		}
	}
	sigs, err := v.ParseSignatures(h)
	if err != nil {
		return Verified{}, err
	}
	if v.o.TimestampHeader != "" && checkTolerance(out.Timestamp, r.Now, v.tolerance) != nil {
		return Verified{}, staleError(out.Timestamp, r.Now, v.tolerance)
	}
	mac := func(key []byte) []byte { return v.sum(key, out.DeliveryID, tsRaw, r.Body) }
	if !anyMAC(v.keys, sigs, mac) {
		return Verified{}, fmt.Errorf("%w: no signature in %s matches an active secret", ErrBadSignature, textproto.CanonicalMIMEHeaderKey(v.o.Header))
	}
	out.EventType = typeFrom(r, v.typeHeader)
	out.DeliveryIDSigned = v.idHeader == "" || v.signsID()
	out.EventTypeSigned = v.typeHeader == ""
	return out, nil
}

// signsID reports whether the signed content covers the delivery id.
func (v *HMAC) signsID() bool {
	for _, p := range v.parts {
		if p.placeholder == PlaceholderID {
			return true
		}
	}
	return false
}

// Sign returns the signature header value for a request, one signature
// per secret; for senders in tests and tools.
func (v *HMAC) Sign(id string, ts time.Time, body []byte) string {
	tsRaw := strconv.FormatInt(ts.Unix(), 10)
	parts := make([]string, 0, len(v.keys))
	for _, key := range v.keys {
		sum := v.sum(key, id, tsRaw, body)
		enc := hex.EncodeToString(sum)
		if v.o.Encoding == "base64" {
			enc = base64.StdEncoding.EncodeToString(sum)
		}
		parts = append(parts, v.o.Prefix+enc)
	}
	return strings.Join(parts, " ")
}

// sum is the MAC of the signed content.
func (v *HMAC) sum(key []byte, id, tsRaw string, body []byte) []byte {
	m := hmac.New(v.newHash, key)
	for _, p := range v.parts {
		switch p.placeholder {
		case "":
			m.Write([]byte(p.literal))
		case PlaceholderBody:
			m.Write(body)
		case PlaceholderTimestamp:
			m.Write([]byte(tsRaw))
		case PlaceholderID:
			m.Write([]byte(id))
		}
	}
	return m.Sum(nil)
}

// typeFrom reads the event type from a header or the body's "type".
func typeFrom(r Request, typeHeader string) string {
	if typeHeader != "" {
		return r.Header.Get(typeHeader)
	}
	return JSONString(r.Body, "type")
}

func nonEmpty(names ...string) []string {
	var out []string
	for _, n := range names {
		if n != "" {
			out = append(out, n)
		}
	}
	return out
}
