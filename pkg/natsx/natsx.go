// Package natsx is Switchyard's NATS plumbing: connecting to an external
// server (refusing one too old for the JetStream features Switchyard uses),
// starting an embedded server, watching KV buckets, and the names of the
// streams every service relies on (pkg/topology declares them).
package natsx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/switchyard/switchyard/pkg/netaddr"
)

// MinServerVersion is the oldest NATS server Switchyard runs against.
// Consumers with several filter subjects need 2.10; consumer pause (the
// dispatcher's circuit breaker) needs 2.11.
const MinServerVersion = "2.11.0"

// ErrServerTooOld means the NATS server lacks JetStream features Switchyard
// needs; the error text names the minimum version.
var ErrServerTooOld = errors.New("NATS server too old")

// ErrNoJetStream means the server does not have JetStream enabled.
var ErrNoJetStream = errors.New("JetStream is not enabled on the NATS server")

// ConnectOptions configures Connect.
type ConnectOptions struct {
	// Name is the client connection name, shown in server monitoring.
	Name string
	// Auth is the client's credential and TLS. Zero: anonymous, plain TCP.
	Auth Auth
	// Logger receives connection state changes. Required.
	Logger *slog.Logger
	// Replicas is nats.replicas: Connect refuses a server or cluster with
	// fewer JetStream servers (CheckReplicas). 0 or 1: no check.
	Replicas int
}

// Connect dials an external NATS server, or one of a cluster's (url may
// list several, comma-separated: the client tries them in random order and
// reconnects to another when its server goes), and checks that it is
// recent enough, has JetStream and enough servers for o.Replicas.
func Connect(ctx context.Context, url string, o ConnectOptions) (*nats.Conn, error) {
	auth, err := o.Auth.options()
	if err != nil {
		return nil, err
	}
	opts := append(baseOptions(o),
		nats.Timeout(5*time.Second),
		nats.RetryOnFailedConnect(false),
	)
	nc, err := nats.Connect(url, append(opts, auth...)...)
	if errors.Is(err, nats.ErrAuthorization) {
		return nil, fmt.Errorf("connect to NATS at %s: %w: the server refused the credential (nats.user and nats.password, nats.token, nats.nkey_seed_file or nats.credentials_file; none is sent when none is set)", redactURL(url), err)
	}
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", redactURL(url), err)
	}
	if err := CheckServer(ctx, nc); err != nil {
		nc.Close()
		return nil, fmt.Errorf("NATS at %s: %w", redactURL(url), err)
	}
	if err := CheckReplicas(ctx, nc, o.Replicas); err != nil {
		nc.Close()
		return nil, fmt.Errorf("NATS at %s: %w", redactURL(url), err)
	}
	return nc, nil
}

func baseOptions(o ConnectOptions) []nats.Option {
	log := o.Logger
	return []nats.Option{
		nats.Name(o.Name),
		// Reconnect forever, to any server of the cluster. While
		// disconnected, publishes wait in the client's reconnect buffer
		// (8 MiB) and go out on reconnect; one whose PubAck does not come
		// is sent again by publish.Msg under the same Nats-Msg-Id.
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		// A server that died without closing the connection (a lost
		// machine) is noticed within about 30 s rather than the default
		// 4 minutes.
		nats.PingInterval(10 * time.Second),
		nats.MaxPingsOutstanding(3),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("NATS disconnected", slog.Any("error", err))
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("NATS reconnected", slog.String("server", nc.ConnectedUrlRedacted()))
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			attrs := []any{slog.Any("error", err)}
			if sub != nil {
				attrs = append(attrs, slog.String("subject", sub.Subject))
			}
			log.Warn("NATS async error", attrs...)
		}),
	}
}

// CheckServer refuses a server older than MinServerVersion or without
// JetStream.
func CheckServer(ctx context.Context, nc *nats.Conn) error {
	v := nc.ConnectedServerVersion()
	ok, err := versionAtLeast(v, MinServerVersion)
	if err != nil {
		return fmt.Errorf("read server version %q: %w", v, err)
	}
	if !ok {
		return fmt.Errorf("%w: server is %s, Switchyard needs %s or newer (consumers with several filter subjects need 2.10; consumer pause, which the circuit breaker uses, needs 2.11); upgrade the server or leave nats.url empty to use the embedded one",
			ErrServerTooOld, v, MinServerVersion)
	}
	// A cluster electing its meta leader does not answer (or answers
	// "temporarily unavailable") for a few seconds: ask again for a while.
	// A server without JetStream has no responder at all.
	ctx, cancel := context.WithTimeout(ctx, jetStreamInfoWait)
	defer cancel()
	for {
		actx, acancel := context.WithTimeout(ctx, 5*time.Second)
		reply, err := nc.RequestWithContext(actx, "$JS.API.INFO", nil)
		acancel()
		switch {
		case errors.Is(err, nats.ErrNoResponders):
			return fmt.Errorf("%w: %v", ErrNoJetStream, err)
		case err == nil && strings.Contains(string(reply.Data), `"err_code":10008`):
			err = errors.New(string(reply.Data))
		case err == nil && strings.Contains(string(reply.Data), `"error"`):
			return fmt.Errorf("%w: %s", ErrNoJetStream, reply.Data)
		case err == nil:
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%w: JetStream did not answer within %s (a cluster without a meta leader?): %v", ErrNoJetStream, jetStreamInfoWait, err)
		}
		t := time.NewTimer(500 * time.Millisecond)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
}

// jetStreamInfoWait bounds CheckServer's wait for JetStream to answer.
const jetStreamInfoWait = 30 * time.Second

// versionAtLeast compares dotted versions numerically; a pre-release or
// build suffix ("2.11.0-beta") is ignored.
func versionAtLeast(have, want string) (bool, error) {
	h, err := parseVersion(have)
	if err != nil {
		return false, err
	}
	w, err := parseVersion(want)
	if err != nil {
		return false, err
	}
	for i := range 3 {
		if h[i] != w[i] {
			return h[i] > w[i], nil
		}
	}
	return true, nil
}

func parseVersion(v string) ([3]int, error) {
	var out [3]int
	v = strings.TrimPrefix(v, "v")
	if i := strings.IndexAny(v, "-+"); i >= 0 {
		v = v[:i]
	}
	parts := strings.Split(v, ".")
	if len(parts) != 3 {
		return out, fmt.Errorf("not a major.minor.patch version")
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return out, fmt.Errorf("not a major.minor.patch version")
		}
		out[i] = n
	}
	return out, nil
}

// redactURL drops user information from a NATS URL, or from each URL of a
// comma-separated list, for messages. nats.go accepts URLs without a scheme
// ("user:pass@host:4222"), so those are redacted too.
func redactURL(u string) string {
	urls := strings.Split(u, ",")
	for i, one := range urls {
		at := strings.LastIndex(one, "@")
		if at < 0 {
			continue
		}
		start := 0
		if scheme := strings.Index(one, "://"); scheme >= 0 && scheme < at {
			start = scheme + 3
		}
		for start < at && one[start] == ' ' {
			start++
		}
		urls[i] = one[:start] + "[redacted]@" + one[at+1:]
	}
	return strings.Join(urls, ",")
}

// DrainAndClose drains nc (letting buffered publishes and acks go out) and
// waits for it to close, at most timeout.
func DrainAndClose(nc *nats.Conn, timeout time.Duration) {
	if nc.IsClosed() {
		return
	}
	closed := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if err := nc.Drain(); err != nil {
		nc.Close()
		return
	}
	select {
	case <-closed:
	case <-time.After(timeout):
		nc.Close()
	}
}

// EmbeddedConfig configures StartEmbedded.
type EmbeddedConfig struct {
	// StoreDir holds the JetStream file store. Required.
	StoreDir string
	// Listen is the client address, host:port; port 0 picks a free one.
	// Empty: no TCP listener, in-process connections only.
	Listen string
	// Logger receives the server's log at debug (and warnings/errors at
	// their level). Required.
	Logger *slog.Logger
	// MaxPayload is the largest message the server takes. Default 8 MiB.
	MaxPayload int32
	// User and Password, when Password is set, are the one credential the
	// server accepts, from TCP and in-process clients alike (User default
	// EmbeddedUser). Empty Password: no authentication, which is refused
	// with a Listen address other than loopback.
	User     string
	Password string
}

// StartEmbedded starts a JetStream-enabled nats-server in this process and
// waits until it accepts connections.
func StartEmbedded(cfg EmbeddedConfig) (*server.Server, error) {
	if cfg.StoreDir == "" {
		return nil, errors.New("embedded NATS: StoreDir is required")
	}
	opts := &server.Options{
		ServerName:         "switchyard-embedded",
		JetStream:          true,
		StoreDir:           cfg.StoreDir,
		NoSigs:             true,
		MaxPayload:         8 << 20,
		JetStreamMaxMemory: 256 << 20,
	}
	if cfg.MaxPayload > 0 {
		opts.MaxPayload = cfg.MaxPayload
	}
	if cfg.Listen == "" {
		opts.DontListen = true
	} else {
		host, port, err := splitHostPort(cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("embedded NATS listen address %q: %w", cfg.Listen, err)
		}
		if cfg.Password == "" && !netaddr.IsLoopback(host) {
			return nil, fmt.Errorf("%w: embedded NATS listen address %q", ErrListenNeedsAuth, cfg.Listen)
		}
		opts.Host, opts.Port = host, port
		if port == 0 {
			opts.Port = server.RANDOM_PORT
		}
	}
	if cfg.Password != "" {
		user := cfg.User
		if user == "" {
			user = EmbeddedUser
		}
		opts.Users = []*server.User{{Username: user, Password: cfg.Password}}
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	ns.SetLoggerV2(&serverLogger{log: cfg.Logger}, false, false, false)
	ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("embedded NATS did not become ready within 30s")
	}
	return ns, nil
}

// ErrListenNeedsAuth means the embedded server would listen beyond this
// machine without a credential.
var ErrListenNeedsAuth = errors.New("an embedded NATS server listening on an address other than loopback needs a password")

// ConnectEmbedded opens an in-process connection to an embedded server,
// with o.Auth's user and password when the server has them.
func ConnectEmbedded(ns *server.Server, o ConnectOptions) (*nats.Conn, error) {
	auth, err := o.Auth.options()
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect("", append(append(baseOptions(o), nats.InProcessServer(ns)), auth...)...)
	if err != nil {
		return nil, fmt.Errorf("connect to embedded NATS: %w", err)
	}
	return nc, nil
}

func splitHostPort(addr string) (string, int, error) {
	i := strings.LastIndex(addr, ":")
	if i < 0 {
		return "", 0, errors.New("want host:port")
	}
	port, err := strconv.Atoi(addr[i+1:])
	if err != nil || port < 0 || port > 65535 {
		return "", 0, errors.New("bad port")
	}
	host := strings.Trim(addr[:i], "[]")
	if host == "" {
		host = "0.0.0.0"
	}
	return host, port, nil
}

// serverLogger sends the embedded server's log to slog. The server is chatty
// at notice level, so notices become debug records.
type serverLogger struct{ log *slog.Logger }

func (l *serverLogger) Noticef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l *serverLogger) Warnf(format string, v ...any) {
	// The embedded server's password lives only in this process's memory
	// (random, from a 0600 file or the environment): a bcrypt hash would
	// protect nothing, so the server's advice to use one is not a warning.
	if strings.HasPrefix(format, "Plaintext passwords detected") {
		l.log.Debug(fmt.Sprintf(format, v...))
		return
	}
	l.log.Warn(fmt.Sprintf(format, v...))
}
func (l *serverLogger) Fatalf(format string, v ...any) { l.log.Error(fmt.Sprintf(format, v...)) }
func (l *serverLogger) Errorf(format string, v ...any) { l.log.Error(fmt.Sprintf(format, v...)) }
func (l *serverLogger) Debugf(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l *serverLogger) Tracef(format string, v ...any) {}
