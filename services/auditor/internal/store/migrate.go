package store

import (
	"embed"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
)

//go:embed migrations
var migrationFS embed.FS

// migration is one numbered schema change.
type migration struct {
	Version int
	Name    string
	SQL     string
}

// migrations returns the dialect's migrations in order.
func migrations(dialect string) ([]migration, error) {
	dir := path.Join("migrations", dialect)
	entries, err := fs.ReadDir(migrationFS, dir)
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, e := range entries {
		name := e.Name()
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || !strings.HasSuffix(name, ".sql") {
			return nil, fmt.Errorf("migration file %s: want NNNN_name.sql", name)
		}
		body, err := fs.ReadFile(migrationFS, path.Join(dir, name))
		if err != nil {
			return nil, err
		}
		out = append(out, migration{Version: v, Name: name, SQL: string(body)})
	}
	slices.SortFunc(out, func(a, b migration) int { return a.Version - b.Version })
	for i, m := range out {
		if m.Version != i+1 {
			return nil, fmt.Errorf("migrations for %s are not numbered 1, 2, 3...: found %s", dialect, m.Name)
		}
	}
	return out, nil
}

// SchemaTooNewError is returned by Migrate when the database's schema is
// newer than this auditor knows: a newer auditor migrated it, and this one
// must not write to it.
type SchemaTooNewError struct {
	// Version is the database's schema version; Known the newest this
	// auditor knows.
	Version, Known int
}

func (e *SchemaTooNewError) Error() string {
	return fmt.Sprintf("the database is at schema version %d but this auditor knows only %d: run a newer auditor", e.Version, e.Known)
}
