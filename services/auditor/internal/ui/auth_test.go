package ui

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"
)

const testToken = "console-admin-token-0123456789"

func sessionCookieOf(r response) *http.Cookie {
	for _, c := range r.Cookies() {
		if c.Name == sessionCookie {
			return c
		}
	}
	return nil
}

func TestWithoutTokenLoopbackOnly(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sqlite(t))

	// A client elsewhere (as a proxy on this host would forward it) is
	// refused, whatever it asks for.
	for _, path := range []string{"/ui/", "/ui/login", "/ui/static/console.css"} {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		req.RemoteAddr = "203.0.113.9:40000"
		rec := httptest.NewRecorder()
		e.console.ServeHTTP(rec, req)
		if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "clients on this machine only") {
			t.Errorf("GET %s from 203.0.113.9 = %d %s, want 403", path, rec.Code, rec.Body)
		}
	}
	// A name that is not loopback, as a DNS rebinding page sends it.
	for _, host := range []string{"attacker.example", "attacker.example:8081", "127.0.0.1.nip.io", "localhost.attacker.example"} {
		r := e.get(t, "/ui/login", "Host", host)
		if r.StatusCode != http.StatusForbidden || !strings.Contains(r.body, "DNS rebinding") {
			t.Errorf("Host %s = %d, want 403 naming DNS rebinding", host, r.StatusCode)
		}
	}
	port := strings.TrimPrefix(e.srv.URL, "http://127.0.0.1")
	for _, host := range []string{"localhost" + port, "127.0.0.1" + port, "127.0.0.2" + port} {
		if r := e.get(t, "/ui/login", "Host", host); r.StatusCode != http.StatusOK {
			t.Errorf("Host %s = %d, want 200", host, r.StatusCode)
		}
	}

	// The login form asks for a name only.
	page := parse(t, e.get(t, "/ui/login").body)
	if find(page, byID("token")) != nil || find(page, byID("name")) == nil {
		t.Error("the login form without an admin token should ask for the name only")
	}
	if r := e.login(t, "   ", ""); r.StatusCode != http.StatusBadRequest || !strings.Contains(r.body, "give your name") {
		t.Errorf("login without a name = %d", r.StatusCode)
	}
	r := e.login(t, "alice", "")
	if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/ui/" || sessionCookieOf(r) == nil {
		t.Fatalf("login = %d %v", r.StatusCode, r.Header)
	}
	if r := e.get(t, "/ui/"); r.StatusCode != http.StatusOK || !strings.Contains(r.body, "alice") {
		t.Errorf("overview after login = %d", r.StatusCode)
	}
}

func TestLoginWithToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sqlite(t), withToken(testToken))

	// Without a session: to the login page, remembering where to go.
	r := e.get(t, "/ui/events?status=dead_lettered")
	if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/ui/login?next=%2Fui%2Fevents%3Fstatus%3Ddead_lettered" {
		t.Errorf("GET without a session = %d %s", r.StatusCode, r.Header.Get("Location"))
	}
	// htmx is told to go there.
	r = e.get(t, "/ui/overview/live", "HX-Request", "true")
	if r.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(r.Header.Get("HX-Redirect"), "/ui/login") {
		t.Errorf("htmx GET without a session = %d %q", r.StatusCode, r.Header.Get("HX-Redirect"))
	}
	// A link followed from another site (Slack): SameSite=Strict kept
	// the cookie back, so the page asks for itself again from here.
	r = e.get(t, "/ui/event?id=shop:1", "Sec-Fetch-Site", "cross-site")
	if r.StatusCode != http.StatusOK || !strings.Contains(r.body, `url=/ui/event?id=shop:1`) {
		t.Errorf("cross-site link without a session = %d %s", r.StatusCode, r.body)
	}
	// The API's token is required, not just a name; the page says which.
	if !strings.Contains(e.get(t, "/ui/login").body, `id="token"`) {
		t.Error("the login form does not ask for the token")
	}
	for _, bad := range []string{"", "wrong-token-wrong-token", testToken + "x"} {
		r := e.login(t, "mallory", bad)
		if r.StatusCode != http.StatusUnauthorized || sessionCookieOf(r) != nil || !strings.Contains(r.body, "not the auditor") {
			t.Errorf("login with token %q = %d, cookie %v", bad, r.StatusCode, sessionCookieOf(r))
		}
	}
	// A login post without the form's anti-forgery token.
	fresh := e.newClient(t)
	r = e.do(t, fresh, http.MethodPost, "/ui/login", url.Values{nameField: {"alice"}, tokenField: {testToken}})
	if r.StatusCode != http.StatusForbidden || sessionCookieOf(r) != nil {
		t.Errorf("login without the login form = %d", r.StatusCode)
	}

	r = e.login(t, "alice", testToken)
	ck := sessionCookieOf(r)
	if r.StatusCode != http.StatusSeeOther || ck == nil {
		t.Fatalf("login = %d %v", r.StatusCode, r.Header)
	}
	if !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/ui" || ck.MaxAge <= 0 {
		t.Errorf("session cookie = %+v, want HttpOnly, SameSite=Strict, Path=/ui, a lifetime", ck)
	}
	if strings.Contains(ck.Value, testToken) || strings.Contains(ck.Value, "Y29uc29sZS1hZG1pbi10b2tl") {
		t.Error("the session cookie holds the admin token")
	}
	if r := e.get(t, "/ui/"); r.StatusCode != http.StatusOK {
		t.Errorf("overview with a session = %d", r.StatusCode)
	}
	// With a token, clients elsewhere may use the console.
	req := httptest.NewRequest(http.MethodGet, "/ui/login", nil)
	req.RemoteAddr = "203.0.113.9:40000"
	rec := httptest.NewRecorder()
	e.console.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Errorf("login page from 203.0.113.9 with a token = %d", rec.Code)
	}

	// A session is the auditor's to issue: an edited one is refused, and
	// so is one that expired.
	parts := strings.Split(ck.Value, ".")
	forged := b64.EncodeToString([]byte("root")) + "." + parts[1] + "." + parts[2]
	if name, ok := e.console.auth.session(forged); ok {
		t.Errorf("a session with another name is accepted as %q", name)
	}
	if _, ok := e.console.auth.session(ck.Value); !ok {
		t.Fatal("the session is not valid")
	}
	e.advance(13 * time.Hour)
	if r := e.get(t, "/ui/"); r.StatusCode != http.StatusSeeOther {
		t.Errorf("overview 13h after the login = %d, want the login page", r.StatusCode)
	}
	e.advance(-13 * time.Hour)

	// Where to go after the login: console pages only.
	for next, want := range map[string]string{"/ui/events": "/ui/events", "//evil.example/": "/ui/", "https://evil.example": "/ui/",
		"/v1/events": "/ui/", "/ui/\\evil": "/ui/", "": "/ui/"} {
		if got := safeNext(next); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", next, got, want)
		}
	}

	// Logout deletes the cookie.
	r = e.post(t, "/ui/logout", url.Values{})
	if ck := sessionCookieOf(r); r.StatusCode != http.StatusSeeOther || ck == nil || ck.MaxAge >= 0 {
		t.Fatalf("logout = %d, cookie %+v", r.StatusCode, ck)
	}
	if r := e.get(t, "/ui/"); r.StatusCode != http.StatusSeeOther {
		t.Errorf("overview after logout = %d, want the login page", r.StatusCode)
	}
}

func TestCSRF(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sqlite(t), withToken(testToken))
	e.login(t, "alice", testToken)
	token := e.csrf(t)
	silence := func() url.Values {
		return url.Values{"matchers": {"destination=erp"}, "duration": {"1h"}, "comment": {"csrf test"}}
	}

	// Another person's session gives another token.
	other := e.newClient(t)
	e.loginWith(t, other, "bob", testToken)
	otherPage := e.do(t, other, http.MethodGet, "/ui/silences", nil)
	otherToken := attr(find(parse(t, otherPage.body), func(n *html.Node) bool { return attr(n, "name") == csrfField }), "value")
	if otherToken == "" || otherToken == token {
		t.Fatalf("bob's token %q, alice's %q: want two different tokens", otherToken, token)
	}

	refused := []struct {
		name string
		form url.Values
		hdr  []string
	}{
		{"no token", silence(), nil},
		{"wrong token", withField(silence(), csrfField, "AAAA"), nil},
		{"another session's token", withField(silence(), csrfField, otherToken), nil},
		{"another site's Origin", withField(silence(), csrfField, token), []string{"Origin", "https://evil.example"}},
		{"Origin null", withField(silence(), csrfField, token), []string{"Origin", "null"}},
		{"cross-site fetch", withField(silence(), csrfField, token), []string{"Sec-Fetch-Site", "cross-site"}},
		{"same-site fetch", withField(silence(), csrfField, token), []string{"Sec-Fetch-Site", "same-site"}},
	}
	for _, tt := range refused {
		form := tt.form
		if form.Get(csrfField) == "" {
			form.Set(csrfField, "")
		}
		r := e.do(t, e.client, http.MethodPost, "/ui/silences", form, tt.hdr...)
		if r.StatusCode != http.StatusForbidden {
			t.Errorf("%s: POST /ui/silences = %d, want 403", tt.name, r.StatusCode)
		}
	}
	if r := e.do(t, e.client, http.MethodPost, "/ui/dead-letters/replay", url.Values{"id": {"x"}}); r.StatusCode != http.StatusForbidden {
		t.Errorf("replay without a token = %d, want 403", r.StatusCode)
	}
	if r := e.do(t, e.client, http.MethodPost, "/ui/logout", url.Values{}); r.StatusCode != http.StatusForbidden {
		t.Errorf("logout without a token = %d, want 403", r.StatusCode)
	}
	sils, err := e.console.cfg.Ops.Silences(testCtx(t))
	if err != nil || len(sils) != 0 {
		t.Fatalf("silences after refused requests = %v, %v: want none", sils, err)
	}

	// The token in the form, or in the header htmx could send.
	if r := e.do(t, e.client, http.MethodPost, "/ui/silences", withField(silence(), csrfField, token)); r.StatusCode != http.StatusSeeOther {
		t.Errorf("with the token = %d %s, want 303", r.StatusCode, r.body)
	}
	if r := e.do(t, e.client, http.MethodPost, "/ui/silences", silence(), csrfHeader, token); r.StatusCode != http.StatusSeeOther {
		t.Errorf("with the token in %s = %d, want 303", csrfHeader, r.StatusCode)
	}
	// A program without browser headers is still checked by the token.
	if r := e.do(t, e.client, http.MethodPost, "/ui/silences", withField(silence(), csrfField, token), "Origin", "", "Sec-Fetch-Site", ""); r.StatusCode != http.StatusSeeOther {
		t.Errorf("without Origin and Sec-Fetch-Site, with the token = %d, want 303", r.StatusCode)
	}
	if sils, err := e.console.cfg.Ops.Silences(testCtx(t)); err != nil || len(sils) != 3 || sils[0].CreatedBy != "console:alice" {
		t.Errorf("silences = %+v, %v: want 3 created by console:alice", sils, err)
	}
}

func withField(v url.Values, k, val string) url.Values {
	v.Set(k, val)
	return v
}

func TestSecurityHeaders(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sqlite(t))
	e.login(t, "alice", "")
	for _, path := range []string{"/ui/", "/ui/login", "/ui/events", "/ui/static/console.css", "/ui/nope"} {
		r := e.get(t, path)
		h := r.Header
		csp := h.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'", "form-action 'self'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("%s: CSP %q lacks %q", path, csp, want)
			}
		}
		if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
			t.Errorf("%s: CSP %q allows inline or eval", path, csp)
		}
		if h.Get("X-Frame-Options") != "DENY" || h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Referrer-Policy") != "same-origin" {
			t.Errorf("%s: headers %v", path, h)
		}
	}
	page := e.get(t, "/ui/")
	if page.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("a page's Cache-Control = %q, want no-store", page.Header.Get("Cache-Control"))
	}
	// No inline script or style anywhere: the CSP would block it.
	doc := parse(t, page.body)
	for _, s := range findAll(doc, tag("script")) {
		if !strings.HasPrefix(attr(s, "src"), "/ui/static/htmx.min.js?v=") || text(s) != "" {
			t.Errorf("script %v: only the embedded htmx may run", s.Attr)
		}
	}
	if n := find(doc, func(n *html.Node) bool { return n.Data == "style" || attr(n, "style") != "" }); n != nil {
		t.Errorf("inline style on <%s>", n.Data)
	}
	js := e.get(t, attr(find(doc, tag("script")), "src"))
	if js.StatusCode != http.StatusOK || !strings.HasPrefix(js.Header.Get("Content-Type"), "text/javascript") || !strings.Contains(js.Header.Get("Cache-Control"), "immutable") {
		t.Errorf("htmx: %d %v", js.StatusCode, js.Header)
	}
	if r := e.get(t, "/ui/static/../ui.go"); r.StatusCode != http.StatusNotFound {
		t.Errorf("a file outside static/ = %d", r.StatusCode)
	}
	// The root of the listen address sends a browser to the console; the
	// API is unchanged beside it.
	if r := e.get(t, "/"); r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/ui/" {
		t.Errorf("GET / = %d %s", r.StatusCode, r.Header.Get("Location"))
	}
	if r := e.get(t, "/v1/events"); r.StatusCode != http.StatusOK || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		t.Errorf("GET /v1/events = %d %s", r.StatusCode, r.Header.Get("Content-Type"))
	}
}
