// Package testctx gives a test its context: bounded by a deadline, so that
// a test waiting on NATS or Postgres fails instead of hanging, and cancelled
// when the test's cleanups run (after the ones registered later, so that
// those may still use it).
package testctx

import (
	"context"
	"testing"
	"time"
)

// Timeout bounds a test's context.
const Timeout = 30 * time.Second

// New returns a context that ends after Timeout or when t's cleanups run.
func New(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	t.Cleanup(cancel)
	return ctx
}
