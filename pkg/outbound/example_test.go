package outbound_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/outbound"
)

// A partner's API called with the configured credentials: a bearer token
// here; OAuth2 client credentials would be renewed once if refused.
func Example() {
	partner := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, r.Header.Get("Authorization"), r.Header.Get("X-Tenant"))
	}))
	defer partner.Close()

	hc := outbound.NewHTTPClient(outbound.HTTPConfig{Timeout: 5 * time.Second, AllowPrivateNetwork: true})
	c := &outbound.Client{
		HTTP:    hc,
		Headers: map[string]string{"X-Tenant": "acme"},
		Auth:    outbound.FromConfig(config.Auth{Type: config.AuthBearer, Token: "t0ken"}, hc),
	}
	resp, err := c.Do(context.Background(), func(ctx context.Context) (*http.Request, error) {
		return http.NewRequestWithContext(ctx, http.MethodGet, partner.URL+"/orders", nil)
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Print(resp.StatusCode, " ", string(body))
	// Output: 200 Bearer t0ken acme
}
