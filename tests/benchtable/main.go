// Command benchtable is `make bench`'s one table: it runs, on this machine
// with the load generator in the same process, the baselines (raw
// JetStream, a bare HMAC echo handler, the load generator against its own
// sink), ingress closed- and open-loop, delivery to a fast local partner,
// end-to-end latency through the four services with the audit log in
// Postgres, the auditor's catch-up into Postgres, the all-in-one's peak
// RSS at a steady rate (run as a subprocess), each service's peak RSS as
// its own process, the cost growth with 1, 10 and 100 destinations, and
// the audit API's queries over a generated audit log. It prints one table
// and writes bench.json. Latencies of open-loop runs are measured from each
// request's intended send time, so a stall is not hidden by the sender
// waiting for it (no coordinated omission).
//
//	go run ./tests/benchtable -out bench.json          # about 3 minutes
//	go run ./tests/benchtable -long -out bench.json    # the full durations and rates, about 20 minutes
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	o, err := parseFlags(flag.CommandLine, os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		os.Exit(2)
	}
	if err := run(ctx, o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		os.Exit(1)
	}
}
