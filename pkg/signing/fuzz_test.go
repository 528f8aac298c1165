package signing_test

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/switchyard/switchyard/pkg/signing"
)

// Every header parser is fuzzed: no input panics, a failure wraps exactly
// one sentinel, and a success has the shape the verifier relies on. Seed
// corpora are in testdata/fuzz/<FuzzName>.

// checkParsed asserts the shape of a parser's result.
func checkParsed(t *testing.T, in string, err error, sigs [][]byte, size int) {
	t.Helper()
	if err != nil {
		checkOneSentinel(t, err)
		return
	}
	if len(sigs) == 0 || len(sigs) > signing.MaxSignatures+1 {
		t.Fatalf("%d signatures from %q", len(sigs), in)
	}
	for _, s := range sigs {
		if len(s) != size {
			t.Fatalf("signature of %d bytes from %q, want %d", len(s), in, size)
		}
	}
}

func FuzzParseStandardSignatureHeader(f *testing.F) {
	f.Add(vectorB.signature + " " + v1aSignature)
	f.Fuzz(func(t *testing.T, h string) {
		sigs, err := signing.ParseStandardSignatureHeader(h)
		if err != nil {
			checkOneSentinel(t, err)
			return
		}
		if len(sigs.V1)+len(sigs.V1a) > signing.MaxSignatures {
			t.Fatalf("%d signatures from %q", len(sigs.V1)+len(sigs.V1a), h)
		}
		for _, s := range sigs.V1 {
			if len(s) != sha256.Size {
				t.Fatalf("v1 signature of %d bytes", len(s))
			}
		}
		for _, s := range sigs.V1a {
			if len(s) != ed25519.SignatureSize {
				t.Fatalf("v1a signature of %d bytes", len(s))
			}
		}
	})
}

func FuzzParseGitHubSignature(f *testing.F) {
	f.Add(githubSignature)
	f.Fuzz(func(t *testing.T, h string) {
		sig, err := signing.ParseGitHubSignature(h)
		checkParsed(t, h, err, [][]byte{sig}, sha256.Size)
	})
}

func FuzzParseStripeSignature(f *testing.F) {
	f.Add("t=1686089970,v1=" + stripeV1 + ",v0=00")
	f.Fuzz(func(t *testing.T, h string) {
		sig, err := signing.ParseStripeSignature(h)
		checkParsed(t, h, err, sig.V1, sha256.Size)
		if err == nil {
			if ts, perr := signing.ParseUnixTimestamp(sig.TimestampRaw); perr != nil || !ts.Equal(sig.Timestamp) {
				t.Fatalf("timestamp %q parsed as %v", sig.TimestampRaw, sig.Timestamp)
			}
		}
	})
}

func FuzzParseShopifySignature(f *testing.F) {
	f.Add(shopifySignature)
	f.Fuzz(func(t *testing.T, h string) {
		sig, err := signing.ParseShopifySignature(h)
		checkParsed(t, h, err, [][]byte{sig}, sha256.Size)
	})
}

func FuzzParseSlackSignature(f *testing.F) {
	f.Add(slackSignature)
	f.Fuzz(func(t *testing.T, h string) {
		sig, err := signing.ParseSlackSignature(h)
		checkParsed(t, h, err, [][]byte{sig}, sha256.Size)
	})
}

// FuzzHMACParseSignatures runs the generic parser with a prefix and an
// encoding chosen by the fuzzer.
func FuzzHMACParseSignatures(f *testing.F) {
	f.Add("v1="+hmacSHA512, "v1=", true, uint8(1))
	f.Fuzz(func(t *testing.T, h, prefix string, b64 bool, alg uint8) {
		o := signing.HMACOptions{Header: "X-Sig", Prefix: prefix, Encoding: "hex", Algorithm: []string{"sha256", "sha512", "sha1"}[alg%3]}
		if b64 {
			o.Encoding = "base64"
		}
		v, err := signing.NewHMAC([]string{"k"}, o, time.Minute, "", "")
		if err != nil {
			t.Fatal(err)
		}
		sigs, err := v.ParseSignatures(h)
		size := map[string]int{"sha256": 32, "sha512": 64, "sha1": 20}[o.Algorithm]
		checkParsed(t, h, err, sigs, size)
	})
}

func FuzzParseAuthorization(f *testing.F) {
	f.Add(true, "Basic YWNtZTpjb3JyZWN0IGhvcnNlIGJhdHRlcnk=")
	f.Fuzz(func(t *testing.T, basic bool, h string) {
		kind := "Bearer"
		if basic {
			kind = "Basic"
		}
		cred, err := signing.ParseAuthorization(kind, h)
		if err != nil {
			checkOneSentinel(t, err)
			return
		}
		if cred == "" || (basic && !strings.Contains(cred, ":")) {
			t.Fatalf("ParseAuthorization(%s, %q) = %q", kind, h, cred)
		}
	})
}

func FuzzParseSignedContent(f *testing.F) {
	f.Add("{id}.{timestamp}.{body}")
	f.Fuzz(func(t *testing.T, tmpl string) {
		parts, err := signing.ParseSignedContent(tmpl)
		if err != nil {
			return
		}
		if len(parts) == 0 || !strings.Contains(tmpl, signing.PlaceholderBody) {
			t.Fatalf("ParseSignedContent(%q) accepted %d parts", tmpl, len(parts))
		}
	})
}

// FuzzJSONString checks the scanner against encoding/json: for any valid
// JSON object, the top-level string member it finds is the one
// encoding/json decodes. Invalid input must not panic.
func FuzzJSONString(f *testing.F) {
	f.Add([]byte(stripeBody), "type")
	f.Fuzz(func(t *testing.T, body []byte, key string) {
		got := signing.JSONString(body, key)
		if !json.Valid(body) {
			return
		}
		var m map[string]json.RawMessage
		want := ""
		if json.Unmarshal(body, &m) == nil {
			var s string
			if raw, ok := m[key]; ok && json.Unmarshal(raw, &s) == nil {
				want = s
			}
		}
		if got != want {
			t.Fatalf("JSONString(%q, %q) = %q, encoding/json says %q", body, key, got, want)
		}
		if !utf8.ValidString(got) {
			t.Fatalf("JSONString returned invalid UTF-8 %q", got)
		}
	})
}

// FuzzVerifySchemes sends fuzzed signature, timestamp and id headers and
// bodies to every scheme: no panic, exactly one sentinel per failure, no
// secret in an error.
func FuzzVerifySchemes(f *testing.F) {
	f.Add(uint8(3), "t=1686089970,v1="+stripeV1, "", "", []byte(stripeBody))
	fx := fixtures()
	verifiers := make([]signing.Verifier, len(fx))
	for i, x := range fx {
		v, err := signing.New(x.schemeName(), x.opts)
		if err != nil {
			f.Fatal(err)
		}
		verifiers[i] = v
	}
	f.Fuzz(func(t *testing.T, which uint8, sig, ts, id string, body []byte) {
		i := int(which) % len(fx)
		x := fx[i]
		r := x.req()
		r.Body = body
		r.Header = http.Header{}
		for k, v := range map[string]string{
			x.sigHeader: sig, signing.HeaderWebhookTimestamp: ts, signing.HeaderSlackTimestamp: ts, "X-Partner-Timestamp": ts,
			signing.HeaderWebhookID: id, "X-Partner-Delivery": id,
		} {
			if v != "" {
				r.Header.Set(k, v)
			}
		}
		_, err := verifiers[i].Verify(r)
		if err == nil {
			return
		}
		checkOneSentinel(t, err)
		for _, s := range x.opts.Secrets {
			// What the error says is under test: never a secret.
			if strings.Contains(err.Error(), s) {
				t.Fatalf("error reveals a secret: %v", err)
			}
		}
	})
}
