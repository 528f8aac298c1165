package config_test

import (
	"errors"
	"reflect"
	"testing"

	"github.com/switchyard/switchyard/pkg/config"
)

// FuzzParse feeds arbitrary files (seeds in testdata/fuzz/FuzzParse) and an
// arbitrary environment value to Parse. No input may panic; every failure is
// ErrInvalid; every success is a defaulted, valid configuration.
func FuzzParse(f *testing.F) {
	f.Add([]byte(minimalYAML), testSecret)
	f.Fuzz(func(t *testing.T, data []byte, value string) {
		env := envMap(map[string]string{
			"SECRET": value,
			"VALUE":  value,
			"PORT":   "8080",
			"EMPTY":  "",
		})
		c, err := config.Parse(data, env)
		if err != nil {
			if !errors.Is(err, config.ErrInvalid) {
				t.Fatalf("Parse error %v (%T) is not ErrInvalid", err, err)
			}
			_ = err.Error()
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse returned a configuration that does not validate: %v", err)
		}
		if d := c.WithDefaults(); !reflect.DeepEqual(d, c) {
			t.Fatalf("Parse returned a configuration without its defaults:\n%+v\nWithDefaults:\n%+v", c, d)
		}
	})
}

// FuzzParseDuration: no panic; a parsed duration prints as text that parses
// back to itself.
func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"10s", "7d", "0d", "-5s", "36500d", "1.5h", "", "d", "9223372036854775807ns"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := config.ParseDuration(s)
		if err != nil {
			return
		}
		back, err := config.ParseDuration(d.String())
		if err != nil || back != d {
			t.Fatalf("ParseDuration(%q) = %v, whose text %q parses to %v, %v", s, d.D(), d.String(), back.D(), err)
		}
	})
}

// FuzzParseByteSize: no panic; a parsed size is never negative (no
// overflow) and round-trips through its text.
func FuzzParseByteSize(f *testing.F) {
	for _, s := range []string{"1MiB", "512KiB", "1048576", "8589934592GiB", "-1", "1 GB", "", "1.5MB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := config.ParseByteSize(s)
		if err != nil {
			return
		}
		if b < 0 {
			t.Fatalf("ParseByteSize(%q) = %d", s, b)
		}
		text, _ := b.MarshalText()
		back, err := config.ParseByteSize(string(text))
		if err != nil || back != b {
			t.Fatalf("ParseByteSize(%q) = %d, whose text %q parses to %d, %v", s, b, text, back, err)
		}
	})
}
