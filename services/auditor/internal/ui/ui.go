// Package ui is the operator console: server-rendered HTML pages under
// /ui/ on the auditor's listen address, where on-call sees what failed and
// acts on it (replays dead letters, silences alerts). It reads the audit
// store and acts through the API's operations (api.Ops), so that a replay
// from the console is the same replay, with the same checks and audit
// record, as one from the API or the CLI.
//
// The pages are html/template (every value escaped by context) and work
// without JavaScript; htmx, vendored and embedded, makes the actions answer
// in place and the overview and event pages refresh themselves. Charts are
// SVG drawn here. Nothing is fetched from elsewhere: the machines that run
// Switchyard often have no internet. docs/decisions/0200-operator-console.md
// says why.
package ui

import (
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/switchyard/switchyard/services/auditor/internal/api"
	"github.com/switchyard/switchyard/services/auditor/internal/store"
)

// Prefix is where the console is served.
const Prefix = "/ui"

// Config is what the console needs.
type Config struct {
	// Store is the audit log. Required.
	Store store.Store
	// Ops are the API's operations (replay, destinations, silences).
	// Required.
	Ops *api.Ops
	// AdminToken, when set, is what a person types to log in (as the API's
	// bearer token). Empty: no login token, and the console answers
	// loopback clients addressed by a loopback name only, as the API
	// listens on loopback only.
	AdminToken string
	// Destinations and Sources are the configured names: listed by the
	// overview even before anything happened to them.
	Destinations []string
	Sources      []string
	// SessionTTL is how long a login lasts. Default 12h.
	SessionTTL time.Duration
	// Logger is required.
	Logger *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// WithDefaults fills unset fields.
func (c Config) WithDefaults() Config {
	if c.SessionTTL == 0 {
		c.SessionTTL = 12 * time.Hour
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Validate checks the configuration.
func (c Config) Validate() error {
	switch {
	case c.Store == nil:
		return errors.New("console: Config.Store is required")
	case c.Ops == nil:
		return errors.New("console: Config.Ops is required")
	case c.Logger == nil:
		return errors.New("console: Config.Logger is required")
	case c.SessionTTL < 0:
		return errors.New("console: Config.SessionTTL must not be negative")
	}
	return nil
}

// MaxFormSize bounds a form the console accepts (a login, a replay, a
// silence): small.
const MaxFormSize = "64K"

// Console is the console's HTTP handler.
type Console struct {
	cfg    Config
	auth   *authenticator
	views  *views
	echo   *echo.Echo
	static *assets
}

// New returns the console.
func New(cfg Config) (*Console, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	auth, err := newAuthenticator(cfg.AdminToken, cfg.SessionTTL, cfg.Now)
	if err != nil {
		return nil, err
	}
	static, err := loadAssets()
	if err != nil {
		return nil, err
	}
	v, err := parseViews(static)
	if err != nil {
		return nil, err
	}
	c := &Console{cfg: cfg, auth: auth, views: v, static: static}
	c.echo = c.routes()
	return c, nil
}

// ServeHTTP implements http.Handler.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) { c.echo.ServeHTTP(w, r) }

// Mount serves the console under /ui/ beside apiHandler (everything else),
// and sends a browser asking for / to the console.
func Mount(apiHandler http.Handler, console http.Handler) http.Handler {
	// Not an http.ServeMux: it would clean the API's paths, and event ids
	// are free text ("a//b" escaped in a path must reach the API as is).
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch p := r.URL.Path; {
		case p == "/" && (r.Method == http.MethodGet || r.Method == http.MethodHead):
			http.Redirect(w, r, Prefix+"/", http.StatusSeeOther)
		case p == Prefix || strings.HasPrefix(p, Prefix+"/"):
			console.ServeHTTP(w, r)
		default:
			apiHandler.ServeHTTP(w, r)
		}
	})
}

func (c *Console) routes() *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = c.errorPage
	e.Use(securityHeaders, c.auth.loopbackOnly, middleware.BodyLimit(MaxFormSize))

	e.GET(Prefix+"/static/*", c.static.serve)
	e.GET(Prefix+"/login", c.loginPage)
	e.POST(Prefix+"/login", c.login, c.auth.sameOrigin)

	g := e.Group(Prefix, c.requireSession, c.auth.checkCSRF)
	g.GET("", func(ec echo.Context) error { return ec.Redirect(http.StatusSeeOther, Prefix+"/") })
	g.GET("/", c.overview)
	g.GET("/overview/live", c.overviewLive)
	g.GET("/overview/chart", c.overviewChart)
	g.GET("/events", c.events)
	g.GET("/event", c.event)
	g.GET("/event/live", c.eventLive)
	g.GET("/dead-letters", c.deadLetters)
	g.POST("/dead-letters/replay", c.replayOne)
	g.POST("/dead-letters/bulk", c.replayBulk)
	g.GET("/silences", c.silences)
	g.POST("/silences", c.createSilence)
	g.POST("/silences/expire", c.expireSilence)
	g.GET("/rejections", c.rejections)
	g.GET("/quarantine", c.quarantine)
	g.POST("/logout", c.logout)
	return e
}

// securityHeaders sets what every answer of the console carries: no
// script but the console's own files, no framing, no sniffing, no caching
// of pages that show payloads.
func securityHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()")
		if !strings.HasPrefix(c.Request().URL.Path, Prefix+"/static/") {
			h.Set("Cache-Control", "no-store")
		}
		return next(c)
	}
}

// contentSecurityPolicy allows scripts, styles and requests to this origin
// only, and no inline script or style at all (htmx's own indicator style
// is turned off in the page's htmx-config).
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
