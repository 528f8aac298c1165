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

// jwtShape is a JSON Web Token, whatever sent it.
var jwtShape = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*`)

// Credential shapes found by scanning rather than by regular expressions:
// a case-insensitive alternation over a few KiB took milliseconds per
// snippet (RE2's NFA), on every attempt. Names are matched where they end
// a key (access_token, client_secret, X-Api-Key), schemes where they start
// a word.
var (
	credentialNames = []string{"token", "secret", "password", "passwd", "api_key", "api-key", "apikey", "authorization", "private_key", "private-key"}
	authSchemes     = []string{"bearer", "basic", "token", "digest", "apikey", "api-key"}
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
	if strings.Contains(s, "eyJ") {
		s = jwtShape.ReplaceAllString(s, Redacted)
	}
	return redactShapes(s)
}

// redactShapes replaces the value after a credential's name (a JSON key,
// a form field, a header line: `"access_token": "…"`, `client_secret=…`,
// `X-Api-Key: …`) and after an auth scheme (`Bearer …`, `Basic …`).
func redactShapes(s string) string {
	lower := asciiLower(s)
	var spans [][2]int
	for _, name := range credentialNames {
		for i := 0; ; {
			j := strings.Index(lower[i:], name)
			if j < 0 {
				break
			}
			j += i
			i = j + len(name)
			if v, e, ok := namedValue(lower, i); ok {
				spans = append(spans, [2]int{v, e})
			}
		}
	}
	for _, scheme := range authSchemes {
		for i := 0; ; {
			j := strings.Index(lower[i:], scheme)
			if j < 0 {
				break
			}
			j += i
			i = j + len(scheme)
			if j > 0 && isWordByte(lower[j-1]) {
				continue
			}
			if v, e, ok := schemeValue(s, i, scheme == "basic"); ok {
				spans = append(spans, [2]int{v, e})
			}
		}
	}
	if len(spans) == 0 {
		return s
	}
	slices.SortFunc(spans, func(a, b [2]int) int { return a[0] - b[0] })
	var out strings.Builder
	last := 0
	for _, sp := range spans {
		if sp[0] < last {
			if sp[1] > last {
				last = sp[1]
			}
			continue
		}
		out.WriteString(s[last:sp[0]])
		out.WriteString(Redacted)
		last = sp[1]
	}
	out.WriteString(s[last:])
	return out.String()
}

// namedValue finds the value after a credential's name ending at k:
// optional quotes, ':' or '=', optional quotes, then at least 4 bytes up
// to a quote, separator or space. A value that is an auth scheme is left
// to schemeValue.
func namedValue(lower string, k int) (start, end int, ok bool) {
	if k < len(lower) && (isWordByte(lower[k]) || lower[k] == '_' || lower[k] == '-') {
		return 0, 0, false // the name goes on: token_type, passwords
	}
	i := skip(lower, k, "\"'` \t")
	if i >= len(lower) || (lower[i] != ':' && lower[i] != '=') {
		return 0, 0, false
	}
	i = skip(lower, i+1, "\"'` \t")
	e := i
	for e < len(lower) && !strings.ContainsRune("\"'`&,;{}[]<> \t\r\n\\", rune(lower[e])) {
		e++
	}
	if e-i < 4 || slices.Contains(authSchemes, lower[i:e]) {
		return 0, 0, false
	}
	return i, e, true
}

// schemeValue finds the credential after an auth scheme ending at k:
// spaces (or %20, or +), then a token68 of at least 6 bytes that looks
// like a credential rather than a word: it has a digit or is 20 bytes
// long, or for basic decodes to user:password.
func schemeValue(s string, k int, basic bool) (start, end int, ok bool) {
	i := k
	for {
		switch {
		case i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '+'):
			i++
			continue
		case strings.HasPrefix(s[i:], "%20"):
			i += 3
			continue
		}
		break
	}
	if i == k {
		return 0, 0, false
	}
	e, digit := i, false
	for e < len(s) && (isWordByte(s[e]) || strings.IndexByte("._~+/=:-", s[e]) >= 0) {
		digit = digit || (s[e] >= '0' && s[e] <= '9')
		e++
	}
	v := s[i:e]
	switch {
	case len(v) < 6:
		return 0, 0, false
	case basic:
		dec, err := base64.StdEncoding.DecodeString(v)
		if err != nil || !strings.Contains(string(dec), ":") {
			return 0, 0, false
		}
	case !digit && len(v) < 20:
		return 0, 0, false
	}
	return i, e, true
}

func skip(s string, i int, set string) int {
	for i < len(s) && strings.IndexByte(set, s[i]) >= 0 {
		i++
	}
	return i
}

func isWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// asciiLower lowers ASCII letters only, so that byte offsets stay those of s.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
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
