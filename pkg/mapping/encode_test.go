package mapping

import (
	"bytes"
	"math"
	"math/big"
	"testing"

	"github.com/itchyny/gojq"
)

// marshalSeeds are the kinds of value a gojq program yields that a decoded
// body does not hold.
var marshalSeeds = []any{
	nil, true, false, 0, -42, math.MaxInt64, 0.1, -2.5, 1e-7, 1e21, 123456789.125, math.NaN(), math.Inf(1), math.Inf(-1), 5e-324,
	new(big.Int).Lsh(big.NewInt(1), 100), "", "a\"b\\c\b\f\n\r\t\x01\x7f<>&\u2028", "bad \xff utf8 é 😀",
	[]any{}, map[string]any{}, []any{1, "x", nil, []any{map[string]any{"b": 1, "a": []any{2.5}}}},
	map[string]any{"z": 1, "a": map[string]any{"y": nil, "b": "é"}, "": []any{}, "A": true, "é": 1, "ab": 2, "a\x00": 3},
}

// marshal writes what gojq.Marshal writes.
func TestMarshalAgreesWithGojq(t *testing.T) {
	t.Parallel()
	for _, v := range marshalSeeds {
		checkMarshal(t, v)
	}
	for _, s := range decodeSeeds {
		if v, err := decode([]byte(s)); err == nil {
			checkMarshal(t, v)
		}
	}
}

func FuzzMarshal(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := decode(b)
		if err != nil {
			return
		}
		checkMarshal(t, v)
		// And the same document after a program that turns numbers into
		// gojq's own (int, float64, big.Int).
		code, err := gojq.Compile(mustParse(t, `walk(if type == "number" then . * 3 else . end)`))
		if err != nil {
			t.Fatal(err)
		}
		if out, ok := code.Run(v).Next(); ok {
			if _, isErr := out.(error); !isErr {
				checkMarshal(t, out)
			}
		}
	})
}

func mustParse(t *testing.T, src string) *gojq.Query {
	t.Helper()
	q, err := gojq.Parse(src)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func checkMarshal(t *testing.T, v any) {
	t.Helper()
	want, err := gojq.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	got, fits, err := marshal(v, len(want))
	if err != nil || !fits {
		t.Fatalf("%#v: marshal error %v, fits %v", v, err, fits)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%#v:\nmarshal %s\ngojq    %s", v, got, want)
	}
	// One byte less does not fit, and says so instead of a cut body.
	if got, fits, err := marshal(v, len(want)-1); err != nil || fits || got != nil {
		t.Fatalf("%#v with limit %d: %q, fits %v, error %v", v, len(want)-1, got, fits, err)
	}
}
