package signing_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/pkg/signing"
)

// vector is a published Standard Webhooks test vector.
type vector struct {
	secret    string
	id        string
	timestamp int64
	body      string
	signature string
}

var (
	// vectorA is the example in the Standard Webhooks specification.
	vectorA = vector{
		secret:    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
		id:        "msg_p5jXN8AQM9LWM0D4loKWxJek",
		timestamp: 1614265330,
		body:      `{"test": 2432232314}`,
		signature: "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
	}
	// vectorB is from the Standard Webhooks reference libraries' tests.
	vectorB = vector{
		secret:    "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
		id:        "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
		timestamp: 1649367553,
		body:      `{"email":"test@example.com","username":"test_user"}`,
		signature: "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
	}
	vectors = map[string]vector{"spec": vectorA, "libraries": vectorB}
)

const tolerance = 5 * time.Minute

// secretParts are the forms of the test secrets that must never appear in
// an error: with and without the whsec_ prefix.
var secretParts = []string{
	vectorA.secret, strings.TrimPrefix(vectorA.secret, "whsec_"),
	vectorB.secret, strings.TrimPrefix(vectorB.secret, "whsec_"),
}

func newVerifier(t testing.TB, secrets ...string) *signing.StandardWebhooks {
	t.Helper()
	sw, err := signing.NewStandardWebhooks(secrets, tolerance)
	if err != nil {
		t.Fatalf("NewStandardWebhooks: %v", err)
	}
	return sw
}

// request builds the request a sender of v would make, verified at the
// signed time.
func (v vector) request() signing.Request {
	h := http.Header{}
	h.Set(signing.HeaderWebhookID, v.id)
	h.Set(signing.HeaderWebhookTimestamp, strconv.FormatInt(v.timestamp, 10))
	h.Set(signing.HeaderWebhookSignature, v.signature)
	return signing.Request{Header: h, Body: []byte(v.body), Now: time.Unix(v.timestamp, 0)}
}

var sentinels = []error{
	signing.ErrMissingSignature, signing.ErrBadSignature, signing.ErrStaleTimestamp, signing.ErrMalformed,
	signing.ErrMissingCredentials, signing.ErrBadCredentials,
}

// checkVerifyErr asserts err wraps want and no other sentinel, and never
// shows a secret.
func checkVerifyErr(t *testing.T, err, want error) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Fatalf("Verify: %v", err)
		}
		return
	}
	if !errors.Is(err, want) {
		t.Fatalf("Verify error = %v, want %v", err, want)
	}
	checkOneSentinel(t, err)
	for _, s := range secretParts {
		// What the error says is under test: never a secret.
		if strings.Contains(err.Error(), s) {
			t.Errorf("error reveals a secret: %v", err)
		}
	}
}

func checkOneSentinel(t *testing.T, err error) {
	t.Helper()
	n := 0
	for _, s := range sentinels {
		if errors.Is(err, s) {
			n++
		}
	}
	if n != 1 {
		t.Errorf("error %q wraps %d sentinel errors, want exactly one", err, n)
	}
}

func TestStandardWebhooksVectors(t *testing.T) {
	t.Parallel()
	for name, v := range vectors {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			sw := newVerifier(t, v.secret)
			if got := sw.Sign(v.id, time.Unix(v.timestamp, 0), []byte(v.body)); got != v.signature {
				t.Errorf("Sign = %q, want %q", got, v.signature)
			}
			// Sign uses whole seconds, as the header does.
			if got := sw.Sign(v.id, time.Unix(v.timestamp, 999_999_999), []byte(v.body)); got != v.signature {
				t.Errorf("Sign with a fraction of a second = %q, want %q", got, v.signature)
			}
			got, err := sw.Verify(v.request())
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			want := signing.Verified{DeliveryID: v.id, Timestamp: time.Unix(v.timestamp, 0), DeliveryIDSigned: true, EventTypeSigned: true}
			if got != want {
				t.Errorf("Verify = %+v, want %+v", got, want)
			}
			// The whsec_ prefix is optional.
			if _, err := newVerifier(t, strings.TrimPrefix(v.secret, "whsec_")).Verify(v.request()); err != nil {
				t.Errorf("Verify with the unprefixed secret: %v", err)
			}
		})
	}
}

func TestVerifyFailures(t *testing.T) {
	t.Parallel()
	validSig := strings.TrimPrefix(vectorA.signature, "v1,")
	otherSig := base64.StdEncoding.EncodeToString(make([]byte, sha256.Size)) // well formed, wrong

	tests := []struct {
		name    string
		secrets []string
		mutate  func(r *signing.Request)
		wantErr error
	}{
		{name: "valid", mutate: func(*signing.Request) {}},
		{name: "no headers", mutate: func(r *signing.Request) { r.Header = http.Header{} }, wantErr: signing.ErrMissingSignature},
		{name: "nil header", mutate: func(r *signing.Request) { r.Header = nil }, wantErr: signing.ErrMissingSignature},
		{name: "no signature header", mutate: func(r *signing.Request) { r.Header.Del(signing.HeaderWebhookSignature) }, wantErr: signing.ErrMissingSignature},
		{name: "no id header", mutate: func(r *signing.Request) { r.Header.Del(signing.HeaderWebhookID) }, wantErr: signing.ErrMissingSignature},
		{name: "no timestamp header", mutate: func(r *signing.Request) { r.Header.Del(signing.HeaderWebhookTimestamp) }, wantErr: signing.ErrMissingSignature},
		{name: "empty signature header", mutate: func(r *signing.Request) { r.Header.Set(signing.HeaderWebhookSignature, "") }, wantErr: signing.ErrMissingSignature},
		{name: "blank signature header", mutate: func(r *signing.Request) { r.Header.Set(signing.HeaderWebhookSignature, "  \t ") }, wantErr: signing.ErrMissingSignature},
		{name: "empty signature", mutate: func(r *signing.Request) { r.Header.Set(signing.HeaderWebhookSignature, "v1,") }, wantErr: signing.ErrBadSignature},
		{name: "truncated signature", mutate: func(r *signing.Request) {
			r.Header.Set(signing.HeaderWebhookSignature, vectorA.signature[:len(vectorA.signature)-5])
		}, wantErr: signing.ErrBadSignature},
		{name: "signature of 31 bytes", mutate: func(r *signing.Request) {
			r.Header.Set(signing.HeaderWebhookSignature, "v1,"+base64.StdEncoding.EncodeToString(make([]byte, 31)))
		}, wantErr: signing.ErrBadSignature},
		{name: "signature not base64", mutate: func(r *signing.Request) {
			r.Header.Set(signing.HeaderWebhookSignature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1O!=")
		}, wantErr: signing.ErrBadSignature},
		{name: "hex instead of base64", mutate: func(r *signing.Request) {
			r.Header.Set(signing.HeaderWebhookSignature, "v1,"+strings.Repeat("ab", 32))
		}, wantErr: signing.ErrBadSignature},
		{name: "wrong version", mutate: func(r *signing.Request) { r.Header.Set(signing.HeaderWebhookSignature, "v2,"+validSig) }, wantErr: signing.ErrBadSignature},
		{name: "asymmetric version only", mutate: func(r *signing.Request) { r.Header.Set(signing.HeaderWebhookSignature, "v1a,"+validSig) }, wantErr: signing.ErrBadSignature},
		{name: "upper-case version", mutate: func(r *signing.Request) { r.Header.Set(signing.HeaderWebhookSignature, "V1,"+validSig) }, wantErr: signing.ErrBadSignature},
		{name: "no comma", mutate: func(r *signing.Request) { r.Header.Set(signing.HeaderWebhookSignature, "v1"+validSig) }, wantErr: signing.ErrMalformed},
		{name: "no version", mutate: func(r *signing.Request) { r.Header.Set(signing.HeaderWebhookSignature, ","+validSig) }, wantErr: signing.ErrMalformed},
		{name: "more than 32 signatures", mutate: func(r *signing.Request) {
			r.Header.Set(signing.HeaderWebhookSignature, strings.Repeat("v1,"+otherSig+" ", 32)+vectorA.signature)
		}, wantErr: signing.ErrMalformed},
		{name: "32 signatures, the last valid", mutate: func(r *signing.Request) {
			r.Header.Set(signing.HeaderWebhookSignature, strings.Repeat("v1,"+otherSig+" ", 31)+vectorA.signature)
		}},
		{name: "wrong secret", secrets: []string{vectorB.secret}, mutate: func(*signing.Request) {}, wantErr: signing.ErrBadSignature},
		{name: "another signature", mutate: func(r *signing.Request) { r.Header.Set(signing.HeaderWebhookSignature, "v1,"+otherSig) }, wantErr: signing.ErrBadSignature},
		{name: "body tampered", mutate: func(r *signing.Request) { r.Body = []byte(`{"test": 2432232315}`) }, wantErr: signing.ErrBadSignature},
		{name: "body with a trailing newline", mutate: func(r *signing.Request) { r.Body = append(r.Body, '\n') }, wantErr: signing.ErrBadSignature},
		{name: "empty body", mutate: func(r *signing.Request) { r.Body = nil }, wantErr: signing.ErrBadSignature},
		{name: "id tampered", mutate: func(r *signing.Request) { r.Header.Set(signing.HeaderWebhookID, "msg_other") }, wantErr: signing.ErrBadSignature},
		{name: "timestamp tampered within tolerance", mutate: func(r *signing.Request) {
			r.Header.Set(signing.HeaderWebhookTimestamp, strconv.FormatInt(vectorA.timestamp+1, 10))
		}, wantErr: signing.ErrBadSignature},
		{name: "timestamp with leading zero", mutate: func(r *signing.Request) {
			r.Header.Set(signing.HeaderWebhookTimestamp, "0"+strconv.FormatInt(vectorA.timestamp, 10))
		}, wantErr: signing.ErrBadSignature},
		{name: "non-numeric timestamp", mutate: func(r *signing.Request) { r.Header.Set(signing.HeaderWebhookTimestamp, "yesterday") }, wantErr: signing.ErrMalformed},
		{name: "timestamp in milliseconds", mutate: func(r *signing.Request) {
			r.Header.Set(signing.HeaderWebhookTimestamp, strconv.FormatInt(vectorA.timestamp*1000, 10))
		}, wantErr: signing.ErrMalformed},
		{name: "fractional timestamp", mutate: func(r *signing.Request) { r.Header.Set(signing.HeaderWebhookTimestamp, "1614265330.5") }, wantErr: signing.ErrMalformed},
		{name: "negative timestamp", mutate: func(r *signing.Request) { r.Header.Set(signing.HeaderWebhookTimestamp, "-1614265330") }, wantErr: signing.ErrMalformed},
		{name: "RFC 3339 timestamp", mutate: func(r *signing.Request) { r.Header.Set(signing.HeaderWebhookTimestamp, "2021-02-25T15:02:10Z") }, wantErr: signing.ErrMalformed},
		{name: "stale", mutate: func(r *signing.Request) { r.Now = r.Now.Add(tolerance + time.Second) }, wantErr: signing.ErrStaleTimestamp},
		{name: "from the future", mutate: func(r *signing.Request) { r.Now = r.Now.Add(-tolerance - time.Second) }, wantErr: signing.ErrStaleTimestamp},
		{name: "at the tolerance in the past", mutate: func(r *signing.Request) { r.Now = r.Now.Add(tolerance) }},
		{name: "at the tolerance in the future", mutate: func(r *signing.Request) { r.Now = r.Now.Add(-tolerance) }},
		{name: "no verification time", mutate: func(r *signing.Request) { r.Now = time.Time{} }, wantErr: signing.ErrStaleTimestamp},
		{name: "stale and wrong: stale wins", mutate: func(r *signing.Request) {
			r.Now = r.Now.Add(time.Hour)
			r.Body = []byte("tampered")
		}, wantErr: signing.ErrStaleTimestamp},
		{name: "several signatures, one valid", mutate: func(r *signing.Request) {
			r.Header.Set(signing.HeaderWebhookSignature, "v1,"+otherSig+" v1a,"+validSig+" v2,abc v1,bm90IGEgbWFj "+vectorA.signature+" v1,"+otherSig)
		}},
		{name: "several signatures, none valid", mutate: func(r *signing.Request) {
			r.Header.Set(signing.HeaderWebhookSignature, "v1,"+otherSig+" v1a,"+validSig+" v2,"+validSig)
		}, wantErr: signing.ErrBadSignature},
		{name: "extra whitespace between signatures", mutate: func(r *signing.Request) {
			r.Header.Set(signing.HeaderWebhookSignature, "  v1,"+otherSig+"\t  "+vectorA.signature+"  ")
		}},
		{name: "one malformed entry spoils the header", mutate: func(r *signing.Request) {
			r.Header.Set(signing.HeaderWebhookSignature, vectorA.signature+" garbage")
		}, wantErr: signing.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			secrets := tt.secrets
			if secrets == nil {
				secrets = []string{vectorA.secret}
			}
			r := vectorA.request()
			tt.mutate(&r)
			got, err := newVerifier(t, secrets...).Verify(r)
			checkVerifyErr(t, err, tt.wantErr)
			if err != nil && got != (signing.Verified{}) {
				t.Errorf("Verify failed but returned %+v", got)
			}
		})
	}
}

// TestVerifyRotation: while a partner rotates its secret, both are
// configured and a request signed with either is accepted.
func TestVerifyRotation(t *testing.T) {
	t.Parallel()
	oldSecret, newSecret := vectorA.secret, vectorB.secret
	both := newVerifier(t, oldSecret, newSecret)
	onlyNew := newVerifier(t, newSecret)
	now := time.Unix(1_700_000_000, 0)
	body := []byte(`{"type":"order.created"}`)

	for _, tt := range []struct {
		name     string
		signer   *signing.StandardWebhooks
		verifier *signing.StandardWebhooks
		wantErr  error
	}{
		{"signed with the second secret", onlyNew, both, nil},
		{"signed with the first secret", newVerifier(t, oldSecret), both, nil},
		{"signed with both by a rotating sender", both, onlyNew, nil},
		{"old secret after the rotation", newVerifier(t, oldSecret), onlyNew, signing.ErrBadSignature},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := http.Header{}
			h.Set(signing.HeaderWebhookID, "msg_rotation")
			h.Set(signing.HeaderWebhookTimestamp, strconv.FormatInt(now.Unix(), 10))
			h.Set(signing.HeaderWebhookSignature, tt.signer.Sign("msg_rotation", now, body))
			_, err := tt.verifier.Verify(signing.Request{Header: h, Body: body, Now: now.Add(time.Minute)})
			checkVerifyErr(t, err, tt.wantErr)
		})
	}

	// A sender with two secrets signs with both, old first.
	sig := both.Sign(vectorA.id, time.Unix(vectorA.timestamp, 0), []byte(vectorA.body))
	parts := strings.Fields(sig)
	if len(parts) != 2 || parts[0] != vectorA.signature || !strings.HasPrefix(parts[1], "v1,") {
		t.Errorf("Sign with two secrets = %q, want %q and a second v1 signature", sig, vectorA.signature)
	}
}

func TestSignRoundTrip(t *testing.T) {
	t.Parallel()
	sw := newVerifier(t, vectorB.secret)
	now := time.Unix(1_700_000_000, 0)
	for _, body := range [][]byte{nil, {}, []byte("plain text"), {0, 1, 2, 0xff}, []byte(strings.Repeat("x", 1<<16))} {
		h := http.Header{}
		h.Set(signing.HeaderWebhookID, "evt_1")
		h.Set(signing.HeaderWebhookTimestamp, strconv.FormatInt(now.Unix(), 10))
		h.Set(signing.HeaderWebhookSignature, sw.Sign("evt_1", now, body))
		if _, err := sw.Verify(signing.Request{Header: h, Body: body, Now: now}); err != nil {
			t.Errorf("Verify(Sign(body of %d bytes)): %v", len(body), err)
		}
	}
}

// TestVerifierInterface: StandardWebhooks is what ingress holds as a
// Verifier.
func TestVerifierInterface(t *testing.T) {
	t.Parallel()
	var v signing.Verifier = newVerifier(t, vectorA.secret)
	if _, err := v.Verify(vectorA.request()); err != nil {
		t.Fatal(err)
	}
}

func TestDecodeStandardSecret(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		secret  string
		wantLen int
		wantErr error
	}{
		{name: "prefixed", secret: vectorA.secret, wantLen: 24},
		{name: "unprefixed", secret: strings.TrimPrefix(vectorB.secret, "whsec_"), wantLen: 24},
		{name: "16 bytes", secret: "whsec_" + base64.StdEncoding.EncodeToString(make([]byte, 16)), wantLen: 16},
		{name: "64 bytes", secret: "whsec_" + base64.StdEncoding.EncodeToString(make([]byte, 64)), wantLen: 64},
		{name: "15 bytes", secret: "whsec_" + base64.StdEncoding.EncodeToString([]byte("fifteen-bytes!!")), wantErr: signing.ErrBadSecret},
		{name: "empty", secret: "", wantErr: signing.ErrBadSecret},
		{name: "prefix only", secret: "whsec_", wantErr: signing.ErrBadSecret},
		{name: "not base64", secret: "whsec_this-is-my-password-not-base64!", wantErr: signing.ErrBadSecret},
		{name: "URL-safe base64", secret: "whsec_C2FVsBQIhrscChlQIMV-b5sSYspob7oD", wantErr: signing.ErrBadSecret},
		{name: "other prefix", secret: "whsk_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", wantErr: signing.ErrBadSecret},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			key, err := signing.DecodeStandardSecret(tt.secret)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("DecodeStandardSecret = %v, want %v", err, tt.wantErr)
				}
				// What the error says is under test: never a secret.
				if body := strings.TrimPrefix(tt.secret, "whsec_"); body != "" && strings.Contains(err.Error(), body) {
					t.Errorf("error reveals the secret: %v", err)
				}
				return
			}
			if err != nil || len(key) != tt.wantLen {
				t.Fatalf("DecodeStandardSecret = %d bytes, %v; want %d bytes", len(key), err, tt.wantLen)
			}
		})
	}
}

func TestNewStandardWebhooks(t *testing.T) {
	t.Parallel()
	if _, err := signing.NewStandardWebhooks(nil, tolerance); !errors.Is(err, signing.ErrBadSecret) {
		t.Errorf("no secrets: error = %v, want ErrBadSecret", err)
	}
	const bad = "whsec_not base64 at all, a password"
	_, err := signing.NewStandardWebhooks([]string{vectorA.secret, bad}, tolerance)
	if !errors.Is(err, signing.ErrBadSecret) {
		t.Fatalf("bad second secret: error = %v, want ErrBadSecret", err)
	}
	var se *signing.SecretError
	if !errors.As(err, &se) || se.Index != 1 {
		t.Errorf("error does not say which secret: %v", err)
	}
	// What the error says is under test: never a secret.
	if strings.Contains(err.Error(), "a password") || strings.Contains(err.Error(), "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw") {
		t.Errorf("error reveals a secret: %v", err)
	}
}

func TestParseStandardSignatures(t *testing.T) {
	t.Parallel()
	mac := func(b byte) string {
		raw := make([]byte, sha256.Size)
		raw[0] = b
		return base64.StdEncoding.EncodeToString(raw)
	}
	tests := []struct {
		name    string
		header  string
		want    int // number of v1 signatures
		wantErr error
	}{
		{name: "one", header: vectorA.signature, want: 1},
		{name: "two", header: "v1," + mac(1) + " v1," + mac(2), want: 2},
		{name: "other versions skipped", header: "v1a," + mac(1) + " v1," + mac(2) + " v2," + mac(3), want: 1},
		{name: "garbled v1 skipped", header: "v1,???? v1," + mac(2) + " v1," + mac(3)[:20], want: 1},
		{name: "tabs and newlines separate", header: "v1," + mac(1) + "\tv1," + mac(2) + "\nv1," + mac(3), want: 3},
		{name: "32 entries", header: strings.TrimSpace(strings.Repeat("v1,"+mac(1)+" ", 32)), want: 32},
		{name: "empty", header: "", wantErr: signing.ErrMissingSignature},
		{name: "blank", header: " \t\n", wantErr: signing.ErrMissingSignature},
		{name: "33 entries", header: strings.Repeat("v1,"+mac(1)+" ", 33), wantErr: signing.ErrMalformed},
		{name: "no comma", header: "v1", wantErr: signing.ErrMalformed},
		{name: "empty version", header: "," + mac(1), wantErr: signing.ErrMalformed},
		{name: "only other versions", header: "v1a," + mac(1), wantErr: signing.ErrBadSignature},
		{name: "v1 with nothing", header: "v1,", wantErr: signing.ErrBadSignature},
		{name: "v1 too long", header: "v1," + base64.StdEncoding.EncodeToString(make([]byte, 33)), wantErr: signing.ErrBadSignature},
		{name: "v1 unpadded", header: "v1," + strings.TrimRight(mac(1), "="), wantErr: signing.ErrBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sigs, err := signing.ParseStandardSignatures(tt.header)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("ParseStandardSignatures = %d, %v; want %v", len(sigs), err, tt.wantErr)
				}
				checkOneSentinel(t, err)
				return
			}
			if err != nil || len(sigs) != tt.want {
				t.Fatalf("ParseStandardSignatures = %d signatures, %v; want %d", len(sigs), err, tt.want)
			}
			for _, s := range sigs {
				if len(s) != sha256.Size {
					t.Errorf("signature of %d bytes", len(s))
				}
			}
		})
	}
}

func TestParseUnixTimestamp(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"1614265330", 1614265330, true},
		{" 1614265330 ", 1614265330, true},
		{"0", 0, true},
		{"+1614265330", 1614265330, true},
		{strconv.FormatInt(1<<40, 10), 1 << 40, true},
		{strconv.FormatInt(1<<40+1, 10), 0, false},
		{"-1", 0, false},
		{"", 0, false},
		{"1e9", 0, false},
		{"0x10", 0, false},
		{"1614265330.0", 0, false},
		{"99999999999999999999", 0, false},
	}
	for _, tt := range tests {
		got, err := signing.ParseUnixTimestamp(tt.in)
		if (err == nil) != tt.ok {
			t.Errorf("ParseUnixTimestamp(%q) error = %v, want ok=%v", tt.in, err, tt.ok)
			continue
		}
		if tt.ok && !got.Equal(time.Unix(tt.want, 0)) {
			t.Errorf("ParseUnixTimestamp(%q) = %v, want %v", tt.in, got, time.Unix(tt.want, 0))
		}
	}
}

// referenceMAC is an independent implementation of the Standard Webhooks
// MAC, for the fuzz test's oracle.
func referenceMAC(t testing.TB, secret, id, ts string, body []byte) []byte {
	t.Helper()
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		t.Fatal(err)
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id + "." + ts + "."))
	m.Write(body)
	return m.Sum(nil)
}

// FuzzParseStandardSignatures: no header panics; a success holds 1 to 32
// signatures of 32 bytes; a failure wraps exactly one sentinel.
func FuzzParseStandardSignatures(f *testing.F) {
	f.Add(vectorA.signature)
	f.Fuzz(func(t *testing.T, h string) {
		sigs, err := signing.ParseStandardSignatures(h)
		if err != nil {
			checkOneSentinel(t, err)
			return
		}
		if len(sigs) == 0 || len(sigs) > 32 {
			t.Fatalf("%d signatures from %q", len(sigs), h)
		}
		for _, s := range sigs {
			if len(s) != sha256.Size {
				t.Fatalf("signature of %d bytes from %q", len(s), h)
			}
		}
	})
}

// FuzzVerify: random headers and bodies never panic, every failure wraps
// exactly one sentinel and shows no secret, and a success really carries
// the MAC of the id, the timestamp and the body.
func FuzzVerify(f *testing.F) {
	f.Add(vectorA.id, strconv.FormatInt(vectorA.timestamp, 10), vectorA.signature, []byte(vectorA.body), int64(0))
	secrets := []string{vectorA.secret, vectorB.secret}
	sw := newVerifier(f, secrets...)
	f.Fuzz(func(t *testing.T, id, ts, sig string, body []byte, skew int64) {
		h := http.Header{}
		for k, v := range map[string]string{signing.HeaderWebhookID: id, signing.HeaderWebhookTimestamp: ts, signing.HeaderWebhookSignature: sig} {
			if v != "" {
				h.Set(k, v)
			}
		}
		now := time.Unix(vectorA.timestamp, 0).Add(time.Duration(skew))
		if n, err := strconv.ParseInt(strings.TrimSpace(ts), 10, 64); err == nil && n >= 0 && n <= 1<<40 {
			now = time.Unix(n, 0).Add(time.Duration(skew % int64(2*tolerance)))
		}
		v, err := sw.Verify(signing.Request{Header: h, Body: body, Now: now})
		if err != nil {
			checkOneSentinel(t, err)
			for _, s := range secretParts {
				// What the error says is under test: never a secret.
				if strings.Contains(err.Error(), s) {
					t.Fatalf("error reveals a secret: %v", err)
				}
			}
			return
		}
		if v.DeliveryID != id {
			t.Fatalf("DeliveryID = %q, want %q", v.DeliveryID, id)
		}
		sigs, _ := signing.ParseStandardSignatures(sig)
		for _, secret := range secrets {
			want := referenceMAC(t, secret, id, ts, body)
			for _, s := range sigs {
				if hmac.Equal(s, want) {
					return
				}
			}
		}
		t.Fatalf("Verify accepted id %q ts %q sig %q without a matching MAC", id, ts, sig)
	})
}
