package untrusted_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/switchyard/switchyard/pkg/untrusted"
)

func TestText(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		max  int
		want string
	}{
		{"ascii", "partner-test/1.0", 256, "partner-test/1.0"},
		{"unicode kept", "café ☕", 256, "café ☕"},
		{"invalid byte", "curl/\xff8.0", 256, "curl/\uFFFD8.0"},
		{"run of invalid bytes is one replacement", "a\xff\xfe\xfdb", 256, "a\uFFFDb"},
		{"truncated sequence at the end", "caf\xc3", 256, "caf\uFFFD"},
		{"control characters", "a\r\nb\tc\x00d\x7fe\u0085f", 256, "a  b c d e f"},
		{"cut on a rune boundary", strings.Repeat("a", 255) + "é", 256, strings.Repeat("a", 255)},
		{"cut inside a 4-byte rune", "ab😀", 4, "ab"},
		{"cut exactly after a rune", "ab😀c", 6, "ab😀"},
		{"cut ascii", "abcdef", 3, "abc"},
		{"replacement then cut", "\xff\xff", 2, ""},
		{"empty", "", 10, ""},
		{"no room", "abc", 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := untrusted.Text(tt.in, tt.max)
			if got != tt.want {
				t.Errorf("Text(%q, %d) = %q, want %q", tt.in, tt.max, got, tt.want)
			}
			if !untrusted.Valid(got) {
				t.Errorf("Text(%q, %d) = %q is not valid", tt.in, tt.max, got)
			}
		})
	}
}

func TestCut(t *testing.T) {
	t.Parallel()
	for n := range 12 {
		got := untrusted.Cut("é😀ab", n)
		if !utf8.ValidString(got) || len(got) > n || !strings.HasPrefix("é😀ab", got) {
			t.Errorf("Cut(_, %d) = %q", n, got)
		}
	}
}

// FuzzText checks what Text promises for any input: valid UTF-8 without
// control characters, within the bound, accepted by protobuf's marshaller
// (which is what lost audit records), and unchanged when it was already
// safe.
func FuzzText(f *testing.F) {
	for _, s := range []string{"", "abc", "\xff", "caf\xc3", "a\r\nb", strings.Repeat("é", 200), "😀\x00😀", "\u0085\u009f\u00a0"} {
		f.Add(s, 7)
	}
	f.Fuzz(func(t *testing.T, s string, n int) {
		n = n%300 + 1
		if n < 0 {
			n = -n
		}
		got := untrusted.Text(s, n)
		if !utf8.ValidString(got) || len(got) > n {
			t.Fatalf("Text(%q, %d) = %q: invalid or too long", s, n, got)
		}
		if !untrusted.Valid(got) {
			t.Fatalf("Text(%q, %d) = %q holds control characters", s, n, got)
		}
		if _, err := proto.Marshal(wrapperspb.String(got)); err != nil {
			t.Fatalf("protobuf refuses Text(%q, %d) = %q: %v", s, n, got, err)
		}
		if untrusted.Valid(s) && len(s) <= n && got != s {
			t.Fatalf("Text changed safe text %q to %q", s, got)
		}
	})
}
