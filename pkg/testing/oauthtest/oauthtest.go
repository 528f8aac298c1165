// Package oauthtest is a fake OAuth2 token endpoint for tests: the client
// credentials grant, numbered tokens with a short lifetime, and a way for
// the fake partner to check them, so that tests see expiry, renewal and
// revocation as a real identity provider would cause them.
package oauthtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// Server is a running token endpoint.
type Server struct {
	*httptest.Server
	// ClientID and ClientSecret are the credentials it accepts.
	ClientID, ClientSecret string

	lifetime time.Duration
	mu       sync.Mutex
	issued   map[string]time.Time // token -> expiry
	all      []string             // every token issued, revoked ones too
	requests int
}

// Start runs a token endpoint issuing tokens that expire after lifetime
// (expires_in in whole seconds). It accepts the client's credentials in the
// Authorization header or in the form. Close runs at t.Cleanup.
func Start(t testing.TB, clientID, clientSecret string, lifetime time.Duration) *Server {
	t.Helper()
	s := &Server{ClientID: clientID, ClientSecret: clientSecret, lifetime: lifetime, issued: map[string]time.Time{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.token))
	t.Cleanup(s.Close)
	return s
}

func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests++
	w.Header().Set("Content-Type", "application/json")
	if err := r.ParseForm(); err != nil || r.PostForm.Get("grant_type") != "client_credentials" {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"error":"unsupported_grant_type"}`))
		return
	}
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if id != s.ClientID || secret != s.ClientSecret {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error":"invalid_client"}`))
		return
	}
	tok := fmt.Sprintf("tok-%d", s.requests)
	s.issued[tok] = time.Now().Add(s.lifetime)
	s.all = append(s.all, tok)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"access_token": tok, "token_type": "Bearer",
		"expires_in": int(s.lifetime / time.Second), "scope": r.PostForm.Get("scope"),
	})
}

// Valid reports whether an Authorization header carries a token this
// server issued that has neither expired nor been revoked.
func (s *Server) Valid(authorization string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, ok := s.issued[strings.TrimPrefix(authorization, "Bearer ")]
	return ok && time.Now().Before(exp)
}

// RevokeAll invalidates every token issued so far.
func (s *Server) RevokeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.issued)
}

// Issued is every access token issued so far, revoked and expired ones
// included: what must never show up where secrets must not.
func (s *Server) Issued() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.all...)
}

// Requests is the number of token requests received.
func (s *Server) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}
