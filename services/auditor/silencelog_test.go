package auditor_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
	"github.com/switchyard/switchyard/pkg/testing/waitfor"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/auditor"
	"github.com/switchyard/switchyard/services/auditor/auditapi"
)

// Creating a silence and ending it early are audit records (who, when,
// which matchers), listed by GET /v1/records?kind=silence. They come from
// the silences bucket, so an auditor that starts again (or a second one)
// records nothing twice.
func TestSilenceChangesAreAudited(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	dir := t.TempDir()
	start := func() (*httptest.Server, context.CancelFunc) {
		a, err := auditor.New(js, auditlog.NewEmitter(js, "auditor"), auditor.Config{Auditor: config.Auditor{Listen: "127.0.0.1:0"}, DataDir: dir, Logger: natstest.Logger(t)})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx) }()
		api := httptest.NewServer(a.Handler())
		return api, func() {
			api.Close()
			cancel()
			if err := <-done; err != nil {
				t.Errorf("auditor: %v", err)
			}
		}
	}
	api, stop := start()

	sil := do[auditapi.Silence](t, api, http.MethodPost, "/v1/silences",
		`{"matchers":["destination=erp"],"duration":"2h","created_by":"alice","comment":"erp maintenance"}`, http.StatusCreated)
	records := func(want int) []auditapi.Record {
		var got []auditapi.Record
		waitfor.True(t, fmt.Sprintf("%d silence records", want), func() bool {
			got = do[auditapi.List[auditapi.Record]](t, api, http.MethodGet, "/v1/records?kind=silence", "", http.StatusOK).Items
			return len(got) >= want
		})
		return got
	}
	created := records(1)[0]
	if created.ID != "silence:"+sil.ID+":created" || created.Key != sil.ID || created.Service != "auditor" {
		t.Errorf("created record = %+v", created)
	}
	if c := change(t, created); c.GetAction() != "created" || c.GetBy() != "alice" || c.GetSilence().GetComment() != "erp maintenance" ||
		len(c.GetSilence().GetMatchers()) != 1 || c.GetSilence().GetMatchers()[0].GetValue() != "erp" {
		t.Errorf("created = %v", c)
	}

	do[auditapi.Silence](t, api, http.MethodDelete, "/v1/silences/"+sil.ID+"?by=bob", "", http.StatusOK)
	expired := records(2)[0]
	if c := change(t, expired); expired.ID != "silence:"+sil.ID+":expired" || c.GetAction() != "expired" || c.GetBy() != "bob" ||
		!expired.At.Equal(c.GetSilence().GetEndsAt().AsTime()) {
		t.Errorf("expired record = %+v: %v", expired, c)
	}

	// Again, after a restart: the new auditor reads the bucket from the
	// start. Once the record of a silence created after the restart is
	// listed, it has handed over the older ones too (one goroutine, in
	// order), and they were not recorded twice.
	stop()
	api, stop = start()
	t.Cleanup(stop)
	later := do[auditapi.Silence](t, api, http.MethodPost, "/v1/silences", `{"matchers":["rule=PartnerDown"],"duration":"1h"}`, http.StatusCreated)
	if got := records(3); len(got) != 3 || got[0].ID != "silence:"+later.ID+":created" || change(t, got[0]).GetBy() != "api" {
		t.Errorf("after a restart: %+v", got)
	}
	if n := len(natstest.AuditRecords(t, js, "audit.silence.>")); n != 3 {
		t.Errorf("AUDIT holds %d silence records, want 3 (the ones seen again are deduplicated)", n)
	}
}

func change(t *testing.T, r auditapi.Record) *switchyardv1.SilenceChanged {
	t.Helper()
	var rec switchyardv1.AuditRecord
	if err := protojson.Unmarshal(r.Detail, &rec); err != nil {
		t.Fatalf("record %s: %v", r.ID, err)
	}
	return rec.GetSilenceChanged()
}

// do sends a request to the API and decodes its answer, which must have
// the status want.
func do[T any](t *testing.T, api *httptest.Server, method, path, body string, want int) T {
	t.Helper()
	req, err := http.NewRequest(method, api.URL+path, bytes.NewBufferString(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out T
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != want {
		t.Fatalf("%s %s: %d (%v), want %d", method, path, resp.StatusCode, err, want)
	}
	return out
}
