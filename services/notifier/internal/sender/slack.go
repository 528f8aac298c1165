package sender

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// Slack posts to an incoming webhook URL.
type Slack struct {
	url    string
	client *http.Client
	pace   *pacer
}

// NewSlack returns a Slack sender paced at p. The URL is a secret: it is
// never logged or put in errors.
func NewSlack(webhookURL string, p Pacing) *Slack {
	return &Slack{url: webhookURL, client: newClient(), pace: newPacer(p)}
}

// Name implements Sender.
func (*Slack) Name() string { return "slack" }

// Slack's limits: section text 3000 characters, field text 2000, header 150.
const (
	maxHeader  = 150
	maxField   = 1900
	maxSection = 2900
)

// Colours of the attachment bar.
const (
	colorFiring   = "#d50200"
	colorResolved = "#2eb886"
)

// Payload builds the Block Kit message.
func Payload(a Alert) map[string]any {
	color := colorFiring
	if !a.Firing {
		color = colorResolved
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
	if a.Link != "" {
		text := a.LinkText
		if text == "" {
			text = "Open in the audit log"
		}
		blocks = append(blocks, map[string]any{"type": "section", "text": map[string]any{
			"type": "mrkdwn", "text": truncate("<"+escapeLinkURL(a.Link)+"|"+escapeMrkdwn(text)+">", maxSection),
		}})
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
	return post(ctx, s.client, s.pace, s.url, "Slack", body, http.Header{"Content-Type": {"application/json"}})
}

// mrkdwnEscaper escapes the characters Slack reads as control sequences
// (<!channel>, <url|text>). Alert values quote partner responses and ids, so
// a partner must not be able to mention people or plant links.
var mrkdwnEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

func escapeMrkdwn(s string) string { return mrkdwnEscaper.Replace(s) }

// escapeLinkURL makes a URL safe inside <url|text>: the link syntax's own
// characters are percent-encoded, and & is escaped as Slack asks.
var linkEscaper = strings.NewReplacer("&", "&amp;", "<", "%3C", ">", "%3E", "|", "%7C", " ", "%20")

func escapeLinkURL(u string) string { return linkEscaper.Replace(u) }

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
