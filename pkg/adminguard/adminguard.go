// Package adminguard keeps browsers from being used against the admin
// surfaces (the auditor's API and console). A page on another site can make
// a browser send requests to 127.0.0.1: simple ones without a preflight
// (no-cors POSTs with text/plain or form bodies, no custom header), and,
// after rebinding its own name to 127.0.0.1 (DNS rebinding), any request
// as if from the same origin. The checks here refuse both: a Host that is
// not a loopback name when the surface has no token, a request another
// site sent (Origin, Sec-Fetch-Site), and a state-changing request that
// carries neither a JSON content type nor a custom header, which no page
// can send to another origin without a CORS preflight that is never
// granted.
package adminguard

import (
	"errors"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/switchyard/switchyard/pkg/netaddr"
)

// Refusals; callers branch on them with errors.Is to word their answers.
var (
	// ErrRemoteClient is a client that is not on this machine, for a
	// surface that without a token answers loopback only.
	ErrRemoteClient = errors.New("the client is not on this machine")
	// ErrHostNotLoopback is a request addressed to a Host that is not
	// 127.0.0.1, [::1] or localhost: a page whose own name was rebound to
	// 127.0.0.1 asks under that name.
	ErrHostNotLoopback = errors.New("the request is not addressed to a loopback name (DNS rebinding?)")
	// ErrCrossSite is a request a browser marks as sent by another site
	// (Sec-Fetch-Site), or whose Origin is not the host asked for.
	ErrCrossSite = errors.New("a request from another site was refused")
	// ErrNotDeliberate is a state-changing request with neither a JSON
	// content type nor one of the custom headers: what a form or a
	// no-cors fetch from any page can send.
	ErrNotDeliberate = errors.New("a state-changing request needs Content-Type: application/json or a custom header")
)

// Loopback checks, for a surface that has no token, that the client is on
// this machine (ErrRemoteClient) and that the request names this machine
// by a loopback Host (ErrHostNotLoopback).
func Loopback(r *http.Request) error {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if !netaddr.IsLoopback(host) {
		return ErrRemoteClient
	}
	if !netaddr.IsLoopback(HostName(r.Host)) {
		return ErrHostNotLoopback
	}
	return nil
}

// HostName is the host of a Host header, without port or brackets.
func HostName(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return strings.TrimSuffix(strings.TrimPrefix(hostport, "["), "]")
}

// SameOrigin refuses (ErrCrossSite) a request a browser says another site
// sent: Sec-Fetch-Site other than same-origin, or an Origin whose host is not the Host asked for ("null" included).
// Browsers send them on every POST; a request without either comes from
// a program.
func SameOrigin(r *http.Request) error {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" {
		return ErrCrossSite
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		if err != nil || o == "null" || !strings.EqualFold(u.Host, r.Host) {
			return ErrCrossSite
		}
	}
	return nil
}

// ChangesState reports whether a request with this method may change
// something (everything but GET, HEAD and OPTIONS).
func ChangesState(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	return true
}

// Deliberate refuses (ErrNotDeliberate) a request that carries neither
// Content-Type application/json (or a +json type) nor any of headers:
// a cross-origin page can send neither without a preflight.
func Deliberate(r *http.Request, headers ...string) error {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err == nil &&
		(mt == "application/json" || (strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"))) {
		return nil
	}
	for _, h := range headers {
		if strings.TrimSpace(r.Header.Get(h)) != "" {
			return nil
		}
	}
	return ErrNotDeliberate
}
