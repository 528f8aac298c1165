package signing_test

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchyard/switchyard/pkg/signing"
)

// ed25519Key is a deterministic v1a key pair for the tests: the seed is
// sha256 of name.
func ed25519Key(name string) (ed25519.PrivateKey, string) {
	seed := sha256.Sum256([]byte(name))
	priv := ed25519.NewKeyFromSeed(seed[:])
	return priv, signing.PrefixStandardPublicKey + base64.StdEncoding.EncodeToString(priv.Public().(ed25519.PublicKey))
}

// v1aRequest is a request whose webhook-signature header holds n v1a
// signatures, all forged (signed by another key) except the one at
// position valid (1-based; 0: none).
func v1aRequest(priv ed25519.PrivateKey, body []byte, n, valid int) signing.Request {
	const id = "msg_v1a_bound"
	ts := time.Unix(1700000000, 0)
	msg := []byte(id + "." + strconv.FormatInt(ts.Unix(), 10) + "." + string(body))
	forger, _ := ed25519Key("forger")
	forged := "v1a," + base64.StdEncoding.EncodeToString(ed25519.Sign(forger, msg))
	sigs := make([]string, n)
	for i := range sigs {
		sigs[i] = forged
		if i+1 == valid {
			sigs[i] = "v1a," + base64.StdEncoding.EncodeToString(ed25519.Sign(priv, msg))
		}
	}
	h := http.Header{}
	h.Set(signing.HeaderWebhookID, id)
	h.Set(signing.HeaderWebhookTimestamp, strconv.FormatInt(ts.Unix(), 10))
	h.Set(signing.HeaderWebhookSignature, strings.Join(sigs, " "))
	return signing.Request{Header: h, Body: body, Now: ts}
}

// TestV1aSignaturesBeyondTheBoundAreNotTried: a valid v1a signature is
// accepted within the first MaxV1aSignatures of the header and refused
// after them, with a reason that says they were not tried.
func TestV1aSignaturesBeyondTheBoundAreNotTried(t *testing.T) {
	t.Parallel()
	priv, pub := ed25519Key("partner")
	_, other := ed25519Key("other partner key")
	sw := newVerifier(t, other, pub)
	body := []byte(`{"type":"order.created"}`)
	for _, tc := range []struct {
		n, valid int
		wantErr  error
	}{
		{n: 1, valid: 1},
		{n: signing.MaxV1aSignatures, valid: signing.MaxV1aSignatures},
		{n: signing.MaxSignatures, valid: signing.MaxV1aSignatures},
		{n: signing.MaxV1aSignatures + 1, valid: signing.MaxV1aSignatures + 1, wantErr: signing.ErrBadSignature},
		{n: signing.MaxSignatures, valid: signing.MaxSignatures, wantErr: signing.ErrBadSignature},
		{n: signing.MaxSignatures, valid: 0, wantErr: signing.ErrBadSignature},
	} {
		t.Run(strconv.Itoa(tc.valid)+"-of-"+strconv.Itoa(tc.n), func(t *testing.T) {
			_, err := sw.Verify(v1aRequest(priv, body, tc.n, tc.valid))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Verify = %v, want %v", err, tc.wantErr)
			}
			if err == nil {
				return
			}
			want := "only the first " + strconv.Itoa(signing.MaxV1aSignatures) + " v1a signatures are checked, the other " +
				strconv.Itoa(tc.n-signing.MaxV1aSignatures) + " were not tried"
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %q", err, want)
			}
		})
	}
}

// BenchmarkForgedV1a is the CPU cost of a forged 1 MiB Standard Webhooks
// request carrying the most signatures a header may hold, all v1a and none
// valid, against one and four whpk_ keys; and, to compare, the same request
// with v1 signatures against one whsec_ secret.
func BenchmarkForgedV1a(b *testing.B) {
	body := []byte(`{"type":"x","data":"` + strings.Repeat("x", 1<<20-22) + `"}`)
	_, pub := ed25519Key("partner")
	forger, _ := ed25519Key("forger")
	req := v1aRequest(forger, body, signing.MaxSignatures, 0)
	for _, keys := range []int{1, 4} {
		secrets := []string{pub}
		for i := 1; i < keys; i++ {
			_, k := ed25519Key("rotated " + strconv.Itoa(i))
			secrets = append(secrets, k)
		}
		b.Run("v1a/keys="+strconv.Itoa(keys), func(b *testing.B) {
			sw := newVerifier(b, secrets...)
			b.SetBytes(int64(len(body)))
			cpu0 := cpuTime(b)
			for b.Loop() {
				if _, err := sw.Verify(req); !errors.Is(err, signing.ErrBadSignature) {
					b.Fatal(err)
				}
			}
			reportCPU(b, cpuTime(b)-cpu0)
		})
	}
	b.Run("v1/keys=1", func(b *testing.B) {
		sw := newVerifier(b, vectorA.secret)
		hmacReq := req
		hmacReq.Header = req.Header.Clone()
		sig := "v1," + base64.StdEncoding.EncodeToString(make([]byte, sha256.Size))
		hmacReq.Header.Set(signing.HeaderWebhookSignature, strings.TrimSpace(strings.Repeat(sig+" ", signing.MaxSignatures)))
		b.SetBytes(int64(len(body)))
		cpu0 := cpuTime(b)
		for b.Loop() {
			if _, err := sw.Verify(hmacReq); !errors.Is(err, signing.ErrBadSignature) {
				b.Fatal(err)
			}
		}
		reportCPU(b, cpuTime(b)-cpu0)
	})
}

// cpuTime is the process's CPU time so far: on a shared machine the wall
// time per operation depends on the neighbours, the CPU time does not.
func cpuTime(b *testing.B) time.Duration {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the CPU milliseconds per operation.
func reportCPU(b *testing.B, cpu time.Duration) {
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/op")
}
