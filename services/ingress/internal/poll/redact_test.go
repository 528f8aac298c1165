package poll

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/outbound"
)

// TestRoundRecordsNoCredentialTheSourceEchoes: a polled API that quotes
// the request in its answer (a 401 page, a body that is not JSON) must not
// put the source's bearer token or static key into the round's record.
func TestRoundRecordsNoCredentialTheSourceEchoes(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	const token, key = "poll-bearer-8c1d2e", "poll-key-44aa19"
	var notJSON atomic.Bool
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		quoted := fmt.Sprintf("you sent Authorization=%s and X-Api-Key: %s", r.Header.Get("Authorization"), r.Header.Get("X-Api-Key"))
		if notJSON.Load() {
			_, _ = w.Write([]byte("<html>" + quoted + "</html>"))
			return
		}
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(quoted))
	}))
	t.Cleanup(echo.Close)
	src := pollSource(t, &fakePartner{Server: echo}, func(sp *config.SourcePoll) {
		sp.Auth = config.Auth{Type: config.AuthBearer, Token: token}
		sp.Headers = map[string]config.Secret{"X-Api-Key": key}
	})
	p := h.newPoller(h.js, h.srv, Config{Sources: []config.Source{src}})
	s := p.sources[0]
	for _, bad := range []bool{false, true} {
		notJSON.Store(bad)
		r := s.round(context.Background(), p.store, p.cursors, nil)
		if r.Status == StatusOK || !strings.Contains(r.Snippet, "you sent") || !strings.Contains(r.Snippet, outbound.Redacted) {
			t.Fatalf("round %+v, want a failure whose snippet quotes the request, redacted", r)
		}
		if strings.Contains(r.Snippet, token) || strings.Contains(r.Snippet, key) {
			t.Errorf("the round's snippet keeps a credential: %q", r.Snippet)
		}
		if rec := r.Record(); strings.Contains(rec.String(), token) || strings.Contains(rec.String(), key) {
			t.Errorf("the round's record keeps a credential: %v", rec)
		}
	}
}
