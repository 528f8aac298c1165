package redelivery_test

import (
	"slices"
	"testing"
	"time"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/redelivery"
)

func TestAckMargin(t *testing.T) {
	t.Parallel()
	tests := []struct {
		timeout, want time.Duration
	}{
		{0, 250 * time.Millisecond},
		{time.Second, 250 * time.Millisecond},
		{2500 * time.Millisecond, 250 * time.Millisecond},
		{5 * time.Second, 500 * time.Millisecond},
		{30 * time.Second, 3 * time.Second},
	}
	for _, tt := range tests {
		if got := redelivery.AckMargin(tt.timeout); got != tt.want {
			t.Errorf("AckMargin(%s) = %s, want %s", tt.timeout, got, tt.want)
		}
	}
}

func TestConsumerBackoff(t *testing.T) {
	t.Parallel()
	s := func(n int) time.Duration { return time.Duration(n) * time.Second }
	tests := []struct {
		name        string
		steps       []time.Duration
		maxAttempts int
		want        []time.Duration
	}{
		{
			name:  "trimmed to max_attempts",
			steps: []time.Duration{s(10), s(30), s(120), s(600), s(1800)}, maxAttempts: 3,
			want: []time.Duration{10 * time.Second, 30 * time.Second, 2 * time.Minute},
		},
		{
			name:  "shorter than max_attempts: the last step repeats in JetStream",
			steps: []time.Duration{s(2), s(4)}, maxAttempts: 6,
			want: []time.Duration{2 * time.Second, 4 * time.Second},
		},
		{
			name:  "equal",
			steps: []time.Duration{s(2), s(4)}, maxAttempts: 2,
			want: []time.Duration{2 * time.Second, 4 * time.Second},
		},
		{
			name:  "one attempt",
			steps: []time.Duration{s(2), s(4)}, maxAttempts: 1,
			want: []time.Duration{2 * time.Second},
		},
		{
			name:        "empty",
			maxAttempts: 6,
			want:        []time.Duration{},
		},
		{
			name:        "no attempts",
			steps:       []time.Duration{s(2), s(4)},
			maxAttempts: 0,
			want:        []time.Duration{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := redelivery.ConsumerBackoff(tt.steps, tt.maxAttempts)
			if !slices.Equal(got, tt.want) {
				t.Errorf("ConsumerBackoff() = %v, want %v", got, tt.want)
			}
			if len(got) > max(tt.maxAttempts, 0) {
				t.Errorf("%d steps for %d attempts: JetStream refuses more steps than max deliveries", len(got), tt.maxAttempts)
			}
		})
	}
}

// A config.Duration schedule (the file's type) reads the same as a
// time.Duration one.
func TestConsumerBackoffOfConfigDurations(t *testing.T) {
	t.Parallel()
	got := redelivery.ConsumerBackoff([]config.Duration{config.Duration(10 * time.Second), config.Duration(time.Minute)}, 6)
	if want := []time.Duration{10 * time.Second, time.Minute}; !slices.Equal(got, want) {
		t.Errorf("ConsumerBackoff = %v, want %v", got, want)
	}
}
