package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Postgres is the production audit store.
type Postgres struct {
	pool *pgxpool.Pool
}

// OpenPostgres connects to url. The connection is checked at once so that a
// wrong URL fails at start, with an error that does not repeat the password.
func OpenPostgres(ctx context.Context, url string) (*Postgres, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgx errors can quote the URL; do not pass it on.
		return nil, errors.New("parse database_url: not a valid Postgres connection string")
	}
	cfg.MaxConns = max(cfg.MaxConns, 8)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open Postgres: %w", interpretError(err))
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to Postgres at %s:%d: %w", cfg.ConnConfig.Host, cfg.ConnConfig.Port, interpretError(err))
	}
	return &Postgres{pool: pool}, nil
}

// Close implements Store.
func (p *Postgres) Close() error { p.pool.Close(); return nil }

// migrationLockKey is the advisory lock that serialises migrations across
// auditors starting together.
const migrationLockKey = 0x5357_4954_4348 // "SWITCH"

// Migrate implements Store.
func (p *Postgres) Migrate(ctx context.Context) error {
	ms, err := migrations("postgres")
	if err != nil {
		return err
	}
	conn, err := p.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", interpretError(err))
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", migrationLockKey); err != nil {
		return fmt.Errorf("migrate: take advisory lock: %w", interpretError(err))
	}
	defer func() {
		_, _ = conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", migrationLockKey)
	}()
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("migrate: %w", interpretError(err))
	}
	var current int
	if err := conn.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM schema_migrations").Scan(&current); err != nil {
		return fmt.Errorf("migrate: %w", interpretError(err))
	}
	if current > len(ms) {
		return fmt.Errorf("migrate: the database is at schema version %d but this auditor knows only %d: run a newer auditor", current, len(ms))
	}
	for _, m := range ms[current:] {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", m.Version, m.Name)
			return err
		})
		if err != nil {
			return fmt.Errorf("migrate: apply %s: %w", m.Name, interpretError(err))
		}
	}
	return nil
}

// Write implements Store: one transaction, one statement per table, each a
// multi-row insert from arrays that skips rows already present.
func (p *Postgres) Write(ctx context.Context, b Batch) error {
	r, err := split(b)
	if err != nil {
		return err
	}
	batch := &pgx.Batch{}
	if n := len(r.events); n > 0 {
		ids, subjects, sources, types := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		seqs, cts := make([]int64, n), make([]string, n)
		times := make([]time.Time, n)
		payloads, hashes := make([][]byte, n), make([][]byte, n)
		sizes := make([]int32, n)
		headers := make([]string, n)
		for i, e := range r.events {
			ids[i], subjects[i], sources[i], types[i] = e.ID, e.Subject, e.Source, e.Type
			seqs[i], cts[i], times[i] = int64(e.StreamSeq), e.ContentType, e.ReceivedAt
			payloads[i], hashes[i], sizes[i] = nonNil(e.Payload), payloadHash(e.Payload), int32(len(e.Payload))
			headers[i] = headersJSON(e.Headers)
		}
		batch.Queue(`INSERT INTO events (id, subject, source, type, stream_seq, received_at, content_type, payload, payload_sha256, payload_size, headers)
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::timestamptz[], $7::text[], $8::bytea[], $9::bytea[], $10::integer[], $11::jsonb[])
			ON CONFLICT (id) DO NOTHING`,
			ids, subjects, sources, types, seqs, times, cts, payloads, hashes, sizes, headers)
	}
	if n := len(r.attempts); n > 0 {
		ids, evs, dests, outcomes, errs, snippets, replays := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		nums, codes := make([]int32, n), make([]int32, n)
		starts := make([]time.Time, n)
		durs := make([]int64, n)
		finals := make([]bool, n)
		for i, a := range r.attempts {
			ids[i], evs[i], dests[i], outcomes[i], errs[i], snippets[i], replays[i] = a.ID, a.EventID, a.Destination, a.Outcome, a.Error, a.ResponseSnippet, a.ReplayOf
			nums[i], codes[i], starts[i], durs[i], finals[i] = int32(a.Attempt), int32(a.StatusCode), a.StartedAt, a.Duration.Microseconds(), a.Final
		}
		batch.Queue(`INSERT INTO attempts (id, event_id, destination, attempt, started_at, duration_us, status_code, outcome, error, response_snippet, final, replay_of)
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::integer[], $5::timestamptz[], $6::bigint[], $7::integer[], $8::text[], $9::text[], $10::text[], $11::boolean[], $12::text[])
			ON CONFLICT (id) DO NOTHING`,
			ids, evs, dests, nums, starts, durs, codes, outcomes, errs, snippets, finals, replays)
	}
	for _, j := range r.rejections {
		batch.Queue(`INSERT INTO rejections (id, at, source, reason, detail, remote_addr, status_code, event_id)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING`,
			j.ID, j.At, j.Source, j.Reason, j.Detail, j.RemoteAddr, j.StatusCode, j.EventID)
	}
	for _, d := range r.deadLetters {
		batch.Queue(`INSERT INTO dead_letters (id, event_id, destination, subject, reason, attempts, last_status_code, last_error, response_snippet, dead_lettered_at, stream_seq)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (id) DO NOTHING`,
			d.ID, d.EventID, d.Destination, d.Subject, d.Reason, d.Attempts, d.LastStatusCode, d.LastError, d.ResponseSnippet, d.DeadLetteredAt, int64(d.StreamSeq))
	}
	for _, o := range r.others {
		batch.Queue(`INSERT INTO audit_records (id, at, service, kind, key, detail) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING`,
			o.ID, o.At, o.Service, o.Kind, o.Key, string(o.Detail))
	}
	if batch.Len() == 0 {
		return nil
	}
	err = pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		return tx.SendBatch(ctx, batch).Close()
	})
	if err != nil {
		return fmt.Errorf("write audit batch: %w", interpretError(err))
	}
	return nil
}

// GetEvent implements Store.
func (p *Postgres) GetEvent(ctx context.Context, id string) (EventDetail, error) {
	var d EventDetail
	var e Event
	var headers []byte
	var seq int64
	err := p.pool.QueryRow(ctx, `SELECT id, subject, source, type, stream_seq, received_at, content_type, payload, headers
		FROM events WHERE id = $1`, id).Scan(&e.ID, &e.Subject, &e.Source, &e.Type, &seq, &e.ReceivedAt, &e.ContentType, &e.Payload, &headers)
	switch {
	case err == nil:
		e.StreamSeq = uint64(seq)
		_ = json.Unmarshal(headers, &e.Headers)
		d.Event = &e
	case !errors.Is(err, pgx.ErrNoRows):
		return d, fmt.Errorf("get event: %w", interpretError(err))
	}
	rows, err := p.pool.Query(ctx, `SELECT id, event_id, destination, attempt, started_at, duration_us, status_code, outcome, error, response_snippet, final, replay_of
		FROM attempts WHERE event_id = $1 ORDER BY started_at, destination, attempt`, id)
	if err != nil {
		return d, fmt.Errorf("get attempts: %w", interpretError(err))
	}
	d.Attempts, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Attempt, error) {
		var a Attempt
		var us int64
		err := r.Scan(&a.ID, &a.EventID, &a.Destination, &a.Attempt, &a.StartedAt, &us, &a.StatusCode, &a.Outcome, &a.Error, &a.ResponseSnippet, &a.Final, &a.ReplayOf)
		a.Duration = time.Duration(us) * time.Microsecond
		return a, err
	})
	if err != nil {
		return d, fmt.Errorf("get attempts: %w", interpretError(err))
	}
	rows, err = p.pool.Query(ctx, `SELECT id, event_id, destination, subject, reason, attempts, last_status_code, last_error, response_snippet, dead_lettered_at, stream_seq
		FROM dead_letters WHERE event_id = $1 ORDER BY dead_lettered_at`, id)
	if err != nil {
		return d, fmt.Errorf("get dead letters: %w", interpretError(err))
	}
	d.DeadLetters, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (DeadLetter, error) {
		var x DeadLetter
		var seq int64
		err := r.Scan(&x.ID, &x.EventID, &x.Destination, &x.Subject, &x.Reason, &x.Attempts, &x.LastStatusCode, &x.LastError, &x.ResponseSnippet, &x.DeadLetteredAt, &seq)
		x.StreamSeq = uint64(seq)
		return x, err
	})
	if err != nil {
		return d, fmt.Errorf("get dead letters: %w", interpretError(err))
	}
	if d.Event == nil && len(d.Attempts) == 0 && len(d.DeadLetters) == 0 {
		return d, ErrNotFound
	}
	return d, nil
}

// ListRejections implements Store.
func (p *Postgres) ListRejections(ctx context.Context, limit int) ([]Rejection, error) {
	rows, err := p.pool.Query(ctx, `SELECT id, at, source, reason, detail, remote_addr, status_code, event_id
		FROM rejections ORDER BY at DESC, id DESC LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("list rejections: %w", interpretError(err))
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Rejection, error) {
		var j Rejection
		err := r.Scan(&j.ID, &j.At, &j.Source, &j.Reason, &j.Detail, &j.RemoteAddr, &j.StatusCode, &j.EventID)
		return j, err
	})
	if err != nil {
		return nil, fmt.Errorf("list rejections: %w", interpretError(err))
	}
	return out, nil
}

// interpretError marks connection-level failures as ErrUnavailable so the
// writer knows to wait and retry, and keeps Postgres' own message.
func interpretError(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code[:2] {
		case "08", "53", "57", "58": // connection, resources, operator intervention, system
			return fmt.Errorf("%w: %s (SQLSTATE %s)", ErrUnavailable, pgErr.Message, pgErr.Code)
		case "42":
			if pgErr.Code == "42501" { // insufficient privilege: an operator can fix it
				return fmt.Errorf("%w: %s (SQLSTATE %s)", ErrUnavailable, pgErr.Message, pgErr.Code)
			}
		case "40": // serialization failure, deadlock: retry
			return fmt.Errorf("%w: %s (SQLSTATE %s)", ErrUnavailable, pgErr.Message, pgErr.Code)
		}
		return fmt.Errorf("%s (SQLSTATE %s)", pgErr.Message, pgErr.Code)
	}
	var netErr net.Error
	var connErr *pgconn.ConnectError
	if errors.As(err, &netErr) || errors.As(err, &connErr) || pgconn.Timeout(err) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return err
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

func headersJSON(h map[string]string) string {
	if len(h) == 0 {
		return "{}"
	}
	b, _ := json.Marshal(h)
	return string(b)
}
