package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Tag returns dbURL with a fresh application_name, and that name: the
// connections made with the URL can then be told apart on the server
// (TerminateBackends).
func Tag(t testing.TB, dbURL string) (tagged, name string) {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatalf("database URL is not a URL: %v", err)
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name = "pgtest_" + hex.EncodeToString(b)
	q := u.Query()
	q.Set("application_name", name)
	u.RawQuery = q.Encode()
	return u.String(), name
}

// TerminateBackends ends the server process of every connection made with
// application_name name (pg_terminate_backend), as a Postgres restart ends
// its clients' connections while new ones are taken at once. It returns
// how many it ended.
func TerminateBackends(t testing.TB, name string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, BaseURL())
	if err != nil {
		t.Fatalf("Postgres is not reachable at TEST_DATABASE_URL (%s): %v", redact(BaseURL()), err)
	}
	defer conn.Close(ctx)
	var n int
	err = conn.QueryRow(ctx, `SELECT count(*) FROM (
		SELECT pg_terminate_backend(pid) AS ended FROM pg_stat_activity
		WHERE application_name = $1 AND pid <> pg_backend_pid()) t WHERE ended`, name).Scan(&n)
	if err != nil {
		t.Fatalf("terminate the backends of %s: %v", name, err)
	}
	return n
}
