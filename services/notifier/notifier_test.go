package notifier_test

import (
	"log/slog"
	"testing"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/services/notifier"
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
		var got []string
		for _, s := range notifier.Senders(tt.alerts.WithDefaults(), log) {
			got = append(got, s.Name())
		}
		if len(got) != len(tt.want) {
			t.Errorf("Senders(%+v) = %v, want %v", tt.alerts, got, tt.want)
			continue
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("Senders(%+v) = %v, want %v", tt.alerts, got, tt.want)
			}
		}
	}
	if _, err := notifier.New(nil, nil, notifier.Config{}); err == nil {
		t.Error("New without a logger succeeded")
	}
}
