package mapping

import (
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// marshal encodes a transformation's result exactly as gojq.Marshal does
// (object keys sorted, jq's escapes and number forms; FuzzMarshal checks
// the two agree), into a pooled buffer that stops growing past limit: the
// second return is false when the encoding is longer than limit bytes, and
// the body is then not kept. gojq.Marshal allocates a sorted copy of every
// object and grows a fresh buffer per event; this is one allocation, the
// body returned.
func marshal(v any, limit int) ([]byte, bool, error) {
	e := encoders.Get().(*encoder)
	defer e.release()
	e.buf, e.limit = e.buf[:0], limit
	if err := e.encode(v); err != nil {
		return nil, false, err
	}
	if len(e.buf) > limit {
		return nil, false, nil
	}
	return slices.Clone(e.buf), true, nil
}

type encoder struct {
	buf   []byte
	limit int
	// kvs holds the entries of the objects being written, innermost last;
	// high is the most it held (what release clears).
	kvs  []keyValue
	high int
}

type keyValue struct {
	key string
	val any
}

var encoders = sync.Pool{New: func() any { return &encoder{buf: make([]byte, 0, 4<<10)} }}

// maxPooledBuffer keeps an occasional large body's buffer out of the pool.
const maxPooledBuffer = 1 << 20

func (e *encoder) release() {
	clear(e.kvs[:e.high])
	e.kvs, e.high = e.kvs[:0], 0
	if cap(e.buf) > maxPooledBuffer {
		e.buf = make([]byte, 0, 4<<10)
	}
	encoders.Put(e)
}

// over reports whether the body is already longer than the limit; the
// encoders stop there.
func (e *encoder) over() bool { return len(e.buf) > e.limit }

func (e *encoder) encode(v any) error {
	switch v := v.(type) {
	case nil:
		e.buf = append(e.buf, "null"...)
	case bool:
		e.buf = strconv.AppendBool(e.buf, v)
	case int:
		e.buf = strconv.AppendInt(e.buf, int64(v), 10)
	case float64:
		e.encodeFloat64(v)
	case *big.Int:
		e.buf = v.Append(e.buf, 10)
	case json.Number:
		e.buf = append(e.buf, v...)
	case string:
		e.encodeString(v)
	case []any:
		e.buf = append(e.buf, '[')
		for i, x := range v {
			if i > 0 {
				e.buf = append(e.buf, ',')
			}
			if err := e.encode(x); err != nil || e.over() {
				return err
			}
		}
		e.buf = append(e.buf, ']')
	case map[string]any:
		return e.encodeObject(v)
	default:
		return fmt.Errorf("invalid type: %T", v)
	}
	return nil
}

// smallObject is the most entries an object is sorted with on the stack
// (no allocation, and no write barriers while the collector runs).
const smallObject = 16

func (e *encoder) encodeObject(m map[string]any) error {
	var kvs []keyValue
	var small [smallObject]keyValue
	if len(m) <= smallObject {
		kvs = small[:0]
		for k, v := range m {
			kvs = append(kvs, keyValue{k, v})
		}
	} else {
		base := len(e.kvs)
		for k, v := range m {
			e.kvs = append(e.kvs, keyValue{k, v})
		}
		e.high = max(e.high, len(e.kvs))
		defer func() { e.kvs = e.kvs[:base] }()
		kvs = e.kvs[base:]
	}
	slices.SortFunc(kvs, func(x, y keyValue) int { return strings.Compare(x.key, y.key) })
	e.buf = append(e.buf, '{')
	for i, kv := range kvs {
		if i > 0 {
			e.buf = append(e.buf, ',')
		}
		e.encodeString(kv.key)
		e.buf = append(e.buf, ':')
		if err := e.encode(kv.val); err != nil || e.over() {
			return err
		}
	}
	e.buf = append(e.buf, '}')
	return nil
}

// encodeFloat64 is gojq's: NaN is null, infinities are clamped, exponents
// without a leading zero.
func (e *encoder) encodeFloat64(f float64) {
	if math.IsNaN(f) {
		e.buf = append(e.buf, "null"...)
		return
	}
	f = min(max(f, -math.MaxFloat64), math.MaxFloat64)
	format := byte('f')
	if x := math.Abs(f); x != 0 && x < 1e-6 || x >= 1e21 {
		format = 'e'
	}
	start := len(e.buf)
	e.buf = strconv.AppendFloat(e.buf, f, format, -1, 64)
	if format == 'e' {
		// e-09 to e-9
		b := e.buf[start:]
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			e.buf = e.buf[:len(e.buf)-1]
		}
	}
}

// encodeString is gojq's: \b and \f, no escaping of <, > and &, invalid
// UTF-8 as \ufffd.
func (e *encoder) encodeString(s string) {
	const hex = "0123456789abcdef"
	e.buf = append(e.buf, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if ' ' <= b && b <= '~' && b != '"' && b != '\\' {
				i++
				continue
			}
			e.buf = append(e.buf, s[start:i]...)
			switch b {
			case '"':
				e.buf = append(e.buf, `\"`...)
			case '\\':
				e.buf = append(e.buf, `\\`...)
			case '\b':
				e.buf = append(e.buf, `\b`...)
			case '\f':
				e.buf = append(e.buf, `\f`...)
			case '\n':
				e.buf = append(e.buf, `\n`...)
			case '\r':
				e.buf = append(e.buf, `\r`...)
			case '\t':
				e.buf = append(e.buf, `\t`...)
			default:
				e.buf = append(e.buf, '\\', 'u', '0', '0', hex[b>>4], hex[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		if c == utf8.RuneError && size == 1 {
			e.buf = append(e.buf, s[start:i]...)
			e.buf = append(e.buf, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	e.buf = append(e.buf, s[start:]...)
	e.buf = append(e.buf, '"')
}
