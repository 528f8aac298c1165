package sender

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Webhook posts every alert as JSON to one URL, for bridges to PagerDuty,
// Opsgenie and the like. The alert's fingerprint is the dedup_key, and
// event_action is trigger or resolve, so a bridge maps it onto an incident
// without state of its own.
type Webhook struct {
	url    string
	client *http.Client
	pace   *pacer
}

// NewWebhook returns a webhook sender paced at p. The URL is a secret.
func NewWebhook(url string, p Pacing) *Webhook {
	return &Webhook{url: url, client: newClient(), pace: newPacer(p)}
}

// Name implements Sender.
func (*Webhook) Name() string { return "webhook" }

// WebhookPayload is the JSON body.
type WebhookPayload struct {
	Version string `json:"version"`
	// DedupKey is the alert's fingerprint: the same for every message
	// about one alert.
	DedupKey string `json:"dedup_key"`
	// EventAction is trigger (firing, update, repeat) or resolve.
	EventAction string `json:"event_action"`
	// Status is firing or resolved.
	Status string `json:"status"`
	// Kind is firing, update, repeat or resolved.
	Kind      string            `json:"kind"`
	Sequence  uint64            `json:"sequence"`
	Rule      string            `json:"rule"`
	Labels    map[string]string `json:"labels"`
	Severity  string            `json:"severity"`
	Title     string            `json:"title"`
	Summary   string            `json:"summary"`
	Count     int64             `json:"count"`
	FirstSeen *time.Time        `json:"first_seen,omitempty"`
	Fields    []WebhookField    `json:"fields"`
	Link      string            `json:"link,omitempty"`
}

// WebhookField is one label/value pair, in message order.
type WebhookField struct {
	Label string `json:"label"`
	Value string `json:"value"`
}

// NewWebhookPayload builds the body for a.
func NewWebhookPayload(a Alert) WebhookPayload {
	p := WebhookPayload{
		Version: "1", DedupKey: a.Fingerprint, EventAction: "trigger", Status: "firing", Kind: a.Kind,
		Sequence: a.Sequence, Rule: a.Rule, Labels: a.Labels, Severity: a.Severity, Title: a.Title,
		Summary: a.Summary, Count: a.Count, Link: a.Link, Fields: []WebhookField{},
	}
	if p.Labels == nil {
		p.Labels = map[string]string{}
	}
	if !a.Firing {
		p.EventAction, p.Status = "resolve", "resolved"
	}
	if !a.FirstSeen.IsZero() {
		t := a.FirstSeen.UTC()
		p.FirstSeen = &t
	}
	for _, f := range a.Fields {
		p.Fields = append(p.Fields, WebhookField(f))
	}
	return p
}

// Send implements Sender.
func (w *Webhook) Send(ctx context.Context, a Alert) error {
	body, err := json.Marshal(NewWebhookPayload(a))
	if err != nil {
		return fmt.Errorf("%w: encode: %v", ErrPermanent, err)
	}
	h := http.Header{
		"Content-Type":    {"application/json"},
		"User-Agent":      {"Switchyard-Notifier"},
		"Idempotency-Key": {a.Fingerprint + "." + strconv.FormatUint(a.Sequence, 10)},
	}
	return post(ctx, w.client, w.pace, w.url, "the alert webhook", body, h)
}
