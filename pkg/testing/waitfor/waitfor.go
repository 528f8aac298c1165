// Package waitfor waits in tests for a condition with a deadline, instead of
// sleeping and hoping.
package waitfor

import (
	"testing"
	"time"
)

// DefaultTimeout is how long True waits.
const DefaultTimeout = 20 * time.Second

// True polls cond until it returns true, failing the test with what after
// DefaultTimeout.
func True(t testing.TB, what string, cond func() bool) {
	t.Helper()
	Within(t, DefaultTimeout, what, cond)
}

// Within is True with an explicit timeout.
func Within(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		<-tick.C
	}
}

// Value polls get until ok, returning the value.
func Value[T any](t testing.TB, what string, get func() (T, bool)) T {
	t.Helper()
	return ValueWithin(t, DefaultTimeout, what, get)
}

// ValueWithin is Value with an explicit timeout.
func ValueWithin[T any](t testing.TB, timeout time.Duration, what string, get func() (T, bool)) T {
	t.Helper()
	var v T
	Within(t, timeout, what, func() bool {
		var ok bool
		v, ok = get()
		return ok
	})
	return v
}

// Explained is Within for a condition that says why it does not hold yet:
// the test fails with the last reason.
func Explained(t testing.TB, timeout time.Duration, what string, cond func() (ok bool, why string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %s", timeout, what, why)
		}
		<-tick.C
	}
}
