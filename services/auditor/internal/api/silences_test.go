package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/pkg/testing/natstest"
)

func TestSilencesAPI(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	// The silence routes sit in the admin API's /v1 group, behind its token.
	h := New(Config{JS: js, AdminToken: "silences-admin-token-0123"})
	do := func(method, path, body string) (int, map[string]any) {
		t.Helper()
		req := localRequest(method, path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer silences-admin-token-0123")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		var out map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatalf("%s %s: %d, not a JSON object: %s", method, path, rec.Code, rec.Body)
		}
		return rec.Code, out
	}

	bad := []struct{ body, want string }{
		{`{"duration": "2h"}`, "at least one matcher"},
		{`{"matchers": ["dest=erp"], "duration": "2h"}`, `matcher label "dest"`},
		{`{"matchers": ["destination=~("], "duration": "2h"}`, "destination=~("},
		{`{"matchers": ["destination=erp"]}`, "end time is required"},
		{`{"matchers": ["destination=erp"], "duration": "soon"}`, "invalid duration"},
		{`{"matchers": ["destination=erp"], "duration": "1h", "ends_at": "2030-01-01T00:00:00Z"}`, "not both"},
		{`{"matchers": ["destination=erp"], "ends_at": "2001-01-01T00:00:00Z"}`, "not in the future"},
		{`[1, 2]`, "JSON object"},
	}
	for _, b := range bad {
		code, out := do(http.MethodPost, "/v1/silences", b.body)
		if code != http.StatusBadRequest || out["error"] != "invalid_silence" || !strings.Contains(out["message"].(string), b.want) {
			t.Errorf("POST %s = %d %v, want 400 saying %q", b.body, code, out, b.want)
		}
	}

	code, created := do(http.MethodPost, "/v1/silences", `{"matchers": ["destination=erp", "rule=~Partner.*"], "duration": "2h", "created_by": "alice", "comment": "ERP upgrade"}`)
	if code != http.StatusCreated || created["state"] != "active" || created["created_by"] != "alice" {
		t.Fatalf("POST = %d %v", code, created)
	}
	id := created["id"].(string)
	ends, _ := time.Parse(time.RFC3339Nano, created["ends_at"].(string))
	if d := time.Until(ends); d < 119*time.Minute || d > 2*time.Hour {
		t.Errorf("ends_at %v is not 2h from now", ends)
	}
	if m := created["matchers"].([]any); len(m) != 2 || m[0] != "destination=erp" || m[1] != "rule=~Partner.*" {
		t.Errorf("matchers = %v", m)
	}

	code, list := do(http.MethodGet, "/v1/silences", "")
	if code != http.StatusOK || len(list["silences"].([]any)) != 1 {
		t.Errorf("GET list = %d %v", code, list)
	}
	if code, got := do(http.MethodGet, "/v1/silences/"+id, ""); code != http.StatusOK || got["comment"] != "ERP upgrade" {
		t.Errorf("GET = %d %v", code, got)
	}
	if code, got := do(http.MethodGet, "/v1/silences/01J0000000000000000000000Z", ""); code != http.StatusNotFound || got["error"] != "not_found" {
		t.Errorf("GET unknown = %d %v", code, got)
	}
	if code, _ := do(http.MethodGet, "/v1/silences/..%2F..%2Fx", ""); code != http.StatusNotFound {
		t.Errorf("GET a bad id = %d, want 404", code)
	}
	code, expired := do(http.MethodDelete, "/v1/silences/"+id+"?by=bob", "")
	if code != http.StatusOK || expired["state"] != "expired" || expired["expired_by"] != "bob" {
		t.Errorf("DELETE = %d %v", code, expired)
	}
}
