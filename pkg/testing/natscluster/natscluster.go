// Package natscluster starts a real JetStream cluster for a test: three
// nats-server processes (built once from the nats-server/v2 module the
// project requires) on loopback, each with its own store, routed to the
// others. Tests stop, kill and restart single nodes and ask which node leads
// a stream or a consumer. Everything stops at t.Cleanup.
//
// The servers are processes rather than embedded servers so that a node can
// be SIGKILLed the way a machine dies, and so that a test's own goroutines
// (and the race detector) are not slowed by three servers in its process.
package natscluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard/switchyard/pkg/testing/waitfor"
)

// Options adjusts Start.
type Options struct {
	// Size is the number of nodes. Default 3.
	Size int
	// SyncAlways makes every node fsync each write (sync_interval: always),
	// as a single-node production server should; a cluster survives a
	// killed node without it.
	SyncAlways bool
	// StartTimeout bounds waiting for the cluster (and a restarted node) to
	// be ready. Default 60s.
	StartTimeout time.Duration
}

// Cluster is a running test cluster.
type Cluster struct {
	// Name is the cluster's name (the cluster block's name).
	Name  string
	nodes []*Node
	opts  Options
}

// Node is one nats-server process of the cluster.
type Node struct {
	// Name is the server name: n1, n2, ...
	Name string
	// ClientPort, ClusterPort and HTTPPort stay the same across restarts.
	ClientPort, ClusterPort, HTTPPort int
	// StoreDir is the node's JetStream store; a restart keeps it.
	StoreDir string
	confPath string
	logPath  string
	bin      string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// Start builds nats-server if needed, starts the nodes and waits until
// JetStream has a meta leader that every node knows and every node is
// healthy (current with the meta leader).
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.Size == 0 {
		opts.Size = 3
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = time.Minute
	}
	bin := Binary(t)
	dir := t.TempDir()
	c := &Cluster{Name: "switchyard-test", opts: opts}
	for i := range opts.Size {
		n := &Node{
			Name:        "n" + strconv.Itoa(i+1),
			ClientPort:  FreePort(t),
			ClusterPort: FreePort(t),
			HTTPPort:    FreePort(t),
			bin:         bin,
		}
		n.StoreDir = filepath.Join(dir, n.Name, "jetstream")
		n.confPath = filepath.Join(dir, n.Name, "nats.conf")
		n.logPath = filepath.Join(dir, n.Name, "nats.log")
		if err := os.MkdirAll(n.StoreDir, 0o700); err != nil {
			t.Fatal(err)
		}
		c.nodes = append(c.nodes, n)
	}
	for _, n := range c.nodes {
		if err := os.WriteFile(n.confPath, []byte(c.config(n)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, n := range c.nodes {
			n.stop(syscall.SIGTERM, 15*time.Second)
		}
		if t.Failed() {
			for _, n := range c.nodes {
				b, _ := os.ReadFile(n.logPath)
				t.Logf("--- NATS %s log (last 4000 bytes):\n%s", n.Name, tail(b, 4000))
			}
		}
	})
	for _, n := range c.nodes {
		if err := n.start(); err != nil {
			t.Fatalf("start NATS %s: %v", n.Name, err)
		}
	}
	c.WaitMetaLeader(t)
	for _, n := range c.nodes {
		c.WaitHealthy(t, n.Name)
	}
	return c
}

// config is a node's server configuration file.
func (c *Cluster) config(n *Node) string {
	var routes []string
	for _, o := range c.nodes {
		if o != n {
			routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", o.ClusterPort))
		}
	}
	sync := ""
	if c.opts.SyncAlways {
		sync = "\n  sync_interval: always"
	}
	return fmt.Sprintf(`server_name: %s
listen: 127.0.0.1:%d
http: 127.0.0.1:%d
jetstream {
  store_dir: %q
  max_memory_store: 256MB%s
}
cluster {
  name: %s
  listen: 127.0.0.1:%d
  routes: [%s]
}
`, n.Name, n.ClientPort, n.HTTPPort, n.StoreDir, sync, c.Name, n.ClusterPort, strings.Join(routes, ", "))
}

// Nodes returns every node, running or not.
func (c *Cluster) Nodes() []*Node { return c.nodes }

// Node returns the node named name (n1, n2, ...), failing the test if there
// is none.
func (c *Cluster) Node(t testing.TB, name string) *Node {
	t.Helper()
	for _, n := range c.nodes {
		if n.Name == name {
			return n
		}
	}
	t.Fatalf("no NATS node %q in the cluster", name)
	return nil
}

// URLs is every node's client URL, comma-separated, as nats.url takes them.
func (c *Cluster) URLs() string {
	urls := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		urls[i] = n.URL()
	}
	return strings.Join(urls, ",")
}

// Connect opens a client connection to every node's URL (it reconnects to
// another when its node goes), closed by t.Cleanup.
func (c *Cluster) Connect(t testing.TB) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(c.URLs(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond),
		nats.Timeout(10*time.Second))
	if err != nil {
		t.Fatalf("connect to the test NATS cluster: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("JetStream: %v", err)
	}
	return nc, js
}

// Stop stops a node gracefully (SIGTERM) and waits for it to exit.
func (c *Cluster) Stop(t testing.TB, name string) {
	t.Helper()
	c.Node(t, name).stop(syscall.SIGTERM, 30*time.Second)
}

// Kill stops a node with SIGKILL, as a crash or a lost machine would, and
// waits for it to exit.
func (c *Cluster) Kill(t testing.TB, name string) {
	t.Helper()
	c.Node(t, name).stop(syscall.SIGKILL, 30*time.Second)
}

// Restart starts a stopped node again with its ports and store (stopping it
// first with SIGTERM if it runs), and waits until it is healthy: JetStream
// caught up with the meta leader and its streams and consumers current.
func (c *Cluster) Restart(t testing.TB, name string) {
	t.Helper()
	n := c.Node(t, name)
	n.stop(syscall.SIGTERM, 30*time.Second)
	if err := n.start(); err != nil {
		t.Fatalf("restart NATS %s: %v", name, err)
	}
	c.WaitHealthy(t, name)
}

// Start starts a stopped node again and returns once it accepts client
// connections, without waiting for JetStream (which needs a quorum of the
// nodes to be up); Restart waits for that too.
func (c *Cluster) Start(t testing.TB, name string) {
	t.Helper()
	n := c.Node(t, name)
	if n.Running() {
		t.Fatalf("NATS %s is already running", name)
	}
	if err := n.start(); err != nil {
		t.Fatalf("start NATS %s: %v", name, err)
	}
	waitfor.Within(t, c.opts.StartTimeout, "NATS "+name+" to accept connections", func() bool {
		conn, err := net.DialTimeout("tcp", n.clientAddr(), 200*time.Millisecond)
		if err == nil {
			conn.Close()
		}
		return err == nil
	})
}

// WaitHealthy waits until a node's /healthz says JetStream is current
// (meta leader known, its streams and consumers caught up).
func (c *Cluster) WaitHealthy(t testing.TB, name string) {
	t.Helper()
	n := c.Node(t, name)
	waitfor.Within(t, c.opts.StartTimeout, "NATS "+name+" healthy", func() bool {
		resp, err := httpClient.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", n.HTTPPort))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// Running returns the nodes that run, by name.
func (c *Cluster) Running() []string {
	var out []string
	for _, n := range c.nodes {
		if n.Running() {
			out = append(out, n.Name)
		}
	}
	return out
}

// MetaLeader returns the JetStream meta leader as every running node sees
// it, or "" while they do not agree on one (or none runs).
func (c *Cluster) MetaLeader() string {
	leader := ""
	for _, n := range c.nodes {
		if !n.Running() {
			continue
		}
		l, err := n.metaLeader()
		if err != nil || l == "" || (leader != "" && l != leader) {
			return ""
		}
		leader = l
	}
	return leader
}

// WaitMetaLeader waits until every running node knows the same meta leader.
func (c *Cluster) WaitMetaLeader(t testing.TB) string {
	t.Helper()
	return waitfor.ValueWithin(t, c.opts.StartTimeout, "a JetStream meta leader", func() (string, bool) {
		l := c.MetaLeader()
		return l, l != ""
	})
}

// StreamLeader returns the node that leads a stream, from the stream's
// info (ClusterInfo.Leader); "" while it has none.
func StreamLeader(ctx context.Context, js jetstream.JetStream, stream string) (string, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return "", fmt.Errorf("stream %s: %w", stream, err)
	}
	info := s.CachedInfo()
	if info.Cluster == nil {
		return "", fmt.Errorf("stream %s: no cluster info", stream)
	}
	return info.Cluster.Leader, nil
}

// ConsumerLeader returns the node that leads a consumer, from the
// consumer's info (ClusterInfo.Leader); "" while it has none.
func ConsumerLeader(ctx context.Context, js jetstream.JetStream, stream, consumer string) (string, error) {
	c, err := js.Consumer(ctx, stream, consumer)
	if err != nil {
		return "", fmt.Errorf("consumer %s of %s: %w", consumer, stream, err)
	}
	info := c.CachedInfo()
	if info.Cluster == nil {
		return "", fmt.Errorf("consumer %s of %s: no cluster info", consumer, stream)
	}
	return info.Cluster.Leader, nil
}

// WaitStreamLeader waits until a stream has a leader and returns it.
func (c *Cluster) WaitStreamLeader(t testing.TB, js jetstream.JetStream, stream string) string {
	t.Helper()
	return waitfor.ValueWithin(t, c.opts.StartTimeout, "a leader of stream "+stream, func() (string, bool) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		l, err := StreamLeader(ctx, js, stream)
		return l, err == nil && l != ""
	})
}

// WaitConsumerLeader waits until a consumer has a leader and returns it.
func (c *Cluster) WaitConsumerLeader(t testing.TB, js jetstream.JetStream, stream, consumer string) string {
	t.Helper()
	return waitfor.ValueWithin(t, c.opts.StartTimeout, "a leader of consumer "+consumer, func() (string, bool) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		l, err := ConsumerLeader(ctx, js, stream, consumer)
		return l, err == nil && l != ""
	})
}

// URL is the node's client URL.
func (n *Node) URL() string { return "nats://" + n.clientAddr() }

func (n *Node) clientAddr() string { return "127.0.0.1:" + strconv.Itoa(n.ClientPort) }

// Running reports whether the node's process runs.
func (n *Node) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cmd != nil
}

// Usage is what the node's process has used so far (see Usage); ok is
// false when it does not run.
func (n *Node) Usage() (peakRSS int64, cpu time.Duration, ok bool) {
	n.mu.Lock()
	cmd := n.cmd
	n.mu.Unlock()
	if cmd == nil {
		return 0, 0, false
	}
	return Usage(cmd.Process.Pid)
}

// Usage reads what a running process has used so far from /proc: peak
// resident memory (VmHWM) and CPU time (user + system). ok is false when
// /proc cannot tell (not Linux, or the process is gone).
func Usage(pid int) (peakRSS int64, cpu time.Duration, ok bool) {
	dir := "/proc/" + strconv.Itoa(pid)
	status, err := os.ReadFile(dir + "/status")
	if err != nil {
		return 0, 0, false
	}
	for line := range strings.Lines(string(status)) {
		if rest, found := strings.CutPrefix(line, "VmHWM:"); found {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			peakRSS = kb << 10
		}
	}
	stat, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return 0, 0, false
	}
	// The fields after the command name (in parentheses, which may hold
	// spaces): utime and stime are the 12th and 13th of those, in clock
	// ticks of 1/100 s on Linux.
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	if len(f) < 13 {
		return 0, 0, false
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return peakRSS, time.Duration(utime+stime) * 10 * time.Millisecond, peakRSS > 0
}

// LogPath is the node's log file (kept across restarts).
func (n *Node) LogPath() string { return n.logPath }

func (n *Node) start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil {
		return errors.New("already running")
	}
	logf, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(n.bin, "-c", n.confPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(exited)
	}()
	n.cmd, n.exited = cmd, exited
	return nil
}

// stop signals the process and waits for it to exit, killing it after
// timeout.
func (n *Node) stop(sig syscall.Signal, timeout time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return
	}
	_ = n.cmd.Process.Signal(sig)
	select {
	case <-n.exited:
	case <-time.After(timeout):
		_ = n.cmd.Process.Kill()
		<-n.exited
	}
	n.cmd = nil
}

var httpClient = &http.Client{Timeout: 2 * time.Second}

// metaLeader reads the meta leader from the node's /jsz.
func (n *Node) metaLeader() (string, error) {
	resp, err := httpClient.Get(fmt.Sprintf("http://127.0.0.1:%d/jsz", n.HTTPPort))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var jsz struct {
		Meta *struct {
			Leader string `json:"leader"`
		} `json:"meta_cluster"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&jsz); err != nil {
		return "", err
	}
	if jsz.Meta == nil {
		return "", nil
	}
	return jsz.Meta.Leader, nil
}

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// Binary returns a nats-server binary built from the nats-server/v2 module
// this test binary was built with. It is built once per test binary, into
// a directory under the system's temp dir named after the server and Go
// versions, so that later test binaries reuse it (and the Go build cache
// makes a rebuild quick).
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() { buildPath, buildErr = build() })
	if buildErr != nil {
		t.Fatalf("build nats-server: %v", buildErr)
	}
	return buildPath
}

func build() (string, error) {
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("switchyard-nats-server-%s-%s-%s-%s", server.VERSION, runtime.Version(), runtime.GOOS, runtime.GOARCH))
	path := filepath.Join(dir, "nats-server")
	if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() {
		return path, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(dir, "nats-server-*")
	if err != nil {
		return "", err
	}
	tmp.Close()
	// Built from this test's module, which requires nats-server/v2 (at the
	// version server.VERSION names): go build resolves it from there.
	cmd := exec.Command("go", "build", "-o", tmp.Name(), "github.com/nats-io/nats-server/v2")
	if out, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp.Name())
		return "", fmt.Errorf("%v\n%s", err, out)
	}
	// Another test binary may have built it meanwhile: the rename is atomic.
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return "", err
	}
	return path, nil
}

// FreePort returns a TCP port that was free on 127.0.0.1 a moment ago,
// below the kernel's ephemeral range: a port from port 0 is in that range,
// and once let go it can become the source port of any outgoing
// connection (a test makes thousands) before the process meant to listen
// on it does, or while a stopped node is down.
func FreePort(t testing.TB) int {
	t.Helper()
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > 11000 {
				low = n
			}
		}
	}
	for range 1000 {
		port := 10000 + rand.IntN(low-10000)
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err == nil {
			ln.Close()
			return port
		}
	}
	t.Fatal("no free TCP port below the ephemeral range")
	return 0
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
