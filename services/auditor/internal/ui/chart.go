package ui

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/switchyard/switchyard/services/auditor/internal/store"
)

// chart is a stacked bar chart of attempts per period and outcome, drawn
// as SVG by the "chart" template: no script, no library, readable by a
// screen reader through its title and description.
type chart struct {
	Window string
	Desc   string
	// Width and Height are the viewBox; the plot is the rectangle from
	// (Left, Top) of PlotW × PlotH.
	Width, Height           int
	Left, Top, PlotW, PlotH float64
	Bars                    []bar
	YTicks, XTicks          []tick
	Legend                  []legendItem
	Total                   int
}

type bar struct {
	X, W  float64
	Title string
	Segs  []segment
}

type segment struct {
	Y, H  float64
	Class string
}

type tick struct {
	At    float64
	Label string
}

type legendItem struct {
	Outcome, Class string
	Count          int
}

// outcomes in stacking order, bottom first, with their CSS classes.
var outcomes = []struct{ name, class string }{
	{"delivered", "ok"},
	{"retryable", "warn"},
	{"permanent", "bad"},
}

// newChart lays out the buckets of [since, until) in periods of step.
func newChart(window string, since, until time.Time, step time.Duration, buckets []store.AttemptBucket) chart {
	n := int(until.Sub(since) / step)
	ch := chart{Window: window, Width: 960, Height: 236, Left: 44, Top: 12, PlotW: 880, PlotH: 190}
	counts := make([]map[string]int, n)
	totals := map[string]int{}
	for _, b := range buckets {
		i := int(b.Start.Sub(since) / step)
		if i < 0 || i >= n {
			continue
		}
		if counts[i] == nil {
			counts[i] = map[string]int{}
		}
		counts[i][b.Outcome] += b.Count
		totals[b.Outcome] += b.Count
		ch.Total += b.Count
	}
	most := 0
	for _, c := range counts {
		sum := 0
		for _, v := range c {
			sum += v
		}
		most = max(most, sum)
	}
	top := niceCeil(most)
	slot := ch.PlotW / float64(n)
	for i, c := range counts {
		if len(c) == 0 {
			continue
		}
		start := since.Add(time.Duration(i) * step)
		b := bar{X: ch.Left + float64(i)*slot + slot*0.1, W: slot * 0.8}
		y := ch.Top + ch.PlotH
		var parts []string
		for _, o := range outcomes {
			v := c[o.name]
			if v == 0 {
				continue
			}
			h := float64(v) / float64(top) * ch.PlotH
			y -= h
			b.Segs = append(b.Segs, segment{Y: y, H: h, Class: o.class})
			parts = append(parts, fmt.Sprintf("%d %s", v, o.name))
		}
		b.Title = fmt.Sprintf("%s–%s: %s", start.UTC().Format("15:04"), start.Add(step).UTC().Format("15:04"), strings.Join(parts, ", "))
		ch.Bars = append(ch.Bars, b)
	}
	for _, f := range []float64{0, 0.5, 1} {
		v := float64(top) * f
		if v != math.Trunc(v) {
			continue // counts are whole
		}
		ch.YTicks = append(ch.YTicks, tick{At: ch.Top + ch.PlotH - f*ch.PlotH, Label: formatCount(v)})
	}
	for i := 0; i <= 4; i++ {
		t := since.Add(time.Duration(float64(until.Sub(since)) * float64(i) / 4))
		ch.XTicks = append(ch.XTicks, tick{At: ch.Left + ch.PlotW*float64(i)/4, Label: t.UTC().Format("15:04")})
	}
	var parts []string
	for _, o := range outcomes {
		ch.Legend = append(ch.Legend, legendItem{Outcome: o.name, Class: o.class, Count: totals[o.name]})
		parts = append(parts, fmt.Sprintf("%d %s", totals[o.name], o.name))
	}
	ch.Desc = fmt.Sprintf("Delivery attempts in the last %s (UTC, one bar per %s): %d in all, %s.",
		window, duration(step), ch.Total, strings.Join(parts, ", "))
	return ch
}

// niceCeil is the smallest of 1, 2, 5 × 10^k at or above v (at least 1).
func niceCeil(v int) int {
	if v <= 1 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(float64(v))))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= float64(v) {
			return int(m * p)
		}
	}
	return int(10 * p)
}

func formatCount(v float64) string { return fmt.Sprintf("%d", int(v)) }
