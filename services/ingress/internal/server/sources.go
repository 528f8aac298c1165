package server

import (
	"encoding/json"
	"fmt"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/signing"
)

// source is a configured webhook source ready to verify requests.
type source struct {
	cfg      config.Source
	verifier signing.Verifier
	// eventType extracts the provider's event type from a verified request.
	eventType func(v signing.Verified, body []byte) string
}

func newSource(cfg config.Source) (*source, error) {
	secrets := make([]string, len(cfg.Secrets))
	for i, s := range cfg.Secrets {
		secrets[i] = s.Reveal()
	}
	switch cfg.Scheme {
	case "standard-webhooks":
		v, err := signing.NewStandardWebhooks(secrets, cfg.Tolerance.D())
		if err != nil {
			return nil, fmt.Errorf("source %q: %w", cfg.Name, err)
		}
		return &source{cfg: cfg, verifier: v, eventType: typeFromJSONField("type")}, nil
	default:
		return nil, fmt.Errorf("source %q: unknown scheme %q", cfg.Name, cfg.Scheme)
	}
}

// typeFromJSONField reads a top-level string field of a JSON body, the way
// Standard Webhooks and Stripe payloads carry their type.
func typeFromJSONField(field string) func(signing.Verified, []byte) string {
	return func(v signing.Verified, body []byte) string {
		if v.EventType != "" {
			return v.EventType
		}
		var m map[string]json.RawMessage
		if json.Unmarshal(body, &m) != nil {
			return ""
		}
		var s string
		if json.Unmarshal(m[field], &s) != nil {
			return ""
		}
		return s
	}
}
