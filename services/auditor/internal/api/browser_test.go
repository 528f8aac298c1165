package api

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/switchyard/switchyard/services/auditor/auditapi"
	"github.com/switchyard/switchyard/services/auditor/internal/store"
)

// TestAdminAPIRefusesWhatABrowserCanBeMadeToSend sends, to the real HTTP
// server of an API without a token, the requests a web page can make a
// browser send to 127.0.0.1: under a rebound name (DNS rebinding), no-cors
// POSTs with text/plain or form bodies and no custom header, a cross-site
// Origin. None may read a payload, replay a dead letter or change a
// silence. The CLI's client and a program sending the documented header
// still can.
func TestAdminAPIRefusesWhatABrowserCanBeMadeToSend(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, st store.Store) {
		e := newReplayEnv(t, st)
		dlID := e.deadLetter(t, "ev-browser", []byte(`{"card":"4111"}`))
		srv := httptest.NewServer(e.h)
		t.Cleanup(srv.Close)
		replayPath := "/v1/dead-letters/" + url.PathEscape(dlID) + "/replay"

		send := func(t *testing.T, method, path, host string, header map[string]string, body string) (int, string) {
			t.Helper()
			var rd io.Reader
			if body != "" {
				rd = strings.NewReader(body)
			}
			req, err := http.NewRequestWithContext(testCtx(t), method, srv.URL+path, rd)
			if err != nil {
				t.Fatal(err)
			}
			if host != "" {
				req.Host = host
			}
			for k, v := range header {
				req.Header.Set(k, v)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		}
		addr := srv.Listener.Addr().String()
		port := addr[strings.LastIndex(addr, ":"):]
		rebound := "attacker.example" + port
		browser := map[string]string{"Origin": "https://attacker.example", "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"}
		with := func(base map[string]string, kv ...string) map[string]string {
			out := map[string]string{}
			for k, v := range base {
				out[k] = v
			}
			for i := 0; i+1 < len(kv); i += 2 {
				out[kv[i]] = kv[i+1]
			}
			return out
		}

		for _, tt := range []struct {
			name         string
			method, path string
			host         string
			header       map[string]string
			body         string
			want         int
			wantCode     string
		}{
			{"rebound name reads a payload", http.MethodGet, "/v1/events/ev-browser", rebound, nil, "", http.StatusForbidden, auditapi.CodeForbidden},
			{"rebound name lists dead letters", http.MethodGet, "/v1/dead-letters", rebound, nil, "", http.StatusForbidden, auditapi.CodeForbidden},
			{"rebound name replays, same origin, JSON", http.MethodPost, replayPath, rebound,
				map[string]string{"Content-Type": "application/json", "Origin": "http://" + rebound, "Sec-Fetch-Site": "same-origin"}, "{}", http.StatusForbidden, auditapi.CodeForbidden},
			{"no-cors text/plain POST from another site", http.MethodPost, replayPath, "", with(browser, "Content-Type", "text/plain;charset=UTF-8"), "x", http.StatusForbidden, auditapi.CodeForbidden},
			{"no-cors POST without a body from another site", http.MethodPost, replayPath, "", browser, "", http.StatusForbidden, auditapi.CodeForbidden},
			{"text/plain POST without Origin", http.MethodPost, replayPath, "", map[string]string{"Content-Type": "text/plain"}, "x", http.StatusUnsupportedMediaType, auditapi.CodeNotDeliberate},
			{"form POST without Origin", http.MethodPost, replayPath, "", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, "a=b", http.StatusUnsupportedMediaType, auditapi.CodeNotDeliberate},
			{"multipart POST without Origin", http.MethodPost, "/v1/dead-letters/replay", "", map[string]string{"Content-Type": "multipart/form-data; boundary=x"}, "--x--", http.StatusUnsupportedMediaType, auditapi.CodeNotDeliberate},
			{"POST with nothing", http.MethodPost, replayPath, "", nil, "", http.StatusUnsupportedMediaType, auditapi.CodeNotDeliberate},
			{"silence as text/plain JSON", http.MethodPost, "/v1/silences", "", map[string]string{"Content-Type": "text/plain"},
				`{"matchers": ["destination=erp"], "duration": "2h"}`, http.StatusUnsupportedMediaType, auditapi.CodeNotDeliberate},
			{"silence from another site", http.MethodPost, "/v1/silences", "", with(browser, "Content-Type", "application/json"),
				`{"matchers": ["destination=erp"], "duration": "2h"}`, http.StatusForbidden, auditapi.CodeForbidden},
			{"expire a silence with nothing", http.MethodDelete, "/v1/silences/01J0000000000000000000000Z", "", nil, "", http.StatusUnsupportedMediaType, auditapi.CodeNotDeliberate},
		} {
			t.Run(tt.name, func(t *testing.T) {
				code, body := send(t, tt.method, tt.path, tt.host, tt.header, tt.body)
				if code != tt.want || !strings.Contains(body, `"error":"`+tt.wantCode+`"`) {
					t.Errorf("%s %s: %d %s, want %d %s", tt.method, tt.path, code, body, tt.want, tt.wantCode)
				}
				if strings.Contains(body, "4111") {
					t.Errorf("the answer leaks the payload: %s", body)
				}
			})
		}
		if n := len(replays(t, e.js)); n != 0 {
			t.Fatalf("%d replays published by requests a browser could send", n)
		}
		cli := &auditapi.Client{BaseURL: srv.URL}
		if ss, err := cli.ListSilences(testCtx(t)); err != nil || len(ss) != 0 {
			t.Fatalf("silences after the refused requests: %v (%v), want none", ss, err)
		}

		// What programs send still works: the CLI's client, and curl with
		// the documented header.
		if ev, err := cli.GetEvent(testCtx(t), "ev-browser"); err != nil || ev.ID != "ev-browser" {
			t.Fatalf("the CLI reads the event: %+v %v", ev.ID, err)
		}
		if _, err := cli.Replay(testCtx(t), dlID, "cli-1"); err != nil {
			t.Fatalf("the CLI replays: %v", err)
		}
		if code, body := send(t, http.MethodPost, replayPath, "localhost"+port, map[string]string{HeaderRequestedBy: "ops", HeaderIdempotencyKey: "curl-1"}, ""); code != http.StatusAccepted {
			t.Fatalf("curl with Switchyard-Requested-By: %d %s, want 202", code, body)
		}
		s, err := cli.CreateSilence(testCtx(t), auditapi.NewSilence{Matchers: []string{"destination=erp"}, Duration: "1h"})
		if err != nil {
			t.Fatalf("the CLI creates a silence: %v", err)
		}
		if _, err := cli.ExpireSilence(testCtx(t), s.ID, "ops"); err != nil {
			t.Fatalf("the CLI expires a silence: %v", err)
		}
		if n := len(replays(t, e.js)); n != 2 {
			t.Errorf("%d replays, want the CLI's and curl's", n)
		}

		// The client sees the refusal as a typed error.
		rebind := &auditapi.Client{BaseURL: "http://" + rebound, HTTP: &http.Client{Transport: hostRewriter{to: addr}}}
		if _, err := rebind.GetEvent(testCtx(t), "ev-browser"); !errors.Is(err, auditapi.ErrForbidden) {
			t.Errorf("GetEvent under a rebound name = %v, want ErrForbidden", err)
		}
	})
}

// hostRewriter connects to the test server whatever the URL's host, as a
// rebound DNS name would.
type hostRewriter struct{ to string }

func (h hostRewriter) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.URL.Host = h.to
	return http.DefaultTransport.RoundTrip(r)
}
