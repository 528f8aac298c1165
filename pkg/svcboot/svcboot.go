// Package svcboot is what every Switchyard process does before its service
// runs: build the logger, connect to NATS (or start the embedded server),
// declare the JetStream topology and the missing destination consumers, and
// serve /healthz and /metrics.
package svcboot

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/destinations"
	"github.com/switchyard/switchyard/pkg/httpserve"
	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/telemetry"
	"github.com/switchyard/switchyard/pkg/topology"
	"github.com/switchyard/switchyard/pkg/version"
)

// Options adjusts Start.
type Options struct {
	// Name is the process name in logs and NATS connection names.
	Name string
	// AllowEmbedded permits an empty nats.url (start an embedded server).
	// Only the all-in-one sets it: separate services must share a server.
	AllowEmbedded bool
	// LogOutput receives the log. Required.
	LogOutput io.Writer
}

// Env is a started process environment.
type Env struct {
	Config   config.Config
	Log      *slog.Logger
	NC       *nats.Conn
	JS       jetstream.JetStream
	Registry *prometheus.Registry
	embedded *server.Server

	mu      sync.Mutex
	checks  []readyCheck
	tracing map[string]*telemetry.Tracing
}

type readyCheck struct {
	name  string
	check func(context.Context) error
}

// readyCheckTimeout bounds one readiness check.
const readyCheckTimeout = 2 * time.Second

// AddReadyCheck makes /readyz depend on check too: the process is ready
// while NATS is connected and every check returns nil; otherwise /readyz
// answers 503 with "<name>: <error>" for the first that fails. A check gets
// a context bounded to a few seconds.
func (e *Env) AddReadyCheck(name string, check func(ctx context.Context) error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.checks = append(e.checks, readyCheck{name: name, check: check})
}

// Ready returns nil when the process is ready, or why it is not.
func (e *Env) Ready(ctx context.Context) error {
	if e.NC == nil || !e.NC.IsConnected() {
		return errors.New("NATS not connected")
	}
	e.mu.Lock()
	checks := slices.Clone(e.checks)
	e.mu.Unlock()
	for _, c := range checks {
		cctx, cancel := context.WithTimeout(ctx, readyCheckTimeout)
		err := c.check(cctx)
		cancel()
		if err != nil {
			return fmt.Errorf("%s: %w", c.name, err)
		}
	}
	return nil
}

// NewLogger builds the process logger from the log section.
func NewLogger(l config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(l.Level))
	opts := &slog.HandlerOptions{Level: level}
	if l.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// ErrNeedNATSURL is returned when a separately run service has no nats.url.
var ErrNeedNATSURL = errors.New("nats.url is required when services run separately (only the all-in-one `switchyard run` embeds NATS)")

// Start connects everything a service needs. Close releases it.
func Start(ctx context.Context, cfg config.Config, o Options) (*Env, error) {
	log := NewLogger(cfg.Log, o.LogOutput).With(slog.String("process", o.Name))
	env := &Env{Config: cfg, Log: log, Registry: prometheus.NewRegistry()}
	env.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	copts := natsx.ConnectOptions{Name: "switchyard-" + o.Name, Auth: ExternalAuth(cfg.NATS), Logger: log, Replicas: cfg.NATS.Replicas}
	var err error
	if cfg.NATS.URL == "" {
		if !o.AllowEmbedded {
			return nil, ErrNeedNATSURL
		}
		copts.Auth, err = EmbeddedAuth(cfg, true)
		if err != nil {
			return nil, err
		}
		env.embedded, err = natsx.StartEmbedded(natsx.EmbeddedConfig{
			StoreDir: filepath.Join(cfg.DataDir, "nats"),
			Listen:   cfg.NATS.EmbeddedListen,
			Logger:   log.With(slog.String("component", "nats-server")),
			User:     copts.Auth.User,
			Password: copts.Auth.Password,
		})
		if err != nil {
			return nil, err
		}
		env.NC, err = natsx.ConnectEmbedded(env.embedded, copts)
	} else {
		env.NC, err = natsx.Connect(ctx, cfg.NATS.URL, copts)
	}
	if err != nil {
		env.Close()
		return nil, err
	}
	js, err := jetstream.New(env.NC)
	if err != nil {
		env.Close()
		return nil, fmt.Errorf("JetStream: %w", err)
	}
	// Declarations and lookups asked again when a cluster does not answer
	// (a leader changing, replicas declaring the same asset at once).
	env.JS = natsx.RetryingJetStream(js)
	topo := topology.FromConfig(cfg)
	if err := topology.Ensure(ctx, env.JS, topo); err != nil {
		env.Close()
		return nil, err
	}
	// Not ready while JetStream cannot store or hand out events: a cluster
	// without a quorum (no meta leader) or a topology stream without a
	// leader.
	var streams []string
	for _, sc := range topo.Streams() {
		streams = append(streams, sc.Name)
	}
	env.AddReadyCheck("NATS", func(ctx context.Context) error { return natsx.JetStreamReady(ctx, env.JS, streams...) })
	// A destination's consumer keeps the events stored after it exists:
	// whichever service starts first creates the missing ones, so that an
	// event accepted before the dispatcher's first start is still delivered.
	created, err := destinations.EnsureConsumers(ctx, env.JS, topology.DestinationConsumers(cfg.Destinations))
	if err != nil {
		env.Close()
		return nil, err
	}
	for _, name := range created {
		log.InfoContext(ctx, "created the consumer of a destination: it keeps the destination's events until a dispatcher delivers them",
			slog.String("destination", name), slog.String("consumer", destinations.ConsumerName(name)))
	}
	return env, nil
}

// EmbeddedPasswordFile is where the embedded server's generated password
// is kept: data_dir/nats-password, mode 0600.
func EmbeddedPasswordFile(cfg config.Config) string {
	return filepath.Join(cfg.DataDir, "nats-password")
}

// EmbeddedAuth is the one credential of cfg's embedded server: user
// nats.user (default natsx.EmbeddedUser) with nats.password, or without it
// the password in EmbeddedPasswordFile, generated there the first time
// when create is set (the server's start; a client such as the CLI only
// reads it).
func EmbeddedAuth(cfg config.Config, create bool) (natsx.Auth, error) {
	a := natsx.Auth{User: cfg.NATS.User, Password: cfg.NATS.Password.Reveal()}
	if a.User == "" {
		a.User = natsx.EmbeddedUser
	}
	if a.Password != "" {
		return a, nil
	}
	path := EmbeddedPasswordFile(cfg)
	var err error
	if create {
		a.Password, err = natsx.LoadOrCreatePassword(path)
	} else {
		a.Password, err = natsx.ReadPassword(path)
		if errors.Is(err, os.ErrNotExist) {
			err = fmt.Errorf("%w (it is written by the first `switchyard run` with this data_dir; run the command with the same data_dir, or set nats.password)", err)
		}
	}
	return a, err
}

// ExternalAuth is the client credential and TLS of the nats section, for
// an external server.
func ExternalAuth(n config.NATS) natsx.Auth {
	return natsx.Auth{
		User:            n.User,
		Password:        n.Password.Reveal(),
		Token:           n.Token.Reveal(),
		NKeySeedFile:    n.NKeySeedFile,
		CredentialsFile: n.CredentialsFile,
		TLS:             natsx.TLS{CAFile: n.TLS.CAFile, CertFile: n.TLS.CertFile, KeyFile: n.TLS.KeyFile},
	}
}

// Tracing returns the tracing of one service of this process (ingress,
// dispatcher, notifier, auditor): nil, tracing off, without
// telemetry.traces.endpoint. Each service has its own tracer provider,
// also in the all-in-one, so that spans name the service that made them;
// its dropped spans are counted in the process's registry. Close flushes
// them.
func (e *Env) Tracing(service string) (*telemetry.Tracing, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if t, ok := e.tracing[service]; ok {
		return t, nil
	}
	dropped := telemetry.Dropped(e.Registry, service)
	t, err := telemetry.New(e.Config.Telemetry.Traces, service, dropped, e.Log)
	if err != nil {
		return nil, err
	}
	if t != nil {
		e.Log.Info("exporting traces", slog.String("service", service), slog.String("endpoint", e.Config.Telemetry.Traces.Endpoint),
			slog.Float64("sample_ratio", e.Config.Telemetry.Traces.SampleRatio))
	}
	if e.tracing == nil {
		e.tracing = map[string]*telemetry.Tracing{}
	}
	e.tracing[service] = t
	return t, nil
}

// Close drains the connection and stops the embedded server.
func (e *Env) Close() {
	e.mu.Lock()
	tracing := e.tracing
	e.tracing = nil
	e.mu.Unlock()
	for _, t := range tracing {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = t.Shutdown(ctx)
		cancel()
	}
	if e.NC != nil {
		natsx.DrainAndClose(e.NC, 5*time.Second)
	}
	if e.embedded != nil {
		e.embedded.Shutdown()
		e.embedded.WaitForShutdown()
	}
}

// ServeOps serves OpsHandler until ctx is done. Listen "off" disables it.
func (e *Env) ServeOps(ctx context.Context) error {
	addr := e.Config.Ops.Listen
	if addr == "off" {
		<-ctx.Done()
		return nil
	}
	return httpserve.Run(ctx, "ops", addr, e.OpsHandler(), e.Log)
}

// OpsHandler serves /healthz (process up), /readyz (NATS connected and
// every check added with AddReadyCheck passing), /metrics and, with
// ops.pprof, Go's profiles under /debug/pprof/.
func (e *Env) OpsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := e.Ready(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ready\n")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(e.Registry, promhttp.HandlerOpts{}))
	if e.Config.Ops.Pprof {
		servePprof(mux)
	}
	return mux
}

// servePprof mounts net/http/pprof's handlers on mux (never on
// http.DefaultServeMux, which the package's import also fills but nothing
// here serves). A CPU profile or trace must be shorter than the ops
// server's 30 s write timeout: /debug/pprof/profile?seconds=20.
func servePprof(mux *http.ServeMux) {
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("POST /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
}

// Service is a built service ready to run.
type Service interface {
	Run(ctx context.Context) error
}

// ErrUsage means the command line was wrong; the flag package has already
// printed what and the usage.
var ErrUsage = errors.New("invalid command line (see above)")

// Main is the body of a separately run service's main: it reads its flags
// (-config, -ops-listen, -version), starts the environment, builds the
// service and runs it beside the ops server until ctx is done.
func Main(ctx context.Context, name string, args []string, stderr io.Writer, build func(ctx context.Context, env *Env) (Service, error)) error {
	return MainWith(ctx, name, args, stderr, MainOptions{}, build)
}

// MainOptions adjusts MainWith for a service with needs of its own.
type MainOptions struct {
	// Flags adds the service's own flags (besides -config) before the
	// arguments are parsed.
	Flags func(fs *flag.FlagSet)
	// Check vets the loaded configuration (and the service's flags) before
	// anything is started or connected.
	Check func(cfg config.Config) error
}

// MainWith is Main with the service's own flags and configuration check.
//
// A first argument "run" is accepted and ignored, so that one command line
// starts any Switchyard binary: `<service> run --config f` as `switchyard
// run --config f` (the Docker image's CMD).
func MainWith(ctx context.Context, name string, args []string, stderr io.Writer, o MainOptions, build func(ctx context.Context, env *Env) (Service, error)) error {
	if len(args) > 0 && args[0] == "run" {
		args = args[1:]
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfgPath, opsListen string
	fs.StringVar(&cfgPath, "config", "switchyard.yaml", "configuration `file`")
	fs.StringVar(&cfgPath, "c", "switchyard.yaml", "shorthand for -config")
	fs.StringVar(&opsListen, "ops-listen", "", "override ops.listen (`host:port` or off), so that services sharing one config file on one host do not collide")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if o.Flags != nil {
		o.Flags(fs)
	}
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: %s [run] [-config switchyard.yaml] [-ops-listen host:port]\n\nSwitchyard's %s service. Flags:\n", name, name)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return ErrUsage
	}
	if *showVersion {
		fmt.Fprintf(stderr, "switchyard %s %s\n", name, version.String())
		return nil
	}
	cfg, err := config.Load(cfgPath, os.LookupEnv)
	if err != nil {
		return err
	}
	if opsListen != "" {
		cfg.Ops.Listen = opsListen
		if err := cfg.Validate(); err != nil {
			return fmt.Errorf("-ops-listen: %w", err)
		}
	}
	if o.Check != nil {
		if err := o.Check(cfg); err != nil {
			return err
		}
	}
	env, err := Start(ctx, cfg, Options{Name: name, LogOutput: stderr})
	if err != nil {
		return err
	}
	defer env.Close()
	svc, err := build(ctx, env)
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return svc.Run(gctx) })
	g.Go(func() error { return env.ServeOps(gctx) })
	env.Log.InfoContext(ctx, name+" started", slog.String("version", version.String()))
	return g.Wait()
}
