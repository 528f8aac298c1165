// Package subjects turns untrusted names (event types sent by partners) into
// safe NATS subject tokens and checks the subjects our services publish to.
package subjects

import (
	"errors"
	"fmt"
	"strings"
)

// UnknownType is the token used when a provider sent no usable event type.
const UnknownType = "unknown"

// MaxTokenLength bounds one token made from untrusted input.
const MaxTokenLength = 128

// Token maps an untrusted string to one subject token: every character other
// than ASCII letters, digits, '-' and '_' (so '.', '*', '>', whitespace,
// control characters and non-ASCII) becomes '_', the result is cut to
// MaxTokenLength bytes, and an empty result is UnknownType. The mapping is
// lossy; the original travels in the Switchyard-Event-Type header.
func Token(s string) string {
	if s == "" {
		return UnknownType
	}
	var b strings.Builder
	b.Grow(min(len(s), MaxTokenLength))
	for i := 0; i < len(s) && b.Len() < MaxTokenLength; i++ {
		c := s[i]
		if isTokenByte(c) {
			b.WriteByte(c)
		} else {
			b.WriteByte('_')
		}
	}
	out := b.String()
	if strings.Trim(out, "_") == "" {
		return UnknownType
	}
	return out
}

func isTokenByte(c byte) bool {
	return c == '-' || c == '_' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

// MaxTypeTokens bounds the depth of an event type path.
const MaxTypeTokens = 16

// ErrBadType is returned (wrapped) for an event type that is not a valid
// subject path.
var ErrBadType = errors.New("invalid event type")

// CheckTypePath checks an event type our own services publish, such as
// order.created: dot-separated tokens of ASCII letters, digits, '-' and '_'.
// Unlike Token it does not repair: our services get an error they can fix.
func CheckTypePath(t string) error {
	if t == "" {
		return fmt.Errorf("%w: empty", ErrBadType)
	}
	if len(t) > 200 {
		return fmt.Errorf("%w: longer than 200 bytes", ErrBadType)
	}
	toks := strings.Split(t, ".")
	if len(toks) > MaxTypeTokens {
		return fmt.Errorf("%w: more than %d dot-separated parts", ErrBadType, MaxTypeTokens)
	}
	for _, tok := range toks {
		if tok == "" {
			return fmt.Errorf("%w: empty part between dots", ErrBadType)
		}
		for i := 0; i < len(tok); i++ {
			if !isTokenByte(tok[i]) {
				return fmt.Errorf("%w: %q is not allowed (use letters, digits, '-', '_', and '.' between parts)", ErrBadType, tok[i])
			}
		}
	}
	return nil
}
