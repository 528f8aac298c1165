package tests

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchyard/switchyard/pkg/testing/natscluster"
	"github.com/switchyard/switchyard/pkg/testing/waitfor"
)

// privatePostgres is a throwaway Postgres server of the test's own: initdb
// into a temporary directory and the server on a free loopback port, so
// that a scenario can restart it without touching the machine's shared
// cluster, which other tests use. Run as root, the server runs as the
// postgres user (Postgres refuses root).
type privatePostgres struct {
	bin, data, port string
	// asUser wraps a command to run as the server's user (runuser), or
	// leaves it as it is when the test does not run as root.
	asUser func(name string, args ...string) *exec.Cmd
}

// postgresBinDir finds the server's programs: PG_BIN_DIR, else the newest
// /usr/lib/postgresql/<version>/bin.
func postgresBinDir(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("PG_BIN_DIR"); d != "" {
		return d
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int {
		va, _ := strconv.Atoi(filepath.Base(filepath.Dir(a)))
		vb, _ := strconv.Atoi(filepath.Base(filepath.Dir(b)))
		return vb - va
	})
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d
		}
	}
	t.Fatal("no Postgres server programs (initdb, pg_ctl): install postgresql or set PG_BIN_DIR")
	return ""
}

// startPrivatePostgres creates and starts a server; t.Cleanup stops it and
// removes its files.
func startPrivatePostgres(t *testing.T) *privatePostgres {
	t.Helper()
	p := &privatePostgres{bin: postgresBinDir(t), asUser: exec.Command}
	// Not under t.TempDir: its parents are root's alone, and the server's
	// user must reach the data directory.
	dir, err := os.MkdirTemp("", "faults-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	p.data = filepath.Join(dir, "data")
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root, the private Postgres needs the postgres user: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
		p.asUser = func(name string, args ...string) *exec.Cmd {
			return exec.Command("runuser", append([]string{"-u", "postgres", "--", name}, args...)...)
		}
	}
	p.port = strconv.Itoa(natscluster.FreePort(t))
	p.run(t, "initdb", "-D", p.data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
	// fsync stays on: a restart must keep what was committed.
	p.run(t, "pg_ctl", "-D", p.data, "-l", filepath.Join(dir, "server.log"), "-w", "-t", "60",
		"-o", fmt.Sprintf("-p %s -k %s -c listen_addresses=127.0.0.1 -c max_connections=200", p.port, dir), "start")
	t.Cleanup(func() {
		stop := p.asUser(filepath.Join(p.bin, "pg_ctl"), "-D", p.data, "-m", "immediate", "-w", "stop")
		_ = stop.Run()
	})
	p.waitAccepting(t)
	return p
}

// URL is the server's connection URL (its postgres database).
func (p *privatePostgres) URL() string {
	return "postgres://postgres@127.0.0.1:" + p.port + "/postgres?sslmode=disable"
}

// restart stops the server as an operator does (fast: every connection
// ended, in-flight transactions rolled back) and starts it again on the
// same port and data.
func (p *privatePostgres) restart(t *testing.T) {
	t.Helper()
	p.run(t, "pg_ctl", "-D", p.data, "-l", filepath.Join(filepath.Dir(p.data), "server.log"), "-m", "fast", "-w", "-t", "60", "restart")
	p.waitAccepting(t)
}

// run runs one of the server's programs. Its output goes to a file, not a
// pipe: the server pg_ctl starts would hold a pipe open for good.
func (p *privatePostgres) run(t *testing.T, prog string, args ...string) {
	t.Helper()
	out, err := os.CreateTemp(filepath.Dir(p.data), prog+"-*.out")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd := p.asUser(filepath.Join(p.bin, prog), args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		b, _ := os.ReadFile(out.Name())
		t.Fatalf("%s %v: %v\n%s", prog, args, err, b)
	}
}

func (p *privatePostgres) waitAccepting(t *testing.T) {
	t.Helper()
	waitfor.Within(t, time.Minute, "the private Postgres accepting connections", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, p.URL())
		if err != nil {
			return false
		}
		_ = c.Close(ctx)
		return true
	})
}
