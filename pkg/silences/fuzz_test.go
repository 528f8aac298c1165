package silences_test

import (
	"testing"

	"github.com/switchyard/switchyard/pkg/silences"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
)

// FuzzParseMatcher: matchers come from the admin API. No input may panic,
// and a parsed matcher formats back to one that parses the same.
func FuzzParseMatcher(f *testing.F) {
	for _, s := range []string{"destination=erp", "rule!=AuditLag", `destination=~"erp|crm"`, "source!~test-.*", "=", "a=~(", "severity=", "rule=~(a+)+$", "destination= ~a", `source="\"x\""`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := silences.ParseMatcher(s)
		if err != nil {
			return
		}
		again, err := silences.ParseMatcher(silences.FormatMatcher(m))
		if err != nil {
			t.Fatalf("ParseMatcher(%q) = %v, but its format %q does not parse: %v", s, m, silences.FormatMatcher(m), err)
		}
		if again.GetName() != m.GetName() || again.GetOp() != m.GetOp() || again.GetValue() != m.GetValue() {
			t.Fatalf("round trip of %q: %v then %v", s, m, again)
		}
		silences.Matches(&switchyardv1.Silence{Matchers: []*switchyardv1.SilenceMatcher{m}}, map[string]string{"rule": s, "destination": s})
	})
}
