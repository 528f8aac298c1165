package signing

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
)

// JSONString returns the value of the top-level member key of the JSON
// object in body when it is a string, and "" otherwise (not an object, no
// such member, not a string, malformed JSON). As with encoding/json, the
// last of duplicate members wins.
//
// It scans instead of unmarshalling: most payloads carry their type and id
// at the top level, and a scan skips nested data without allocating, which
// matters on the ingress hot path.
func JSONString(body []byte, key string) string {
	raw, ok := JSONMember(body, key)
	if !ok {
		return ""
	}
	return jsonStringValue(raw)
}

// JSONMember returns the raw bytes of the value of the top-level member key
// of the JSON object in body, with ok false when there is none or the
// object is malformed up to that point.
func JSONMember(body []byte, key string) (raw []byte, ok bool) {
	i := skipSpace(body, 0)
	if i >= len(body) || body[i] != '{' {
		return nil, false
	}
	i = skipSpace(body, i+1)
	if i < len(body) && body[i] == '}' {
		return nil, false
	}
	for {
		if i >= len(body) || body[i] != '"' {
			return nil, false
		}
		kEnd, escaped, good := scanString(body, i)
		if !good {
			return nil, false
		}
		k := body[i:kEnd]
		i = skipSpace(body, kEnd)
		if i >= len(body) || body[i] != ':' {
			return nil, false
		}
		i = skipSpace(body, i+1)
		vEnd, good := scanValue(body, i)
		if !good {
			return nil, false
		}
		if keyIs(k, escaped, key) {
			raw, ok = body[i:vEnd], true
		}
		i = skipSpace(body, vEnd)
		if i >= len(body) {
			return nil, false
		}
		switch body[i] {
		case ',':
			i = skipSpace(body, i+1)
		case '}':
			return raw, ok
		default:
			return nil, false
		}
	}
}

// jsonStringValue decodes a raw JSON string; anything else is "".
func jsonStringValue(raw []byte) string {
	if len(raw) < 2 || raw[0] != '"' {
		return ""
	}
	inner := raw[1 : len(raw)-1]
	if bytes.IndexByte(inner, '\\') < 0 && utf8.Valid(inner) {
		return string(inner)
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return s
}

func keyIs(rawKey []byte, escaped bool, key string) bool {
	if inner := rawKey[1 : len(rawKey)-1]; !escaped && utf8.Valid(inner) {
		return string(inner) == key
	}
	var s string
	return json.Unmarshal(rawKey, &s) == nil && s == key
}

func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// scanString returns the index after the string starting at b[i] (a '"'),
// whether it holds escapes, and whether it is terminated.
func scanString(b []byte, i int) (end int, escaped, ok bool) {
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '\\':
			escaped = true
			j++
		case c == '"':
			return j + 1, escaped, true
		case c < 0x20:
			return 0, false, false
		}
	}
	return 0, false, false
}

// scanValue returns the index after the value starting at b[i]. Objects and
// arrays are skipped by counting brackets outside strings; scalars are
// checked only for their extent, which is enough to find the next member.
func scanValue(b []byte, i int) (int, bool) {
	if i >= len(b) {
		return 0, false
	}
	switch b[i] {
	case '"':
		end, _, ok := scanString(b, i)
		return end, ok
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end, _, ok := scanString(b, j)
				if !ok {
					return 0, false
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, true
				}
			}
		}
		return 0, false
	default:
		j := i
		for j < len(b) {
			c := b[j]
			if c == ',' || c == '}' || c == ']' || c == ' ' || c == '\t' || c == '\n' || c == '\r' {
				break
			}
			if c == '"' || c == '{' || c == '[' || c == ':' {
				return 0, false
			}
			j++
		}
		if j == i {
			return 0, false
		}
		return j, true
	}
}
