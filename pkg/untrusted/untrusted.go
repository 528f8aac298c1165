// Package untrusted makes text that came from outside (partners' headers
// and bodies, callers' keys, user agents) safe to keep: in protobuf string
// fields, which refuse invalid UTF-8 when a message is marshalled (so one
// bad byte would lose a whole audit record), and in NATS message headers,
// where a line break would start another header.
package untrusted

import (
	"strings"
	"unicode/utf8"
)

// Text returns s as valid UTF-8 without control characters, at most
// maxBytes long: each run of invalid bytes becomes U+FFFD, each control
// character (C0, DEL and C1) a space, and the result is cut on a rune
// boundary, never inside a multi-byte character. Text that is already
// safe and short enough is returned as it is, without allocating.
func Text(s string, maxBytes int) string {
	if maxBytes <= 0 {
		return ""
	}
	if len(s) <= maxBytes && safe(s) {
		return s
	}
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	s = strings.Map(func(r rune) rune {
		if isControl(r) {
			return ' '
		}
		return r
	}, s)
	return Cut(s, maxBytes)
}

// Cut returns the longest prefix of s of at most maxBytes that does not
// end inside a multi-byte UTF-8 sequence. s is expected to be valid UTF-8
// (Text makes it so).
func Cut(s string, maxBytes int) string {
	if len(s) <= maxBytes {
		return s
	}
	if maxBytes <= 0 {
		return ""
	}
	i := maxBytes
	// A rune is at most 4 bytes: back up to the start of the one that
	// straddles the limit.
	for i > 0 && i > maxBytes-utf8.UTFMax && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}

// Valid reports whether s can be stored as it is: valid UTF-8 without
// control characters.
func Valid(s string) bool { return safe(s) }

// safe reports whether s is valid UTF-8 without control characters, with a
// fast path for printable ASCII.
func safe(s string) bool {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f {
				return false
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			return false
		}
		if isControl(r) {
			return false
		}
		i += size
	}
	return true
}

// isControl is true for the C0 and C1 control characters and DEL.
func isControl(r rune) bool { return r < 0x20 || (r >= 0x7f && r < 0xa0) }
