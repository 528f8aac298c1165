package loadconn_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/switchyard/switchyard/pkg/testing/loadconn"
)

// Requests on one connection reach the server with their headers and body,
// and each answer's status comes back with its body consumed, so that the
// next request on the connection reads its own answer.
func TestPostKeepsTheConnection(t *testing.T) {
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got = append(got, r.URL.Path+" "+r.Header.Get("X-Test")+" "+string(b))
		if r.URL.Path == "/teapot" {
			w.WriteHeader(http.StatusTeapot)
		}
		_, _ = io.WriteString(w, strings.Repeat("x", 100))
	}))
	defer srv.Close()
	c, err := loadconn.Dial(strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, tt := range []struct {
		path string
		want int
	}{{"/a", 200}, {"/teapot", 418}, {"/b", 200}} {
		status, err := c.Post(tt.path, []byte("body"+tt.path), "X-Test", "v")
		if err != nil || status != tt.want {
			t.Fatalf("Post(%s) = %d, %v; want %d", tt.path, status, err, tt.want)
		}
	}
	if strings.Join(got, "|") != "/a v body/a|/teapot v body/teapot|/b v body/b" {
		t.Errorf("the server saw %q", got)
	}
}
