package adminguard_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/switchyard/switchyard/pkg/adminguard"
)

func TestLoopback(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		remote, host string
		wantErr      error
	}{
		{"127.0.0.1:5000", "127.0.0.1:8081", nil},
		{"[::1]:5000", "[::1]:8081", nil},
		{"127.0.0.1:5000", "localhost:8081", nil},
		{"127.0.0.1:5000", "localhost", nil},
		{"127.0.0.1:5000", "attacker.example:8081", adminguard.ErrHostNotLoopback},
		{"127.0.0.1:5000", "127.0.0.1.attacker.example", adminguard.ErrHostNotLoopback},
		{"127.0.0.1:5000", "", adminguard.ErrHostNotLoopback},
		{"192.0.2.7:5000", "127.0.0.1:8081", adminguard.ErrRemoteClient},
	} {
		r := httptest.NewRequest(http.MethodGet, "/v1/events", nil)
		r.RemoteAddr, r.Host = tt.remote, tt.host
		if err := adminguard.Loopback(r); !errors.Is(err, tt.wantErr) {
			t.Errorf("Loopback(%s, Host %q) = %v, want %v", tt.remote, tt.host, err, tt.wantErr)
		}
	}
}

func TestSameOriginAndDeliberate(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name           string
		header         map[string]string
		wantOrigin     error
		wantDeliberate error
	}{
		{"curl with JSON", map[string]string{"Content-Type": "application/json; charset=utf-8"}, nil, nil},
		{"problem+json", map[string]string{"Content-Type": "application/merge-patch+json"}, nil, nil},
		{"curl with the header", map[string]string{"Switchyard-Requested-By": "ops"}, nil, nil},
		{"no-cors text/plain", map[string]string{"Content-Type": "text/plain", "Origin": "https://a.example", "Sec-Fetch-Site": "cross-site"},
			adminguard.ErrCrossSite, adminguard.ErrNotDeliberate},
		{"form", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, nil, adminguard.ErrNotDeliberate},
		{"opaque origin", map[string]string{"Origin": "null", "Content-Type": "application/json"}, adminguard.ErrCrossSite, nil},
		{"same-site sibling", map[string]string{"Sec-Fetch-Site": "same-site", "Content-Type": "application/json"}, adminguard.ErrCrossSite, nil},
		{"same origin", map[string]string{"Origin": "http://127.0.0.1:8081", "Sec-Fetch-Site": "same-origin", "Content-Type": "application/json"}, nil, nil},
		{"nothing", nil, nil, adminguard.ErrNotDeliberate},
	} {
		r := httptest.NewRequest(http.MethodPost, "/v1/dead-letters/x/replay", nil)
		r.Host = "127.0.0.1:8081"
		for k, v := range tt.header {
			r.Header.Set(k, v)
		}
		if err := adminguard.SameOrigin(r); !errors.Is(err, tt.wantOrigin) {
			t.Errorf("%s: SameOrigin = %v, want %v", tt.name, err, tt.wantOrigin)
		}
		if err := adminguard.Deliberate(r, "Switchyard-Requested-By"); !errors.Is(err, tt.wantDeliberate) {
			t.Errorf("%s: Deliberate = %v, want %v", tt.name, err, tt.wantDeliberate)
		}
	}
	for m, want := range map[string]bool{http.MethodGet: false, http.MethodHead: false, http.MethodOptions: false,
		http.MethodPost: true, http.MethodDelete: true, http.MethodPut: true, http.MethodPatch: true} {
		if got := adminguard.ChangesState(m); got != want {
			t.Errorf("ChangesState(%s) = %v", m, got)
		}
	}
}
