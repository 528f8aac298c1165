package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"
)

// row is one line of the table.
type row struct {
	// Section is one of sections, or "ratio".
	Section string `json:"section"`
	// Name says what was measured.
	Name string `json:"name"`
	// Rate is the measured rate, in Unit.
	Rate float64 `json:"rate"`
	Unit string  `json:"unit"`
	// Latency in ms, when the row has one.
	Latency *quantiles `json:"latency_ms,omitempty"`
	// CPUMicros is CPU time per operation in µs, of every process doing
	// the work that the harness can see (its own, load generator
	// included; the all-in-one's for the memory row; never Postgres's):
	// the figure that depends least on the neighbours' load.
	CPUMicros float64 `json:"cpu_us_per_op,omitempty"`
	// PeakRSSMiB is a process's VmHWM, for the memory rows.
	PeakRSSMiB float64 `json:"peak_rss_mib,omitempty"`
	// Target is the target for this row, if it has one, and Met
	// whether this run reached it.
	Target string `json:"target,omitempty"`
	Met    *bool  `json:"met,omitempty"`
	// Note qualifies the figure (offered rate, refusals, errors).
	Note string `json:"note,omitempty"`
}

// report is bench.json.
type report struct {
	Date    time.Time `json:"date"`
	Command string    `json:"command"`
	Machine machine   `json:"machine"`
	// LoadBefore and LoadAfter are /proc/loadavg's 1-, 5- and 15-minute
	// load averages at the start and end: other processes' load depresses
	// every figure.
	LoadBefore string  `json:"loadavg_before"`
	LoadAfter  string  `json:"loadavg_after"`
	Seconds    float64 `json:"seconds"`
	Rows       []row   `json:"rows"`
	// Skipped lists what the issue asks for that this harness does not
	// measure.
	Skipped []string `json:"skipped"`
}

type machine struct {
	CPUs      int    `json:"cpus"`
	CPUModel  string `json:"cpu_model"`
	MemoryMiB int    `json:"memory_mib"`
	GoVersion string `json:"go_version"`
	OS        string `json:"os"`
}

// skippedFor is the list of figures a run does not produce.
func skippedFor(o options) []string {
	var s []string
	if !o.Long {
		s = append(s, "end-to-end at 5,000/s offered (only with -long)", "open-loop ingress at 10,000/s (only with -long)")
	}
	return append(s, skipped...)
}

// skipped is the list of figures this harness never produces.
var skipped = []string{
	"auditor records/s while live (the catch-up rate after a backlog is measured)",
	"profiles of the missed targets, taken by hand with -cpuprofile (docs/measurements.md has them)",
}

func (r *report) add(rows ...row) { r.Rows = append(r.Rows, rows...) }

// find returns the first row of a section with the name.
func (r *report) find(section, name string) (row, bool) {
	for _, x := range r.Rows {
		if x.Section == section && x.Name == name {
			return x, true
		}
	}
	return row{}, false
}

func met(ok bool) *bool { return &ok }

func describeMachine() machine {
	m := machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int
		if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kb); err == nil {
			m.MemoryMiB = kb / 1024
		}
	}
	return m
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// printTable writes the report as one Markdown table, which the README
// carries as it is.
func printTable(w io.Writer, r *report) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "\nSwitchyard benchmark table, %s\n", r.Date.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(bw, "machine: %d CPUs (%s), %d MiB, %s, %s; load generator in the same process\n",
		r.Machine.CPUs, r.Machine.CPUModel, r.Machine.MemoryMiB, r.Machine.OS, r.Machine.GoVersion)
	fmt.Fprintf(bw, "load average (1/5/15 min): %s before, %s after; %.0f s; %s\n\n", r.LoadBefore, r.LoadAfter, r.Seconds, r.Command)
	fmt.Fprintln(bw, "| section | measure | rate | p50 ms | p99 ms | p99.9 ms | CPU µs/op | peak RSS MiB | target | met | note |")
	fmt.Fprintln(bw, "|---|---|--:|--:|--:|--:|--:|--:|---|---|---|")
	for _, x := range r.Rows {
		lat := [3]string{"", "", ""}
		if x.Latency != nil {
			lat = [3]string{ms(x.Latency.P50), ms(x.Latency.P99), ms(x.Latency.P999)}
		}
		rss := ""
		if x.PeakRSSMiB > 0 {
			rss = fmt.Sprintf("%.0f", x.PeakRSSMiB)
		}
		rate := ""
		if x.Rate != 0 || x.Unit != "" {
			rate = formatRate(x.Rate) + " " + x.Unit
		}
		m := ""
		if x.Met != nil {
			m = map[bool]string{true: "yes", false: "**no**"}[*x.Met]
		}
		cpu := ""
		if x.CPUMicros > 0 {
			cpu = fmt.Sprintf("%.0f", x.CPUMicros)
		}
		fmt.Fprintf(bw, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			x.Section, x.Name, rate, lat[0], lat[1], lat[2], cpu, rss, x.Target, m, strings.TrimSpace(x.Note))
	}
	fmt.Fprintf(bw, "\nNot measured: %s.\n", strings.Join(r.Skipped, "; "))
	return bw.Flush()
}

func ms(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func formatRate(v float64) string {
	if v < 10 {
		return fmt.Sprintf("%.2f", v)
	}
	s := fmt.Sprintf("%.0f", v)
	// Thousands separators: 12,345.
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func writeJSON(path string, r *report) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
