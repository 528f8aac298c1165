package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"

	_ "modernc.org/sqlite" // registers the pure-Go "sqlite" driver
)

// SQLite is the embedded audit store of the all-in-one: a single file, no
// server. Times are stored as Unix nanoseconds.
type SQLite struct {
	db *sql.DB
}

// OpenSQLite opens (creating if needed) the database file at path.
func OpenSQLite(ctx context.Context, path string) (*SQLite, error) {
	q := url.Values{}
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open SQLite %s: %w", path, err)
	}
	// One writer at a time is SQLite's model; readers use WAL snapshots.
	db.SetMaxOpenConns(4)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open SQLite %s: %w", path, err)
	}
	return &SQLite{db: db}, nil
}

// Close implements Store.
func (s *SQLite) Close() error { return s.db.Close() }

// Migrate implements Store.
func (s *SQLite) Migrate(ctx context.Context) error {
	ms, err := migrations("sqlite")
	if err != nil {
		return err
	}
	tx, err := s.db.BeginTx(ctx, nil) // _txlock=immediate: takes the write lock
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version integer PRIMARY KEY, name text NOT NULL, applied_at integer NOT NULL)`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	var current int
	if err := tx.QueryRowContext(ctx, "SELECT coalesce(max(version), 0) FROM schema_migrations").Scan(&current); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if current > len(ms) {
		return fmt.Errorf("migrate: the database is at schema version %d but this auditor knows only %d: run a newer auditor", current, len(ms))
	}
	for _, m := range ms[current:] {
		if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
			return fmt.Errorf("migrate: apply %s: %w", m.Name, err)
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)", m.Version, m.Name, time.Now().UnixNano()); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
	}
	return tx.Commit()
}

// Write implements Store.
func (s *SQLite) Write(ctx context.Context, b Batch) error {
	r, err := split(b)
	if err != nil {
		return err
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("write audit batch: %w: %v", ErrUnavailable, err)
	}
	defer tx.Rollback()
	exec := func(query string, rows int, args func(i int) []any) error {
		if rows == 0 {
			return nil
		}
		st, err := tx.PrepareContext(ctx, query)
		if err != nil {
			return err
		}
		defer st.Close()
		for i := range rows {
			if _, err := st.ExecContext(ctx, args(i)...); err != nil {
				return err
			}
		}
		return nil
	}
	err = errors.Join(
		exec(`INSERT INTO events (id, subject, source, type, stream_seq, received_at, content_type, payload, payload_sha256, payload_size, headers)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`, len(r.events), func(i int) []any {
			e := r.events[i]
			return []any{e.ID, e.Subject, e.Source, e.Type, int64(e.StreamSeq), e.ReceivedAt.UnixNano(), e.ContentType, nonNil(e.Payload), payloadHash(e.Payload), len(e.Payload), headersJSON(e.Headers)}
		}),
		exec(`INSERT INTO attempts (id, event_id, destination, attempt, started_at, duration_us, status_code, outcome, error, response_snippet, final, replay_of)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`, len(r.attempts), func(i int) []any {
			a := r.attempts[i]
			return []any{a.ID, a.EventID, a.Destination, a.Attempt, a.StartedAt.UnixNano(), a.Duration.Microseconds(), a.StatusCode, a.Outcome, a.Error, a.ResponseSnippet, a.Final, a.ReplayOf}
		}),
		exec(`INSERT INTO rejections (id, at, source, reason, detail, remote_addr, status_code, event_id)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`, len(r.rejections), func(i int) []any {
			j := r.rejections[i]
			return []any{j.ID, j.At.UnixNano(), j.Source, j.Reason, j.Detail, j.RemoteAddr, j.StatusCode, j.EventID}
		}),
		exec(`INSERT INTO dead_letters (id, event_id, destination, subject, reason, attempts, last_status_code, last_error, response_snippet, dead_lettered_at, stream_seq)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`, len(r.deadLetters), func(i int) []any {
			d := r.deadLetters[i]
			return []any{d.ID, d.EventID, d.Destination, d.Subject, d.Reason, d.Attempts, d.LastStatusCode, d.LastError, d.ResponseSnippet, d.DeadLetteredAt.UnixNano(), int64(d.StreamSeq)}
		}),
		exec(`INSERT INTO audit_records (id, at, service, kind, key, detail) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`, len(r.others), func(i int) []any {
			o := r.others[i]
			return []any{o.ID, o.At.UnixNano(), o.Service, o.Kind, o.Key, string(o.Detail)}
		}),
	)
	if err != nil {
		return fmt.Errorf("write audit batch: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("write audit batch: %w: %v", ErrUnavailable, err)
	}
	return nil
}

// GetEvent implements Store.
func (s *SQLite) GetEvent(ctx context.Context, id string) (EventDetail, error) {
	var d EventDetail
	var e Event
	var headers string
	var seq, received int64
	err := s.db.QueryRowContext(ctx, `SELECT id, subject, source, type, stream_seq, received_at, content_type, payload, headers
		FROM events WHERE id = ?`, id).Scan(&e.ID, &e.Subject, &e.Source, &e.Type, &seq, &received, &e.ContentType, &e.Payload, &headers)
	switch {
	case err == nil:
		e.StreamSeq, e.ReceivedAt = uint64(seq), time.Unix(0, received).UTC()
		_ = json.Unmarshal([]byte(headers), &e.Headers)
		d.Event = &e
	case !errors.Is(err, sql.ErrNoRows):
		return d, fmt.Errorf("get event: %w", err)
	}
	rows, err := s.db.QueryContext(ctx, `SELECT id, event_id, destination, attempt, started_at, duration_us, status_code, outcome, error, response_snippet, final, replay_of
		FROM attempts WHERE event_id = ? ORDER BY started_at, destination, attempt`, id)
	if err != nil {
		return d, fmt.Errorf("get attempts: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var a Attempt
		var started, us int64
		if err := rows.Scan(&a.ID, &a.EventID, &a.Destination, &a.Attempt, &started, &us, &a.StatusCode, &a.Outcome, &a.Error, &a.ResponseSnippet, &a.Final, &a.ReplayOf); err != nil {
			return d, fmt.Errorf("get attempts: %w", err)
		}
		a.StartedAt, a.Duration = time.Unix(0, started).UTC(), time.Duration(us)*time.Microsecond
		d.Attempts = append(d.Attempts, a)
	}
	if err := rows.Err(); err != nil {
		return d, fmt.Errorf("get attempts: %w", err)
	}
	dls, err := s.db.QueryContext(ctx, `SELECT id, event_id, destination, subject, reason, attempts, last_status_code, last_error, response_snippet, dead_lettered_at, stream_seq
		FROM dead_letters WHERE event_id = ? ORDER BY dead_lettered_at`, id)
	if err != nil {
		return d, fmt.Errorf("get dead letters: %w", err)
	}
	defer dls.Close()
	for dls.Next() {
		var x DeadLetter
		var at, seq int64
		if err := dls.Scan(&x.ID, &x.EventID, &x.Destination, &x.Subject, &x.Reason, &x.Attempts, &x.LastStatusCode, &x.LastError, &x.ResponseSnippet, &at, &seq); err != nil {
			return d, fmt.Errorf("get dead letters: %w", err)
		}
		x.DeadLetteredAt, x.StreamSeq = time.Unix(0, at).UTC(), uint64(seq)
		d.DeadLetters = append(d.DeadLetters, x)
	}
	if err := dls.Err(); err != nil {
		return d, fmt.Errorf("get dead letters: %w", err)
	}
	if d.Event == nil && len(d.Attempts) == 0 && len(d.DeadLetters) == 0 {
		return d, ErrNotFound
	}
	return d, nil
}

// ListRejections implements Store.
func (s *SQLite) ListRejections(ctx context.Context, limit int) ([]Rejection, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, at, source, reason, detail, remote_addr, status_code, event_id
		FROM rejections ORDER BY at DESC, id DESC LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("list rejections: %w", err)
	}
	defer rows.Close()
	var out []Rejection
	for rows.Next() {
		var j Rejection
		var at int64
		if err := rows.Scan(&j.ID, &at, &j.Source, &j.Reason, &j.Detail, &j.RemoteAddr, &j.StatusCode, &j.EventID); err != nil {
			return nil, fmt.Errorf("list rejections: %w", err)
		}
		j.At = time.Unix(0, at).UTC()
		out = append(out, j)
	}
	return out, rows.Err()
}
