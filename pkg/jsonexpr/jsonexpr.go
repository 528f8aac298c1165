// Package jsonexpr picks values out of JSON documents with an expression
// written either as a JSON path ($.data.items[*].id, the common subset) or
// as a gojq expression (.data.items[] | select(.status != "draft")). A JSON
// path is translated to gojq, so one engine evaluates both. Expressions come
// from the configuration; the documents they read come from partners, so
// evaluation is bounded in time and in the number of values it yields, and
// gojq's access to the environment stays off.
package jsonexpr

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/itchyny/gojq"
)

// MaxValues bounds the values one evaluation may yield.
const MaxValues = 100000

// Timeout bounds one evaluation.
const Timeout = 2 * time.Second

// ErrTooManyValues is returned when an evaluation yields more than
// MaxValues.
var ErrTooManyValues = errors.New("the expression yields too many values")

// Expr is a compiled expression.
type Expr struct {
	src  string
	code *gojq.Code
}

// Compile reads src: a JSON path when it is $ or starts with $. or $[,
// otherwise a gojq expression (where $name is a variable). The error says
// which form was read and what is wrong.
func Compile(src string) (*Expr, error) {
	src = strings.TrimSpace(src)
	if src == "" {
		return nil, errors.New("empty expression: write a JSON path such as $.items or a gojq expression such as .items[]")
	}
	q := src
	if IsPath(src) {
		var err error
		if q, err = PathToJQ(src); err != nil {
			return nil, fmt.Errorf("JSON path %q: %w", src, err)
		}
	}
	parsed, err := gojq.Parse(q)
	if err != nil {
		return nil, fmt.Errorf("gojq expression %q: %w", src, err)
	}
	code, err := gojq.Compile(parsed)
	if err != nil {
		return nil, fmt.Errorf("gojq expression %q: %w", src, err)
	}
	return &Expr{src: src, code: code}, nil
}

// IsPath reports whether src is written as a JSON path.
func IsPath(src string) bool {
	return src == "$" || strings.HasPrefix(src, "$.") || strings.HasPrefix(src, "$[")
}

// String is the expression as written.
func (e *Expr) String() string { return e.src }

// All evaluates the expression on v and returns every value it yields.
func (e *Expr) All(ctx context.Context, v any) ([]any, error) {
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	var out []any
	it := e.code.RunWithContext(ctx, v)
	for {
		x, ok := it.Next()
		if !ok {
			return out, nil
		}
		if err, isErr := x.(error); isErr {
			var halt *gojq.HaltError
			if errors.As(err, &halt) && halt.Value() == nil {
				return out, nil
			}
			return nil, fmt.Errorf("evaluate %s: %w", e.src, err)
		}
		if len(out) == MaxValues {
			return nil, fmt.Errorf("evaluate %s: %w (more than %d)", e.src, ErrTooManyValues, MaxValues)
		}
		out = append(out, x)
	}
}

// First is the first value the expression yields on v that is not null;
// false when there is none.
func (e *Expr) First(ctx context.Context, v any) (any, bool, error) {
	all, err := e.All(ctx, v)
	if err != nil {
		return nil, false, err
	}
	for _, x := range all {
		if x != nil {
			return x, true, nil
		}
	}
	return nil, false, nil
}

// Decode reads one JSON document, keeping numbers exactly as written
// (json.Number), which gojq evaluates and Encode writes back unchanged.
func Decode(data []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := d.Token(); err == nil {
		return nil, errors.New("unexpected data after the JSON document")
	}
	return v, nil
}

// Encode writes a decoded value as JSON, without escaping HTML characters.
func Encode(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// Text is a scalar value as text: a string as it is, a number as written,
// a boolean as true or false. Objects, arrays and null are not text.
func Text(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case json.Number:
		return x.String(), true
	case bool:
		return strconv.FormatBool(x), true
	case int:
		return strconv.Itoa(x), true
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), true
	case fmt.Stringer: // *big.Int
		return x.String(), true
	}
	return "", false
}

// PathToJQ translates a JSON path to gojq. The subset understood is what
// picking items and fields needs: the root $, child names (.name,
// ['name'], ["name"]), array indexes ([0], [-1]) and wildcards ([*], .*).
func PathToJQ(path string) (string, error) {
	if !strings.HasPrefix(path, "$") {
		return "", errors.New("a JSON path starts with $")
	}
	var b strings.Builder
	rest := path[1:]
	for rest != "" {
		switch {
		case strings.HasPrefix(rest, ".."):
			return "", errors.New("recursive descent (..) is not supported; write a gojq expression instead")
		case strings.HasPrefix(rest, ".*"):
			b.WriteString("[]")
			rest = rest[2:]
		case rest[0] == '.':
			n := 1
			for n < len(rest) && rest[n] != '.' && rest[n] != '[' {
				n++
			}
			name := rest[1:n]
			if name == "" {
				return "", fmt.Errorf("empty name at %q", rest)
			}
			writeKey(&b, name)
			rest = rest[n:]
		case rest[0] == '[':
			end := strings.IndexByte(rest, ']')
			if end < 0 {
				return "", fmt.Errorf("unclosed [ at %q", rest)
			}
			inner := strings.TrimSpace(rest[1:end])
			switch {
			case inner == "*":
				b.WriteString("[]")
			case len(inner) >= 2 && (inner[0] == '\'' || inner[0] == '"') && inner[len(inner)-1] == inner[0]:
				name := inner[1 : len(inner)-1]
				if strings.ContainsAny(name, `'"\`) {
					return "", fmt.Errorf("quotes or backslashes in the name %s are not supported; write a gojq expression instead", inner)
				}
				writeKey(&b, name)
			default:
				n, err := strconv.Atoi(inner)
				if err != nil {
					return "", fmt.Errorf("[%s] is neither an index, a quoted name nor *", inner)
				}
				b.WriteString("[" + strconv.Itoa(n) + "]")
			}
			rest = rest[end+1:]
		default:
			return "", fmt.Errorf("unexpected %q: write .name, ['name'], [n] or [*]", rest)
		}
	}
	if b.Len() == 0 {
		return ".", nil
	}
	return b.String(), nil
}

func writeKey(b *strings.Builder, name string) {
	q, _ := json.Marshal(name) // a JSON string is a gojq string literal
	b.WriteString(".[")
	b.Write(q)
	b.WriteString("]")
}
