package mapping

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Fixture files: <name>.in.json is a stored body, <name>.out.json the body
// the transformation must make of it, and the optional <name>.event.json
// the envelope the filter and $event read ({"type": ..., "source": ...,
// "subject": ..., "id": ..., "headers": {"name": "value"}}).
const (
	FixtureIn    = ".in.json"
	FixtureOut   = ".out.json"
	FixtureEvent = ".event.json"
)

// FixtureResult is one fixture's outcome.
type FixtureResult struct {
	// Name is the fixture's path without .in.json.
	Name string
	// Filtered is set when the filter left the event out (no body is
	// compared then: the .out.json must not exist).
	Filtered bool
	// Err is an error of the transformation or of reading the files.
	Err error
	// Diff is empty when the output matches, otherwise a line diff of the
	// expected (-) and produced (+) bodies, as indented JSON.
	Diff string
	// Got is the produced body, indented (for -update).
	Got []byte
	// Path and Header are the templated path and headers, when any.
	Path   string
	Header map[string][]string
}

// OK reports whether the fixture passed.
func (r FixtureResult) OK() bool { return r.Err == nil && r.Diff == "" }

// RunFixtures runs m over every <name>.in.json in dir (not recursive) and
// compares each result with <name>.out.json. A directory without fixtures
// gives no results and no error.
func RunFixtures(ctx context.Context, m *Mapping, dir string) ([]FixtureResult, error) {
	ins, err := filepath.Glob(filepath.Join(dir, "*"+FixtureIn))
	if err != nil {
		return nil, err
	}
	sort.Strings(ins)
	var out []FixtureResult
	for _, in := range ins {
		out = append(out, runFixture(ctx, m, strings.TrimSuffix(in, FixtureIn)))
	}
	return out, nil
}

func runFixture(ctx context.Context, m *Mapping, name string) FixtureResult {
	r := FixtureResult{Name: name}
	body, err := os.ReadFile(name + FixtureIn)
	if err != nil {
		r.Err = err
		return r
	}
	ev := Event{Body: body}
	if b, err := os.ReadFile(name + FixtureEvent); err == nil {
		var env struct {
			ID, Type, Source, Subject string
			Headers                   map[string]string
		}
		if err := json.Unmarshal(b, &env); err != nil {
			r.Err = fmt.Errorf("%s: %w", name+FixtureEvent, err)
			return r
		}
		ev.ID, ev.Type, ev.Source, ev.Subject = env.ID, env.Type, env.Source, env.Subject
		ev.Header = map[string][]string{}
		for k, v := range env.Headers {
			ev.Header[k] = []string{v}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		r.Err = err
		return r
	}
	in := NewInput(ev)
	keep, err := m.Filter(ctx, in)
	if err != nil {
		r.Err = err
		return r
	}
	want, wantErr := os.ReadFile(name + FixtureOut)
	if !keep {
		r.Filtered = true
		if wantErr == nil {
			r.Diff = "the filter leaves this event out, but " + filepath.Base(name+FixtureOut) + " expects a body\n"
		}
		return r
	}
	res, err := m.Apply(ctx, in)
	if err != nil {
		r.Err = err
		return r
	}
	r.Path, r.Header = res.Path, res.Header
	r.Got = indent(res.Body)
	switch {
	case errors.Is(wantErr, fs.ErrNotExist):
		r.Diff = "no " + filepath.Base(name+FixtureOut) + " (write it with -update, then review it)\n" + prefixLines("+", r.Got)
	case wantErr != nil:
		r.Err = wantErr
	default:
		r.Diff = Diff(indent(want), r.Got)
	}
	return r
}

// indent writes a JSON document indented with sorted keys, so that two
// equal documents compare equal whatever their layout; a body that is not
// JSON is kept as it is.
func indent(b []byte) []byte {
	v, err := decodeAny(b)
	if err != nil {
		return b
	}
	out, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return b
	}
	return append(out, '\n')
}

func decodeAny(b []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	err := d.Decode(&v)
	return v, err
}

// Diff is a line diff of want and got: "" when they are equal, otherwise
// the removed lines prefixed "-", the added ones "+", with three lines of
// context around them.
func Diff(want, got []byte) string {
	if bytes.Equal(want, got) {
		return ""
	}
	a := strings.Split(strings.TrimSuffix(string(want), "\n"), "\n")
	b := strings.Split(strings.TrimSuffix(string(got), "\n"), "\n")
	// Longest common subsequence, enough for fixture-sized documents.
	lcs := make([][]int, len(a)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	type line struct {
		op   byte
		text string
	}
	var lines []line
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case i < len(a) && j < len(b) && a[i] == b[j]:
			lines = append(lines, line{' ', a[i]})
			i, j = i+1, j+1
		case i < len(a) && (j == len(b) || lcs[i+1][j] >= lcs[i][j+1]):
			lines = append(lines, line{'-', a[i]})
			i++
		default:
			lines = append(lines, line{'+', b[j]})
			j++
		}
	}
	// Changed lines with diffContext lines around them.
	const diffContext = 3
	var sb strings.Builder
	last := -1
	for k, l := range lines {
		near := false
		for d := max(0, k-diffContext); d <= min(len(lines)-1, k+diffContext); d++ {
			if lines[d].op != ' ' {
				near = true
				break
			}
		}
		if !near {
			continue
		}
		if last >= 0 && k > last+1 {
			sb.WriteString("  ...\n")
		}
		sb.WriteString(string(l.op) + " " + l.text + "\n")
		last = k
	}
	return sb.String()
}

func prefixLines(p string, b []byte) string {
	var sb strings.Builder
	for _, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		sb.WriteString(p + " " + l + "\n")
	}
	return sb.String()
}
