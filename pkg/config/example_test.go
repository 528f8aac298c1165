package config_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/switchyard/switchyard/pkg/config"
)

// Load reads a configuration file, fills ${VARIABLES} from the
// environment given (os.LookupEnv in a service's main), and validates it;
// what is wrong comes back as a *ValidationError naming each field.
func ExampleLoad() {
	dir, err := os.MkdirTemp("", "switchyard-config-example-")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "switchyard.yaml")
	yaml := `
sources:
  - name: shop
    scheme: standard-webhooks
    secrets: ["${SHOP_SECRET}"]
destinations:
  - name: erp
    url: https://erp.example.com/hooks
    subjects: ["events.order.>"]
`
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		fmt.Println(err)
		return
	}
	env := map[string]string{"SHOP_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}
	lookup := func(name string) (string, bool) { v, ok := env[name]; return v, ok }

	cfg, err := config.Load(path, lookup)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(cfg.Sources[0].Name, cfg.Destinations[0].Name, cfg.Destinations[0].URL)
	// A secret prints as a mask; Reveal gives the value to the code that
	// needs it.
	fmt.Println(cfg.Sources[0].Secrets[0])

	delete(env, "SHOP_SECRET")
	_, err = config.Load(path, lookup)
	var ve *config.ValidationError
	if errors.As(err, &ve) {
		fmt.Println(ve.Problems[0].Field)
	}
	// Output:
	// shop erp https://erp.example.com/hooks
	// [redacted]
	// sources[0].secrets[0]
}
