package main

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// serviceNames are the services run as separate processes, in the order
// they start.
var serviceNames = []string{"auditor", "notifier", "dispatcher", "ingress"}

// servicesSection runs the production layout on this machine: a
// nats-server process (JetStream, file store) and ingress, dispatcher,
// auditor and notifier each as its own process against it, with the audit
// log in Postgres; it offers webhooks at the highest -mem-rates for
// -mem-duration and adds each process's peak resident set (VmHWM) and CPU
// per accepted event.
func servicesSection(ctx context.Context, e *env, o options, rep *report) error {
	bins, err := buildProcesses(ctx, e.dir)
	if err != nil {
		return err
	}
	dbURL, err := e.postgresSchema(ctx)
	if err != nil {
		return err
	}
	p := &partner{}
	partnerAddr, err := e.serve(ctx, "partner", p)
	if err != nil {
		return err
	}
	// NATS client and monitoring, ingress, the auditor's API, and one ops
	// listener per service.
	ports, err := freePorts(4 + len(serviceNames))
	if err != nil {
		return err
	}
	natsAddr, monitorAddr, ingressAddr, auditAddr := ports[0], ports[1], ports[2], ports[3]
	host, natsPort, _ := strings.Cut(natsAddr, ":")
	_, monitorPort, _ := strings.Cut(monitorAddr, ":")
	natsProc, err := startProcess(e, "", "nats-server", bins["nats-server"],
		"-js", "-sd", filepath.Join(e.dir, "nats"), "-a", host, "-p", natsPort, "-m", monitorPort)
	if err != nil {
		return err
	}
	if err := natsProc.waitServing(ctx, "http://"+monitorAddr+"/healthz", ""); err != nil {
		return err
	}
	cfgPath := filepath.Join(e.dir, "switchyard.yaml")
	extra := fmt.Sprintf("nats: {url: %q}\ndatabase_url: %q\n", "nats://"+natsAddr, dbURL)
	if err := writeBenchConfig(cfgPath, e.dir, ingressAddr, auditAddr, "127.0.0.1:0", partnerAddr, extra); err != nil {
		return err
	}
	procs := []*process{natsProc}
	for i, name := range serviceNames {
		opsAddr := ports[4+i]
		proc, err := startProcess(e, o.MemLimit, name, bins[name], "run", "-config", cfgPath, "-ops-listen", opsAddr)
		if err != nil {
			return err
		}
		listen := map[string]string{"ingress": ingressAddr, "auditor": auditAddr}[name]
		if err := proc.waitServing(ctx, "http://"+opsAddr+"/readyz", listen); err != nil {
			return err
		}
		procs = append(procs, proc)
	}
	type usage struct {
		idle int64
		cpu  time.Duration
	}
	before := map[string]usage{}
	for _, proc := range procs {
		idle, cpu, err := procUsage(proc.cmd.Process.Pid, "VmRSS")
		if err != nil {
			return err
		}
		before[proc.name] = usage{idle, cpu}
	}
	hooks, err := newWebhooks("services")
	if err != nil {
		return err
	}
	rate := slices.Max(o.MemRates)
	res, err := openLoop(ingressAddr, o.Conns, rate, o.MemDuration, func(c *loadConn, t time.Time) (bool, error) {
		return hooks.send(c, "/webhooks/shop", t)
	})
	if err != nil {
		return err
	}
	load := loadAvg()
	delivered := p.n.Load()
	for _, proc := range procs {
		hwm, cpu, err := procUsage(proc.cmd.Process.Pid, "VmHWM")
		if err != nil {
			return err
		}
		what := "(Postgres audit)"
		if proc.name == "nats-server" {
			what = "(JetStream, file store)"
		}
		if proc.name != "nats-server" {
			what += memLimitNote(o)
		}
		rep.add(row{Section: "services", Name: fmt.Sprintf("%s as its own process %s, %s/s offered for %s", proc.name, what, formatRate(float64(rate)), o.MemDuration),
			Rate: res.rate(), Unit: "accepted/s", PeakRSSMiB: float64(hwm) / 1024,
			CPUMicros: perOp(cpu-before[proc.name].cpu, res.Accepted),
			Note: fmt.Sprintf("CPU: this process's per accepted event; %.0f MiB idle; %d delivered by the end of the load; load average %s %s",
				float64(before[proc.name].idle)/1024, delivered, load, loadNote(res))})
	}
	return nil
}

// buildProcesses builds nats-server (from the version this module
// requires) and the four services into dir/bin, as tests/procs_test.go
// does.
func buildProcesses(ctx context.Context, dir string) (map[string]string, error) {
	bin := filepath.Join(dir, "bin")
	args := []string{"build", "-o", bin + "/", "github.com/nats-io/nats-server/v2"}
	out := map[string]string{"nats-server": filepath.Join(bin, "nats-server")}
	for _, name := range serviceNames {
		args = append(args, "github.com/switchyard/switchyard/services/"+name+"/cmd/"+name)
		out[name] = filepath.Join(bin, name)
	}
	if b, err := exec.CommandContext(ctx, "go", args...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	return out, nil
}
