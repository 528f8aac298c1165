package delivery

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/switchyard/switchyard/pkg/outbound"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
)

var (
	delivered = switchyardv1.Outcome_OUTCOME_DELIVERED
	retryable = switchyardv1.Outcome_OUTCOME_RETRYABLE
	permanent = switchyardv1.Outcome_OUTCOME_PERMANENT
)

func TestClassify(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		status         int
		retryAfter     string
		want           switchyardv1.Outcome
		wantRetryAfter time.Duration
	}{
		{200, "", delivered, 0},
		{201, "", delivered, 0},
		{202, "", delivered, 0},
		{204, "", delivered, 0},
		{299, "", delivered, 0},
		{408, "", retryable, 0},
		{409, "", retryable, 0},
		{425, "", retryable, 0},
		{429, "", retryable, 0},
		{429, "7", retryable, 7 * time.Second},
		{429, now.Add(90 * time.Second).Format(http.TimeFormat), retryable, 90 * time.Second},
		{500, "", retryable, 0},
		{500, "30", retryable, 0}, // Retry-After is read on 429 and 503 only
		{502, "", retryable, 0},
		{503, "", retryable, 0},
		{503, "120", retryable, 2 * time.Minute},
		{504, "", retryable, 0},
		{599, "", retryable, 0},
		{400, "", permanent, 0},
		{401, "", permanent, 0},
		{403, "", permanent, 0},
		{404, "", permanent, 0},
		{405, "", permanent, 0},
		{410, "", permanent, 0},
		{413, "", permanent, 0},
		{422, "", permanent, 0},
		{451, "", permanent, 0},
		{300, "", permanent, 0},
		{301, "", permanent, 0},
		{302, "", permanent, 0},
		{303, "", permanent, 0},
		{304, "", permanent, 0},
		{307, "", permanent, 0},
		{308, "", permanent, 0},
		{100, "", permanent, 0},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d %s", tt.status, tt.retryAfter), func(t *testing.T) {
			t.Parallel()
			h := http.Header{}
			if tt.retryAfter != "" {
				h.Set("Retry-After", tt.retryAfter)
			}
			if tt.status >= 300 && tt.status < 400 {
				h.Set("Location", "https://elsewhere.example/hook")
			}
			res := Classify(tt.status, h, "snippet", now)
			if res.Outcome != tt.want {
				t.Errorf("outcome = %v, want %v", res.Outcome, tt.want)
			}
			if res.RetryAfter != tt.wantRetryAfter {
				t.Errorf("retry after = %v, want %v", res.RetryAfter, tt.wantRetryAfter)
			}
			if res.StatusCode != tt.status || res.Snippet != "snippet" {
				t.Errorf("status %d snippet %q not kept", res.StatusCode, res.Snippet)
			}
			if res.Delivered() != (tt.want == delivered) || res.Retryable() != (tt.want == retryable) {
				t.Errorf("Delivered() = %v, Retryable() = %v for %v", res.Delivered(), res.Retryable(), tt.want)
			}
			switch {
			case tt.want == delivered && res.Err != nil:
				t.Errorf("delivered with error %v", res.Err)
			case tt.want != delivered && res.Err == nil:
				t.Error("failure without an error")
			// The error's text goes into the attempt record and the dead
			// letter for a person: naming the status is what is tested.
			case tt.want != delivered && !strings.Contains(res.ErrorString(), fmt.Sprint(tt.status)):
				t.Errorf("error %q does not name the status", res.ErrorString())
			}
			// Likewise saying where a redirect pointed.
			if tt.status >= 300 && tt.status < 400 && !strings.Contains(res.ErrorString(), "elsewhere.example") {
				t.Errorf("redirect error %q does not say where it pointed", res.ErrorString())
			}
		})
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

var _ net.Error = timeoutErr{}

func TestClassifyError(t *testing.T) {
	t.Parallel()
	blocked := fmt.Errorf("%w: 127.0.0.1 is a loopback address", outbound.ErrBlockedAddress)
	tests := []struct {
		name    string
		err     error
		want    switchyardv1.Outcome
		wantErr error
	}{
		{
			name: "deadline", err: &urlError{err: context.DeadlineExceeded},
			want: retryable, wantErr: ErrTimeout,
		},
		{
			name: "net timeout", err: &urlError{err: &net.OpError{Op: "read", Net: "tcp", Err: timeoutErr{}}},
			want: retryable, wantErr: ErrTimeout,
		},
		{
			name: "connection refused", err: &urlError{err: &net.OpError{Op: "dial", Net: "tcp", Err: &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}}},
			want: retryable, wantErr: syscall.ECONNREFUSED,
		},
		{
			name: "blocked address", err: &urlError{err: &net.OpError{Op: "dial", Net: "tcp", Err: blocked}},
			want: permanent, wantErr: outbound.ErrBlockedAddress,
		},
		{
			name: "bare blocked address", err: blocked,
			want: permanent, wantErr: outbound.ErrBlockedAddress,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res := classifyError(tt.err)
			if res.Outcome != tt.want {
				t.Errorf("outcome = %v, want %v", res.Outcome, tt.want)
			}
			if res.StatusCode != 0 {
				t.Errorf("status = %d, want 0", res.StatusCode)
			}
			if res.Err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(res.Err, tt.wantErr) {
				t.Errorf("error %v is not %v", res.Err, tt.wantErr)
			}
			// What the error says is under test: never the URL.
			if strings.Contains(res.Err.Error(), "secret-path") {
				t.Errorf("error %q quotes the URL", res.Err)
			}
		})
	}
}

// urlError stands in for *url.Error: the URL (which may hold a token) is in
// its text and must not survive classification.
type urlError struct{ err error }

func (e *urlError) Error() string { return `Post "https://x.example/secret-path": ` + e.err.Error() }
func (e *urlError) Unwrap() error { return e.err }

// partner is an httptest server that records what it received.
type partner struct {
	*httptest.Server
	hits atomic.Int64
	last atomic.Pointer[received]
}

type received struct {
	header http.Header
	body   []byte
}

func newPartner(t *testing.T, h func(w http.ResponseWriter, r *http.Request)) *partner {
	t.Helper()
	p := &partner{}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.hits.Add(1)
		body, _ := io.ReadAll(r.Body)
		p.last.Store(&received{header: r.Header.Clone(), body: body})
		h(w, r)
	}))
	t.Cleanup(p.Close)
	return p
}

func TestSendBlocksPrivateAddressByDefault(t *testing.T) {
	t.Parallel()
	p := newPartner(t, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	for _, target := range []string{p.URL, strings.Replace(p.URL, "127.0.0.1", "localhost", 1)} {
		c := NewClient(Target{URL: target, Timeout: 2 * time.Second}, nil)
		res := c.Send(context.Background(), Request{EventID: "ev-1", Body: []byte("{}"), Attempt: 1})
		if res.Outcome != permanent {
			t.Errorf("%s: outcome = %v, want permanent", target, res.Outcome)
		}
		if !errors.Is(res.Err, outbound.ErrBlockedAddress) {
			t.Errorf("%s: error = %v, want outbound.ErrBlockedAddress", target, res.Err)
		}
		if res.StatusCode != 0 {
			t.Errorf("%s: status = %d, want 0", target, res.StatusCode)
		}
	}
	if n := p.hits.Load(); n != 0 {
		t.Errorf("the private address was reached %d times", n)
	}
}

func TestSendRequest(t *testing.T) {
	t.Parallel()
	p := newPartner(t, func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusAccepted)
		_, _ = io.WriteString(w, "queued")
	})
	c := NewClient(Target{
		URL: p.URL + "/hooks", Timeout: 2 * time.Second, AllowPrivateNetwork: true,
		Headers: map[string]string{"Authorization": "Bearer t0ken", "X-Tenant": "acme"},
	}, nil)
	body := []byte(`{"order":42}`)
	res := c.Send(context.Background(), Request{
		EventID: "ev-42", EventType: "order.created", ContentType: "application/json", Body: body, Attempt: 3,
		Header: http.Header{"Webhook-Signature": {"v1,abc"}},
	})
	if !res.Delivered() || res.StatusCode != http.StatusAccepted || res.Err != nil {
		t.Fatalf("result = %+v, want delivered 202", res)
	}
	if res.Snippet != "queued" {
		t.Errorf("snippet = %q", res.Snippet)
	}
	if res.Started.IsZero() || res.Duration <= 0 {
		t.Errorf("attempt not timed: started %v duration %v", res.Started, res.Duration)
	}
	got := p.last.Load()
	if string(got.body) != string(body) {
		t.Errorf("body = %q, want %q", got.body, body)
	}
	for k, want := range map[string]string{
		"Content-Type":          "application/json",
		"Idempotency-Key":       "ev-42",
		"Switchyard-Event-Type": "order.created",
		"Switchyard-Attempt":    "3",
		"Authorization":         "Bearer t0ken",
		"X-Tenant":              "acme",
		"Webhook-Signature":     "v1,abc",
	} {
		if v := got.header.Get(k); v != want {
			t.Errorf("header %s = %q, want %q", k, v, want)
		}
	}
	if ua := got.header.Get("User-Agent"); !strings.HasPrefix(ua, "Switchyard/") {
		t.Errorf("User-Agent = %q", ua)
	}

	// Without a content type the payload is opaque bytes.
	c.Send(context.Background(), Request{EventID: "ev-43", Body: []byte{0xff}, Attempt: 1})
	if ct := p.last.Load().header.Get("Content-Type"); ct != "application/octet-stream" {
		t.Errorf("default Content-Type = %q", ct)
	}
}

func TestSendDoesNotFollowRedirects(t *testing.T) {
	t.Parallel()
	target := newPartner(t, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	p := newPartner(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL+"/moved", http.StatusTemporaryRedirect)
	})
	c := NewClient(Target{URL: p.URL, Timeout: 2 * time.Second, AllowPrivateNetwork: true}, nil)
	res := c.Send(context.Background(), Request{EventID: "ev-1", Body: []byte("{}"), Attempt: 1})
	if res.Outcome != permanent || res.StatusCode != http.StatusTemporaryRedirect {
		t.Errorf("result = %v %d, want permanent 307", res.Outcome, res.StatusCode)
	}
	if n := target.hits.Load(); n != 0 {
		t.Errorf("the redirect was followed (%d requests)", n)
	}
}

func TestSendTimeout(t *testing.T) {
	t.Parallel()
	p := newPartner(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	})
	c := NewClient(Target{URL: p.URL, Timeout: 200 * time.Millisecond, AllowPrivateNetwork: true}, nil)
	res := c.Send(context.Background(), Request{EventID: "ev-1", Body: []byte("{}"), Attempt: 1})
	if res.Outcome != retryable || res.StatusCode != 0 {
		t.Errorf("result = %v %d, want retryable without status", res.Outcome, res.StatusCode)
	}
	if !errors.Is(res.Err, ErrTimeout) {
		t.Errorf("error = %v, want %v", res.Err, ErrTimeout)
	}
	// What the error says is under test: never the URL.
	if strings.Contains(res.ErrorString(), p.URL) {
		t.Errorf("error %q quotes the destination URL", res.ErrorString())
	}
	if res.Duration < 200*time.Millisecond {
		t.Errorf("gave up after %v, before the timeout", res.Duration)
	}
}

func TestSendConnectionRefused(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c := NewClient(Target{URL: "http://" + addr, Timeout: time.Second, AllowPrivateNetwork: true}, nil)
	res := c.Send(context.Background(), Request{EventID: "ev-1", Body: []byte("{}"), Attempt: 1})
	if res.Outcome != retryable || res.StatusCode != 0 || res.Err == nil {
		t.Errorf("result = %+v, want retryable without status", res)
	}
}

func TestSendUntrustedCertificate(t *testing.T) {
	t.Parallel()
	p := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
	t.Cleanup(p.Close)
	c := NewClient(Target{URL: p.URL, Timeout: 2 * time.Second, AllowPrivateNetwork: true}, nil)
	res := c.Send(context.Background(), Request{EventID: "ev-1", Body: []byte("{}"), Attempt: 1})
	var unknownCA x509.UnknownAuthorityError
	if res.Outcome != retryable || !errors.Is(res.Err, ErrTLSCertificate) || !errors.As(res.Err, &unknownCA) {
		t.Errorf("result = %v %q, want retryable TLS certificate error", res.Outcome, res.ErrorString())
	}
}

func TestSendSnippetBoundedAndValidUTF8(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("é", SnippetLimit) // 2 bytes each: the limit cuts one in half
	p := newPartner(t, func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, "x"+big)
	})
	c := NewClient(Target{URL: p.URL, Timeout: 2 * time.Second, AllowPrivateNetwork: true}, nil)
	res := c.Send(context.Background(), Request{EventID: "ev-1", Body: []byte("{}"), Attempt: 1})
	if res.Outcome != permanent || res.StatusCode != http.StatusBadRequest {
		t.Fatalf("result = %v %d", res.Outcome, res.StatusCode)
	}
	if len(res.Snippet) > SnippetLimit+len("\uFFFD") {
		t.Errorf("snippet is %d bytes, limit %d", len(res.Snippet), SnippetLimit)
	}
	if !utf8.ValidString(res.Snippet) {
		t.Error("snippet is not valid UTF-8")
	}
}

func TestSendCapturesTheAnswerWhenAsked(t *testing.T) {
	t.Parallel()
	answer := strings.Repeat("x", 3000)
	p := newPartner(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Location", "/orders/42")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(answer))
	})
	c := NewClient(Target{URL: p.URL, Timeout: 2 * time.Second, AllowPrivateNetwork: true}, nil)
	res := c.Send(context.Background(), Request{EventID: "ev-1", Body: []byte("{}"), Attempt: 1, Capture: 2048})
	if !res.Delivered() || res.Header.Get("Location") != "/orders/42" || len(res.Body) != 2048 || !res.BodyTruncated || len(res.Snippet) != SnippetLimit {
		t.Errorf("captured %d bytes (truncated %v), header %v, snippet %d", len(res.Body), res.BodyTruncated, res.Header, len(res.Snippet))
	}
	res = c.Send(context.Background(), Request{EventID: "ev-2", Body: []byte("{}"), Attempt: 1})
	if res.Header != nil || res.Body != nil {
		t.Error("the answer was kept though nobody asked")
	}
}
