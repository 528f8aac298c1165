package mapping

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"unicode/utf16"
	"unicode/utf8"
)

// maxDepth bounds nesting, as encoding/json does.
const maxDepth = 10000

// decode reads one JSON document into the values gojq and CEL read:
// map[string]any, []any, string, json.Number (numbers exactly as written),
// bool and nil. It accepts and refuses what encoding/json does (invalid
// UTF-8 in strings becomes U+FFFD, a repeated key keeps its last value),
// and is the part of a mapping every event pays for, so it avoids
// encoding/json's reflection and buffering (FuzzDecode checks the two
// agree).
//
// The document is copied once into a string, and keys, numbers and strings
// without escapes are slices of it rather than one allocation each; arrays
// and objects are gathered on pooled stacks and allocated once at their
// final size (an object of more than 8 members is not grown and rehashed).
func decode(data []byte) (any, error) {
	d := decoders.Get().(*decoder)
	defer d.release()
	d.data, d.src, d.pos = data, string(data), 0
	d.skipSpace()
	v, err := d.value(0)
	if err != nil {
		return nil, err
	}
	d.skipSpace()
	if d.pos != len(d.data) {
		return nil, d.errorf("unexpected data after the JSON document")
	}
	return v, nil
}

type decoder struct {
	data []byte
	src  string // data, shared by the strings decoded from it
	pos  int
	// stack holds the elements of the arrays being read, and entries the
	// members of the objects, innermost last; high and entriesHigh are the
	// most they held (what release clears).
	stack       []any
	high        int
	entries     []keyValue
	entriesHigh int
	buf         []byte // a string with escapes, being unescaped
}

var decoders = sync.Pool{New: func() any { return new(decoder) }}

// release returns d to the pool without references into the document.
func (d *decoder) release() {
	clear(d.stack[:d.high])
	d.stack, d.high = d.stack[:0], 0
	clear(d.entries[:d.entriesHigh])
	d.entries, d.entriesHigh = d.entries[:0], 0
	d.data, d.src = nil, ""
	if cap(d.buf) > 64<<10 {
		d.buf = nil
	}
	decoders.Put(d)
}

func (d *decoder) errorf(format string, args ...any) error {
	return fmt.Errorf("offset %d: %s", d.pos, fmt.Sprintf(format, args...))
}

var errEnd = errors.New("unexpected end of JSON input")

func (d *decoder) skipSpace() {
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

func (d *decoder) value(depth int) (any, error) {
	if d.pos >= len(d.data) {
		return nil, errEnd
	}
	switch c := d.data[d.pos]; {
	case c == '{':
		if depth >= maxDepth {
			return nil, d.errorf("exceeded max depth")
		}
		return d.object(depth + 1)
	case c == '[':
		if depth >= maxDepth {
			return nil, d.errorf("exceeded max depth")
		}
		return d.array(depth + 1)
	case c == '"':
		return d.string()
	case c == '-' || (c >= '0' && c <= '9'):
		return d.number()
	case c == 't':
		return true, d.literal("true")
	case c == 'f':
		return false, d.literal("false")
	case c == 'n':
		return nil, d.literal("null")
	default:
		return nil, d.errorf("invalid character %q looking for beginning of value", c)
	}
}

func (d *decoder) literal(lit string) error {
	if len(d.data)-d.pos < len(lit) {
		return errEnd
	}
	if string(d.data[d.pos:d.pos+len(lit)]) != lit {
		return d.errorf("invalid literal")
	}
	d.pos += len(lit)
	return nil
}

func (d *decoder) object(depth int) (any, error) {
	d.pos++ // {
	d.skipSpace()
	if d.pos < len(d.data) && d.data[d.pos] == '}' {
		d.pos++
		return map[string]any{}, nil
	}
	base := len(d.entries)
	for {
		if d.pos >= len(d.data) {
			return nil, errEnd
		}
		if d.data[d.pos] != '"' {
			return nil, d.errorf("invalid character %q looking for beginning of object key string", d.data[d.pos])
		}
		k, err := d.string()
		if err != nil {
			return nil, err
		}
		d.skipSpace()
		if d.pos >= len(d.data) {
			return nil, errEnd
		}
		if d.data[d.pos] != ':' {
			return nil, d.errorf("invalid character %q after object key", d.data[d.pos])
		}
		d.pos++
		d.skipSpace()
		v, err := d.value(depth)
		if err != nil {
			return nil, err
		}
		d.entries = append(d.entries, keyValue{k, v})
		d.entriesHigh = max(d.entriesHigh, len(d.entries))
		d.skipSpace()
		if d.pos >= len(d.data) {
			return nil, errEnd
		}
		switch d.data[d.pos] {
		case ',':
			d.pos++
			d.skipSpace()
		case '}':
			d.pos++
			// Made at its size: no growing past 8 entries. A repeated
			// key keeps its last value, as encoding/json does.
			m := make(map[string]any, len(d.entries)-base)
			for _, e := range d.entries[base:] {
				m[e.key] = e.val
			}
			d.entries = d.entries[:base]
			return m, nil
		default:
			return nil, d.errorf("invalid character %q after object key:value pair", d.data[d.pos])
		}
	}
}

func (d *decoder) array(depth int) (any, error) {
	d.pos++ // [
	d.skipSpace()
	if d.pos < len(d.data) && d.data[d.pos] == ']' {
		d.pos++
		return []any{}, nil
	}
	base := len(d.stack)
	for {
		v, err := d.value(depth)
		if err != nil {
			return nil, err
		}
		d.stack = append(d.stack, v)
		d.high = max(d.high, len(d.stack))
		d.skipSpace()
		if d.pos >= len(d.data) {
			return nil, errEnd
		}
		switch d.data[d.pos] {
		case ',':
			d.pos++
			d.skipSpace()
		case ']':
			d.pos++
			a := make([]any, len(d.stack)-base)
			copy(a, d.stack[base:])
			d.stack = d.stack[:base]
			return a, nil
		default:
			return nil, d.errorf("invalid character %q after array element", d.data[d.pos])
		}
	}
}

func (d *decoder) number() (any, error) {
	start := d.pos
	digits := func() int {
		n := 0
		for d.pos < len(d.data) && d.data[d.pos] >= '0' && d.data[d.pos] <= '9' {
			d.pos++
			n++
		}
		return n
	}
	if d.data[d.pos] == '-' {
		d.pos++
	}
	switch {
	case d.pos >= len(d.data):
		return nil, errEnd
	case d.data[d.pos] == '0':
		d.pos++
	case d.data[d.pos] >= '1' && d.data[d.pos] <= '9':
		digits()
	default:
		return nil, d.errorf("invalid character %q in numeric literal", d.data[d.pos])
	}
	if d.pos < len(d.data) && d.data[d.pos] == '.' {
		d.pos++
		if digits() == 0 {
			if d.pos >= len(d.data) {
				return nil, errEnd
			}
			return nil, d.errorf("invalid character %q after decimal point in numeric literal", d.data[d.pos])
		}
	}
	if d.pos < len(d.data) && (d.data[d.pos] == 'e' || d.data[d.pos] == 'E') {
		d.pos++
		if d.pos < len(d.data) && (d.data[d.pos] == '+' || d.data[d.pos] == '-') {
			d.pos++
		}
		if digits() == 0 {
			if d.pos >= len(d.data) {
				return nil, errEnd
			}
			return nil, d.errorf("invalid character %q in exponent of numeric literal", d.data[d.pos])
		}
	}
	return json.Number(d.src[start:d.pos]), nil
}

// string reads a string at d.pos (an opening quote).
func (d *decoder) string() (string, error) {
	d.pos++ // "
	start := d.pos
	// Fast path: printable ASCII without escapes.
	for d.pos < len(d.data) {
		c := d.data[d.pos]
		if c == '"' {
			s := d.src[start:d.pos]
			d.pos++
			return s, nil
		}
		if c == '\\' || c < 0x20 || c >= utf8.RuneSelf {
			break
		}
		d.pos++
	}
	buf := append(d.buf[:0], d.data[start:d.pos]...)
	for d.pos < len(d.data) {
		c := d.data[d.pos]
		switch {
		case c == '"':
			d.pos++
			d.buf = buf
			return string(buf), nil
		case c < 0x20:
			return "", d.errorf("invalid character %q in string literal", c)
		case c == '\\':
			if d.pos+1 >= len(d.data) {
				return "", errEnd
			}
			e := d.data[d.pos+1]
			d.pos += 2
			switch e {
			case '"', '\\', '/':
				buf = append(buf, e)
			case 'b':
				buf = append(buf, '\b')
			case 'f':
				buf = append(buf, '\f')
			case 'n':
				buf = append(buf, '\n')
			case 'r':
				buf = append(buf, '\r')
			case 't':
				buf = append(buf, '\t')
			case 'u':
				r, err := d.hex4()
				if err != nil {
					return "", err
				}
				if utf16.IsSurrogate(r) {
					// A pair, or U+FFFD for a lone half (as encoding/json).
					r2 := rune(-1)
					if d.pos+1 < len(d.data) && d.data[d.pos] == '\\' && d.data[d.pos+1] == 'u' {
						save := d.pos
						d.pos += 2
						if r2, err = d.hex4(); err != nil {
							return "", err
						}
						if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
							buf = utf8.AppendRune(buf, dec)
							continue
						}
						d.pos = save
					}
					r = utf8.RuneError
				}
				buf = utf8.AppendRune(buf, r)
			default:
				d.pos--
				return "", d.errorf("invalid character %q in string escape code", e)
			}
		case c < utf8.RuneSelf:
			buf = append(buf, c)
			d.pos++
		default:
			r, size := utf8.DecodeRune(d.data[d.pos:])
			if r == utf8.RuneError && size == 1 {
				buf = utf8.AppendRune(buf, utf8.RuneError)
			} else {
				buf = append(buf, d.data[d.pos:d.pos+size]...)
			}
			d.pos += size
		}
	}
	return "", errEnd
}

func (d *decoder) hex4() (rune, error) {
	if len(d.data)-d.pos < 4 {
		return 0, errEnd
	}
	n, err := strconv.ParseUint(string(d.data[d.pos:d.pos+4]), 16, 32)
	if err != nil {
		return 0, d.errorf("invalid character in \\u hexadecimal character escape")
	}
	d.pos += 4
	return rune(n), nil
}
