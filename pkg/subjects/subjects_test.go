package subjects_test

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/switchyard/switchyard/pkg/subjects"
)

func TestToken(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, want string
	}{
		{"plain", "order_created", "order_created"},
		{"letters digits dash underscore", "Order-Created_v2", "Order-Created_v2"},
		{"dot", "order.created", "order_created"},
		{"star", "order.*", "order__"},
		{"greater than", "order.>", "order__"},
		{"wildcards inside", "a*b>c", "a_b_c"},
		{"space", "order created", "order_created"},
		{"tab newline", "order\tcreated\r\n", "order_created__"},
		{"control characters", "a\x00b\x1fc\x7f", "a_b_c_"},
		{"slash and colon", "shop/order:created", "shop_order_created"},
		{"dollar", "$JS.API", "_JS_API"},
		// Non-ASCII bytes each become '_': é is two bytes in UTF-8.
		{"non-ASCII", "café", "caf__"},
		{"invalid UTF-8", "a\xffb", "a_b"},
		{"empty", "", "unknown"},
		{"one underscore", "_", "unknown"},
		{"only separators", "...", "unknown"},
		{"only wildcards", "*>", "unknown"},
		{"only whitespace", " \t\n", "unknown"},
		{"only non-ASCII", "日本", "unknown"},
		{"underscores around", "_a_", "_a_"},
		{"dash only", "-", "-"},
		{"exactly max", strings.Repeat("a", subjects.MaxTokenLength), strings.Repeat("a", subjects.MaxTokenLength)},
		{"cut to max", strings.Repeat("a", subjects.MaxTokenLength+50), strings.Repeat("a", subjects.MaxTokenLength)},
		{"cut non-ASCII to max", strings.Repeat("é", subjects.MaxTokenLength), "unknown"},
		{"cut after replacement", strings.Repeat("a.", 100), strings.Repeat("a_", subjects.MaxTokenLength/2)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := subjects.Token(tt.in)
			if got != tt.want {
				t.Errorf("Token(%q) = %q, want %q", tt.in, got, tt.want)
			}
			checkToken(t, tt.in, got)
		})
	}
}

// checkToken asserts that tok is one valid, literal NATS subject token.
func checkToken(t *testing.T, in, tok string) {
	t.Helper()
	switch {
	case tok == "":
		t.Fatalf("Token(%q) is empty", in)
	case len(tok) > subjects.MaxTokenLength:
		t.Fatalf("Token(%q) is %d bytes, more than %d", in, len(tok), subjects.MaxTokenLength)
	case strings.ContainsAny(tok, ".*> \t\r\n\f\v"):
		t.Fatalf("Token(%q) = %q contains a separator, wildcard or whitespace", in, tok)
	case !utf8.ValidString(tok):
		t.Fatalf("Token(%q) = %q is not valid UTF-8", in, tok)
	case strings.Trim(tok, "_") == "":
		t.Fatalf("Token(%q) = %q is only underscores", in, tok)
	}
	for i := 0; i < len(tok); i++ {
		if c := tok[i]; c < 0x21 || c > 0x7e {
			t.Fatalf("Token(%q) = %q contains byte %#x", in, tok, c)
		}
	}
	// The nats-server agrees: events.<token> is a literal subject with
	// exactly two tokens.
	subj := "events." + tok
	if !server.IsValidLiteralSubject(subj) {
		t.Fatalf("nats-server rejects %q as a literal subject", subj)
	}
}

// FuzzToken: whatever a partner sends as an event type, Token makes one
// valid subject token of it.
func FuzzToken(f *testing.F) {
	f.Add("order.created")
	f.Fuzz(func(t *testing.T, s string) {
		tok := subjects.Token(s)
		checkToken(t, s, tok)
		if subjects.Token(tok) != tok {
			t.Fatalf("Token is not idempotent: Token(%q) = %q", tok, subjects.Token(tok))
		}
	})
}

func TestCheckTypePath(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		typ     string
		wantErr error
	}{
		{"one token", "ping", nil},
		{"two tokens", "order.created", nil},
		{"dashes underscores digits", "order-v2.created_at.2024", nil},
		{"upper case", "Order.Created", nil},
		{"16 tokens", strings.TrimSuffix(strings.Repeat("a.", subjects.MaxTypeTokens), "."), nil},
		{"200 bytes", strings.Repeat("a", 200), nil},
		{"empty", "", subjects.ErrBadType},
		{"17 tokens", strings.TrimSuffix(strings.Repeat("a.", subjects.MaxTypeTokens+1), "."), subjects.ErrBadType},
		{"201 bytes", strings.Repeat("a", 201), subjects.ErrBadType},
		{"leading dot", ".order", subjects.ErrBadType},
		{"trailing dot", "order.", subjects.ErrBadType},
		{"double dot", "order..created", subjects.ErrBadType},
		{"only a dot", ".", subjects.ErrBadType},
		{"star", "order.*", subjects.ErrBadType},
		{"greater than", "order.>", subjects.ErrBadType},
		{"space", "order created", subjects.ErrBadType},
		{"tab", "order\tcreated", subjects.ErrBadType},
		{"newline", "order.created\n", subjects.ErrBadType},
		{"slash", "order/created", subjects.ErrBadType},
		{"colon", "order:created", subjects.ErrBadType},
		{"dollar", "$JS.API", subjects.ErrBadType},
		{"non-ASCII", "commande.créée", subjects.ErrBadType},
		{"NUL", "order\x00", subjects.ErrBadType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := subjects.CheckTypePath(tt.typ)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("CheckTypePath(%q) = %v", tt.typ, err)
				}
				if subj := "events." + tt.typ; !server.IsValidLiteralSubject(subj) {
					t.Errorf("accepted %q, but nats-server rejects %q", tt.typ, subj)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("CheckTypePath(%q) = %v, want %v", tt.typ, err, tt.wantErr)
			}
		})
	}
}

// FuzzCheckTypePath: a type our services may publish always makes a valid
// literal subject under events.
func FuzzCheckTypePath(f *testing.F) {
	f.Add("order.created")
	f.Fuzz(func(t *testing.T, typ string) {
		err := subjects.CheckTypePath(typ)
		if err != nil {
			if !errors.Is(err, subjects.ErrBadType) {
				t.Fatalf("CheckTypePath(%q) = %v, not ErrBadType", typ, err)
			}
			return
		}
		if subj := "events." + typ; !server.IsValidLiteralSubject(subj) {
			t.Fatalf("accepted %q, but nats-server rejects %q", typ, subj)
		}
		if len(typ) > 200 || strings.Count(typ, ".") >= subjects.MaxTypeTokens {
			t.Fatalf("accepted %q beyond the bounds", typ)
		}
	})
}

func TestCheck(t *testing.T) {
	t.Parallel()
	tests := []struct {
		subject string
		ok      bool
	}{
		{"events.order.created", true},
		{"events.*.created", true},
		{"events.>", true},
		{">", true},
		{"*", true},
		{"", false},
		{".", false},
		{"events.", false},
		{".events", false},
		{"events..x", false},
		{"events.a b", false},
		{"events.a\tb", false},
		{"events.a\nb", false},
		{"events.>.x", false},
		{"events.a>", false},
		{"events.*a", false},
		{"events.>>", false},
	}
	for _, tt := range tests {
		err := subjects.Check(tt.subject)
		if (err == nil) != tt.ok {
			t.Errorf("Check(%q) = %v, want ok=%v", tt.subject, err, tt.ok)
		}
	}
}

func TestOverlap(t *testing.T) {
	t.Parallel()
	tests := []struct {
		a, b string
		want bool
	}{
		{"events.order.created", "events.order.created", true},
		{"events.order.created", "events.order.updated", false},
		{"events.>", "events.order.created", true},
		{"events.>", "events.order", true},
		{"events.>", "webhooks.>", false},
		{"events.>", "events.>", true},
		{"events.order.>", "events.*.created", true},
		{"events.order.*", "events.user.*", false},
		{"events.order.*", "events.*.created", true},
		{"events.*", "events.order", true},
		{"events.*", "events.order.created", false},
		{"events.*.*", "events.*", false},
		{"events.order", "events.order.created", false},
		{"events.*.>", "events.order.created.v2", true},
		{"webhooks.shop.>", "webhooks.*.order", true},
		{"webhooks.shop.>", "webhooks.crm.>", false},
		// '>' stands for one or more tokens, never none.
		{"events.>", "events", false},
		{"events.order.>", "events.order", false},
		{"events.*.>", "events.order", false},
		{"events.*.>", "events.*", false},
		{">", "events", true},
		{"*.>", "events", false},
	}
	for _, tt := range tests {
		for _, pair := range [][2]string{{tt.a, tt.b}, {tt.b, tt.a}} {
			if got := subjects.Overlap(pair[0], pair[1]); got != tt.want {
				t.Errorf("Overlap(%q, %q) = %v, want %v", pair[0], pair[1], got, tt.want)
			}
			// JetStream decides whether filters overlap; agree with it.
			if got := server.SubjectsCollide(pair[0], pair[1]); got != tt.want {
				t.Errorf("test case disagrees with nats-server: SubjectsCollide(%q, %q) = %v", pair[0], pair[1], got)
			}
		}
	}
}

// FuzzOverlap checks Overlap against the nats-server's own
// SubjectsCollide, which is what JetStream uses to refuse overlapping
// consumer filters, for every pair of valid subjects.
func FuzzOverlap(f *testing.F) {
	for _, s := range [][2]string{
		{"events.>", "events"}, {"events.*", "events.order"}, {"events.*.>", "events.*"},
		{"a.b.c", "a.*.c"}, {">", "*"}, {"a.>", "*.b"}, {"*.*", "a.>"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		if subjects.Check(a) != nil || subjects.Check(b) != nil {
			return
		}
		if !server.IsValidSubject(a) || !server.IsValidSubject(b) {
			return
		}
		got, want := subjects.Overlap(a, b), server.SubjectsCollide(a, b)
		if got != want {
			t.Errorf("Overlap(%q, %q) = %v, nats-server says %v", a, b, got, want)
		}
		if got != subjects.Overlap(b, a) {
			t.Errorf("Overlap(%q, %q) is not symmetric", a, b)
		}
	})
}

func TestMatch(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		pattern, subject string
		want             bool
	}{
		{"events.order.>", "events.order.created", true},
		{"events.order.>", "events.order.paid.late", true},
		{"events.order.>", "events.order", false},
		{"events.*.created", "events.order.created", true},
		{"events.*.created", "events.order.paid", false},
		{"events.*", "events.order.created", false},
		{"events.order.created", "events.order.created", true},
		{"events.order.created", "events.order.created.x", false},
		{">", "events.x", true},
		{"webhooks.shop.>", "events.shop.x", false},
	} {
		if got := subjects.Match(tt.pattern, tt.subject); got != tt.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tt.pattern, tt.subject, got, tt.want)
		}
	}
}
