package config

import (
	"fmt"
	"time"

	"github.com/switchyard/switchyard/pkg/syncreply"
)

// IngressSync bounds synchronous publishes: POST /v1/events?wait=5s (or
// Prefer: wait=5) stores the event, then waits for the first attempt of
// each destination it routes to and answers with what they said.
type IngressSync struct {
	// MaxWait bounds the wait a request may ask for. Default 30s.
	MaxWait Duration `yaml:"max_wait"`
	// DefaultWait is the wait of a publish that asks for none but routes
	// to a destination with mode sync. Default 5s.
	DefaultWait Duration `yaml:"default_wait"`
}

// Destination modes.
const (
	// ModeAsync: publishers are answered once the event is stored.
	ModeAsync = "async"
	// ModeSync: a publish routed here waits for the answer by default
	// (ingress.sync.default_wait).
	ModeSync = "sync"
)

// Sync and poll defaults.
const (
	DefaultSyncMaxWait     = Duration(30 * time.Second)
	DefaultSyncDefaultWait = Duration(5 * time.Second)
	DefaultPollLeaseTTL    = Duration(30 * time.Second)
)

func (s IngressSync) withDefaults() IngressSync {
	setDefault(&s.MaxWait, DefaultSyncMaxWait)
	setDefault(&s.DefaultWait, min(DefaultSyncDefaultWait, s.MaxWait))
	return s
}

func (s IngressSync) validate(p *problems) {
	if s.MaxWait.D() <= 0 || s.MaxWait.D() > 5*time.Minute {
		p.add("ingress.sync.max_wait", "must be between 0 and 5m, not %s", s.MaxWait)
	}
	if s.DefaultWait.D() <= 0 || s.DefaultWait > s.MaxWait {
		p.add("ingress.sync.default_wait", "must be positive and at most max_wait (%s), not %s", s.MaxWait, s.DefaultWait)
	}
}

// validateSync checks a destination's synchronous settings; f names it.
func validateSync(p *problems, f string, d Destination) {
	if d.Mode != ModeAsync && d.Mode != ModeSync {
		p.add(f+".mode", "must be async or sync, not %q", d.Mode)
	}
	for i, h := range d.SyncHeaders {
		if err := syncreply.CheckHeaderName(h); err != nil {
			p.add(fmt.Sprintf("%s.sync_headers[%d]", f, i), "%v", err)
		}
	}
}
