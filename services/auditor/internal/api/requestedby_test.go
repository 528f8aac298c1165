package api

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/switchyard/switchyard/pkg/testing/natstest"
	"github.com/switchyard/switchyard/services/auditor/internal/store"
)

// TestReplayRequestedByIsCleanedAndRecorded sends a replay through the
// real HTTP server with a Switchyard-Requested-By that is invalid UTF-8,
// carries a tab and is far too long: the replay must go out with its
// Replayed record (which protobuf refused to marshal before), the name
// kept clean and bounded.
func TestReplayRequestedByIsCleanedAndRecorded(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, st store.Store) {
		e := newReplayEnv(t, st)
		dlID := e.deadLetter(t, "ev-by", []byte(`{"order":7}`))
		srv := httptest.NewServer(e.h)
		t.Cleanup(srv.Close)

		by := "ops\xff\xfe\tbot " + strings.Repeat("x", 4000)
		req, err := http.NewRequestWithContext(testCtx(t), http.MethodPost, srv.URL+"/v1/dead-letters/"+dlID+"/replay", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(HeaderRequestedBy, by)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("replay: %d, want 202", resp.StatusCode)
		}
		if n := len(replays(t, e.js)); n != 1 {
			t.Fatalf("%d replays published, want 1", n)
		}
		recs := natstest.AuditRecords(t, e.js, "audit.replayed.>")
		if len(recs) != 1 {
			t.Fatalf("%d Replayed records in AUDIT, want 1: the replay went out unrecorded", len(recs))
		}
		got := recs[0].GetReplayed().GetRequestedBy()
		if !utf8.ValidString(got) || len(got) > MaxRequestedBy || !strings.HasPrefix(got, "ops\uFFFD bot x") || strings.Contains(got, "\t") {
			t.Errorf("requested_by = %q (%d bytes), want the cleaned name within %d bytes", got, len(got), MaxRequestedBy)
		}
		d, err := st.GetEvent(testCtx(t), "ev-by")
		if err != nil || len(d.Replays) != 1 || d.Replays[0].RequestedBy != got {
			t.Errorf("stored replays %+v (%v), want one by %q", d.Replays, err, got)
		}
	})
}

func TestCleanRequestedBy(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"":           "api",
		"  \t ":      "api",
		"alice":      "alice",
		" alice\r\n": "alice",
		"bob\xffcat": "bob\uFFFDcat",
		"x\x00y":     "x y",
	} {
		if got := CleanRequestedBy(in); got != want {
			t.Errorf("CleanRequestedBy(%q) = %q, want %q", in, got, want)
		}
	}
}
