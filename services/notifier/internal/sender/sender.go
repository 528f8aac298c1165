// Package sender delivers alert messages: to a Slack incoming webhook, or to
// the log when no Slack URL is configured.
package sender

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Alert is one message for on-call.
type Alert struct {
	// Title is the headline, e.g. "Delivery dead-lettered: erp".
	Title string
	// Fields are label/value pairs shown in the message, in order.
	Fields []Field
	// Firing is false for a recovery message.
	Firing bool
}

// Field is one label/value pair.
type Field struct {
	Label, Value string
}

// Sender sends alerts.
type Sender interface {
	// Name is slack, console or webhook.
	Name() string
	// Send delivers one alert. A *RetryableError means try again later.
	Send(ctx context.Context, a Alert) error
}

// RetryableError is a failure worth retrying, after After if it is set.
type RetryableError struct {
	Err   error
	After time.Duration
}

func (e *RetryableError) Error() string { return e.Err.Error() }
func (e *RetryableError) Unwrap() error { return e.Err }

// ErrPermanent wraps failures that retrying cannot fix (revoked webhook,
// invalid payload).
var ErrPermanent = errors.New("permanent alert delivery failure")

// Console writes alerts to the log.
type Console struct{ Log *slog.Logger }

// Name implements Sender.
func (Console) Name() string { return "console" }

// Send implements Sender.
func (c Console) Send(ctx context.Context, a Alert) error {
	attrs := []any{slog.Bool("firing", a.Firing)}
	for _, f := range a.Fields {
		attrs = append(attrs, slog.String(strings.ToLower(strings.ReplaceAll(f.Label, " ", "_")), f.Value))
	}
	c.Log.WarnContext(ctx, "ALERT "+a.Title, attrs...)
	return nil
}

// Slack posts to an incoming webhook URL.
type Slack struct {
	url    string
	client *http.Client
}

// NewSlack returns a Slack sender. The URL is a secret: it is never logged
// or put in errors.
func NewSlack(webhookURL string) *Slack {
	return &Slack{url: webhookURL, client: &http.Client{Timeout: 10 * time.Second}}
}

// Name implements Sender.
func (*Slack) Name() string { return "slack" }

// Slack's limits: section text 3000 characters, field text 2000, header 150.
const (
	maxHeader = 150
	maxField  = 1900
)

// Payload builds the Block Kit message.
func Payload(a Alert) map[string]any {
	color := "#d50200"
	if !a.Firing {
		color = "#2eb886"
	}
	var fields []map[string]string
	for _, f := range a.Fields {
		fields = append(fields, map[string]string{"type": "mrkdwn", "text": truncate("*"+escapeMrkdwn(f.Label)+"*\n"+escapeMrkdwn(f.Value), maxField)})
	}
	blocks := []map[string]any{
		{"type": "header", "text": map[string]any{"type": "plain_text", "text": truncate(a.Title, maxHeader)}},
	}
	// Slack allows at most 10 fields per section.
	for i := 0; i < len(fields); i += 10 {
		blocks = append(blocks, map[string]any{"type": "section", "fields": fields[i:min(i+10, len(fields))]})
	}
	return map[string]any{
		"text":        truncate(escapeMrkdwn(a.Title), 3000),
		"attachments": []map[string]any{{"color": color, "blocks": blocks}},
	}
}

// Send implements Sender.
func (s *Slack) Send(ctx context.Context, a Alert) error {
	body, err := json.Marshal(Payload(a))
	if err != nil {
		return fmt.Errorf("%w: encode: %v", ErrPermanent, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%w: the Slack webhook URL is not usable", ErrPermanent)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		// The error text quotes the URL; keep only what went wrong.
		return &RetryableError{Err: fmt.Errorf("post to Slack: %s", redactErr(err))}
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	text := strings.TrimSpace(string(msg))
	switch {
	case resp.StatusCode == http.StatusOK:
		return nil
	case resp.StatusCode == http.StatusTooManyRequests:
		after, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
		return &RetryableError{Err: errors.New("Slack rate limit (429)"), After: time.Duration(max(after, 1)) * time.Second}
	case resp.StatusCode >= 500:
		return &RetryableError{Err: fmt.Errorf("Slack answered %d %s", resp.StatusCode, text)}
	default:
		return fmt.Errorf("%w: Slack answered %d %s", ErrPermanent, resp.StatusCode, text)
	}
}

// mrkdwnEscaper escapes the characters Slack reads as control sequences
// (<!channel>, <url|text>). Alert values quote partner responses and ids, so
// a partner must not be able to mention people or plant links.
var mrkdwnEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

func escapeMrkdwn(s string) string { return mrkdwnEscaper.Replace(s) }

func redactErr(err error) string {
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) && ue.Unwrap() != nil {
		return ue.Unwrap().Error()
	}
	return "request failed"
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - 1
	for cut > 0 && !utf8Start(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func utf8Start(b byte) bool { return b&0xC0 != 0x80 }
