package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Postgres is the production audit store.
type Postgres struct {
	*reader
	pool *pgxpool.Pool
}

// ErrBadDatabaseURL is returned for a database_url pgx cannot parse: no
// retry fixes it. Its text does not repeat the URL (it may hold a
// password).
var ErrBadDatabaseURL = errors.New("parse database_url: not a valid Postgres connection string")

// CheckPostgresURL reports whether url is a connection string pgx can use
// (else ErrBadDatabaseURL).
func CheckPostgresURL(url string) error {
	if _, err := pgxpool.ParseConfig(url); err != nil {
		return ErrBadDatabaseURL
	}
	return nil
}

// OpenPostgres connects to url. The connection is checked at once so that a
// wrong URL fails at start, with an error that does not repeat the password.
func OpenPostgres(ctx context.Context, url string) (*Postgres, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgx errors can quote the URL; do not pass it on.
		return nil, CheckPostgresURL(url)
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
	return &Postgres{pool: pool, reader: &reader{d: postgresDialect, db: pgQuerier{pool}, wrap: interpretError}}, nil
}

// Close implements Store.
func (p *Postgres) Close() error { p.pool.Close(); return nil }

// migrationLockKey is the advisory lock that serialises migrations across
// auditors starting together.
const migrationLockKey = 0x5357_4954_4348 // "SWITCH"

// Migrate implements Store.
func (p *Postgres) Migrate(ctx context.Context) error { return p.migrateTo(ctx, -1) }

// migrateTo applies the migrations up to version upTo (all when negative).
func (p *Postgres) migrateTo(ctx context.Context, upTo int) error {
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
		return fmt.Errorf("migrate: %w", &SchemaTooNewError{Version: current, Known: len(ms)})
	}
	for _, m := range ms[current:] {
		if upTo >= 0 && m.Version > upTo {
			break
		}
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

// Write implements Store: one round trip. The statements (one per table,
// each a multi-row insert from arrays) are pipelined with a single Sync,
// which Postgres runs as one implicit transaction: all of them commit, or
// none does.
func (p *Postgres) Write(ctx context.Context, b Batch) error {
	r, err := split(b)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrRejected, err)
	}
	batch := pgWriteBatch(r)
	if batch.Len() == 0 {
		return nil
	}
	if err := p.pool.SendBatch(ctx, batch).Close(); err != nil {
		return fmt.Errorf("write audit batch: %w", interpretError(err))
	}
	return nil
}

// strCols makes n columns of len rows each, for unnest arrays.
func strCols(n, rows int) [][]string {
	cols := make([][]string, n)
	for i := range cols {
		cols[i] = make([]string, rows)
	}
	return cols
}

// setRow stores one row's text values across cols.
func setRow(cols [][]string, i int, vals ...string) {
	for j, v := range vals {
		cols[j][i] = v
	}
}

func pgWriteBatch(r tableRows) *pgx.Batch {
	batch := &pgx.Batch{}
	if n := len(r.events); n > 0 {
		txt := strCols(7, n)
		seqs := make([]int64, n)
		times := make([]time.Time, n)
		payloads, hashes := make([][]byte, n), make([][]byte, n)
		sizes := make([]int32, n)
		var pend [][]string = strCols(2, 0)
		var pendAt []time.Time
		for i, e := range r.events {
			setRow(txt, i, e.ID, e.Subject, e.Source, e.Type, e.ContentType, headersJSON(e.Headers), e.Incarnation)
			seqs[i], times[i] = int64(e.StreamSeq), e.ReceivedAt
			payloads[i], hashes[i], sizes[i] = nonNil(e.Payload), payloadHash(e.Payload), int32(len(e.Payload))
			for _, d := range e.Destinations {
				pend[0], pend[1], pendAt = append(pend[0], e.ID), append(pend[1], d), append(pendAt, e.ReceivedAt)
			}
		}
		batch.Queue(`INSERT INTO events (id, subject, source, type, content_type, headers, stream_seq, received_at, payload, payload_sha256, payload_size, incarnation)
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::jsonb[], $7::bigint[], $8::timestamptz[], $9::bytea[], $10::bytea[], $11::integer[], $12::text[])
			ON CONFLICT (id) DO NOTHING`,
			txt[0], txt[1], txt[2], txt[3], txt[4], txt[5], seqs, times, payloads, hashes, sizes, txt[6])
		// A message whose id the events table holds for another message
		// (another sequence or stream incarnation) is kept as a later
		// incarnation; the same message again (a redelivery) is not.
		batch.Queue(`INSERT INTO event_incarnations (event_id, incarnation, stream_seq, subject, received_at, payload_sha256, payload_size)
			SELECT u.id, u.inc, u.seq, u.subject, u.at, u.hash, u.size
			FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::timestamptz[], $6::bytea[], $7::integer[]) AS u(id, inc, seq, subject, at, hash, size)
			JOIN events e ON e.id = u.id
			WHERE e.stream_seq <> u.seq OR e.incarnation <> u.inc
			ON CONFLICT DO NOTHING`,
			txt[0], txt[6], seqs, txt[1], times, hashes, sizes)
		if len(pendAt) > 0 {
			batch.Queue(`INSERT INTO deliveries (event_id, destination, status, updated_at)
				SELECT ev, dest, 'pending', at FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS u(ev, dest, at)
				ON CONFLICT (event_id, destination) DO NOTHING`, pend[0], pend[1], pendAt)
		}
	}
	if n := len(r.attempts); n > 0 {
		txt := strCols(9, n)
		nums, codes := make([]int32, n), make([]int32, n)
		starts := make([]time.Time, n)
		durs, seqs := make([]int64, n), make([]int64, n)
		finals := make([]bool, n)
		for i, a := range r.attempts {
			setRow(txt, i, a.ID, a.EventID, a.Destination, a.Outcome, a.Error, a.ResponseSnippet, a.ReplayOf, a.TraceID, a.TransformVersion)
			nums[i], codes[i], starts[i], durs[i], finals[i], seqs[i] = int32(a.Attempt), int32(a.StatusCode), a.StartedAt, a.Duration.Microseconds(), a.Final, int64(a.StreamSeq)
		}
		batch.Queue(`INSERT INTO attempts (id, event_id, destination, outcome, error, response_snippet, replay_of, trace_id, transform_version, attempt, status_code, started_at, duration_us, final, stream_seq)
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::integer[], $11::integer[], $12::timestamptz[], $13::bigint[], $14::boolean[], $15::bigint[])
			ON CONFLICT (id) DO NOTHING`,
			txt[0], txt[1], txt[2], txt[3], txt[4], txt[5], txt[6], txt[7], txt[8], nums, codes, starts, durs, finals, seqs)
	}
	if n := len(r.deadLetters); n > 0 {
		txt := strCols(8, n)
		atts, codes := make([]int32, n), make([]int32, n)
		ats := make([]time.Time, n)
		seqs := make([]int64, n)
		for i, d := range r.deadLetters {
			setRow(txt, i, d.ID, d.EventID, d.Destination, d.Subject, d.Reason, d.LastError, d.ResponseSnippet, d.ReplayOf)
			atts[i], codes[i], ats[i], seqs[i] = int32(d.Attempts), int32(d.LastStatusCode), d.DeadLetteredAt, int64(d.StreamSeq)
		}
		batch.Queue(`INSERT INTO dead_letters (id, event_id, destination, subject, reason, last_error, response_snippet, replay_of, attempts, last_status_code, dead_lettered_at, stream_seq)
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::integer[], $10::integer[], $11::timestamptz[], $12::bigint[])
			ON CONFLICT (id) DO NOTHING`,
			txt[0], txt[1], txt[2], txt[3], txt[4], txt[5], txt[6], txt[7], atts, codes, ats, seqs)
	}
	if n := len(r.replays); n > 0 {
		txt := strCols(7, n)
		seqs := make([]int64, n)
		ats := make([]time.Time, n)
		for i, x := range r.replays {
			setRow(txt, i, x.ID, x.DeadLetterID, x.EventID, x.Destination, x.Subject, x.RequestedBy)
			seqs[i], ats[i] = int64(x.StreamSeq), x.At
		}
		batch.Queue(`INSERT INTO replays (id, dead_letter_id, event_id, destination, subject, requested_by, stream_seq, at)
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[], $8::timestamptz[])
			ON CONFLICT (id) DO NOTHING`, txt[0], txt[1], txt[2], txt[3], txt[4], txt[5], seqs, ats)
	}
	if n := len(r.rejections); n > 0 {
		txt := strCols(8, n)
		codes := make([]int32, n)
		sizes := make([]int64, n)
		ats := make([]time.Time, n)
		for i, j := range r.rejections {
			setRow(txt, i, j.ID, j.Source, j.Reason, j.Detail, j.RemoteAddr, j.EventID, j.APIKey, j.UserAgent)
			codes[i], sizes[i], ats[i] = int32(j.StatusCode), j.BodySize, j.At
		}
		batch.Queue(`INSERT INTO rejections (id, source, reason, detail, remote_addr, event_id, api_key, user_agent, status_code, body_size, at)
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::integer[], $10::bigint[], $11::timestamptz[])
			ON CONFLICT (id) DO NOTHING`, txt[0], txt[1], txt[2], txt[3], txt[4], txt[5], txt[6], txt[7], codes, sizes, ats)
	}
	if n := len(r.circuits); n > 0 {
		txt := strCols(7, n)
		ats := make([]time.Time, n)
		for i, c := range r.circuits {
			setRow(txt, i, c.ID, c.Destination, c.From, c.To, c.Reason, c.LastError)
			ats[i] = c.At
		}
		batch.Queue(`INSERT INTO circuit_changes (id, destination, from_state, to_state, reason, last_error, at)
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[])
			ON CONFLICT (id) DO NOTHING`, txt[0], txt[1], txt[2], txt[3], txt[4], txt[5], ats)
	}
	if n := len(r.others); n > 0 {
		txt := strCols(5, n)
		ats := make([]time.Time, n)
		for i, o := range r.others {
			setRow(txt, i, o.ID, o.Service, o.Kind, o.Key, string(o.Detail))
			ats[i] = o.At
		}
		batch.Queue(`INSERT INTO audit_records (id, service, kind, key, detail, at)
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::jsonb[], $6::timestamptz[])
			ON CONFLICT (id) DO NOTHING`, txt[0], txt[1], txt[2], txt[3], txt[4], ats)
	}
	if n := len(r.deliveries); n > 0 {
		txt := strCols(7, n)
		updated := make([]time.Time, n)
		markSeq, infoSeq, dlSeq := make([]int64, n), make([]int64, n), make([]int64, n)
		markKind, markN, infoN, codes := make([]int32, n), make([]int32, n), make([]int32, n), make([]int32, n)
		first, last, delivered := make([]pgtype.Timestamptz, n), make([]pgtype.Timestamptz, n), make([]pgtype.Timestamptz, n)
		for i, c := range r.deliveries {
			setRow(txt, i, c.EventID, c.Destination, c.Status, c.ReplayOf, c.LastError, c.DeadLetterID)
			updated[i], markSeq[i], markKind[i], markN[i] = c.UpdatedAt, int64(c.Mark.seq), int32(c.Mark.kind), int32(c.Mark.n)
			infoSeq[i], infoN[i], codes[i], dlSeq[i] = c.InfoSeq, int32(c.InfoN), int32(c.LastStatusCode), c.DeadLetterSeq
			first[i], last[i], delivered[i] = pgTime(c.FirstAttemptAt), pgTime(c.LastAttemptAt), pgTime(c.DeliveredAt)
		}
		src := `SELECT u.event_id, u.destination, u.status, u.updated_at, u.replay_of, u.mark_seq, u.mark_kind, u.mark_n,
			u.last_status_code, u.last_error, u.info_seq, u.info_n, u.first_attempt_at, u.last_attempt_at, u.delivered_at, u.dead_letter_id, u.dead_letter_seq, ` +
			newDeliveryCounts("u.event_id", "u.destination", "u.mark_seq") + ` FROM unnest(
			$1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[], $8::bigint[], $9::smallint[], $10::integer[],
			$11::integer[], $12::bigint[], $13::integer[], $14::timestamptz[], $15::timestamptz[], $16::timestamptz[], $17::bigint[])
			AS u(event_id, destination, status, replay_of, last_error, dead_letter_id, updated_at, mark_seq, mark_kind, mark_n,
			last_status_code, info_seq, info_n, first_attempt_at, last_attempt_at, delivered_at, dead_letter_seq)`
		batch.Queue(mergeDeliverySQL(postgresDialect, src),
			txt[0], txt[1], txt[2], txt[3], txt[4], txt[5], updated, markSeq, markKind, markN, codes, infoSeq, infoN, first, last, delivered, dlSeq)
	}
	return batch
}

func pgTime(t *time.Time) pgtype.Timestamptz {
	if t == nil {
		return pgtype.Timestamptz{}
	}
	return pgtype.Timestamptz{Time: *t, Valid: true}
}

// Park implements Store.
func (p *Postgres) Park(ctx context.Context, ps []Parked) error {
	batch := &pgx.Batch{}
	for _, x := range ps {
		batch.Queue(`INSERT INTO parked (id, stream, subject, stream_seq, data, headers, error, parked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
			ON CONFLICT (id) DO NOTHING`, safeText(x.ID), safeText(x.Stream), safeText(x.Subject), int64(x.StreamSeq), nonNil(x.Data), headersJSON(safeHeaders(x.Headers)), safeText(x.Error), x.ParkedAt)
	}
	if err := p.pool.SendBatch(ctx, batch).Close(); err != nil {
		return fmt.Errorf("park: %w", interpretError(err))
	}
	return nil
}

// pgQuerier adapts the pool to the shared reader.
type pgQuerier struct{ pool *pgxpool.Pool }

func (q pgQuerier) query(ctx context.Context, sql string, args ...any) (rows, error) {
	return q.pool.Query(ctx, sql, args...)
}

func (q pgQuerier) exec(ctx context.Context, sql string, args ...any) (int64, error) {
	tag, err := q.pool.Exec(ctx, sql, args...)
	return tag.RowsAffected(), err
}

// interpretError sorts database errors for the writer, keeping Postgres'
// own message: ErrUnavailable when waiting (or an operator) can fix it,
// ErrRejected when the data itself is refused.
func interpretError(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code[:2] {
		case "22", "23", "54": // data exception, integrity constraint, program limit (a value too large)
			return fmt.Errorf("%w: %s (SQLSTATE %s)", ErrRejected, pgErr.Message, pgErr.Code)
		case "08", "53", "55", "57", "58", "40", "42":
			// Connection, resources, lock not available, operator
			// intervention, system, serialization/deadlock, and missing
			// privileges or schema: all fixable without touching the data.
			return fmt.Errorf("%w: %s (SQLSTATE %s)", ErrUnavailable, pgErr.Message, pgErr.Code)
		}
		return fmt.Errorf("%s (SQLSTATE %s)", pgErr.Message, pgErr.Code)
	}
	var netErr net.Error
	var connErr *pgconn.ConnectError
	if errors.As(err, &netErr) || errors.As(err, &connErr) || pgconn.Timeout(err) || errors.Is(err, context.DeadlineExceeded) ||
		pgconn.SafeToRetry(err) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
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
