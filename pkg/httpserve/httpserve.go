// Package httpserve runs an http.Server until its context ends, then shuts
// it down gracefully within a deadline.
package httpserve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// ShutdownTimeout bounds a graceful shutdown: requests still running after
// it are cut off.
const ShutdownTimeout = 10 * time.Second

// Run listens on addr and serves h until ctx is done. It returns nil after a
// clean shutdown.
func Run(ctx context.Context, name, addr string, h http.Handler, log *slog.Logger, opts ...Option) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s: listen on %s: %w", name, addr, err)
	}
	return Serve(ctx, name, ln, h, log, opts...)
}

// Option adjusts the server.
type Option func(*http.Server)

// WithReadTimeout bounds reading a whole request, body included.
func WithReadTimeout(d time.Duration) Option {
	return func(s *http.Server) { s.ReadTimeout = d }
}

// Serve is Run on a listener the caller opened.
func Serve(ctx context.Context, name string, ln net.Listener, h http.Handler, log *slog.Logger, opts ...Option) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	for _, o := range opts {
		o(srv)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			log.Warn("HTTP shutdown cut off requests", slog.String("server", name), slog.Any("error", err))
		}
	}()
	log.Info("listening", slog.String("server", name), slog.String("addr", ln.Addr().String()))
	err := srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		<-done
		return nil
	}
	return fmt.Errorf("%s: serve: %w", name, err)
}
