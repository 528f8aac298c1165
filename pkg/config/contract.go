package config

import (
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// What a contract does with a payload that breaks it (on_invalid).
const (
	// OnInvalidQuarantine accepts the request (2xx, as the partner
	// expects) and stores the payload in QUARANTINE, not EVENTS. The
	// default.
	OnInvalidQuarantine = "quarantine"
	// OnInvalidReject answers 422 naming the violations and stores
	// nothing, for partners that expect to be told.
	OnInvalidReject = "reject"
)

// Contract is what the payloads of a source or of a publish API key must
// look like: JSON Schemas (draft 2020-12) per event type, from files next
// to the configuration file. With a contract, a body whose content type
// says JSON (or that has none) must also be well-formed JSON; without one
// nothing is checked
// (docs/decisions/0500-payload-contracts-are-opted-into.md).
type Contract struct {
	// Schemas maps an event type (as the partner names it, e.g.
	// orders/create; the publish API's type) to a JSON Schema file. A
	// relative path is relative to the configuration file's directory.
	Schemas map[string]string `yaml:"schemas"`
	// Default is the schema file of the types Schemas does not name.
	// Empty: those types are only checked for well-formed JSON.
	Default string `yaml:"default"`
	// OnInvalid is quarantine (accept, store in QUARANTINE, alert) or
	// reject (answer 422). Default quarantine.
	OnInvalid string `yaml:"on_invalid"`
}

// SchemaFiles are the contract's schema files, each once, sorted.
func (c *Contract) SchemaFiles() []string {
	if c == nil {
		return nil
	}
	var files []string
	for _, f := range c.Schemas {
		files = append(files, f)
	}
	if c.Default != "" {
		files = append(files, c.Default)
	}
	sort.Strings(files)
	return slices.Compact(files)
}

func (c *Contract) withDefaults() *Contract {
	if c == nil {
		return nil
	}
	out := *c
	setDefault(&out.OnInvalid, OnInvalidQuarantine)
	return &out
}

// resolve makes the contract's relative file paths relative to dir.
func (c *Contract) resolve(dir string) {
	if c == nil {
		return
	}
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	schemas := make(map[string]string, len(c.Schemas))
	for t, f := range c.Schemas {
		schemas[t] = abs(f)
	}
	c.Schemas = schemas
	c.Default = abs(c.Default)
}

// validate checks the contract's fields (the files are read and compiled
// by pkg/contracts when a service starts, and by check-config).
func (c *Contract) validate(p *problems, f string) {
	if c == nil {
		return
	}
	if c.OnInvalid != OnInvalidQuarantine && c.OnInvalid != OnInvalidReject {
		p.add(f+".on_invalid", "must be %s or %s, not %q", OnInvalidQuarantine, OnInvalidReject, c.OnInvalid)
	}
	types := make([]string, 0, len(c.Schemas))
	for t := range c.Schemas {
		types = append(types, t)
	}
	sort.Strings(types)
	for _, t := range types {
		switch {
		case strings.TrimSpace(t) == "":
			p.add(f+".schemas", "has an empty event type; name the type as the partner sends it, e.g. orders/create")
		case strings.TrimSpace(c.Schemas[t]) == "":
			p.add(fmt.Sprintf("%s.schemas[%q]", f, t), "needs a schema file (a path relative to the configuration file)")
		}
	}
}

// resolveContracts makes every contract's relative schema paths relative
// to dir, the configuration file's directory.
func (c *Config) resolveContracts(dir string) {
	for i := range c.Sources {
		if c.Sources[i].Contract != nil {
			ct := *c.Sources[i].Contract
			ct.resolve(dir)
			c.Sources[i].Contract = &ct
		}
	}
	for i := range c.Ingress.APIKeys {
		if c.Ingress.APIKeys[i].Contract != nil {
			ct := *c.Ingress.APIKeys[i].Contract
			ct.resolve(dir)
			c.Ingress.APIKeys[i].Contract = &ct
		}
	}
}
