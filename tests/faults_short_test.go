package tests

import (
	"os"
	"testing"
	"time"
)

// TestFaultsShort is the fault matrix's short version for `make test`: a
// few hundred events, one dispatcher SIGKILLed and restarted while the
// partner answers 30% 5xx, and the same invariants as the long matrix, so
// CI guards them (CHAOS_JSON names a file for its row, if wanted).
func TestFaultsShort(t *testing.T) {
	runFaultMatrix(t, []faultScenario{{
		name:    "short: dispatcher SIGKILL + 30% 5xx",
		events:  300,
		rate:    30,
		respond: failing(0.3),
		latency: 200 * time.Millisecond,
		kills:   true,
		fault:   func(f *faultRun) { f.killBetween("dispatcher-1", 0.3, 0.5) },
	}}, os.Getenv("CHAOS_JSON"))
}
