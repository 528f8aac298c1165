// Package subjects is Switchyard's NATS subject syntax: it turns untrusted
// names (event types sent by partners) into safe subject tokens, checks the
// subjects our services publish to, and checks and compares the filter
// subjects that route events to destinations.
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

// Check checks the syntax of a NATS subject or filter: dot-separated,
// non-empty tokens without whitespace, wildcards only as whole tokens and
// '>' only last.
func Check(s string) error {
	if s == "" {
		return errors.New("subject is empty")
	}
	toks := strings.Split(s, ".")
	for i, t := range toks {
		switch {
		case t == "":
			return fmt.Errorf("%q has an empty token", s)
		case strings.ContainsAny(t, " \t\r\n"):
			return fmt.Errorf("%q contains whitespace", s)
		case t == ">" && i != len(toks)-1:
			return fmt.Errorf("%q: '>' may only be the last token", s)
		case t != "*" && t != ">" && strings.ContainsAny(t, "*>"):
			return fmt.Errorf("%q: wildcards must be whole tokens", s)
		}
	}
	return nil
}

// CheckRoute checks a destination's filter subject: valid syntax, and a
// subject of the EVENTS stream (events.> or webhooks.>). A bare '>' is
// refused: it would also match the replay subjects of other destinations.
func CheckRoute(s string) error {
	if err := Check(s); err != nil {
		return err
	}
	first := strings.SplitN(s, ".", 2)[0]
	if first != "events" && first != "webhooks" && first != ">" {
		return fmt.Errorf("%q must start with events. or webhooks. (the subjects of the EVENTS stream)", s)
	}
	if first == ">" {
		return fmt.Errorf("%q would also match replay subjects of other destinations; use events.> and webhooks.>", s)
	}
	return nil
}

// Overlap reports whether two filter subjects can match the same subject,
// as JetStream decides it when it refuses overlapping consumer filters.
func Overlap(a, b string) bool {
	at, bt := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; ; i++ {
		switch {
		case i == len(at) && i == len(bt):
			return true
		case i == len(at) || i == len(bt):
			// One ran out of tokens before reaching a '>'; a '>' left in
			// the other needs at least one more token, so they cannot
			// match the same subject (events.> does not match events).
			return false
		case at[i] == ">" || bt[i] == ">":
			return true
		case at[i] == "*" || bt[i] == "*" || at[i] == bt[i]:
			continue
		default:
			return false
		}
	}
}

// Match reports whether subject is matched by pattern, a subject filter
// with NATS wildcards: '*' matches one token, '>' (last) one or more.
func Match(pattern, subject string) bool {
	p, s := strings.Split(pattern, "."), strings.Split(subject, ".")
	for i, tok := range p {
		switch {
		case tok == ">":
			return i == len(p)-1 && len(s) > i
		case i >= len(s):
			return false
		case tok != "*" && tok != s[i]:
			return false
		}
	}
	return len(p) == len(s)
}
