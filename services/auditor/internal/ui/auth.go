package ui

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/switchyard/switchyard/pkg/adminguard"
)

// Cookies of the console. Both are HttpOnly, SameSite=Strict and limited
// to Path=/ui.
const (
	// sessionCookie holds a signed session: the person's name and when
	// the session ends, with an HMAC keyed by the admin token.
	sessionCookie = "switchyard_console"
	// loginCookie holds the login form's nonce until the login.
	loginCookie = "switchyard_console_login"
)

// Form fields and headers the checks read.
const (
	csrfField   = "_csrf"
	csrfHeader  = "X-CSRF-Token"
	loginField  = "_login"
	tokenField  = "token"
	nameField   = "name"
	nextField   = "next"
	maxNameLen  = 64
	requestedBy = "console:"
)

// Errors of a login; the page says which.
var (
	// ErrBadToken is a login with a token that is not auditor.admin_token.
	ErrBadToken = errors.New("that is not the auditor's admin token (auditor.admin_token)")
	// ErrBadName is a login without a usable name.
	ErrBadName = fmt.Errorf("give your name (1-%d printable characters): it goes into the audit log with what you do here", maxNameLen)
	// ErrStaleForm is a form whose anti-forgery token does not match:
	// usually a page left open across an auditor restart or a logout.
	ErrStaleForm = errors.New("this form is out of date or did not come from this console: reload the page and try again")
	// ErrCrossSite is a state-changing request another site sent.
	ErrCrossSite = adminguard.ErrCrossSite
)

// authenticator checks who is asking. With an admin token, a person logs in
// with it (and a name for the audit log) and gets a session cookie: the
// name and expiry with an HMAC keyed by a key derived from the token, so
// any auditor with the same token accepts it, a new token ends every
// session, and the cookie never holds the token. Without one, the console
// answers loopback only (as the API listens on loopback only), checking
// the client's address and, against DNS rebinding, the Host it was asked
// for; the login form then only asks for the name, and the key is random
// per process.
type authenticator struct {
	token     string
	tokenHash [32]byte
	key       []byte
	ttl       time.Duration
	now       func() time.Time
}

func newAuthenticator(token string, ttl time.Duration, now func() time.Time) (*authenticator, error) {
	a := &authenticator{token: token, tokenHash: sha256.Sum256([]byte(token)), ttl: ttl, now: now}
	if token != "" {
		m := hmac.New(sha256.New, []byte(token))
		m.Write([]byte("switchyard console session key v1"))
		a.key = m.Sum(nil)
	} else {
		a.key = make([]byte, 32)
		if _, err := rand.Read(a.key); err != nil {
			return nil, fmt.Errorf("console: session key: %w", err)
		}
	}
	return a, nil
}

// tokenRequired reports whether logging in takes the admin token.
func (a *authenticator) tokenRequired() bool { return a.token != "" }

// mac is the HMAC of the parts, separated so that no two lists of parts
// give the same input.
func (a *authenticator) mac(parts ...string) []byte {
	m := hmac.New(sha256.New, a.key)
	for _, p := range parts {
		m.Write([]byte(strconv.Itoa(len(p))))
		m.Write([]byte{':'})
		m.Write([]byte(p))
	}
	return m.Sum(nil)
}

var b64 = base64.RawURLEncoding

// newSession returns the cookie value of a session for name.
func (a *authenticator) newSession(name string) (string, time.Time) {
	exp := a.now().Add(a.ttl).Truncate(time.Second)
	e := strconv.FormatInt(exp.Unix(), 10)
	return b64.EncodeToString([]byte(name)) + "." + e + "." + b64.EncodeToString(a.mac("session", name, e)), exp
}

// session returns the name a cookie value was issued to, if it is one of
// ours and has not expired.
func (a *authenticator) session(v string) (string, bool) {
	parts := strings.Split(v, ".")
	if len(parts) != 3 {
		return "", false
	}
	name, err1 := b64.DecodeString(parts[0])
	sum, err2 := b64.DecodeString(parts[2])
	exp, err3 := strconv.ParseInt(parts[1], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || !hmac.Equal(sum, a.mac("session", string(name), parts[1])) {
		return "", false
	}
	if !a.now().Before(time.Unix(exp, 0)) {
		return "", false
	}
	return string(name), true
}

// csrfToken is the anti-forgery token of a session: derived from the
// session cookie, so it is valid for that session only, and checked
// without server state.
func (a *authenticator) csrfToken(session string) string {
	return b64.EncodeToString(a.mac("csrf", session))
}

// loginToken is the login form's anti-forgery token for a nonce cookie.
func (a *authenticator) loginToken(nonce string) string {
	return b64.EncodeToString(a.mac("login", nonce))
}

// checkToken compares a typed token with the admin token in constant time
// (hashing both first, so the length of a guess tells nothing).
func (a *authenticator) checkToken(got string) bool {
	sum := sha256.Sum256([]byte(got))
	return subtle.ConstantTimeCompare(sum[:], a.tokenHash[:]) == 1
}

// cleanName checks and tidies the name a person gives.
func cleanName(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" || utf8.RuneCountInString(s) > maxNameLen || !utf8.ValidString(s) {
		return "", ErrBadName
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return "", ErrBadName
		}
	}
	return s, nil
}

func secure(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

func (a *authenticator) setCookie(c echo.Context, name, value string, expires time.Time) {
	ck := &http.Cookie{Name: name, Value: value, Path: Prefix, HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: secure(c.Request())}
	if expires.IsZero() {
		ck.MaxAge = -1
	} else {
		ck.Expires, ck.MaxAge = expires, int(time.Until(expires).Seconds())
		if ck.MaxAge <= 0 {
			ck.MaxAge = 1
		}
	}
	c.SetCookie(ck)
}

func cookie(c echo.Context, name string) string {
	ck, err := c.Cookie(name)
	if err != nil {
		return ""
	}
	return ck.Value
}

// Keys of what requireSession leaves in the echo context.
const (
	ctxUser = "console.user"
	ctxCSRF = "console.csrf"
)

// loopbackOnly refuses, when there is no admin token, a client that is not
// on loopback, and a request for a Host that is not a loopback name or
// address: a web page whose name an attacker rebinds to 127.0.0.1 is
// asked for under that name.
func (a *authenticator) loopbackOnly(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if a.tokenRequired() {
			return next(c)
		}
		switch err := adminguard.Loopback(c.Request()); {
		case errors.Is(err, adminguard.ErrRemoteClient):
			return echo.NewHTTPError(http.StatusForbidden, "Without auditor.admin_token the console answers clients on this machine only. "+
				"Set auditor.admin_token to use it from elsewhere.")
		case err != nil:
			return echo.NewHTTPError(http.StatusForbidden, "Without auditor.admin_token the console answers only when addressed as "+
				"127.0.0.1, [::1] or localhost (another name could be a DNS rebinding attack).")
		}
		return next(c)
	}
}

// sameOrigin refuses a request another site sent: one whose Origin is not
// this host, or that the browser marks as cross-site (Sec-Fetch-Site).
// Browsers send both on every POST; a request without them comes from a
// program, which the CSRF token checks.
func (a *authenticator) sameOrigin(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if err := adminguard.SameOrigin(r); err != nil {
			return echo.NewHTTPError(http.StatusForbidden, fmt.Sprintf("%v (Origin %q, Sec-Fetch-Site %q, host %q)",
				ErrCrossSite, r.Header.Get("Origin"), r.Header.Get("Sec-Fetch-Site"), r.Host))
		}
		return next(c)
	}
}

// requireSession lets a request with a valid session through, and sends
// the others to the login page (htmx requests with HX-Redirect).
func (con *Console) requireSession(next echo.HandlerFunc) echo.HandlerFunc {
	a := con.auth
	return func(c echo.Context) error {
		v := cookie(c, sessionCookie)
		if name, ok := a.session(v); ok {
			c.Set(ctxUser, name)
			c.Set(ctxCSRF, a.csrfToken(v))
			return next(c)
		}
		r := c.Request()
		login := Prefix + "/login"
		if r.Method == http.MethodGet {
			login += "?" + url.Values{nextField: {r.URL.RequestURI()}}.Encode()
		}
		if isHTMX(c) {
			c.Response().Header().Set("HX-Redirect", login)
			return c.NoContent(http.StatusUnauthorized)
		}
		if r.Method == http.MethodGet && r.Header.Get("Sec-Fetch-Site") == "cross-site" {
			// A link from Slack or a mail: SameSite=Strict kept the
			// cookie back. The same page asked again from here carries it.
			return con.page(c, http.StatusOK, "continue", "Switchyard console", "", r.URL.RequestURI())
		}
		return c.Redirect(http.StatusSeeOther, login)
	}
}

// checkCSRF requires, on every request that changes something, that it
// comes from this origin and carries the session's anti-forgery token (form
// field _csrf, or header X-CSRF-Token).
func (a *authenticator) checkCSRF(next echo.HandlerFunc) echo.HandlerFunc {
	checked := a.sameOrigin(func(c echo.Context) error {
		want, _ := c.Get(ctxCSRF).(string)
		got := c.Request().Header.Get(csrfHeader)
		if got == "" {
			got = c.FormValue(csrfField)
		}
		if want == "" || subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
			return echo.NewHTTPError(http.StatusForbidden, ErrStaleForm.Error())
		}
		return next(c)
	})
	return func(c echo.Context) error {
		if !adminguard.ChangesState(c.Request().Method) {
			return next(c)
		}
		return checked(c)
	}
}

// safeNext is where to go after the login: a console page, never another
// site.
func safeNext(next string) string {
	if next == "" || !strings.HasPrefix(next, Prefix+"/") || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return Prefix + "/"
	}
	return next
}

func isHTMX(c echo.Context) bool { return c.Request().Header.Get("HX-Request") == "true" }

// user is the logged-in person's name.
func user(c echo.Context) string {
	s, _ := c.Get(ctxUser).(string)
	return s
}

// requester is who the audit log names for an action of this person.
func requester(c echo.Context) string { return requestedBy + user(c) }

// loginPage is GET /ui/login: the form, with a fresh nonce.
func (c *Console) loginPage(ec echo.Context) error {
	if _, ok := c.auth.session(cookie(ec, sessionCookie)); ok {
		return ec.Redirect(http.StatusSeeOther, safeNext(ec.QueryParam(nextField)))
	}
	return c.renderLogin(ec, http.StatusOK, "", ec.QueryParam(nextField), "")
}

func (c *Console) renderLogin(ec echo.Context, status int, name, next, problem string) error {
	nonce := cookie(ec, loginCookie)
	if nonce == "" {
		b := make([]byte, 16)
		if _, err := rand.Read(b); err != nil {
			return err
		}
		nonce = b64.EncodeToString(b)
		c.auth.setCookie(ec, loginCookie, nonce, c.cfg.Now().Add(time.Hour))
	}
	return c.page(ec, status, "login", "Log in", "", loginData{
		TokenRequired: c.auth.tokenRequired(), Name: name, Next: safeNext(next),
		LoginToken: c.auth.loginToken(nonce), Problem: problem,
	})
}

type loginData struct {
	TokenRequired bool
	Name          string
	Next          string
	LoginToken    string
	Problem       string
}

// login is POST /ui/login.
func (c *Console) login(ec echo.Context) error {
	nonce := cookie(ec, loginCookie)
	if nonce == "" || subtle.ConstantTimeCompare([]byte(ec.FormValue(loginField)), []byte(c.auth.loginToken(nonce))) != 1 {
		return c.renderLogin(ec, http.StatusForbidden, ec.FormValue(nameField), ec.FormValue(nextField), ErrStaleForm.Error())
	}
	name, err := cleanName(ec.FormValue(nameField))
	if err == nil && c.auth.tokenRequired() && !c.auth.checkToken(strings.TrimSpace(ec.FormValue(tokenField))) {
		err = ErrBadToken
		c.cfg.Logger.WarnContext(ec.Request().Context(), "console login refused: wrong admin token",
			slog.String("remote_addr", ec.Request().RemoteAddr), slog.String("name", name))
	}
	if err != nil {
		status := http.StatusUnauthorized
		if errors.Is(err, ErrBadName) {
			status = http.StatusBadRequest
		}
		return c.renderLogin(ec, status, ec.FormValue(nameField), ec.FormValue(nextField), err.Error())
	}
	v, exp := c.auth.newSession(name)
	c.auth.setCookie(ec, sessionCookie, v, exp)
	c.auth.setCookie(ec, loginCookie, "", time.Time{})
	c.cfg.Logger.InfoContext(ec.Request().Context(), "console login", slog.String("name", name), slog.String("remote_addr", ec.Request().RemoteAddr))
	return ec.Redirect(http.StatusSeeOther, safeNext(ec.FormValue(nextField)))
}

// logout is POST /ui/logout: the cookie goes. (The session value itself
// stays valid until it expires: sessions are not stored. Changing the
// admin token ends them all.)
func (c *Console) logout(ec echo.Context) error {
	c.auth.setCookie(ec, sessionCookie, "", time.Time{})
	return ec.Redirect(http.StatusSeeOther, Prefix+"/login")
}
