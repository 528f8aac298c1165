package version

import "testing"

func TestStringPrefersTheLinkedVersion(t *testing.T) {
	if got := String(); got == "" {
		t.Fatal("String() is empty")
	}
	old := Version
	t.Cleanup(func() { Version = old })
	Version = "v1.2.3"
	if got := String(); got != "v1.2.3" {
		t.Fatalf("String() = %q, want the version set at link time", got)
	}
}

// BenchmarkString is what every delivery attempt's User-Agent costs.
func BenchmarkString(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = String()
	}
}
