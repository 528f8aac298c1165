package store

import (
	"context"
	"fmt"
)

// MigrateTo applies st's migrations up to version upTo, for tests of a
// migration over data written under the schema before it.
func MigrateTo(ctx context.Context, st Store, upTo int) error {
	switch s := st.(type) {
	case *Postgres:
		return s.migrateTo(ctx, upTo)
	case *SQLite:
		return s.migrateTo(ctx, upTo)
	}
	return fmt.Errorf("MigrateTo: unknown store %T", st)
}

// MigrationCount is the number of migrations of dialect ("postgres",
// "sqlite").
func MigrationCount(dialect string) int {
	ms, err := migrations(dialect)
	if err != nil {
		panic(err)
	}
	return len(ms)
}
