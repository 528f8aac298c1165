package main

import (
	"bytes"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/switchyard/switchyard/pkg/signing"
	"github.com/switchyard/switchyard/pkg/testing/loadconn"
)

// webhookSecret is the Standard Webhooks test vector's secret, which every
// section's source uses.
const webhookSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// bodySize is every webhook's size.
const bodySize = 1024

// loadConn is the load generator's client (the same as BenchmarkIngress's).
type loadConn = loadconn.Conn

var dialLoad = loadconn.Dial

// webhooks signs Standard Webhooks requests: 1 KiB bodies, each with a
// new delivery id and the time it was meant to be sent (so that a partner
// at the end of the chain can measure from it).
type webhooks struct {
	sw  *signing.StandardWebhooks
	seq atomic.Int64
	// run keeps ids unique across the runs of one process.
	run string
}

func newWebhooks(run string) (*webhooks, error) {
	sw, err := signing.NewStandardWebhooks([]string{webhookSecret}, time.Minute)
	if err != nil {
		return nil, err
	}
	return &webhooks{sw: sw, run: run}, nil
}

// sentPrefix starts every body; the intended send time (unix ns, 19
// digits) follows it.
const sentPrefix = `{"type":"order.created","sent":`

// body is a 1 KiB JSON webhook carrying its intended send time.
func webhookBody(dst []byte, intended time.Time) []byte {
	dst = append(dst[:0], sentPrefix...)
	dst = strconv.AppendInt(dst, intended.UnixNano(), 10)
	dst = append(dst, `,"data":{"order_id":1001,"padding":"`...)
	dst = append(dst, strings.Repeat("x", bodySize-len(dst)-3)...)
	return append(dst, `"}}`...)
}

// sentTime reads the intended send time back out of a body; false if the
// body is not one of ours.
func sentTime(body []byte) (time.Time, bool) {
	rest, ok := bytes.CutPrefix(body, []byte(sentPrefix))
	if !ok || len(rest) < 19 {
		return time.Time{}, false
	}
	ns, err := strconv.ParseInt(string(rest[:19]), 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(0, ns), true
}

// send posts one signed webhook to path and says whether it was accepted.
func (w *webhooks) send(c *loadConn, path string, intended time.Time) (bool, error) {
	c.Body = webhookBody(c.Body, intended)
	id := "msg_" + w.run + "_" + strconv.FormatInt(w.seq.Add(1), 10)
	now := time.Now()
	status, err := c.Post(path, c.Body,
		"Content-Type", "application/json",
		signing.HeaderWebhookID, id,
		signing.HeaderWebhookTimestamp, strconv.FormatInt(now.Unix(), 10),
		signing.HeaderWebhookSignature, w.sw.Sign(id, now, c.Body))
	if err != nil {
		return false, err
	}
	return status == http.StatusAccepted || status == http.StatusOK, nil
}

// loadResult is one load run.
type loadResult struct {
	// Accepted and Refused count the answers; Errors the connections lost.
	Accepted, Refused, Errors int
	// Elapsed is from the first intended send to the last answer.
	Elapsed time.Duration
	// Latencies of the accepted requests.
	Latencies []time.Duration
	// CPU is this process's CPU time during the run (load generator and
	// whatever else runs in the process).
	CPU time.Duration
}

// cpuPerOp is CPU time per accepted request in µs.
func (r loadResult) cpuPerOp() float64 { return perOp(r.CPU, r.Accepted) }

func perOp(cpu time.Duration, n int) float64 {
	if n <= 0 {
		return 0
	}
	return float64(cpu.Microseconds()) / float64(n)
}

// cpuTime is this process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func (r loadResult) rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Accepted) / r.Elapsed.Seconds()
}

// closedLoop runs conc senders, each on its own connection, each sending
// its next request when the last one is answered, for d.
func closedLoop(addr string, conc int, d time.Duration, send func(c *loadConn, intended time.Time) (bool, error)) (loadResult, error) {
	conns, err := dialAll(addr, conc)
	if err != nil {
		return loadResult{}, err
	}
	defer closeAll(conns)
	parts := make([]loadResult, conc)
	var wg sync.WaitGroup
	cpu0 := cpuTime()
	start := time.Now()
	end := start.Add(d)
	for i, c := range conns {
		wg.Go(func() {
			p := &parts[i]
			for time.Now().Before(end) {
				t0 := time.Now()
				if ok, err := send(c, t0); !p.count(ok, err, t0) {
					return
				}
			}
		})
	}
	wg.Wait()
	r := merge(parts, time.Since(start))
	r.CPU = cpuTime() - cpu0
	return r, nil
}

// openLoop offers rate requests/s for d from conns connections: request i
// is due at start + i/rate whatever happened to the earlier ones, and its
// latency runs from that intended time, so a stall counts against every
// request it delayed (no coordinated omission). When every connection is
// busy, due requests wait, and the wait is in their latency.
func openLoop(addr string, conns, rate int, d time.Duration, send func(c *loadConn, intended time.Time) (bool, error)) (loadResult, error) {
	cs, err := dialAll(addr, conns)
	if err != nil {
		return loadResult{}, err
	}
	defer closeAll(cs)
	interval := time.Second / time.Duration(rate)
	total := int64(d / interval)
	parts := make([]loadResult, conns)
	var next atomic.Int64
	var wg sync.WaitGroup
	cpu0 := cpuTime()
	start := time.Now().Add(10 * time.Millisecond)
	for i, c := range cs {
		wg.Go(func() {
			p := &parts[i]
			for {
				n := next.Add(1) - 1
				if n >= total {
					return
				}
				intended := start.Add(time.Duration(n) * interval)
				// Pacing is the point: the request is not due yet.
				if wait := time.Until(intended); wait > 0 {
					time.Sleep(wait)
				}
				if ok, err := send(c, intended); !p.count(ok, err, intended) {
					return
				}
			}
		})
	}
	wg.Wait()
	r := merge(parts, time.Since(start))
	r.CPU = cpuTime() - cpu0
	return r, nil
}

// count adds one request's outcome, its latency running from from; false
// when the connection failed and its loop must stop.
func (p *loadResult) count(ok bool, err error, from time.Time) bool {
	switch {
	case err != nil:
		p.Errors++
		return false
	case !ok:
		p.Refused++
	default:
		p.Accepted++
		p.Latencies = append(p.Latencies, time.Since(from))
	}
	return true
}

func dialAll(addr string, n int) ([]*loadConn, error) {
	conns := make([]*loadConn, 0, n)
	for range n {
		c, err := dialLoad(addr)
		if err != nil {
			closeAll(conns)
			return nil, err
		}
		conns = append(conns, c)
	}
	return conns, nil
}

func closeAll(conns []*loadConn) {
	for _, c := range conns {
		c.Close()
	}
}

func merge(parts []loadResult, elapsed time.Duration) loadResult {
	r := loadResult{Elapsed: elapsed}
	for _, p := range parts {
		r.Accepted += p.Accepted
		r.Refused += p.Refused
		r.Errors += p.Errors
		r.Latencies = append(r.Latencies, p.Latencies...)
	}
	return r
}

// quantiles are a latency distribution's p50, p99 and p99.9 in ms.
type quantiles struct {
	P50, P99, P999 float64
}

// latencyQuantiles sorts ds and reads its quantiles (the nearest rank);
// zero when there are none.
func latencyQuantiles(ds []time.Duration) quantiles {
	if len(ds) == 0 {
		return quantiles{}
	}
	slices.Sort(ds)
	at := func(q float64) float64 {
		i := min(len(ds)-1, int(q*float64(len(ds))))
		return float64(ds[i]) / float64(time.Millisecond)
	}
	return quantiles{P50: at(0.50), P99: at(0.99), P999: at(0.999)}
}
