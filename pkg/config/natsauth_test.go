package config_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/switchyard/switchyard/pkg/config"
)

// The NATS password and token never show: not in fmt, slog, JSON or the
// YAML dump of the resolved configuration (what the golden defaults and
// a configuration printout show), nor in a validation error about them.
func TestNATSSecretsAreRedacted(t *testing.T) {
	t.Parallel()
	withPassword := validConfig(t)
	withPassword.NATS.URL, withPassword.NATS.User, withPassword.NATS.Password = "nats://n1:4222", "sy", "nats-password-8"
	withToken := validConfig(t)
	withToken.NATS.URL, withToken.NATS.Token = "nats://n1:4222", "nats-token-9"
	embedded := validConfig(t)
	embedded.NATS.EmbeddedListen, embedded.NATS.Password = "0.0.0.0:4222", "nats-embedded-10"
	secrets := []string{"nats-password-8", "nats-token-9", "nats-embedded-10"}
	for name, c := range map[string]config.Config{"password": withPassword, "token": withToken, "embedded": embedded} {
		if err := c.Validate(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x"} {
			assertRedacted(t, name+": fmt "+verb, fmt.Sprintf(verb, c), secrets)
		}
		var buf bytes.Buffer
		slog.New(slog.NewJSONHandler(&buf, nil)).Info("loaded", slog.Any("config", c), slog.Any("nats", c.NATS))
		assertRedacted(t, name+": slog", buf.String(), secrets)
		js, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		assertRedacted(t, name+": json", string(js), secrets)
		y, err := yaml.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		assertRedacted(t, name+": yaml", string(y), secrets)
	}

	// Validation problems name the fields, not the values.
	bad := withPassword
	bad.NATS.Token = "nats-token-9"
	bad.NATS.User = ""
	err := bad.Validate()
	if err == nil {
		t.Fatal("two credentials and no user validated")
	}
	for _, s := range secrets {
		if bytes.Contains([]byte(err.Error()), []byte(s)) {
			t.Errorf("validation error shows %q: %v", s, err)
		}
	}
}
