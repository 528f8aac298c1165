package ui

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/switchyard/switchyard/services/auditor/auditapi"
	"github.com/switchyard/switchyard/services/auditor/internal/api"
)

//go:embed templates/*.html
var templateFS embed.FS

// pageNames are the templates/<name>.html files, each a page (template
// "content") and its fragments, parsed over layout.html and parts.html.
var pageNames = []string{"login", "continue", "error", "result", "overview", "events", "event", "dead-letters", "silences", "rejections", "quarantine"}

// views are the parsed templates.
type views struct {
	pages  map[string]*template.Template
	assets *assets
}

func parseViews(a *assets) (*views, error) {
	base, err := template.New("").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/parts.html")
	if err != nil {
		return nil, fmt.Errorf("console templates: %w", err)
	}
	v := &views{pages: map[string]*template.Template{}, assets: a}
	for _, name := range pageNames {
		t, err := base.Clone()
		if err == nil {
			t, err = t.ParseFS(templateFS, "templates/"+name+".html")
		}
		if err != nil {
			return nil, fmt.Errorf("console template %s: %w", name, err)
		}
		v.pages[name] = t
	}
	return v, nil
}

// htmxConfig turns off what the Content-Security-Policy would block or
// what must not happen: htmx's inline indicator style, eval, scripts in
// swapped content, keeping pages (with payloads) in localStorage. Errors
// are swapped in too, so that an action's refusal is shown where its
// result would be.
const htmxConfig = `{"includeIndicatorStyles":false,"allowEval":false,"allowScriptTags":false,"historyEnabled":false,` +
	`"historyCacheSize":0,"selfRequestsOnly":true,"responseHandling":[{"code":"204","swap":false},{"code":"...","swap":true}]}`

// view is what every template gets: the page's data and the layout's.
type view struct {
	Title      string
	Section    string
	User       string
	CSRF       string
	CSS, JS    string
	HTMXConfig string
	Now        time.Time
	Data       any
}

func (c *Console) view(ec echo.Context, title, section string, data any) view {
	csrf, _ := ec.Get(ctxCSRF).(string)
	return view{Title: title, Section: section, User: user(ec), CSRF: csrf, CSS: c.static.url("console.css"),
		JS: c.static.url("htmx.min.js"), HTMXConfig: htmxConfig, Now: c.cfg.Now().UTC(), Data: data}
}

// page renders a whole page.
func (c *Console) page(ec echo.Context, status int, name, title, section string, data any) error {
	return c.render(ec, status, name, "layout", c.view(ec, title, section, data))
}

// fragment renders one named template of a page: what an htmx request
// swaps in.
func (c *Console) fragment(ec echo.Context, status int, name, tmpl, section string, data any) error {
	return c.render(ec, status, name, tmpl, c.view(ec, "", section, data))
}

func (c *Console) render(ec echo.Context, status int, name, tmpl string, v view) error {
	var buf bytes.Buffer
	if err := c.views.pages[name].ExecuteTemplate(&buf, tmpl, v); err != nil {
		return fmt.Errorf("render %s/%s: %w", name, tmpl, err)
	}
	return ec.HTMLBlob(status, buf.Bytes())
}

// liveBlock renders a self-refreshing part of a page: its body (template
// tmpl) inside a wrapper that asks for it again every interval at path?q.
// The body's hash rides in the URL (v), so that live can answer an
// unchanged body with 204, which htmx does not swap: what a person is
// reading or has focused stays put.
func (c *Console) liveBlock(ec echo.Context, name, tmpl, id, path string, q url.Values, every time.Duration, data any) (liveWrapper, error) {
	var body bytes.Buffer
	if err := c.views.pages[name].ExecuteTemplate(&body, tmpl, c.view(ec, "", "", data)); err != nil {
		return liveWrapper{}, fmt.Errorf("render %s/%s: %w", name, tmpl, err)
	}
	sum := sha256.Sum256(body.Bytes())
	w := liveWrapper{ID: id, Every: fmt.Sprintf("every %ds, %s from:body", int(every.Seconds()), changedEvent), Version: hex.EncodeToString(sum[:8]),
		Body: template.HTML(body.String())} //nolint:gosec // our own template's output, escaped as it was rendered
	q.Set("v", w.Version)
	w.URL = path + "?" + q.Encode()
	return w, nil
}

// changedEvent is the htmx event an action's answer triggers (HX-Trigger)
// so that the live blocks of the page refresh at once rather than at their
// next poll: a replay's delivery shows as soon as it happens.
const changedEvent = "console-changed"

// live answers an htmx poll of a live block.
func (c *Console) live(ec echo.Context, name, tmpl, id, path string, q url.Values, every time.Duration, data any) error {
	w, err := c.liveBlock(ec, name, tmpl, id, path, q, every, data)
	if err != nil {
		return err
	}
	if isHTMX(ec) && ec.QueryParam("v") == w.Version {
		return ec.NoContent(http.StatusNoContent)
	}
	var out bytes.Buffer
	if err := c.views.pages[name].ExecuteTemplate(&out, "live", w); err != nil {
		return fmt.Errorf("render live %s: %w", id, err)
	}
	return ec.HTMLBlob(http.StatusOK, out.Bytes())
}

// liveWrapper is the element that polls for its own content. Body is the
// output of one of our templates (every value in it escaped there), never
// text from elsewhere.
type liveWrapper struct {
	ID, URL, Every, Version string
	Body                    template.HTML
}

// problem is an error as a page shows it.
type problem struct {
	Status  int
	Title   string
	Message string
}

// explain turns an error into what the person is told (the API's wording),
// logging what is unexpected.
func (c *Console) explain(ec echo.Context, err error) problem {
	var he *echo.HTTPError
	if errors.As(err, &he) {
		msg, _ := he.Message.(string)
		if msg == "" {
			msg = http.StatusText(he.Code)
		}
		return problem{Status: he.Code, Title: http.StatusText(he.Code), Message: msg}
	}
	p := api.Explain(err)
	if p.Unexpected {
		c.cfg.Logger.ErrorContext(ec.Request().Context(), "console request failed", slog.String("path", ec.Request().URL.Path), slog.Any("error", err))
	}
	return problem{Status: p.Status, Title: http.StatusText(p.Status), Message: p.Message}
}

// errorPage is the echo error handler: a page (or, for htmx, a fragment)
// saying what went wrong.
func (c *Console) errorPage(err error, ec echo.Context) {
	if ec.Response().Committed {
		return
	}
	p := c.explain(ec, err)
	if p.Status == http.StatusServiceUnavailable {
		ec.Response().Header().Set("Retry-After", "5")
	}
	var rerr error
	if isHTMX(ec) {
		rerr = c.fragment(ec, p.Status, "error", "problem", "", p)
	} else {
		rerr = c.page(ec, p.Status, "error", p.Title, "", p)
	}
	if rerr != nil {
		c.cfg.Logger.ErrorContext(ec.Request().Context(), "console error page failed", slog.Any("error", rerr))
	}
}

// funcs are the templates' helpers. None returns template.HTML: whatever
// they give is escaped where it is used.
var funcs = template.FuncMap{
	"when":   when,
	"whenp":  func(t *time.Time) string { return whenPtr(t) },
	"iso":    func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"ago":    ago,
	"agop":   func(now time.Time, t *time.Time) string { return agoPtr(now, t) },
	"pct":    func(f float64) string { return strconv.FormatFloat(f*100, 'f', 1, 64) + "%" },
	"ms":     millis,
	"dur":    duration,
	"link":   link,
	"json":   toJSON,
	"add":    func(a, b int) int { return a + b },
	"status": statusClass,
	"labels": labelText,
	"f1":     func(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) },
	"add2":   func(a, b float64) float64 { return a + b },
	"sub2":   func(a, b float64) float64 { return a - b },
	"tm":     func(now, t time.Time) *timeArg { return &timeArg{Now: now, T: t} },
	"tmp": func(now time.Time, t *time.Time) *timeArg {
		if t == nil {
			return nil
		}
		return &timeArg{Now: now, T: *t}
	},
	"neg":    func(a int) int { return -a },
	"answer": answer,
	// waiting reports whether a backlog has anything unfinished (true
	// when it could not be read).
	"waiting": func(b *auditapi.Backlog) bool { return b == nil || b.Pending > 0 || b.AckPending > 0 },
	"bulkOf": func(v any) bulkData {
		switch d := v.(type) {
		case deadLettersData:
			return d.Bulk
		case bulkData:
			return d
		}
		return bulkData{}
	},
	// dupes counts the replays of a bulk replay that had been sent already.
	"dupes": func(r *auditapi.BulkReplayResult) int {
		n := 0
		for _, x := range r.Results {
			if x.Duplicate {
				n++
			}
		}
		return n
	},
	"replayArgs": func(csrf, id, back string) replayArgs {
		sum := sha256.Sum256([]byte(id))
		return replayArgs{CSRF: csrf, ID: id, Back: back, Key: hex.EncodeToString(sum[:6])}
	},
}

// timeArg is a time and the page's now, for the "time" template.
type timeArg struct{ Now, T time.Time }

// replayArgs are the "replay-button" template's: Key makes the button's
// element id, stable across refreshes so that focus stays on it.
type replayArgs struct{ CSRF, ID, Back, Key string }

func when(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

func whenPtr(t *time.Time) string {
	if t == nil {
		return ""
	}
	return when(*t)
}

// ago is how long before now t was, in words a person reads at a glance.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return ""
	}
	d := now.Sub(t)
	switch {
	case d < -time.Second:
		return "in " + duration(-d)
	case d < time.Second:
		return "just now"
	}
	return duration(d) + " ago"
}

func agoPtr(now time.Time, t *time.Time) string {
	if t == nil {
		return ""
	}
	return ago(now, *t)
}

// duration is d rounded to what matters: 450ms, 45s, 3m 20s, 25m, 5h 2m,
// 3d 4h.
func duration(d time.Duration) string {
	switch {
	case d < time.Second:
		return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
	case d < time.Minute:
		return strconv.Itoa(int(d.Seconds())) + "s"
	case d < 10*time.Minute:
		return fmt.Sprintf("%dm %ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh %dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd %dh", int(d.Hours())/24, int(d.Hours())%24)
}

func millis(f float64) string {
	if f >= 1000 {
		return strconv.FormatFloat(f/1000, 'f', 2, 64) + " s"
	}
	if f == math.Trunc(f) {
		return strconv.FormatFloat(f, 'f', 0, 64) + " ms"
	}
	return strconv.FormatFloat(f, 'f', 1, 64) + " ms"
}

// link is path with the query parameters kv (name, value, name, value...),
// empty values left out.
func link(path string, kv ...string) string {
	q := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			q.Add(kv[i], kv[i+1])
		}
	}
	if len(q) == 0 {
		return path
	}
	return path + "?" + q.Encode()
}

func toJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(b)
}

// answer is a partner's last answer: its status code and the error text,
// which often starts with the same code.
func answer(code int, errText string) string {
	status := ""
	if code != 0 {
		status = "HTTP " + strconv.Itoa(code)
	}
	switch {
	case errText == "":
		return status
	case status == "" || strings.HasPrefix(errText, status):
		return errText
	}
	return status + ": " + errText
}

// statusClass is the CSS class of a delivery status or outcome badge.
func statusClass(s string) string {
	switch s {
	case "delivered", "closed", "active", "resolved", "released":
		return "ok"
	case "dead_lettered", "permanent", "open", "firing", "critical", "rejected":
		return "bad"
	case "retrying", "retryable", "half_open", "replayed", "pending", "warning", "quarantined":
		return "warn"
	}
	return "neutral"
}

// labelText is labels as name=value pairs, sorted.
func labelText(m map[string]string) string {
	parts := make([]string, len(m))
	for i, k := range sortedKeys(m) {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, " ")
}
