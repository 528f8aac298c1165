package mapping

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/switchyard/switchyard/pkg/jsonexpr"
)

var decodeSeeds = []string{
	`{"a":1,"b":[true,false,null,"x"],"c":{"d":-0.5e+10}}`,
	`  [1, 2.0, -3e2, 12345678901234567890, 0.1]  `,
	`"esc \" \\ \/ \b \f \n \r \t \u00e9 \ud83d\ude00 \ud800 \udc00x \ud800\u0041"`,
	"\"bad utf8 \xff\xfe ok\"",
	`{"k":1,"k":2}`,
	`{}`, `[]`, `""`, `0`, `-0`, `true`, `null`,
	`{"a":}`, `[1,]`, `01`, `1.`, `1e`, `-`, `"\x"`, `"abc`, "\"ctl \x01\"", `{"a" 1}`, `[1 2]`, `tru`, `{"a":1}x`, ``, `   `,
	`"\u12"`, `"\u12G4"`, `{"a":[{"b":{"c":[[[]]]}}]}`, `1E+2`, `-1.5E-3`,
}

// decode agrees with encoding/json (jsonexpr.Decode) on the values and on
// what is refused.
func TestDecodeAgreesWithEncodingJSON(t *testing.T) {
	t.Parallel()
	for _, s := range decodeSeeds {
		checkDecode(t, []byte(s))
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) { checkDecode(t, b) })
}

func checkDecode(t *testing.T, b []byte) {
	t.Helper()
	// json.Valid is encoding/json's verdict (jsonexpr.Decode lets some
	// trailing data through).
	valid := json.Valid(b)
	got, err := decode(b)
	if (err == nil) != valid {
		t.Fatalf("%q: decode error %v, encoding/json valid %v", b, err, valid)
	}
	if !valid {
		return
	}
	want, wantErr := jsonexpr.Decode(b)
	if wantErr != nil {
		t.Fatalf("%q: encoding/json: %v", b, wantErr)
	}
	if err == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("%q: decode %#v, encoding/json %#v", b, got, want)
	}
}
