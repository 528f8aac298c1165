package main

import (
	"errors"
	"flag"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// sections are the parts of the table, in the order they run.
var sections = []string{"baselines", "ingress", "delivery", "e2e", "auditor", "memory", "services", "growth", "queries"}

// options are the command's flags.
type options struct {
	// Out is where the JSON report goes; empty writes none.
	Out string
	// Long selects the durations and rates: 10 s per measurement,
	// open loop up to 10,000/s, end to end at 5,000/s too, a 50,000-record
	// audit backlog, the all-in-one for 60 s.
	Long bool
	// Duration is each measurement's length. Default 3 s (10 s with Long).
	Duration time.Duration
	// Only lists the sections to run; empty runs all of them.
	Only []string
	// Conns is the open-loop load generator's connections. Default 256.
	Conns int
	// DeliveryEvents is the backlog the dispatcher drains. Default 20,000
	// (100,000 with Long).
	DeliveryEvents int
	// AuditBacklog is the records waiting before the auditor starts.
	// Default 20,000 (50,000 with Long).
	AuditBacklog int
	// Switchyard is the all-in-one binary; empty builds it.
	Switchyard string
	// MemRates are the steady rates offered to the all-in-one, each to a
	// fresh process. Default 1,000 and 5,000/s.
	MemRates []int
	// MemDuration is how long it is offered. Default 10 s (60 s with Long).
	MemDuration time.Duration
	// OpenRates are the open-loop ingress rates. Default 1,000 and 5,000/s
	// (and 10,000/s with Long).
	OpenRates []int
	// E2ERates are the end-to-end offered rates. Default 1,000/s (and
	// 5,000/s with Long).
	E2ERates []int
	// CPUProfile, when set, is where a CPU profile of the whole run (this
	// process: load generator and in-process services) goes.
	CPUProfile string
	// GrowthDestinations are the destination counts of the cost-growth
	// rows. Default 1, 10 and 100.
	GrowthDestinations []int
	// GrowthDeliveries is the deliveries of each cost-growth backlog, all
	// destinations together. Default 3,000 (60,000 with Long).
	GrowthDeliveries int
	// AuditEvents is how many events the audit log holds when the API's
	// queries are timed. Default 50,000 (1,000,000 with Long, which takes
	// Postgres about 3 minutes to generate on the 2-core machine; 10
	// million takes about half an hour).
	AuditEvents int
	// QueryRuns is how many times each query runs. Default 30.
	QueryRuns int
	// MemLimit, when set, is the GOMEMLIMIT the memory rows' processes run
	// with (e.g. 150MiB); empty leaves the Go runtime's default (none).
	MemLimit string
	// HeapProfiles, when set, is a directory where the memory rows'
	// processes' heap profiles go, taken from their ops listeners'
	// /debug/pprof/heap 10 s into the load and at its end.
	HeapProfiles string
	// Command is how the run was started, for the report.
	Command string
}

func parseFlags(fs *flag.FlagSet, args []string) (options, error) {
	var o options
	var only string
	fs.StringVar(&o.Out, "out", "bench.json", "write the JSON report here (empty: none)")
	fs.BoolVar(&o.Long, "long", false, "the issue's durations and rates (about 10 minutes)")
	fs.DurationVar(&o.Duration, "duration", 0, "length of each measurement (default 3s, 10s with -long)")
	fs.StringVar(&only, "only", "", "comma-separated sections to run: "+strings.Join(sections, ","))
	fs.IntVar(&o.Conns, "conns", 256, "open-loop load generator connections")
	fs.IntVar(&o.DeliveryEvents, "delivery-events", 0, "backlog the dispatcher drains (default 20000, 100000 with -long)")
	fs.IntVar(&o.AuditBacklog, "audit-backlog", 0, "audit records waiting before the auditor starts (default 20000, 50000 with -long)")
	fs.StringVar(&o.Switchyard, "switchyard", "", "the all-in-one binary (empty: go build it)")
	var memRates string
	fs.StringVar(&memRates, "mem-rates", "1000,5000", "comma-separated webhooks/s offered to the all-in-one (a fresh process each) while its RSS is watched")
	fs.DurationVar(&o.MemDuration, "mem-duration", 0, "how long (default 10s, 60s with -long)")
	fs.StringVar(&o.CPUProfile, "cpuprofile", "", "write a CPU profile of this process (load generator and in-process services) here")
	var growth string
	fs.StringVar(&growth, "growth-destinations", "1,10,100", "comma-separated destination counts of the cost-growth rows")
	fs.IntVar(&o.GrowthDeliveries, "growth-deliveries", 0, "deliveries of each cost-growth backlog, all destinations together (default 3000, 60000 with -long)")
	fs.IntVar(&o.AuditEvents, "audit-events", 0, "events in the audit log when the API's queries are timed (default 50000, 1000000 with -long; 10000000 takes about 30 min)")
	fs.IntVar(&o.QueryRuns, "query-runs", 0, "runs of each API query (default 30)")
	fs.StringVar(&o.MemLimit, "mem-limit", "", "GOMEMLIMIT of the all-in-one and the separately run services (e.g. 150MiB; empty: none)")
	fs.StringVar(&o.HeapProfiles, "heap-profiles", "", "save the memory rows' heap profiles (10 s into the load and at its end) in this directory")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var err error
	if o.MemRates, err = positiveInts("-mem-rates", memRates); err != nil {
		return o, err
	}
	if o.GrowthDestinations, err = positiveInts("-growth-destinations", growth); err != nil {
		return o, err
	}
	if only != "" {
		for s := range strings.SplitSeq(only, ",") {
			if !slices.Contains(sections, s) {
				return o, fmt.Errorf("-only: unknown section %q (want %s)", s, strings.Join(sections, ","))
			}
			o.Only = append(o.Only, s)
		}
	}
	o.Command = strings.TrimSpace("go run ./tests/benchtable " + strings.Join(args, " "))
	o = o.withDefaults()
	return o, o.validate()
}

// positiveInts parses a comma-separated list of positive integers.
func positiveInts(flagName, list string) ([]int, error) {
	var out []int
	for r := range strings.SplitSeq(list, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(r))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%s: %q is not a positive number", flagName, r)
		}
		out = append(out, n)
	}
	return out, nil
}

func (o options) withDefaults() options {
	pick := func(v *int, short, long int) {
		if *v == 0 {
			*v = short
			if o.Long {
				*v = long
			}
		}
	}
	pickD := func(v *time.Duration, short, long time.Duration) {
		if *v == 0 {
			*v = short
			if o.Long {
				*v = long
			}
		}
	}
	pickD(&o.Duration, 3*time.Second, 10*time.Second)
	pickD(&o.MemDuration, 10*time.Second, 60*time.Second)
	pick(&o.DeliveryEvents, 20_000, 100_000)
	pick(&o.AuditBacklog, 20_000, 50_000)
	pick(&o.GrowthDeliveries, 3_000, 60_000)
	pick(&o.AuditEvents, 50_000, 1_000_000)
	pick(&o.QueryRuns, 30, 30)
	pick(&o.Conns, 256, 256)
	if o.OpenRates == nil {
		o.OpenRates = []int{1000, 5000}
		if o.Long {
			o.OpenRates = append(o.OpenRates, 10_000)
		}
	}
	if o.E2ERates == nil {
		o.E2ERates = []int{1000}
		if o.Long {
			o.E2ERates = append(o.E2ERates, 5000)
		}
	}
	return o
}

func (o options) validate() error {
	switch {
	case o.Duration <= 0 || o.MemDuration <= 0:
		return errors.New("-duration and -mem-duration must be positive")
	case o.Conns < 1 || o.DeliveryEvents < 1 || o.AuditBacklog < 1 || o.GrowthDeliveries < 1 || o.AuditEvents < 1 || o.QueryRuns < 1:
		return errors.New("-conns, -delivery-events, -audit-backlog, -growth-deliveries, -audit-events and -query-runs must be positive")
	}
	return nil
}

// runs reports whether a section is selected.
func (o options) runs(section string) bool {
	return len(o.Only) == 0 || slices.Contains(o.Only, section)
}
