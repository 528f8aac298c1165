package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
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
	if err := writeBenchConfig(cfgPath, e.dir, ingressAddr, auditAddr, opsAddr, partnerAddr, ""); err != nil {
		return err
	}
	proc, err := startProcess(e, o.MemLimit, "switchyard", bin, "run", "--config", cfgPath)
	if err != nil {
		return err
	}
	if err := proc.waitServing(ctx, "http://"+opsAddr+"/readyz", ingressAddr); err != nil {
		return err
	}
	cmd := proc.cmd
	idle, child0, err := procUsage(cmd.Process.Pid, "VmRSS")
	if err != nil {
		return err
	}
	hooks, err := newWebhooks("memory")
	if err != nil {
		return err
	}
	profiles := heapProfiles(ctx, o, "http://"+opsAddr, fmt.Sprintf("all-in-one-%d", rate))
	res, err := openLoop(ingressAddr, o.Conns, rate, o.MemDuration, func(c *loadConn, t time.Time) (bool, error) {
		return hooks.send(c, "/webhooks/shop", t)
	})
	if err != nil {
		return err
	}
	if err := profiles(); err != nil {
		return err
	}
	hwm, child1, err := procUsage(cmd.Process.Pid, "VmHWM")
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
	rep.add(row{Section: "memory", Name: fmt.Sprintf("all-in-one (SQLite audit)%s, %s/s offered for %s", memLimitNote(o), formatRate(float64(rate)), o.MemDuration),
		Rate: res.rate(), Unit: "accepted/s", Latency: &q, PeakRSSMiB: peak, CPUMicros: perOp(child1-child0, res.Accepted),
		Target: "RSS < 200 MB (190.7 MiB)", Met: met(float64(hwm)*1024 < 200e6),
		Note: fmt.Sprintf("CPU: the all-in-one's; %.0f MiB idle; at the end %s; %d delivered by the end of the load; load average %s %s",
			float64(idle)/1024, gomem, delivered, loadAvg(), loadNote(res))})
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

// procUsage is a kB field of a process's status (procStatus) and its CPU
// time so far (procCPU).
func procUsage(pid int, field string) (int64, time.Duration, error) {
	kb, err := procStatus(pid, field)
	if err != nil {
		return 0, 0, err
	}
	cpu, err := procCPU(pid)
	return kb, cpu, err
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

// heapProfiles, with -heap-profiles, saves a process's heap profile (its
// ops listener's /debug/pprof/heap, ADR 0740) 10 s into the load (or
// halfway, if it is shorter) as <name>-early.pb.gz; the function it returns
// saves the one at the end of the load as <name>-end.pb.gz and reports an
// error of either. Without the flag both do nothing.
func heapProfiles(ctx context.Context, o options, opsURL, name string) func() error {
	if o.HeapProfiles == "" {
		return func() error { return nil }
	}
	early := min(10*time.Second, o.MemDuration/2)
	done := make(chan error, 1)
	t := time.AfterFunc(early, func() {
		done <- saveHeapProfile(ctx, opsURL, filepath.Join(o.HeapProfiles, name+"-early.pb.gz"))
	})
	return func() error {
		if t.Stop() {
			done <- nil
		}
		if err := <-done; err != nil {
			return err
		}
		return saveHeapProfile(ctx, opsURL, filepath.Join(o.HeapProfiles, name+"-end.pb.gz"))
	}
}

func saveHeapProfile(ctx context.Context, opsURL, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, opsURL+"/debug/pprof/heap", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("heap profile: %s", resp.Status)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// process is a Switchyard (or nats-server) process a section started,
// stopped with SIGTERM (SIGKILL after 30 s) when the section closes.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	exited  chan error
}

// startProcess starts bin with args, its output in <name>.log under the
// section's directory; memLimit, if set, is its GOMEMLIMIT.
func startProcess(e *env, memLimit, name, bin string, args ...string) (*process, error) {
	p := &process{name: name, logPath: filepath.Join(e.dir, name+".log"), exited: make(chan error, 1)}
	logf, err := os.Create(p.logPath)
	if err != nil {
		return nil, err
	}
	p.cmd = exec.Command(bin, args...)
	if memLimit != "" {
		p.cmd.Env = append(os.Environ(), "GOMEMLIMIT="+memLimit)
	}
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.exited <- p.cmd.Wait()
		logf.Close()
	}()
	e.onClose(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(30 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	})
	return p, nil
}

// waitServing waits until the process's readyURL answers 200 and, when
// listen is set, its other listener accepts connections (ready is the
// process's dependencies; ingress and the auditor's API listen after).
func (p *process) waitServing(ctx context.Context, readyURL, listen string) error {
	return waitUntil(ctx, time.Minute, p.name+" ready", func() (bool, error) {
		select {
		case err := <-p.exited:
			p.exited <- err
			b, _ := os.ReadFile(p.logPath)
			return false, fmt.Errorf("exited: %v\n%s", err, tail(b, 2000))
		default:
		}
		resp, err := http.Get(readyURL)
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return false, nil
		}
		if listen == "" {
			return true, nil
		}
		c, err := net.DialTimeout("tcp", listen, time.Second)
		if err != nil {
			return false, nil
		}
		c.Close()
		return true, nil
	})
}

// writeBenchConfig writes the memory rows' configuration: the shop source
// (no rate limit) and one destination, the fast local partner, with the
// ops listener's profiles on (ADR 0740). extra is appended (nats.url,
// database_url for separately run services).
func writeBenchConfig(path, dir, ingressAddr, auditAddr, opsAddr, partnerAddr, extra string) error {
	cfg := fmt.Sprintf(`log: {format: json, level: warn}
data_dir: %s
ingress: {listen: %s}
auditor: {listen: %s}
ops: {listen: %s, pprof: true}
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
%s`, filepath.Join(dir, "data"), ingressAddr, auditAddr, opsAddr, webhookSecret, partnerAddr, extra)
	return os.WriteFile(path, []byte(cfg), 0o600)
}

// memLimitNote names the GOMEMLIMIT of a memory row, if one was set.
func memLimitNote(o options) string {
	if o.MemLimit == "" {
		return ""
	}
	return " GOMEMLIMIT=" + o.MemLimit
}
