package store

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// dialect is what differs between the two stores' SQL: placeholders, the
// representation of times (timestamptz, or Unix nanoseconds in SQLite),
// function names, and free-text matching. Everything else is one SQL text,
// so that the two stores answer the same queries the same way.
type dialect struct {
	pg bool
}

var (
	postgresDialect = dialect{pg: true}
	sqliteDialect   = dialect{pg: false}
)

func (d dialect) ph(n int) string {
	if d.pg {
		return "$" + strconv.Itoa(n)
	}
	return "?" + strconv.Itoa(n)
}

// t is a time as a query argument.
func (d dialect) t(t time.Time) any {
	if d.pg {
		return t
	}
	return t.UnixNano()
}

// nt is a nullable time as a query argument.
func (d dialect) nt(t *time.Time) any {
	if t == nil {
		return nil
	}
	return d.t(*t)
}

// bucket is the index of the step-long period from since that col falls
// in; step is bucketStep's argument.
func (d dialect) bucket(col, since, step string) string {
	if d.pg {
		return fmt.Sprintf("CAST(floor(date_part('epoch', %s - %s) * 1000000 / %s) AS bigint)", col, since, step)
	}
	return fmt.Sprintf("((%s - %s) / %s)", col, since, step)
}

// bucketStep is a period's length as bucket's argument: microseconds in
// Postgres (timestamptz's precision), nanoseconds in SQLite.
func (d dialect) bucketStep(step time.Duration) any {
	if d.pg {
		return max(step.Microseconds(), 1)
	}
	return max(step.Nanoseconds(), 1)
}

// contains is the condition that col holds the text of ph exactly (case
// included): LIKE would ignore ASCII case in SQLite.
func (d dialect) contains(col, ph string) string {
	if d.pg {
		return fmt.Sprintf("strpos(%s, %s) > 0", col, ph)
	}
	return fmt.Sprintf("instr(%s, %s) > 0", col, ph)
}

// greatest and least ignore NULLs in Postgres but not in SQLite; every use
// coalesces its arguments.
func (d dialect) greatest() string {
	if d.pg {
		return "GREATEST"
	}
	return "max"
}

func (d dialect) least() string {
	if d.pg {
		return "LEAST"
	}
	return "min"
}

// textMatch is the free-text condition on col: the words of q, in Postgres
// through a full-text index; a case-insensitive substring in SQLite.
func (d dialect) textMatch(col, ph string) string {
	if d.pg {
		return fmt.Sprintf("(%s <> '' AND to_tsvector('simple', %s) @@ plainto_tsquery('simple', %s))", col, col, ph)
	}
	return fmt.Sprintf("(%s LIKE '%%' || %s || '%%' ESCAPE '\\')", col, ph)
}

// textArg prepares q for textMatch.
func (d dialect) textArg(q string) string {
	if d.pg {
		return q
	}
	return likeEscape(q)
}

// jsonText is the text at path (object keys, constants of this package,
// never user input) in the JSON document col, NULL when absent.
func (d dialect) jsonText(col string, path ...string) string {
	if d.pg {
		out := col
		for i, k := range path {
			op := "->"
			if i == len(path)-1 {
				op = "->>"
			}
			out += op + "'" + k + "'"
		}
		return out
	}
	return "json_extract(" + col + ", '$." + strings.Join(path, ".") + "')"
}

// jsonTrue is the condition that the JSON value at path in col is true
// (false when absent: protojson leaves false out).
func (d dialect) jsonTrue(col string, path ...string) string {
	if d.pg {
		return "COALESCE(" + d.jsonText(col, path...) + " = 'true', false)"
	}
	return "COALESCE(json_type(" + col + ", '$." + strings.Join(path, ".") + "') = 'true', 0)"
}

// likeEscaper escapes LIKE's wildcards and the escape character itself
// (every LIKE here says ESCAPE '\').
var likeEscaper = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)

// likeEscape makes s match itself literally in a LIKE pattern.
func likeEscape(s string) string { return likeEscaper.Replace(s) }

// rows is what both drivers' result sets offer.
type rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

// querier runs read queries and small writes for the shared code.
type querier interface {
	query(ctx context.Context, q string, args ...any) (rows, error)
	exec(ctx context.Context, q string, args ...any) (int64, error)
}

// reader is the shared read and maintenance side of both stores.
type reader struct {
	d  dialect
	db querier
	// wrap translates driver errors at the boundary.
	wrap func(error) error
}

// collect runs q and scans every row with scan.
func collect[T any](ctx context.Context, r *reader, what, q string, args []any, scan func(rows) (T, error)) ([]T, error) {
	rs, err := r.db.query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, r.wrap(err))
	}
	defer rs.Close()
	var out []T
	for rs.Next() {
		v, err := scan(rs)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, r.wrap(err))
		}
		out = append(out, v)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, r.wrap(err))
	}
	return out, nil
}

// builder accumulates a WHERE clause and its arguments.
type builder struct {
	d     dialect
	args  []any
	conds []string
}

func (b *builder) arg(v any) string {
	b.args = append(b.args, v)
	return b.d.ph(len(b.args))
}

// and adds a condition; %s in cond are replaced by placeholders for vals.
func (b *builder) and(cond string, vals ...any) {
	phs := make([]any, len(vals))
	for i, v := range vals {
		phs[i] = b.arg(v)
	}
	b.conds = append(b.conds, fmt.Sprintf(cond, phs...))
}

func (b *builder) eq(col, v string) {
	if v != "" {
		b.and(col+" = %s", v)
	}
}

func (b *builder) timeRange(col string, r TimeRange) {
	if !r.Since.IsZero() {
		b.and(col+" >= %s", b.d.t(r.Since))
	}
	if !r.Until.IsZero() {
		b.and(col+" < %s", b.d.t(r.Until))
	}
}

func (b *builder) text(col, q string) {
	if q = strings.TrimSpace(q); q != "" {
		b.conds = append(b.conds, b.d.textMatch(col, b.arg(b.d.textArg(q))))
	}
}

func (b *builder) where() string {
	if len(b.conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(b.conds, " AND ")
}

// cursor is a position in a list ordered by (time, keys...) descending.
type cursor struct {
	List string   `json:"l"`
	T    int64    `json:"t"`
	Keys []string `json:"k"`
}

func encodeCursor(list string, t time.Time, keys ...string) string {
	b, _ := json.Marshal(cursor{List: list, T: t.UnixNano(), Keys: keys})
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s, list string, nkeys int) (cursor, error) {
	var c cursor
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || json.Unmarshal(b, &c) != nil || c.List != list || len(c.Keys) != nkeys {
		return c, fmt.Errorf("%w: not a cursor of this list (use next_cursor from the previous page)", ErrBadCursor)
	}
	return c, nil
}

// page adds the keyset condition of p to b: rows strictly after the cursor
// in (timeCol, keyCols...) descending order. It returns the row limit to
// ask for (one more than the page, to know whether another page follows).
func (b *builder) page(list string, p Page, timeCol string, keyCols ...string) (int, error) {
	if p.Cursor != "" {
		c, err := decodeCursor(p.Cursor, list, len(keyCols))
		if err != nil {
			return 0, err
		}
		phs := []string{b.arg(b.d.t(time.Unix(0, c.T).UTC()))}
		for _, k := range c.Keys {
			phs = append(phs, b.arg(k))
		}
		b.conds = append(b.conds, fmt.Sprintf("(%s, %s) < (%s)", timeCol, strings.Join(keyCols, ", "), strings.Join(phs, ", ")))
	}
	return p.limit() + 1, nil
}

// orderBy is the descending order matching page.
func orderBy(timeCol string, keyCols ...string) string {
	cols := append([]string{timeCol}, keyCols...)
	return " ORDER BY " + strings.Join(cols, " DESC, ") + " DESC"
}

// trim cuts a page fetched with one extra row and returns the next cursor.
func trim[T any](items []T, limit int, key func(T) (time.Time, []string), list string) ([]T, string) {
	if len(items) < limit {
		return items, ""
	}
	items = items[:limit-1]
	t, keys := key(items[len(items)-1])
	return items, encodeCursor(list, t, keys...)
}

// ts scans a non-null time from either store.
type ts struct{ t *time.Time }

func (s ts) Scan(src any) error {
	switch v := src.(type) {
	case time.Time:
		*s.t = v.UTC()
	case int64:
		*s.t = time.Unix(0, v).UTC()
	case nil:
		*s.t = time.Time{}
	default:
		return fmt.Errorf("scan time: unexpected %T", src)
	}
	return nil
}

// nts scans a nullable time.
type nts struct{ t **time.Time }

func (s nts) Scan(src any) error {
	if src == nil {
		*s.t = nil
		return nil
	}
	var t time.Time
	if err := (ts{&t}).Scan(src); err != nil {
		return err
	}
	*s.t = &t
	return nil
}

// u64 scans a non-negative integer column into a uint64.
type u64 struct{ v *uint64 }

func (s u64) Scan(src any) error {
	var n sql.NullInt64
	if err := n.Scan(src); err != nil {
		return err
	}
	*s.v = uint64(max(n.Int64, 0))
	return nil
}

// dur scans microseconds into a duration.
type dur struct{ d *time.Duration }

func (s dur) Scan(src any) error {
	var n sql.NullInt64
	if err := n.Scan(src); err != nil {
		return err
	}
	*s.d = time.Duration(n.Int64) * time.Microsecond
	return nil
}

// jsonMap scans a JSON object (jsonb, or text in SQLite).
type jsonMap struct{ m *map[string]string }

func (s jsonMap) Scan(src any) error {
	var b []byte
	switch v := src.(type) {
	case string:
		b = []byte(v)
	case []byte:
		b = v
	case map[string]any:
		out := make(map[string]string, len(v))
		for k, x := range v {
			out[k], _ = x.(string)
		}
		*s.m = out
		return nil
	case nil:
		return nil
	default:
		return fmt.Errorf("scan JSON: unexpected %T", src)
	}
	return json.Unmarshal(b, s.m)
}
