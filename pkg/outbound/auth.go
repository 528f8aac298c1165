package outbound

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
	"golang.org/x/sync/singleflight"
)

// Authenticator puts credentials on outgoing requests.
type Authenticator interface {
	// Apply sets the credentials on req. An error is a failure to obtain
	// them (a token endpoint that is down, credentials it refused).
	Apply(ctx context.Context, req *http.Request) error
	// Renew is called when the partner refused a request that Apply
	// prepared (401, or what Client.RenewOn names). It reports whether
	// fresh credentials were obtained, in which case the request is sent
	// once more.
	Renew(ctx context.Context, req *http.Request) bool
}

// Bearer sends a static bearer token.
type Bearer struct{ Token string }

// Apply implements Authenticator.
func (b Bearer) Apply(_ context.Context, req *http.Request) error {
	req.Header.Set("Authorization", "Bearer "+b.Token)
	return nil
}

// Renew implements Authenticator: a static token cannot be renewed.
func (Bearer) Renew(context.Context, *http.Request) bool { return false }

// Basic sends HTTP basic credentials.
type Basic struct{ Username, Password string }

// Apply implements Authenticator.
func (b Basic) Apply(_ context.Context, req *http.Request) error {
	req.SetBasicAuth(b.Username, b.Password)
	return nil
}

// Renew implements Authenticator: static credentials cannot be renewed.
func (Basic) Renew(context.Context, *http.Request) bool { return false }

// ErrCredentials wraps a token endpoint's refusal of the client's
// credentials: no retry can fix it, a person must.
var ErrCredentials = errors.New("credentials refused")

// ErrToken wraps every failure to get an OAuth2 access token: a refusal
// of the client's credentials (also ErrCredentials: permanent), or a token
// endpoint that fails or cannot be reached (retryable).
var ErrToken = errors.New("fetch OAuth2 token")

// ClientCredentials is the OAuth2 client credentials grant with the token
// cached and shared by every request to the partner. A token is renewed
// before it expires (RefreshBefore), and once more when the partner
// answers 401 to it: a revoked or rotated token is the seed of many silent
// failures.
type ClientCredentials struct {
	conf   clientcredentials.Config
	client *http.Client

	mu    sync.Mutex
	token *cachedToken
	group singleflight.Group
}

// ClientCredentialsConfig configures NewClientCredentials.
type ClientCredentialsConfig struct {
	TokenURL, ClientID, ClientSecret string
	Scopes                           []string
	Params                           map[string][]string
	// ClientAuth is header, body or auto.
	ClientAuth string
	// HTTPClient makes the token requests (the partner's client, so the
	// same address guard applies).
	HTTPClient *http.Client
}

// NewClientCredentials returns an Authenticator for the client credentials
// grant.
func NewClientCredentials(c ClientCredentialsConfig) *ClientCredentials {
	style := oauth2.AuthStyleAutoDetect
	switch c.ClientAuth {
	case "header":
		style = oauth2.AuthStyleInHeader
	case "body":
		style = oauth2.AuthStyleInParams
	}
	return &ClientCredentials{
		conf: clientcredentials.Config{
			ClientID: c.ClientID, ClientSecret: c.ClientSecret, TokenURL: c.TokenURL,
			Scopes: c.Scopes, EndpointParams: c.Params, AuthStyle: style,
		},
		client: c.HTTPClient,
	}
}

// RefreshBefore is how long before its expiry a token is replaced: a fifth
// of its lifetime, at most a minute, so that a request never leaves with a
// token about to lapse in flight.
func RefreshBefore(lifetime time.Duration) time.Duration {
	return min(time.Minute, lifetime/5)
}

// cachedToken is a token with the time it stops being used.
type cachedToken struct {
	value string
	// renewAt is when the token should be replaced; zero for never (no
	// expires_in: used until the partner refuses it).
	renewAt time.Time
}

// Apply implements Authenticator.
func (c *ClientCredentials) Apply(ctx context.Context, req *http.Request) error {
	tok, err := c.current(ctx)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	return nil
}

// Renew implements Authenticator: it drops the token the request carried
// (unless another request has already replaced it) and fetches a new one.
func (c *ClientCredentials) Renew(ctx context.Context, req *http.Request) bool {
	used := req.Header.Get("Authorization")
	c.mu.Lock()
	if c.token != nil && "Bearer "+c.token.value == used {
		c.token = nil
	}
	c.mu.Unlock()
	tok, err := c.current(ctx)
	return err == nil && "Bearer "+tok != used
}

func (c *ClientCredentials) current(ctx context.Context) (string, error) {
	c.mu.Lock()
	if t := c.token; t != nil && (t.renewAt.IsZero() || time.Now().Before(t.renewAt)) {
		c.mu.Unlock()
		return t.value, nil
	}
	c.mu.Unlock()
	// One token request at a time, shared by every request waiting for it.
	ch := c.group.DoChan("token", func() (any, error) {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		t, err := c.conf.Token(context.WithValue(fctx, oauth2.HTTPClient, c.client))
		if err != nil {
			return nil, tokenError(err)
		}
		if t.AccessToken == "" {
			return nil, fmt.Errorf("%w: the token endpoint returned no access_token", ErrCredentials)
		}
		ct := &cachedToken{value: t.AccessToken}
		if !t.Expiry.IsZero() {
			ct.renewAt = t.Expiry.Add(-RefreshBefore(time.Until(t.Expiry)))
		}
		c.mu.Lock()
		c.token = ct
		c.mu.Unlock()
		return t.AccessToken, nil
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return "", r.Err
		}
		return r.Val.(string), nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// tokenError says why a token could not be had. A refusal (4xx other than
// 408 and 429) is ErrCredentials; everything else may pass.
func tokenError(err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil {
		status := re.Response.StatusCode
		what := fmt.Sprintf("token endpoint answered HTTP %d", status)
		if re.ErrorCode != "" {
			what += " " + re.ErrorCode
		}
		if status >= 400 && status < 500 && status != http.StatusRequestTimeout && status != http.StatusTooManyRequests {
			return fmt.Errorf("%w: %w: %s", ErrToken, ErrCredentials, what)
		}
		return fmt.Errorf("%w: %s", ErrToken, what)
	}
	return fmt.Errorf("%w: %w", ErrToken, err)
}
