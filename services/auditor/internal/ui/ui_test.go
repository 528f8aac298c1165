package ui

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/net/html"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
	"github.com/switchyard/switchyard/pkg/testing/pgtest"
	"github.com/switchyard/switchyard/services/auditor/internal/api"
	"github.com/switchyard/switchyard/services/auditor/internal/store"
)

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// backends open a fresh, migrated store of each kind.
var backends = map[string]func(t *testing.T) store.Store{
	"postgres": func(t *testing.T) store.Store {
		st, err := store.OpenPostgres(testCtx(t), pgtest.Schema(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return migrated(t, st)
	},
	"sqlite": func(t *testing.T) store.Store {
		st, err := store.OpenSQLite(testCtx(t), filepath.Join(t.TempDir(), "audit.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return migrated(t, st)
	},
}

func migrated(t *testing.T, st store.Store) store.Store {
	t.Helper()
	if err := st.Migrate(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	return st
}

func forEachBackend(t *testing.T, fn func(t *testing.T, st store.Store)) {
	t.Helper()
	for name, open := range backends {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fn(t, open(t))
		})
	}
}

func sqlite(t *testing.T) store.Store { return backends["sqlite"](t) }

// env is the console and the API over a store and an embedded NATS server,
// served on loopback, and a browser-like client.
type env struct {
	st      store.Store
	js      jetstream.JetStream
	console *Console
	srv     *httptest.Server
	now     atomic.Int64
	client  *http.Client
}

type envOption func(*Config, *api.Config)

func withToken(token string) envOption {
	return func(c *Config, a *api.Config) { c.AdminToken, a.AdminToken = token, token }
}

func newEnv(t *testing.T, st store.Store, opts ...envOption) *env {
	t.Helper()
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	e := &env{st: st, js: js}
	// 30s into a 2-minute period: the chart's periods are 2 minutes long,
	// and what a test writes a few seconds apart lands in one.
	e.now.Store(time.Now().Truncate(2 * time.Minute).Add(30 * time.Second).UnixNano())
	clock := func() time.Time { return time.Unix(0, e.now.Load()) }
	log := natstest.Logger(t)
	acfg := api.Config{Store: st, JS: js, Audit: auditlog.NewEmitter(js, "auditor").WithClock(clock), Destinations: []string{"erp", "crm"},
		Logger: log, Now: clock}
	cfg := Config{Store: st, Destinations: []string{"erp", "crm"}, Sources: []string{"shop"}, Logger: log, Now: clock}
	for _, o := range opts {
		o(&cfg, &acfg)
	}
	ops := api.NewOps(acfg)
	cfg.Ops = ops
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.console = c
	e.srv = httptest.NewServer(Mount(ops.Handler(), c))
	t.Cleanup(e.srv.Close)
	e.client = e.newClient(t)
	return e
}

// newClient is a browser without JavaScript: cookies, no redirects
// followed (the tests look at them).
func (e *env) newClient(t *testing.T) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func (e *env) advance(d time.Duration) { e.now.Add(int64(d)) }

// response is an answer with its body read.
type response struct {
	*http.Response
	body string
}

// do sends a request as a browser on this page would: POSTs carry the
// Origin and Sec-Fetch-Site headers browsers add.
func (e *env) do(t *testing.T, c *http.Client, method, path string, form url.Values, hdr ...string) response {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, e.srv.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if method == http.MethodPost {
		req.Header.Set("Origin", e.srv.URL)
		req.Header.Set("Sec-Fetch-Site", "same-origin")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Host" {
			req.Host = hdr[i+1]
			continue
		}
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{Response: resp, body: string(b)}
}

func (e *env) get(t *testing.T, path string, hdr ...string) response {
	t.Helper()
	return e.do(t, e.client, http.MethodGet, path, nil, hdr...)
}

// post sends a form with the session's CSRF token (read from page).
func (e *env) post(t *testing.T, path string, form url.Values, hdr ...string) response {
	t.Helper()
	if form.Get(csrfField) == "" {
		form.Set(csrfField, e.csrf(t))
	}
	return e.do(t, e.client, http.MethodPost, path, form, hdr...)
}

// csrf reads the CSRF token from a page, as a form on it would send it.
func (e *env) csrf(t *testing.T) string {
	t.Helper()
	r := e.get(t, "/ui/silences")
	v := attr(find(parse(t, r.body), func(n *html.Node) bool { return n.Data == "input" && attr(n, "name") == csrfField }), "value")
	if v == "" {
		t.Fatalf("no CSRF token on /ui/silences (%d): %s", r.StatusCode, r.body)
	}
	return v
}

// login logs the env's client in as name (with token when required),
// through the login form.
func (e *env) login(t *testing.T, name, token string) response {
	t.Helper()
	return e.loginWith(t, e.client, name, token)
}

func (e *env) loginWith(t *testing.T, c *http.Client, name, token string) response {
	t.Helper()
	page := e.do(t, c, http.MethodGet, "/ui/login", nil)
	if page.StatusCode != http.StatusOK {
		t.Fatalf("GET /ui/login: %d %s", page.StatusCode, page.body)
	}
	lt := attr(find(parse(t, page.body), func(n *html.Node) bool { return attr(n, "name") == loginField }), "value")
	form := url.Values{loginField: {lt}, nameField: {name}, nextField: {"/ui/"}}
	if token != "" {
		form.Set(tokenField, token)
	}
	return e.do(t, c, http.MethodPost, "/ui/login", form)
}

func parse(t *testing.T, s string) *html.Node {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(s))
	if err != nil {
		t.Fatalf("parse HTML: %v", err)
	}
	return doc
}

// find returns the first element node matching, or nil.
func find(n *html.Node, match func(*html.Node) bool) *html.Node {
	all := findAll(n, match)
	if len(all) == 0 {
		return nil
	}
	return all[0]
}

func findAll(n *html.Node, match func(*html.Node) bool) []*html.Node {
	var out []*html.Node
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && match(n) {
			out = append(out, n)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return out
}

// inline elements add no space to the text around them.
var inline = map[string]bool{"a": true, "code": true, "strong": true, "span": true, "time": true, "em": true}

func attr(n *html.Node, name string) string {
	if n == nil {
		return ""
	}
	for _, a := range n.Attr {
		if a.Key == name {
			return a.Val
		}
	}
	return ""
}

// text is the text content of n, spaces collapsed.
func text(n *html.Node) string {
	if n == nil {
		return ""
	}
	var b strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
		if n.Type == html.ElementNode && !inline[n.Data] {
			b.WriteString(" ")
		}
	}
	walk(n)
	return strings.Join(strings.Fields(b.String()), " ")
}

func byID(id string) func(*html.Node) bool {
	return func(n *html.Node) bool { return attr(n, "id") == id }
}

func tag(name string) func(*html.Node) bool {
	return func(n *html.Node) bool { return n.Data == name }
}

// The vendored htmx is the release its README names, byte for byte.
func TestVendoredHTMX(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("static/htmx.min.js")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	if got, want := hex.EncodeToString(sum[:]), "d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717"; got != want {
		t.Errorf("static/htmx.min.js sha256 = %s, want %s (htmx.org 2.0.11): see static/README.md", got, want)
	}
	if !strings.Contains(string(b), `version:"2.0.11"`) {
		t.Error("static/htmx.min.js does not say it is htmx 2.0.11")
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	st := sqlite(t)
	ops := api.NewOps(api.Config{Store: st})
	log := natstest.Logger(t)
	for _, tt := range []struct {
		cfg  Config
		want string
	}{
		{Config{Ops: ops, Logger: log}, "Store"},
		{Config{Store: st, Logger: log}, "Ops"},
		{Config{Store: st, Ops: ops}, "Logger"},
		{Config{Store: st, Ops: ops, Logger: log, SessionTTL: -time.Second}, "SessionTTL"},
	} {
		if _, err := New(tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New(%+v) = %v, want an error naming %s", tt.cfg, err, tt.want)
		}
	}
}
