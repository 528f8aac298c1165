package signing

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strings"
)

// Token verifies the Authorization header of partners that cannot sign:
// Basic (user:password) or Bearer (a shared token). The credentials are
// kept and compared as SHA-256 digests, in constant time and without
// stopping at the first match, so that neither their content nor their
// length shows in the timing.
type Token struct {
	kind       string // "Basic" or "Bearer"
	digests    [][sha256.Size]byte
	idHeader   string
	typeHeader string
}

// NewBasic returns a verifier for HTTP Basic credentials, each "user:password".
func NewBasic(credentials []string, idHeader, typeHeader string) (*Token, error) {
	for i, c := range credentials {
		if u, p, ok := strings.Cut(c, ":"); !ok || u == "" || p == "" {
			return nil, fmt.Errorf("%w: credential %d is not user:password", ErrBadSecret, i)
		}
	}
	return newToken("Basic", credentials, idHeader, typeHeader)
}

// NewBearer returns a verifier for bearer tokens.
func NewBearer(tokens []string, idHeader, typeHeader string) (*Token, error) {
	return newToken("Bearer", tokens, idHeader, typeHeader)
}

func newToken(kind string, secrets []string, idHeader, typeHeader string) (*Token, error) {
	keys, err := rawSecrets(strings.ToLower(kind), secrets)
	if err != nil {
		return nil, err
	}
	t := &Token{kind: kind, idHeader: idHeader, typeHeader: typeHeader}
	for _, k := range keys {
		t.digests = append(t.digests, sha256.Sum256(k))
	}
	return t, nil
}

// ProviderHeaders implements Verifier.
func (t *Token) ProviderHeaders() []string { return nonEmpty(t.idHeader, t.typeHeader) }

// ParseAuthorization returns the credentials of an Authorization header of
// the given kind ("Basic" or "Bearer", matched case-insensitively); for
// Basic, the decoded user:password. A header of another kind is
// ErrMissingCredentials, an undecodable one ErrMalformed.
func ParseAuthorization(kind, h string) (string, error) {
	scheme, cred, _ := strings.Cut(strings.TrimSpace(h), " ")
	if !strings.EqualFold(scheme, kind) {
		return "", fmt.Errorf("%w: want Authorization: %s <credentials>", ErrMissingCredentials, kind)
	}
	cred = strings.TrimSpace(cred)
	if cred == "" {
		return "", fmt.Errorf("%w: the Authorization header has no credentials", ErrMissingCredentials)
	}
	if kind != "Basic" {
		return cred, nil
	}
	raw, err := base64.StdEncoding.DecodeString(cred)
	if err != nil || !strings.Contains(string(raw), ":") {
		return "", fmt.Errorf("%w: Basic credentials are base64(user:password)", ErrMalformed)
	}
	return string(raw), nil
}

// Verify implements Verifier.
func (t *Token) Verify(r Request) (Verified, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return Verified{}, fmt.Errorf("%w: need an Authorization: %s header", ErrMissingCredentials, t.kind)
	}
	cred, err := ParseAuthorization(t.kind, h)
	if err != nil {
		return Verified{}, err
	}
	got := sha256.Sum256([]byte(cred))
	match := 0
	for i := range t.digests {
		match |= subtle.ConstantTimeCompare(got[:], t.digests[i][:])
	}
	if match != 1 {
		return Verified{}, fmt.Errorf("%w: the %s credentials match none of the source's", ErrBadCredentials, t.kind)
	}
	// Nothing is signed: the id is the sender's to change, unless there is
	// none (the event id is then the body's hash).
	out := Verified{EventType: typeFrom(r, t.typeHeader), DeliveryIDSigned: t.idHeader == ""}
	if t.idHeader != "" {
		out.DeliveryID = r.Header.Get(t.idHeader)
	}
	return out, nil
}
