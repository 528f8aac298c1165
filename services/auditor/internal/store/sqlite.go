package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"time"

	"modernc.org/sqlite" // registers the pure-Go "sqlite" driver
	sqlite3 "modernc.org/sqlite/lib"
)

// SQLite is the embedded audit store of the all-in-one: a single file, no
// server. Times are stored as Unix nanoseconds.
type SQLite struct {
	*reader
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
		return nil, fmt.Errorf("open SQLite database %s: %w", path, err)
	}
	// One writer at a time is SQLite's model; readers use WAL snapshots.
	db.SetMaxOpenConns(4)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open SQLite database %s: %w", path, err)
	}
	return &SQLite{db: db, reader: &reader{d: sqliteDialect, db: sqlQuerier{db}, wrap: func(err error) error { return err }}}, nil
}

// Close implements Store.
func (s *SQLite) Close() error { return s.db.Close() }

// Migrate implements Store.
func (s *SQLite) Migrate(ctx context.Context) error { return s.migrateTo(ctx, -1) }

// migrateTo applies the migrations up to version upTo (all when negative).
func (s *SQLite) migrateTo(ctx context.Context, upTo int) error {
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
		return fmt.Errorf("migrate: %w", &SchemaTooNewError{Version: current, Known: len(ms)})
	}
	for _, m := range ms[current:] {
		if upTo >= 0 && m.Version > upTo {
			break
		}
		if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
			return fmt.Errorf("migrate: apply %s: %w", m.Name, err)
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)", m.Version, m.Name, time.Now().UnixNano()); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
	}
	return tx.Commit()
}

// Write implements Store: one transaction, one prepared statement per
// table, and the same merge into deliveries as Postgres.
func (s *SQLite) Write(ctx context.Context, b Batch) error {
	r, err := split(b)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrRejected, err)
	}
	return s.inTx(ctx, "write audit batch", func(tx *sql.Tx) error {
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
		type pending struct {
			ev, dest string
			at       time.Time
		}
		var pend []pending
		for _, e := range r.events {
			for _, d := range e.Destinations {
				pend = append(pend, pending{e.ID, d, e.ReceivedAt})
			}
		}
		d := sqliteDialect
		return errors.Join(
			exec(`INSERT INTO events (id, subject, source, type, stream_seq, received_at, content_type, payload, payload_sha256, payload_size, headers, incarnation)
			VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) ON CONFLICT (id) DO NOTHING`, len(r.events), func(i int) []any {
				e := r.events[i]
				return []any{e.ID, e.Subject, e.Source, e.Type, int64(e.StreamSeq), e.ReceivedAt.UnixNano(), e.ContentType, nonNil(e.Payload), payloadHash(e.Payload), len(e.Payload), headersJSON(e.Headers), e.Incarnation}
			}),
			// Another message under an id already held: a later incarnation.
			exec(`INSERT INTO event_incarnations (event_id, incarnation, stream_seq, subject, received_at, payload_sha256, payload_size)
			SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7 FROM events e WHERE e.id = ?1 AND (e.stream_seq <> ?3 OR e.incarnation <> ?2)
			ON CONFLICT DO NOTHING`, len(r.events), func(i int) []any {
				e := r.events[i]
				return []any{e.ID, e.Incarnation, int64(e.StreamSeq), e.Subject, e.ReceivedAt.UnixNano(), payloadHash(e.Payload), len(e.Payload)}
			}),
			exec(`INSERT INTO deliveries (event_id, destination, status, updated_at) VALUES (?1, ?2, 'pending', ?3)
			ON CONFLICT (event_id, destination) DO NOTHING`, len(pend), func(i int) []any {
				return []any{pend[i].ev, pend[i].dest, pend[i].at.UnixNano()}
			}),
			exec(`INSERT INTO attempts (id, event_id, destination, attempt, started_at, duration_us, status_code, outcome, error, response_snippet, final, replay_of, stream_seq, trace_id, transform_version)
			VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15) ON CONFLICT (id) DO NOTHING`, len(r.attempts), func(i int) []any {
				a := r.attempts[i]
				return []any{a.ID, a.EventID, a.Destination, a.Attempt, a.StartedAt.UnixNano(), a.Duration.Microseconds(), a.StatusCode, a.Outcome, a.Error, a.ResponseSnippet, a.Final, a.ReplayOf, int64(a.StreamSeq), a.TraceID, a.TransformVersion}
			}),
			exec(`INSERT INTO rejections (id, at, source, reason, detail, remote_addr, status_code, event_id, api_key, user_agent, body_size)
			VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) ON CONFLICT (id) DO NOTHING`, len(r.rejections), func(i int) []any {
				j := r.rejections[i]
				return []any{j.ID, j.At.UnixNano(), j.Source, j.Reason, j.Detail, j.RemoteAddr, j.StatusCode, j.EventID, j.APIKey, j.UserAgent, j.BodySize}
			}),
			exec(`INSERT INTO dead_letters (id, event_id, destination, subject, reason, attempts, last_status_code, last_error, response_snippet, dead_lettered_at, stream_seq, replay_of)
			VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) ON CONFLICT (id) DO NOTHING`, len(r.deadLetters), func(i int) []any {
				d := r.deadLetters[i]
				return []any{d.ID, d.EventID, d.Destination, d.Subject, d.Reason, d.Attempts, d.LastStatusCode, d.LastError, d.ResponseSnippet, d.DeadLetteredAt.UnixNano(), int64(d.StreamSeq), d.ReplayOf}
			}),
			exec(`INSERT INTO replays (id, dead_letter_id, event_id, destination, subject, stream_seq, requested_by, at)
			VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (id) DO NOTHING`, len(r.replays), func(i int) []any {
				x := r.replays[i]
				return []any{x.ID, x.DeadLetterID, x.EventID, x.Destination, x.Subject, int64(x.StreamSeq), x.RequestedBy, x.At.UnixNano()}
			}),
			exec(`INSERT INTO circuit_changes (id, at, destination, from_state, to_state, reason, last_error)
			VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (id) DO NOTHING`, len(r.circuits), func(i int) []any {
				c := r.circuits[i]
				return []any{c.ID, c.At.UnixNano(), c.Destination, c.From, c.To, c.Reason, c.LastError}
			}),
			exec(`INSERT INTO audit_records (id, at, service, kind, key, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (id) DO NOTHING`, len(r.others), func(i int) []any {
				o := r.others[i]
				return []any{o.ID, o.At.UnixNano(), o.Service, o.Kind, o.Key, string(o.Detail)}
			}),
			exec(mergeDeliverySQL(d, `SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, `+
				newDeliveryCounts("?1", "?2", "?6")+` WHERE true`), len(r.deliveries), func(i int) []any {
				c := r.deliveries[i]
				return []any{c.EventID, c.Destination, c.Status, c.UpdatedAt.UnixNano(), c.ReplayOf, int64(c.Mark.seq), c.Mark.kind, c.Mark.n,
					c.LastStatusCode, c.LastError, c.InfoSeq, c.InfoN, d.nt(c.FirstAttemptAt), d.nt(c.LastAttemptAt), d.nt(c.DeliveredAt), c.DeadLetterID, c.DeadLetterSeq}
			}),
		)
	})
}

// Park implements Store.
func (s *SQLite) Park(ctx context.Context, ps []Parked) error {
	return s.inTx(ctx, "park", func(tx *sql.Tx) error {
		for _, x := range ps {
			_, err := tx.ExecContext(ctx, `INSERT INTO parked (id, stream, subject, stream_seq, data, headers, error, parked_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
				ON CONFLICT (id) DO NOTHING`, safeText(x.ID), safeText(x.Stream), safeText(x.Subject), int64(x.StreamSeq), nonNil(x.Data), headersJSON(safeHeaders(x.Headers)), safeText(x.Error), x.ParkedAt.UnixNano())
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// inTx runs fn in a write transaction and sorts its errors.
func (s *SQLite) inTx(ctx context.Context, what string, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("%s: %w", what, sqliteError(err))
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return fmt.Errorf("%s: %w", what, sqliteError(err))
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("%s: %w", what, sqliteError(err))
	}
	return nil
}

// sqliteError sorts SQLite errors like interpretError sorts Postgres':
// constraint, type and size errors are the data's; the rest (busy, locked,
// I/O, full disk) can pass.
func sqliteError(err error) error {
	var e *sqlite.Error
	if errors.As(err, &e) {
		switch e.Code() & 0xff {
		case sqlite3.SQLITE_CONSTRAINT, sqlite3.SQLITE_MISMATCH, sqlite3.SQLITE_TOOBIG, sqlite3.SQLITE_RANGE:
			return fmt.Errorf("%w: %v", ErrRejected, err)
		}
	}
	return fmt.Errorf("%w: %v", ErrUnavailable, err)
}

// sqlQuerier adapts database/sql to the shared reader.
type sqlQuerier struct{ db *sql.DB }

type sqlRows struct{ *sql.Rows }

func (r sqlRows) Close() { _ = r.Rows.Close() }

func (q sqlQuerier) query(ctx context.Context, query string, args ...any) (rows, error) {
	rs, err := q.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return sqlRows{rs}, nil
}

func (q sqlQuerier) exec(ctx context.Context, query string, args ...any) (int64, error) {
	res, err := q.db.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}
