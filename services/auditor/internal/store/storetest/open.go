package storetest

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/switchyard/switchyard/pkg/testing/pgtest"
	"github.com/switchyard/switchyard/pkg/testing/testctx"
	"github.com/switchyard/switchyard/services/auditor/internal/store"
)

// Backends open a fresh, empty, not yet migrated store of each
// implementation for a test; the store is closed when the test ends.
var Backends = map[string]func(t testing.TB) store.Store{
	"postgres": OpenPostgres,
	"sqlite":   OpenSQLite,
}

// OpenPostgres opens a store in a schema of the test's own in the real
// Postgres (pgtest).
func OpenPostgres(t testing.TB) store.Store {
	t.Helper()
	return opened(t, func(ctx context.Context) (store.Store, error) { return store.OpenPostgres(ctx, pgtest.Schema(t)) })
}

// OpenSQLite opens a store in a file in the test's temporary directory.
func OpenSQLite(t testing.TB) store.Store {
	t.Helper()
	dir := t.TempDir()
	return opened(t, func(ctx context.Context) (store.Store, error) {
		return store.OpenSQLite(ctx, filepath.Join(dir, "audit.db"))
	})
}

func opened(t testing.TB, open func(ctx context.Context) (store.Store, error)) store.Store {
	t.Helper()
	st, err := open(testctx.New(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}
