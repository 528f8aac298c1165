//go:build chaos

// The chaos test runs every service as its own process against a
// nats-server process (built from the Go module) and the real Postgres,
// pushes signed webhooks through while it kills processes with SIGKILL and
// restarts them, and then checks that every webhook that was answered 2xx
// reached the partner and the audit log. Run it with `make chaos`.
package tests

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchyard/switchyard/pkg/testing/natscluster"
	"github.com/switchyard/switchyard/pkg/testing/pgtest"
	"github.com/switchyard/switchyard/pkg/testing/waitfor"
)

// chaosWebhooks is how many webhooks the partner sends.
const chaosWebhooks = 3000

func TestChaos(t *testing.T) {
	dir := t.TempDir()
	bin := serviceBinaries(t, dir)
	bin["nats-server"] = natscluster.Binary(t)

	// NATS with sync_interval: always, as a single-node production server
	// should run: a kill -9 must not lose what was acknowledged.
	natsAddr := freeTCPAddr(t)
	host, port, _ := net.SplitHostPort(natsAddr)
	natsConf := filepath.Join(dir, "nats.conf")
	writeFile(t, natsConf, fmt.Sprintf("listen: %s:%s\njetstream {\n  store_dir: %q\n  sync_interval: always\n}\n", host, port, filepath.Join(dir, "nats")))

	var partnerMu sync.Mutex
	received := map[string]int{}
	partner := newHTTPServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("Idempotency-Key")
		if rand.IntN(5) == 0 { // a flaky partner: one request in five fails
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		}
		partnerMu.Lock()
		received[id]++
		partnerMu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))

	ingressAddr, auditAddr := freeTCPAddr(t), freeTCPAddr(t)
	dbURL := pgtest.Schema(t)
	cfgPath := filepath.Join(dir, "switchyard.yaml")
	writeFile(t, cfgPath, fmt.Sprintf(`log: {format: json, level: info}
data_dir: %q
database_url: %q
nats: {url: "nats://%s"}
ops: {listen: "off"}
ingress: {listen: %q}
auditor: {listen: %q}
sources:
  - {name: shop, scheme: standard-webhooks, secrets: [%q], rate_limit: {unlimited: true}}
destinations:
  - name: erp
    url: %q
    subjects: ["webhooks.shop.>"]
    timeout: 1s
    retry: {backoff: [2s], max_attempts: 100}
    concurrency: 16
    allow_private_network: true
    breaker: {disabled: true}
`, filepath.Join(dir, "data"), dbURL, natsAddr, ingressAddr, auditAddr, vectorSecret, partner))

	procs := map[string]*proc{
		"nats":         newProc(t, dir, "nats", bin["nats-server"], "-c", natsConf),
		"auditor":      newProc(t, dir, "auditor", bin["auditor"], "-config", cfgPath),
		"dispatcher-1": newProc(t, dir, "dispatcher-1", bin["dispatcher"], "-config", cfgPath),
		"dispatcher-2": newProc(t, dir, "dispatcher-2", bin["dispatcher"], "-config", cfgPath),
		"notifier":     newProc(t, dir, "notifier", bin["notifier"], "-config", cfgPath),
		"ingress":      newProc(t, dir, "ingress", bin["ingress"], "-config", cfgPath),
	}
	procs["nats"].start(t)
	waitTCP(t, natsAddr)
	// The dispatchers create their consumers before ingress takes traffic.
	for _, name := range []string{"auditor", "dispatcher-1", "dispatcher-2", "notifier"} {
		procs[name].start(t)
	}
	waitTCP(t, auditAddr)
	procs["ingress"].start(t)
	waitTCP(t, ingressAddr)

	// The partner sends webhooks and retries each until it is answered 2xx,
	// as webhook providers do.
	sw := mustStandard(t)
	var accepted sync.Map
	var retries atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	loadDone := make(chan struct{})
	// Paced so that the load spans about 45 s of kills and restarts.
	pace := time.NewTicker(45 * time.Second / chaosWebhooks)
	defer pace.Stop()
	go func() {
		defer close(loadDone)
		var wg sync.WaitGroup
		next := atomic.Int64{}
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				client := &http.Client{Timeout: 3 * time.Second}
				for {
					select {
					case <-pace.C:
					case <-ctx.Done():
						return
					}
					n := next.Add(1)
					if n > chaosWebhooks {
						return
					}
					id := "msg_chaos_" + strconv.FormatInt(n, 10)
					body := fmt.Sprintf(`{"type":"order.created","n":%d}`, n)
					for ctx.Err() == nil {
						now := time.Now()
						req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+ingressAddr+"/webhooks/shop", strings.NewReader(body))
						req.Header.Set("Content-Type", "application/json")
						req.Header.Set("webhook-id", id)
						req.Header.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
						req.Header.Set("webhook-signature", sw.Sign(id, now, []byte(body)))
						resp, err := client.Do(req)
						if err == nil {
							resp.Body.Close()
							if resp.StatusCode/100 == 2 {
								accepted.Store("shop:"+id, true)
								break
							}
						}
						retries.Add(1)
						select { // the partner's own retry pause
						case <-time.After(100 * time.Millisecond):
						case <-ctx.Done():
						}
					}
				}
			}()
		}
		wg.Wait()
	}()

	// Kill something every 1.5 s while the load runs; NATS itself twice.
	kills := map[string]int{}
	victims := []string{"dispatcher-1", "dispatcher-2", "ingress", "auditor", "notifier", "dispatcher-1", "nats", "dispatcher-2", "ingress", "auditor", "nats"}
	tick := time.NewTicker(1500 * time.Millisecond)
chaos:
	for i := 0; ; i++ {
		select {
		case <-loadDone:
			break chaos
		case <-tick.C:
		}
		name := victims[i%len(victims)]
		p := procs[name]
		p.kill(t)
		kills[name]++
		if name == "nats" {
			// A server restart: everyone reconnects.
			p.start(t)
			waitTCP(t, natsAddr)
		} else {
			p.start(t)
		}
	}
	tick.Stop()
	loadTook := time.Since(start)

	var want []string
	accepted.Range(func(k, _ any) bool { want = append(want, k.(string)); return true })
	if len(want) != chaosWebhooks {
		t.Fatalf("only %d of %d webhooks were accepted before the deadline", len(want), chaosWebhooks)
	}
	drainStart := time.Now()
	waitfor.Within(t, 3*time.Minute, "every accepted webhook at the partner", func() bool {
		partnerMu.Lock()
		defer partnerMu.Unlock()
		for _, id := range want {
			if received[id] == 0 {
				return false
			}
		}
		return true
	})
	drainTook := time.Since(drainStart)
	sys := &system{DatabaseURL: dbURL}
	waitfor.Within(t, 3*time.Minute, "every accepted webhook in the audit log", func() bool {
		var n int
		_ = sys.queryRow(t, "SELECT count(*) FROM events WHERE source = 'shop'", &n)
		return n == len(want)
	})

	partnerMu.Lock()
	dups := 0
	for _, n := range received {
		dups += n - 1
	}
	partnerMu.Unlock()
	var attempts int
	_ = sys.queryRow(t, "SELECT count(*) FROM attempts", &attempts)
	fmt.Printf("chaos: %d webhooks accepted in %s with %d sender retries (503s and refused connections while ingress or NATS were down)\n",
		len(want), loadTook.Round(time.Millisecond), retries.Load())
	fmt.Printf("chaos: SIGKILLs: %v\n", kills)
	fmt.Printf("chaos: delivered %d of %d (lost 0); %d duplicate deliveries (%.2f%%, at-least-once after kills), %d attempts in the audit log\n",
		len(want), len(want), dups, 100*float64(dups)/float64(len(want)), attempts)
	fmt.Printf("chaos: the backlog drained %s after the load ended\n", drainTook.Round(time.Millisecond))
}
