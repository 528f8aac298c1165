package notifier

import (
	"log/slog"
	"slices"
	"testing"

	"github.com/switchyard/switchyard/pkg/config"
)

func TestSenders(t *testing.T) {
	t.Parallel()
	log := slog.New(slog.DiscardHandler)
	tests := []struct {
		alerts config.Alerts
		want   []string
	}{
		{config.Alerts{}, []string{"console"}},
		{config.Alerts{SlackWebhookURL: "https://hooks.slack.example/services/T/B/X"}, []string{"slack"}},
		{config.Alerts{WebhookURL: "https://bridge.example/alerts"}, []string{"console", "webhook"}},
		{config.Alerts{SlackWebhookURL: "https://hooks.slack.example/services/T/B/X", WebhookURL: "https://bridge.example/alerts"}, []string{"slack", "webhook"}},
	}
	for _, tt := range tests {
		a := tt.alerts.WithDefaults()
		if got := Senders(a); !slices.Equal(got, tt.want) {
			t.Errorf("Senders(%+v) = %v, want %v", tt.alerts, got, tt.want)
		}
		// The senders built are the ones named: their consumers on
		// NOTIFICATIONS are named after them.
		var built []string
		for _, s := range senders(a, log) {
			built = append(built, s.Name())
		}
		if !slices.Equal(built, tt.want) {
			t.Errorf("senders(%+v) are %v, want %v", tt.alerts, built, tt.want)
		}
	}
}

func TestNewNeedsALogger(t *testing.T) {
	t.Parallel()
	if _, err := New(nil, nil, Config{}); err == nil {
		t.Error("New without a logger succeeded")
	}
}
