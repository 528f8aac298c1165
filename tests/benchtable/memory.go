package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// memorySection runs the all-in-one (`switchyard run`: embedded NATS, the
// four services, the embedded SQLite audit store) as its own process,
// offers it webhooks at a steady rate delivered to the fast local partner,
// and reads its peak resident set (VmHWM) from /proc.
func memorySection(ctx context.Context, e *env, o options, rep *report) error {
	bin := o.Switchyard
	if bin == "" {
		bin = filepath.Join(e.dir, "switchyard")
		cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/switchyard/switchyard/services/switchyard/cmd/switchyard")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("build the all-in-one: %v\n%s", err, out)
		}
	}
	for _, rate := range o.MemRates {
		dir, err := sectionDir(e.dir, "all-in-one")
		if err != nil {
			return err
		}
		sub := &env{dir: dir, log: e.log}
		err = allInOne(ctx, sub, o, bin, rate, rep)
		sub.close()
		if err != nil {
			return err
		}
	}
	return nil
}

// allInOne starts the all-in-one, offers it rate webhooks/s for
// o.MemDuration and adds its row.
func allInOne(ctx context.Context, e *env, o options, bin string, rate int, rep *report) error {
	p := &partner{}
	partnerAddr, err := e.serve(ctx, "partner", p)
	if err != nil {
		return err
	}
	ports, err := freePorts(3)
	if err != nil {
		return err
	}
	ingressAddr, auditAddr, opsAddr := ports[0], ports[1], ports[2]
	cfgPath := filepath.Join(e.dir, "switchyard.yaml")
	cfg := fmt.Sprintf(`log: {format: json, level: warn}
data_dir: %s
ingress: {listen: %s}
auditor: {listen: %s}
ops: {listen: %s}
sources:
  - name: shop
    scheme: standard-webhooks
    secrets: [%q]
    rate_limit: {unlimited: true}
destinations:
  - name: partner
    url: http://%s/hooks
    subjects: ["webhooks.shop.>"]
    concurrency: 32
    allow_private_network: true
`, filepath.Join(e.dir, "data"), ingressAddr, auditAddr, opsAddr, webhookSecret, partnerAddr)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(e.dir, "switchyard.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(bin, "run", "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start the all-in-one: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	e.onClose(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	if err := waitUntil(ctx, time.Minute, "the all-in-one ready", func() (bool, error) {
		select {
		case err := <-exited:
			b, _ := os.ReadFile(logf.Name())
			return false, fmt.Errorf("exited: %v\n%s", err, tail(b, 2000))
		default:
		}
		resp, err := http.Get("http://" + opsAddr + "/readyz")
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return false, nil
		}
		// Ready is the process's dependencies; ingress listens after.
		c, err := net.DialTimeout("tcp", ingressAddr, time.Second)
		if err != nil {
			return false, nil
		}
		c.Close()
		return true, nil
	}); err != nil {
		return err
	}
	idle, err := procStatus(cmd.Process.Pid, "VmRSS")
	if err != nil {
		return err
	}
	child0, err := procCPU(cmd.Process.Pid)
	if err != nil {
		return err
	}
	hooks, err := newWebhooks("memory")
	if err != nil {
		return err
	}
	res, err := openLoop(ingressAddr, o.Conns, rate, o.MemDuration, func(c *loadConn, t time.Time) (bool, error) {
		return hooks.send(c, "/webhooks/shop", t)
	})
	if err != nil {
		return err
	}
	hwm, err := procStatus(cmd.Process.Pid, "VmHWM")
	if err != nil {
		return err
	}
	child1, err := procCPU(cmd.Process.Pid)
	if err != nil {
		return err
	}
	// Where the memory is: the Go runtime's own figures at the end, from
	// the all-in-one's metrics.
	gomem, err := goMemory(ctx, "http://"+opsAddr+"/metrics")
	if err != nil {
		return err
	}
	delivered := p.n.Load()
	peak := float64(hwm) / 1024
	q := latencyQuantiles(res.Latencies)
	rep.add(row{Section: "memory", Name: fmt.Sprintf("all-in-one (SQLite audit), %s/s offered for %s", formatRate(float64(rate)), o.MemDuration),
		Rate: res.rate(), Unit: "accepted/s", Latency: &q, PeakRSSMiB: peak, CPUMicros: perOp(child1-child0, res.Accepted),
		Target: "RSS < 200 MB (190.7 MiB)", Met: met(float64(hwm)*1024 < 200e6),
		Note: fmt.Sprintf("CPU: the all-in-one's; %.0f MiB idle; at the end %s; %d delivered by the end of the load %s",
			float64(idle)/1024, gomem, delivered, loadNote(res))})
	return nil
}

// goMemory reads the Go runtime's heap in use, the memory it holds from
// the OS and the goroutines from a Prometheus text exposition.
func goMemory(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("the all-in-one's metrics: %w", err)
	}
	defer resp.Body.Close()
	v := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		switch {
		case !ok:
		case name == "go_memstats_heap_inuse_bytes", name == "go_memstats_sys_bytes", name == "go_goroutines":
			f, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
			if err != nil {
				return "", fmt.Errorf("metric %s: %w", name, err)
			}
			v[name] = f
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	if len(v) != 3 {
		return "", fmt.Errorf("the all-in-one's metrics lack the Go runtime's (found %v)", v)
	}
	return fmt.Sprintf("Go heap in use %.0f MiB, Go runtime total %.0f MiB, %.0f goroutines",
		v["go_memstats_heap_inuse_bytes"]/(1<<20), v["go_memstats_sys_bytes"]/(1<<20), v["go_goroutines"]), nil
}

// procStatus reads a kB field (VmRSS, VmHWM) of /proc/<pid>/status.
func procStatus(pid int, field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && k == field {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%d/status has no %s", pid, field)
}

// procCPU is a process's user and system CPU time so far, from
// /proc/<pid>/stat (in clock ticks of 10 ms, the kernel's USER_HZ).
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name, field 2, is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// utime and stime are fields 14 and 15; f starts at field 3.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f)+2)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: utime %q, stime %q", pid, f[11], f[12])
	}
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}

// freePorts returns n free loopback addresses (free when asked: another
// process could take one before the all-in-one listens).
func freePorts(n int) ([]string, error) {
	var out []string
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().String())
	}
	return out, nil
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
