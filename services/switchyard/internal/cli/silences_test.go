package cli_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os/user"
	"strings"
	"testing"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
	"github.com/switchyard/switchyard/services/auditor"
	"github.com/switchyard/switchyard/services/auditor/auditapi"
	"github.com/switchyard/switchyard/services/switchyard/internal/cli"
)

// The silences subcommands against the auditor's real admin API (embedded
// store, embedded NATS).
func TestSilencesCommands(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	run := silencesAPI(t)

	out, err := run("add", "--match", "destination=erp", "-m", "rule=~Partner.*", "--for", "2h", "--comment", "ERP upgrade", "--by", "alice")
	if err != nil || !strings.Contains(out, "active") || !strings.Contains(out, "destination=erp,rule=~Partner.*") || !strings.Contains(out, "ERP upgrade") {
		t.Fatalf("add: %v\n%s", err, out)
	}
	id := strings.Fields(strings.Split(out, "\n")[1])[0]

	if out, err := run("list"); err != nil || !strings.Contains(out, id) || !strings.Contains(out, "alice") {
		t.Errorf("list: %v\n%s", err, out)
	}
	if out, err := run("expire", id, "--by", "bob"); err != nil || !strings.Contains(out, "expired") || !strings.Contains(out, "expired by bob") {
		t.Errorf("expire: %v\n%s", err, out)
	}

	// What is wrong comes back from the API, said so a person can fix it:
	// the message naming the bad label is what is under test.
	_, err = run("add", "--match", "dest=erp", "--for", "1h")
	var apiErr *auditapi.Error
	if !errors.As(err, &apiErr) || !errors.Is(err, auditapi.ErrInvalidSilence) || apiErr.Status != http.StatusBadRequest ||
		!strings.Contains(apiErr.Message, `invalid silence: matcher label "dest"`) {
		t.Errorf("add with a bad matcher: %v", err)
	}
	// A usage error names the flag to give (its text is the behaviour).
	if _, err := run("add", "--match", "destination=erp"); err == nil || !strings.Contains(err.Error(), "--for") {
		t.Errorf("add without an end: %v", err)
	}
	if _, err := run("expire", "01J0000000000000000000000Z"); !errors.Is(err, auditapi.ErrNotFound) {
		t.Errorf("expire unknown: %v, want %v", err, auditapi.ErrNotFound)
	}
	var out2 bytes.Buffer
	err = cli.Execute(ctx, []string{"silences", "--url", "http://127.0.0.1:1", "list"}, &out2, &out2)
	if !errors.Is(err, auditapi.ErrUnreachable) {
		t.Errorf("list with no API: %v, want %v", err, auditapi.ErrUnreachable)
	}
}

// silencesAPI starts the auditor's admin API (embedded store, embedded
// NATS) and returns a function that runs `switchyard silences` against it.
func silencesAPI(t *testing.T) func(args ...string) (string, error) {
	t.Helper()
	ctx := context.Background()
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	aud, err := auditor.New(js, auditlog.NewEmitter(js, "auditor"), auditor.Config{DataDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = aud.Close() })
	srv := httptest.NewServer(aud.Handler())
	t.Cleanup(srv.Close)
	return func(args ...string) (string, error) {
		var out bytes.Buffer
		err := cli.Execute(ctx, append([]string{"silences", "--url", srv.URL}, args...), &out, &out)
		return out.String(), err
	}
}

// Without --by, a silence is made and ended in the operator's login name
// even where $USER is unset (containers, cron), never as "api".
func TestSilencesByDefaultsToTheLoginName(t *testing.T) {
	t.Setenv("USER", "") // not parallel: it changes the environment
	want := "cli"
	if me, err := user.Current(); err == nil && me.Username != "" {
		want = me.Username
	}
	run := silencesAPI(t)
	out, err := run("add", "--match", "destination=erp", "--for", "1h")
	if err != nil {
		t.Fatalf("add: %v\n%s", err, out)
	}
	id := strings.Fields(strings.Split(out, "\n")[1])[0]
	if out, err = run("expire", id); err != nil {
		t.Fatalf("expire: %v\n%s", err, out)
	}
	if !strings.Contains(out, " "+want+" (expired by "+want+")") || strings.Contains(out, "api") {
		t.Errorf("expire printed:\n%s\nwant created and expired by %q", out, want)
	}
}
