package sender

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/switchyard/switchyard/pkg/testing/slacktest"
)

func sampleAlert() Alert {
	return Alert{
		Title:  "Delivery dead-lettered: erp",
		Firing: true,
		Fields: []Field{
			{Label: "Destination", Value: "erp"},
			{Label: "Event", Value: "`ev-1`"},
			{Label: "Attempts", Value: "6"},
		},
	}
}

func TestSlackSendClassifiesAnswers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		status     int
		text       string
		retryAfter string
		wantNil    bool
		wantRetry  bool
		wantAfter  time.Duration
		wantPerm   bool
		wantReason string
	}{
		{name: "ok", status: 200, text: "ok", wantNil: true},
		{name: "invalid payload", status: 400, text: "invalid_payload", wantPerm: true, wantReason: ReasonRejected},
		{name: "invalid token", status: 403, text: "invalid_token", wantPerm: true, wantReason: ReasonRejected},
		{name: "no service", status: 404, text: "no_service", wantPerm: true, wantReason: ReasonRejected},
		{name: "archived channel", status: 410, text: "channel_is_archived", wantPerm: true, wantReason: ReasonRejected},
		{name: "rate limited", status: 429, text: "rate_limited", retryAfter: "3", wantRetry: true, wantAfter: 3 * time.Second, wantReason: ReasonRateLimited},
		{name: "rate limited without Retry-After", status: 429, text: "rate_limited", wantRetry: true, wantAfter: time.Second, wantReason: ReasonRateLimited},
		{name: "rate limited with garbage Retry-After", status: 429, retryAfter: "later", wantRetry: true, wantAfter: time.Second, wantReason: ReasonRateLimited},
		{name: "server error", status: 500, text: "internal_error", wantRetry: true, wantReason: ReasonUnavailable},
		{name: "unavailable", status: 503, text: "", wantRetry: true, wantReason: ReasonUnavailable},
		{name: "request timeout", status: 408, wantRetry: true, wantReason: ReasonUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := slacktest.New(t, slacktest.Answer{Status: tt.status, Text: tt.text, RetryAfter: tt.retryAfter})
			s := NewSlack(f.WebhookURL(), Pacing{})
			err := s.Send(context.Background(), sampleAlert())
			if len(f.Messages()) != 1 {
				t.Fatalf("fake Slack got %d requests, want 1", len(f.Messages()))
			}
			if tt.wantNil {
				if err != nil {
					t.Fatalf("Send = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Send = nil, want an error")
			}
			var re *RetryableError
			isRetry := errors.As(err, &re)
			if isRetry != tt.wantRetry {
				t.Errorf("Send = %v (%T): retryable = %v, want %v", err, err, isRetry, tt.wantRetry)
			}
			if isRetry && re.After != tt.wantAfter {
				t.Errorf("After = %v, want %v", re.After, tt.wantAfter)
			}
			if errors.Is(err, ErrPermanent) != tt.wantPerm {
				t.Errorf("errors.Is(%v, ErrPermanent) = %v, want %v", err, !tt.wantPerm, tt.wantPerm)
			}
			if got := StatusCode(err); got != tt.status {
				t.Errorf("StatusCode(%v) = %d, want %d", err, got, tt.status)
			}
			// A permanent failure keeps what the receiver said (Slack's
			// error code) for the audit record.
			var pe *PermanentError
			if errors.As(err, &pe) != tt.wantPerm || (tt.wantPerm && pe.Reason != tt.text) {
				t.Errorf("Send = %v, want a PermanentError %v with reason %q", err, tt.wantPerm, tt.text)
			}
			if got := FailureReason(err); got != tt.wantReason {
				t.Errorf("FailureReason(%v) = %q, want %q", err, got, tt.wantReason)
			}
			assertNoSecret(t, err)
		})
	}
}

// assertNoSecret checks what the error says: never the webhook URL.
func assertNoSecret(t *testing.T, err error) {
	t.Helper()
	for _, s := range []string{slacktest.SecretPath, "SECRET", "/services/"} {
		if strings.Contains(err.Error(), s) {
			t.Errorf("error %q reveals the webhook URL (%q)", err, s)
		}
	}
}

func TestSlackSendTransportErrorsHideURL(t *testing.T) {
	t.Parallel()
	// Nothing listens here.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + ln.Addr().String() + slacktest.SecretPath
	ln.Close()

	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Reading the body lets the server notice the client going away.
		_, _ = io.ReadAll(r.Body)
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	}))
	t.Cleanup(hang.Close)

	t.Run("connection refused", func(t *testing.T) {
		t.Parallel()
		err := NewSlack(refused, Pacing{}).Send(context.Background(), sampleAlert())
		var re *RetryableError
		if !errors.As(err, &re) || FailureReason(err) != ReasonNetwork {
			t.Fatalf("Send = %v (reason %s), want a RetryableError, network", err, FailureReason(err))
		}
		assertNoSecret(t, err)
	})
	t.Run("deadline", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		err := NewSlack(hang.URL+slacktest.SecretPath, Pacing{}).Send(ctx, sampleAlert())
		var re *RetryableError
		if !errors.As(err, &re) {
			t.Fatalf("Send = %v, want a RetryableError", err)
		}
		assertNoSecret(t, err)
	})
	t.Run("unusable URL", func(t *testing.T) {
		t.Parallel()
		err := NewSlack("http://[::1]:port"+slacktest.SecretPath, Pacing{}).Send(context.Background(), sampleAlert())
		if !errors.Is(err, ErrPermanent) || FailureReason(err) != ReasonInvalid {
			t.Fatalf("Send = %v (reason %s), want ErrPermanent, invalid", err, FailureReason(err))
		}
		assertNoSecret(t, err)
	})
	t.Run("unsupported scheme", func(t *testing.T) {
		t.Parallel()
		err := NewSlack("ftp://hooks.slack.example"+slacktest.SecretPath, Pacing{}).Send(context.Background(), sampleAlert())
		if err == nil {
			t.Fatal("Send succeeded")
		}
		assertNoSecret(t, err)
	})
}

// checkBlockKit validates a message against the parts of Slack's Block Kit
// rules that Payload is responsible for, and returns the field texts.
func checkBlockKit(t *testing.T, body []byte) (text string, header string, fields []string, color string) {
	t.Helper()
	var msg struct {
		Text        *string `json:"text"`
		Attachments []struct {
			Color  string            `json:"color"`
			Blocks []json.RawMessage `json:"blocks"`
		} `json:"attachments"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&msg); err != nil {
		t.Fatalf("payload is not JSON: %v", err)
	}
	if msg.Text == nil || *msg.Text == "" {
		t.Fatal("payload has no top-level text (the notification fallback)")
	}
	if n := utf8.RuneCountInString(*msg.Text); n > 3000 {
		t.Errorf("text is %d characters, Slack allows 3000", n)
	}
	if len(msg.Attachments) != 1 {
		t.Fatalf("%d attachments, want 1", len(msg.Attachments))
	}
	att := msg.Attachments[0]
	if len(att.Blocks) == 0 || len(att.Blocks) > 50 {
		t.Fatalf("%d blocks, Slack allows 1-50", len(att.Blocks))
	}
	for i, raw := range att.Blocks {
		var b struct {
			Type string `json:"type"`
			Text *struct {
				Type string `json:"type"`
				Text string `json:"text"`
			} `json:"text"`
			Fields []struct {
				Type string `json:"type"`
				Text string `json:"text"`
			} `json:"fields"`
		}
		if err := json.Unmarshal(raw, &b); err != nil {
			t.Fatalf("block %d: %v", i, err)
		}
		switch {
		case i == 0:
			if b.Type != "header" || b.Text == nil || b.Text.Type != "plain_text" {
				t.Fatalf("block 0 = %s, want a plain_text header", raw)
			}
			if n := utf8.RuneCountInString(b.Text.Text); n == 0 || n > 150 {
				t.Errorf("header text is %d characters, Slack allows 1-150", n)
			}
			if !utf8.ValidString(b.Text.Text) {
				t.Error("header text is not valid UTF-8")
			}
			header = b.Text.Text
		default:
			if b.Type != "section" {
				t.Errorf("block %d type %q, want section", i, b.Type)
			}
			if b.Text == nil && len(b.Fields) == 0 {
				t.Errorf("section %d has neither text nor fields", i)
			}
			if len(b.Fields) > 10 {
				t.Errorf("section %d has %d fields, Slack allows 10", i, len(b.Fields))
			}
			for _, f := range b.Fields {
				if f.Type != "mrkdwn" && f.Type != "plain_text" {
					t.Errorf("field type %q", f.Type)
				}
				if n := utf8.RuneCountInString(f.Text); n == 0 || n > 2000 {
					t.Errorf("field text is %d characters, Slack allows 1-2000", n)
				}
				if !utf8.ValidString(f.Text) {
					t.Error("field text is not valid UTF-8")
				}
				fields = append(fields, f.Text)
			}
		}
	}
	return *msg.Text, header, fields, att.Color
}

func TestSlackPayloadIsValidBlockKit(t *testing.T) {
	t.Parallel()
	f := slacktest.New(t)
	a := Alert{Title: strings.Repeat("Délivery dead-lettered ", 20), Firing: true}
	for i := range 23 {
		a.Fields = append(a.Fields, Field{Label: "Label " + string(rune('A'+i)), Value: "value"})
	}
	a.Fields[5].Value = strings.Repeat("ü", 5000)
	if err := NewSlack(f.WebhookURL(), Pacing{}).Send(context.Background(), a); err != nil {
		t.Fatalf("Send: %v", err)
	}
	got := f.Messages()
	if len(got) != 1 {
		t.Fatalf("got %d messages", len(got))
	}
	ct := got[0].Header.Get("Content-Type")
	if ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	_, header, fields, color := checkBlockKit(t, got[0].Raw)
	if !strings.HasPrefix(header, "Délivery dead-lettered") || !strings.HasSuffix(header, "…") {
		t.Errorf("long header not truncated with an ellipsis: %q", header)
	}
	if len(fields) != 23 {
		t.Fatalf("%d fields in the message, want all 23", len(fields))
	}
	for i, fl := range fields {
		if !strings.HasPrefix(fl, "*Label "+string(rune('A'+i))+"*\n") {
			t.Errorf("field %d = %.40q, want label %c first, in order", i, fl, 'A'+i)
		}
	}
	if !strings.HasSuffix(fields[5], "…") {
		t.Error("the long field is not marked as truncated")
	}
	if color != "#d50200" {
		t.Errorf("firing color = %q", color)
	}
}

func TestPayloadResolvedColor(t *testing.T) {
	t.Parallel()
	a := sampleAlert()
	a.Firing = false
	body, err := json.Marshal(Payload(a))
	if err != nil {
		t.Fatal(err)
	}
	text, header, fields, color := checkBlockKit(t, body)
	if color != "#2eb886" || text != a.Title || header != a.Title || len(fields) != 3 {
		t.Errorf("resolved message: color %q text %q header %q fields %d", color, text, header, len(fields))
	}
}

func TestPayloadWithoutFields(t *testing.T) {
	t.Parallel()
	body, err := json.Marshal(Payload(Alert{Title: "t", Firing: true}))
	if err != nil {
		t.Fatal(err)
	}
	_, _, fields, _ := checkBlockKit(t, body)
	if len(fields) != 0 {
		t.Errorf("%d fields", len(fields))
	}
}

// A partner controls some alert text (an error message quoting its
// response, a delivery id): it must not be able to mention @channel or
// plant links in on-call's Slack.
func TestPayloadEscapesMrkdwnControlCharacters(t *testing.T) {
	t.Parallel()
	a := Alert{Title: "Delivery dead-lettered: erp", Firing: true, Fields: []Field{
		{Label: "Last error", Value: `HTTP 302 redirect to "<!channel> <https://evil.example|click>" & more`},
	}}
	body, err := json.Marshal(Payload(a))
	if err != nil {
		t.Fatal(err)
	}
	_, _, fields, _ := checkBlockKit(t, body)
	if strings.ContainsAny(fields[0], "<>") {
		t.Errorf("field %q keeps Slack control characters", fields[0])
	}
	if !strings.Contains(fields[0], "&lt;!channel&gt;") || !strings.Contains(fields[0], "&amp; more") {
		t.Errorf("field %q not escaped the way Slack expects", fields[0])
	}
}

func TestTruncate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"exactly", 7, "exactly"},
		{"abcdefgh", 5, "abcd…"},
		{"ééééé", 5, "éé…"}, // cut at a rune boundary
	}
	for _, tt := range tests {
		got := truncate(tt.in, tt.n)
		if got != tt.want {
			t.Errorf("truncate(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
		}
		if !utf8.ValidString(got) {
			t.Errorf("truncate(%q, %d) is not valid UTF-8", tt.in, tt.n)
		}
	}
}

// FuzzTruncate's seeds are in testdata/fuzz/FuzzTruncate.
func FuzzTruncate(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string, n int) {
		if n < 1 || n > 1<<16 || !utf8.ValidString(s) {
			return
		}
		got := truncate(s, n)
		if !utf8.ValidString(got) {
			t.Fatalf("truncate(%q, %d) = %q is not valid UTF-8", s, n, got)
		}
		if utf8.RuneCountInString(got) > n {
			t.Fatalf("truncate(%q, %d) = %q is longer than %d characters", s, n, got, n)
		}
	})
}

func TestConsole(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	c := Console{Log: slog.New(slog.NewTextHandler(&buf, nil))}
	if c.Name() != "console" {
		t.Errorf("Name = %q", c.Name())
	}
	if err := c.Send(context.Background(), sampleAlert()); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"ALERT Delivery dead-lettered: erp", "destination=erp", "attempts=6", "firing=true"} {
		if !strings.Contains(out, want) {
			t.Errorf("log %q lacks %q", out, want)
		}
	}
	if (&Slack{}).Name() != "slack" {
		t.Error("Slack name")
	}
}

func TestPayloadLink(t *testing.T) {
	t.Parallel()
	a := sampleAlert()
	a.Link = "https://sy.example/v1/events/shop:a|b<c>?x=1&y=2"
	a.LinkText = "The <event>"
	body, err := json.Marshal(Payload(a))
	if err != nil {
		t.Fatal(err)
	}
	checkBlockKit(t, body)
	want := `<https://sy.example/v1/events/shop:a%7Cb%3Cc%3E?x=1&amp;y=2|The &lt;event&gt;>`
	if !strings.Contains(string(body), strings.ReplaceAll(strings.ReplaceAll(strings.ReplaceAll(want, "&", `\u0026`), "<", `\u003c`), ">", `\u003e`)) {
		t.Errorf("payload %s lacks the escaped link %s", body, want)
	}
}

func TestPacingSpacesRequests(t *testing.T) {
	t.Parallel()
	f := slacktest.New(t)
	s := NewSlack(f.WebhookURL(), Pacing{PerSecond: 10, Burst: 1})
	for range 3 {
		if err := s.Send(context.Background(), sampleAlert()); err != nil {
			t.Fatal(err)
		}
	}
	msgs := f.Messages()
	if gap := msgs[2].At.Sub(msgs[0].At); gap < 150*time.Millisecond {
		t.Errorf("3 messages at 10/s burst 1 took %v, want at least ~200ms", gap)
	}
}

func TestRateLimitPausesTheWebhook(t *testing.T) {
	t.Parallel()
	f := slacktest.New(t, slacktest.Answer{Status: 429, Text: "rate_limited", RetryAfter: "1"}, slacktest.OK)
	s := NewSlack(f.WebhookURL(), Pacing{PerSecond: 100, Burst: 10})
	err := s.Send(context.Background(), sampleAlert())
	var re *RetryableError
	if !errors.As(err, &re) || re.After != time.Second || re.StatusCode != 429 {
		t.Fatalf("Send = %v, want a RetryableError after 1s", err)
	}
	// Another alert waits for the pause too, although the bucket has
	// tokens: Slack said to stop sending to this webhook.
	if err := s.Send(context.Background(), sampleAlert()); err != nil {
		t.Fatal(err)
	}
	msgs := f.Messages()
	if len(msgs) != 2 {
		t.Fatalf("%d requests", len(msgs))
	}
	if gap := msgs[1].At.Sub(msgs[0].At); gap < time.Second {
		t.Errorf("the next request went %v after a 429 with Retry-After: 1", gap)
	}
}

func TestLongRetryAfterIsNotWaitedInSend(t *testing.T) {
	t.Parallel()
	f := slacktest.New(t, slacktest.Answer{Status: 429, Text: "rate_limited", RetryAfter: "120"}, slacktest.OK)
	s := NewSlack(f.WebhookURL(), Pacing{})
	if err := s.Send(context.Background(), sampleAlert()); err == nil {
		t.Fatal("Send succeeded on a 429")
	}
	err := s.Send(context.Background(), sampleAlert())
	var re *RetryableError
	if !errors.As(err, &re) || re.After < 110*time.Second || re.Reason != ReasonThrottled {
		t.Fatalf("Send during a 120s pause = %v, want a RetryableError (throttled) with the rest of the pause", err)
	}
	if n := len(f.Messages()); n != 1 {
		t.Errorf("%d requests, want 1: the paused one must not reach Slack", n)
	}
}

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	date := time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat)
	for in, want := range map[string]time.Duration{
		"3": 3 * time.Second, "": time.Second, "0": time.Second, "-4": time.Second, "soon": time.Second, "999999": time.Hour,
	} {
		if got := retryAfter(in); got != want {
			t.Errorf("retryAfter(%q) = %v, want %v", in, got, want)
		}
	}
	if got := retryAfter(date); got < 80*time.Second || got > 91*time.Second {
		t.Errorf("retryAfter(%q) = %v, want about 90s", date, got)
	}
}

func TestWebhookPayloadAndAnswers(t *testing.T) {
	t.Parallel()
	first := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	a := sampleAlert()
	a.Fingerprint, a.Rule, a.Kind, a.Sequence, a.Severity = "fp123", "DeliveryDeadLettered", "firing", 4, "critical"
	a.Labels, a.Count, a.FirstSeen, a.Link = map[string]string{"destination": "erp"}, 6, first, "https://sy.example/v1/events/ev-1"
	f := slacktest.NewJSON(t, slacktest.OK, slacktest.Answer{Status: 400, Text: `{"error":"bad routing key"}`}, slacktest.Answer{Status: 503}, slacktest.Answer{Status: 429, RetryAfter: "2"})
	w := NewWebhook(f.WebhookURL(), Pacing{PerSecond: 100, Burst: 10, MaxWait: time.Second})
	if w.Name() != "webhook" {
		t.Errorf("Name = %q", w.Name())
	}
	if err := w.Send(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	got := f.Messages()[0]
	var p WebhookPayload
	if err := json.Unmarshal(got.Raw, &p); err != nil {
		t.Fatal(err)
	}
	if p.DedupKey != "fp123" || p.EventAction != "trigger" || p.Status != "firing" || p.Sequence != 4 || p.Rule != "DeliveryDeadLettered" ||
		p.Labels["destination"] != "erp" || p.Count != 6 || !p.FirstSeen.Equal(first) || p.Link != a.Link || len(p.Fields) != 3 || p.Fields[0] != (WebhookField{"Destination", "erp"}) {
		t.Errorf("payload = %+v", p)
	}
	if k := got.Header.Get("Idempotency-Key"); k != "fp123.4" {
		t.Errorf("Idempotency-Key = %q", k)
	}
	a.Firing = false
	err := w.Send(context.Background(), a)
	if !errors.Is(err, ErrPermanent) || StatusCode(err) != 400 {
		t.Errorf("400 answer: Send = %v, want permanent", err)
	}
	var p2 WebhookPayload
	_ = json.Unmarshal(f.Messages()[1].Raw, &p2)
	if p2.EventAction != "resolve" || p2.Status != "resolved" {
		t.Errorf("resolved payload = %+v", p2)
	}
	var re *RetryableError
	if err := w.Send(context.Background(), a); !errors.As(err, &re) || re.StatusCode != 503 {
		t.Errorf("503 answer: Send = %v, want retryable", err)
	}
	if err := w.Send(context.Background(), a); !errors.As(err, &re) || re.After != 2*time.Second {
		t.Errorf("429 answer: Send = %v, want retryable after 2s", err)
	}
	assertNoSecret(t, err)
}

func TestWebhookDoesNotFollowRedirects(t *testing.T) {
	t.Parallel()
	target := slacktest.NewJSON(t)
	redirect := httptest.NewServer(http.RedirectHandler(target.WebhookURL(), http.StatusFound))
	t.Cleanup(redirect.Close)
	err := NewWebhook(redirect.URL+slacktest.SecretPath, Pacing{}).Send(context.Background(), sampleAlert())
	if !errors.Is(err, ErrPermanent) || StatusCode(err) != http.StatusFound {
		t.Errorf("Send to a redirect = %v, want a permanent failure with 302", err)
	}
	if n := len(target.Messages()); n != 0 {
		t.Errorf("the redirect was followed (%d requests)", n)
	}
	assertNoSecret(t, err)
}
