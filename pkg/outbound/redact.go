package outbound

import (
	"bytes"
	"encoding/base64"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/switchyard/switchyard/pkg/untrusted"
)

// Redacted replaces a credential in what a partner answered.
const Redacted = "[REDACTED]"

// minSecret is the shortest value redacted by its text: shorter ones
// (a basic auth user name "ops") would blank out ordinary words; the
// shapes still catch them after a scheme or a credential's name.
const minSecret = 4

// redactSlack is how much more than a limit is read and redacted before
// the text is cut to the limit, so that a credential that straddles the
// limit is recognised whole rather than kept in part.
const redactSlack = 4096

// Credential shapes, whatever sent them: an Authorization scheme and its
// value, a JWT, and a value after a credential's name (JSON, a form, a
// header line, a query string).
var (
	schemeShape = regexp.MustCompile(`(?i)\b(bearer|basic|token|digest|apikey|api-key)(\s+|%20|\+)([A-Za-z0-9._~+/=:-]{6,})`)
	jwtShape    = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*`)
	namedShape  = regexp.MustCompile(`(?i)((?:access|refresh|id)[_-]?token|client[_-]?secret|password|passwd|api[_-]?key|x-api-key|secret|authorization|proxy-authorization|private[_-]?key)("?\s*[:=]\s*"?)([^"&\s,;}{\[\]]{4,})`)
)

// Redact removes from s every secret (each also as JSON with escaped
// slashes, and URL-escaped) and anything shaped like a credential,
// replacing it with Redacted. Partners that echo the request (an error page
// quoting the headers, a debugging endpoint) would otherwise put the
// credentials Switchyard sent into the audit log, alerts and synchronous
// answers.
func Redact(s string, secrets []string) string {
	for _, sec := range secrets {
		for _, v := range []string{sec, strings.ReplaceAll(sec, "/", `\/`), url.QueryEscape(sec)} {
			if strings.Contains(s, v) {
				s = strings.ReplaceAll(s, v, Redacted)
			}
		}
	}
	s = jwtShape.ReplaceAllString(s, Redacted)
	s = schemeShape.ReplaceAllString(s, "${1}${2}"+Redacted)
	s = namedShape.ReplaceAllStringFunc(s, func(m string) string {
		sub := namedShape.FindStringSubmatch(m)
		if schemeShape.MatchString(sub[3] + " xxxxxx") {
			// "Authorization: Bearer [REDACTED]": the scheme stays.
			return m
		}
		return sub[1] + sub[2] + Redacted
	})
	return s
}

// credentialsOf are the credentials req carries: the values of the static
// headers (configured as secrets), Authorization and Proxy-Authorization
// (whole, their value after the scheme, and for basic the decoded
// user:password and password), and the password of the URL's user info.
func credentialsOf(req *http.Request, static map[string]string) []string {
	var out []string
	add := func(v string) {
		if v = strings.TrimSpace(v); len(v) >= minSecret && !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	for _, v := range static {
		add(v)
	}
	for _, name := range []string{"Authorization", "Proxy-Authorization"} {
		for _, v := range req.Header.Values(name) {
			add(v)
			scheme, cred, ok := strings.Cut(strings.TrimSpace(v), " ")
			if !ok {
				continue
			}
			add(cred)
			if strings.EqualFold(scheme, "basic") {
				if dec, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred)); err == nil {
					add(string(dec))
					if _, pw, ok := strings.Cut(string(dec), ":"); ok {
						add(pw)
					}
				}
			}
		}
	}
	if req.URL != nil && req.URL.User != nil {
		if pw, ok := req.URL.User.Password(); ok {
			add(pw)
		}
	}
	// Longest first, so that a value containing another is replaced whole.
	slices.SortFunc(out, func(a, b string) int { return len(b) - len(a) })
	return out
}

// Redact removes from s the credentials the requests behind r carried and
// anything shaped like a credential (see the package function Redact).
// Every text taken from a partner's answer for a record, an alert or a
// synchronous reply goes through it.
func (r *Response) Redact(s string) string { return Redact(s, r.sent) }

// Snippet is the start of b, at most limit bytes of valid UTF-8 without
// control characters, redacted before it is cut.
func (r *Response) Snippet(b []byte, limit int) string {
	b = b[:min(len(b), limit+redactSlack)]
	return untrusted.Text(r.Redact(string(b)), limit)
}

// ReadSnippet reads the start of the body for a record: Snippet of what
// is read.
func (r *Response) ReadSnippet(limit int) string {
	b, _ := readAtMost(r.Body, limit+redactSlack)
	return r.Snippet(b, limit)
}

// ReadBody reads up to limit bytes of the body, redacted; truncated is
// true when the body (redacted) was longer.
func (r *Response) ReadBody(limit int) (body []byte, truncated bool) {
	b, _ := readAtMost(r.Body, limit+redactSlack+1)
	red := []byte(r.Redact(string(b)))
	if bytes.Equal(red, b) {
		red = b
	}
	if len(red) > limit {
		return red[:limit], true
	}
	return red, false
}

// RedactedHeader is a copy of the answer's header with every value
// redacted.
func (r *Response) RedactedHeader() http.Header {
	h := make(http.Header, len(r.Header))
	for k, vs := range r.Header {
		out := make([]string, len(vs))
		for i, v := range vs {
			out[i] = r.Redact(v)
		}
		h[k] = out
	}
	return h
}

// readAtMost reads up to n bytes of body.
func readAtMost(body io.Reader, n int) ([]byte, error) {
	return io.ReadAll(io.LimitReader(body, int64(n)))
}
