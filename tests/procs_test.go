package tests

// Process helpers shared by the tests that run every service as its own
// process (the cluster test here, the chaos test under the chaos tag).

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/switchyard/switchyard/pkg/testing/natscluster"
	"github.com/switchyard/switchyard/pkg/testing/waitfor"
)

// serviceBinaries builds the four services into dir/bin, in one go build
// so the toolchain builds them in parallel. Under -race (make test) they
// are race-enabled too: they reuse the packages the test binary compiled,
// and a data race in a service fails the test that ran it (the process
// exits with status 66 and its log says WARNING: DATA RACE).
func serviceBinaries(t *testing.T, dir string) map[string]string {
	t.Helper()
	bin, err := buildServices(dir)
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// buildServices is serviceBinaries for a goroutine of its own.
func buildServices(dir string) (map[string]string, error) {
	out := map[string]string{}
	bin := filepath.Join(dir, "bin")
	args := []string{"build", "-o", bin + "/"}
	if raceEnabled {
		args = append(args, "-race")
	}
	for _, name := range []string{"ingress", "dispatcher", "auditor", "notifier"} {
		args = append(args, "github.com/switchyard/switchyard/services/"+name+"/cmd/"+name)
		out[name] = filepath.Join(bin, name)
	}
	if b, err := exec.Command("go", args...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	return out, nil
}

// proc is a process that can be killed and started again; its output
// goes to a log file that the test prints (the tail) when it fails.
type proc struct {
	name, path string
	args       []string
	logPath    string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	// exits counts the exits the test did not cause.
	unexpected []string
}

func newProc(t *testing.T, dir, name, path string, args ...string) *proc {
	p := &proc{name: name, path: path, args: args, logPath: filepath.Join(dir, name+".log")}
	t.Cleanup(func() {
		p.stop(t, syscall.SIGTERM, 15*time.Second)
		if t.Failed() {
			b, _ := os.ReadFile(p.logPath)
			t.Logf("--- %s log, but INFO lines (last 4000 bytes):\n%s", p.name, tail(notInfo(b), 4000))
		}
	})
	return p
}

func (p *proc) start(t *testing.T) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		t.Fatalf("%s is already running", p.name)
	}
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(p.path, p.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", p.name, err)
	}
	exited := make(chan struct{})
	p.cmd, p.exited = cmd, exited
	go func() {
		err := cmd.Wait()
		logf.Close()
		p.mu.Lock()
		if p.cmd == cmd { // not stopped by the test
			p.unexpected = append(p.unexpected, cmd.ProcessState.String()+" "+errString(err))
			p.cmd = nil
		}
		p.mu.Unlock()
		close(exited)
	}()
}

// kill stops the process with SIGKILL, as a crash would.
func (p *proc) kill(t *testing.T) {
	t.Helper()
	p.stop(t, syscall.SIGKILL, 15*time.Second)
}

// stop signals the process and waits for it to exit (SIGKILL after
// timeout).
func (p *proc) stop(t *testing.T, sig syscall.Signal, timeout time.Duration) {
	t.Helper()
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-exited:
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		<-exited
	}
}

// exitedOnItsOwn returns how the process ended each time it exited
// without the test stopping it.
func (p *proc) exitedOnItsOwn() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.unexpected...)
}

// usage is what the process has used so far (natscluster.Usage).
func (p *proc) usage() (peakRSS int64, cpu time.Duration, ok bool) {
	p.mu.Lock()
	cmd := p.cmd
	p.mu.Unlock()
	if cmd == nil {
		return 0, 0, false
	}
	return natscluster.Usage(cmd.Process.Pid)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// freeTCPAddr is a free address on 127.0.0.1, below the ephemeral port
// range (natscluster.FreePort).
func freeTCPAddr(t *testing.T) string {
	t.Helper()
	return "127.0.0.1:" + strconv.Itoa(natscluster.FreePort(t))
}

func waitTCP(t *testing.T, addr string) {
	t.Helper()
	waitfor.Within(t, 30*time.Second, addr+" to accept connections", func() bool {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// newHTTPServer serves h on a free port for the test and returns its URL.
func newHTTPServer(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

// notInfo drops the JSON log lines at level INFO or DEBUG.
func notInfo(b []byte) []byte {
	var out []byte
	for line := range bytes.Lines(b) {
		if !bytes.Contains(line, []byte(`"level":"INFO"`)) && !bytes.Contains(line, []byte(`"level":"DEBUG"`)) {
			out = append(out, line...)
		}
	}
	return out
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
