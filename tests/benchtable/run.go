package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/pprof"
	"time"
)

// section is one part of the table.
type section struct {
	name string
	run  func(context.Context, *env, options, *report) error
}

// run measures the selected sections in order, each with its own NATS
// server (and Postgres schema) stopped before the next starts, then adds
// the ratios, prints the table to w and writes the JSON report.
func run(ctx context.Context, o options, w io.Writer) error {
	root, err := os.MkdirTemp("", "switchyard-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	rep := &report{Date: time.Now().UTC(), Command: o.Command, Machine: describeMachine(), LoadBefore: loadAvg(), Skipped: skippedFor(o)}
	if o.CPUProfile != "" {
		f, err := os.Create(o.CPUProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	start := time.Now()
	all := []section{
		{"baselines", baselines},
		{"ingress", ingressSection},
		// The end-to-end rows come from the delivery section's system.
		{"delivery", deliverySection},
		{"auditor", auditorSection},
		{"memory", memorySection},
		{"services", servicesSection},
		{"growth", growthSection},
		{"queries", queriesSection},
	}
	for _, s := range all {
		if !o.runs(s.name) && (s.name != "delivery" || !o.runs("e2e")) {
			continue
		}
		fmt.Fprintf(os.Stderr, "benchtable: %s...\n", s.name)
		dir, err := sectionDir(root, s.name)
		if err != nil {
			return err
		}
		e := &env{dir: dir, log: log}
		err = s.run(ctx, e, o, rep)
		e.close()
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	addRatios(rep)
	rep.LoadAfter = loadAvg()
	rep.Seconds = time.Since(start).Seconds()
	if err := printTable(w, rep); err != nil {
		return err
	}
	if o.Out != "" {
		if err := writeJSON(o.Out, rep); err != nil {
			return err
		}
	}
	return nil
}

// addRatios compares ingress and delivery with what they are made of.
// Ingress does HTTP with the HMAC check and a JetStream publish on the
// same cores, so its ceiling is the two baselines' costs added:
// 1 / (1/echo + 1/publish).
func addRatios(rep *report) {
	ing, ok1 := rep.find("ingress", rowIngressTarget)
	echo, ok2 := rep.find("baselines", rowEcho)
	pub, ok3 := rep.find("baselines", rowRawPublish)
	if ok1 && ok2 && ok3 && echo.Rate > 0 && pub.Rate > 0 {
		combined := 1 / (1/echo.Rate + 1/pub.Rate)
		rep.add(row{Section: "ratio", Name: "ingress c=64 / combined limit (HTTP+HMAC and JetStream on the same cores)",
			Rate: ing.Rate / combined, Note: fmt.Sprintf("combined limit %s/s", formatRate(combined))})
	}
	del, ok1 := rep.find("delivery", "backlog drained to a fast local partner")
	fetch, ok2 := rep.find("baselines", rowRawFetch)
	if ok1 && ok2 && fetch.Rate > 0 {
		rep.add(row{Section: "ratio", Name: "delivery / raw fetch+ack", Rate: del.Rate / fetch.Rate})
	}
}
