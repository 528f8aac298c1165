package config

import (
	"encoding"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"

	"go.yaml.in/yaml/v3"
)

// Duration is a time.Duration that reads "10s", "2m", "72h" and also whole
// days ("7d", "30d"), which time.ParseDuration does not accept.
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String formats d the way ParseDuration reads it.
func (d Duration) String() string {
	td := time.Duration(d)
	if td != 0 && td%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(td/(24*time.Hour)), 10) + "d"
	}
	return td.String()
}

// ParseDuration reads a duration in time.ParseDuration form or as whole days
// ("7d").
func ParseDuration(s string) (Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("empty duration")
	}
	if strings.HasSuffix(s, "d") {
		n, err := strconv.ParseInt(strings.TrimSuffix(s, "d"), 10, 64)
		if err != nil || n < 0 || n > 36500 {
			return 0, fmt.Errorf("invalid duration %q (use e.g. 500ms, 10s, 2m, 72h or 7d)", s)
		}
		return Duration(time.Duration(n) * 24 * time.Hour), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q (use e.g. 500ms, 10s, 2m, 72h or 7d)", s)
	}
	return Duration(d), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// UnmarshalYAML implements yaml.Unmarshaler so that a bad value is reported
// with its line, together with every other problem in the file.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error { return unmarshalScalar(n, d.UnmarshalText) }

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// ByteSize is a size in bytes that reads plain integers and the suffixes
// KB, KiB, MB, MiB, GB, GiB.
type ByteSize int64

// ParseByteSize reads "1048576", "512KiB", "1MiB", "1MB".
func ParseByteSize(s string) (ByteSize, error) {
	s = strings.TrimSpace(s)
	i := strings.IndexFunc(s, func(r rune) bool { return !unicode.IsDigit(r) })
	num, unit := s, ""
	if i >= 0 {
		num, unit = s[:i], strings.TrimSpace(s[i:])
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("invalid size %q (use e.g. 1048576, 512KiB or 1MiB)", s)
	}
	mult := map[string]int64{
		"": 1, "B": 1,
		"KB": 1000, "KiB": 1 << 10,
		"MB": 1000 * 1000, "MiB": 1 << 20,
		"GB": 1000 * 1000 * 1000, "GiB": 1 << 30,
	}[unit]
	if mult == 0 {
		return 0, fmt.Errorf("invalid size unit %q in %q (use B, KB, KiB, MB, MiB, GB or GiB)", unit, s)
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("invalid size %q: too large", s)
	}
	return ByteSize(n * mult), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (b *ByteSize) UnmarshalText(text []byte) error {
	v, err := ParseByteSize(string(text))
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// UnmarshalYAML implements yaml.Unmarshaler so that a bad value is reported
// with its line, together with every other problem in the file.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error { return unmarshalScalar(n, b.UnmarshalText) }

// unmarshalScalar decodes a scalar node with set, returning problems as a
// *yaml.TypeError so that the decoder carries on and reports them all.
func unmarshalScalar(n *yaml.Node, set func([]byte) error) error {
	if n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: want a single value, not %s", n.Line, n.ShortTag())}}
	}
	if err := set([]byte(n.Value)); err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %v", n.Line, err)}}
	}
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (b ByteSize) MarshalText() ([]byte, error) { return []byte(strconv.FormatInt(int64(b), 10)), nil }

// Secret is a string that must never be printed: String, LogValue, Format
// and MarshalText all redact it. Use Reveal where the value is really needed
// (computing an HMAC, building an Authorization header).
type Secret string

const redacted = "[redacted]"

// Reveal returns the secret value.
func (s Secret) Reveal() string { return string(s) }

// String implements fmt.Stringer with a redacted value.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString implements fmt.GoStringer with a redacted value, so %#v is safe.
func (s Secret) GoString() string { return s.String() }

// Format implements fmt.Formatter: every verb formats the redacted value.
// Without it a verb fmt does not use String for (%d, %t, ...) would print
// the secret inside the %!d(config.Secret=...) complaint.
func (s Secret) Format(f fmt.State, verb rune) { fmt.Fprintf(f, fmt.FormatString(f, verb), s.String()) }

// LogValue implements slog.LogValuer with a redacted value.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText implements encoding.TextMarshaler with a redacted value, so
// that dumping the config (JSON, YAML) never leaks it.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *Secret) UnmarshalText(b []byte) error { *s = Secret(b); return nil }

var (
	_ encoding.TextUnmarshaler = (*Duration)(nil)
	_ encoding.TextUnmarshaler = (*ByteSize)(nil)
	_ encoding.TextUnmarshaler = (*Secret)(nil)
	_ yaml.Unmarshaler         = (*Duration)(nil)
	_ yaml.Unmarshaler         = (*ByteSize)(nil)
	_ slog.LogValuer           = Secret("")
	_ fmt.Formatter            = Secret("")
)
