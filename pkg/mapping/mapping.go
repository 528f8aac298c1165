// Package mapping is a destination's payload contract on the way out: a
// filter that decides whether the destination gets an event (a CEL
// expression) and a transformation that maps the event's body to the
// partner's shape (a gojq program), with header and URL path templates.
//
// Everything is compiled once, from the configuration, so that a typo stops
// the program at start instead of failing every event. Programs come from
// the configuration, the documents they read from partners: every
// evaluation is bounded in time and the transformed body in size, and
// neither language reaches the environment, files or the network.
package mapping

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/itchyny/gojq"

	"github.com/switchyard/switchyard/pkg/jsonexpr"
)

// Defaults of the bounds of one evaluation.
const (
	// DefaultTimeout bounds the filter and the transformation (templates
	// included) of one event.
	DefaultTimeout = time.Second
	// DefaultMaxOutput bounds the transformed body.
	DefaultMaxOutput = 1 << 20
)

// Spec is what a destination's configuration says; Compile turns it into a
// Mapping.
type Spec struct {
	// Filter is a CEL expression over the event that yields a bool: the
	// destination gets the event when it is true. Empty: every event.
	Filter string
	// Transform is a gojq program mapping the body (.) to the body sent;
	// $event holds id, type, source, subject and headers. Empty: the body
	// is sent as stored.
	Transform string
	// Headers are header templates: text with {{ gojq }} placeholders over
	// the event (.id, .type, .source, .subject, .headers, .data the stored
	// body, .body the transformed one).
	Headers map[string]string
	// Path is a URL path template appended to the destination's URL, e.g.
	// /orders/{{.data.order_id}}; each placeholder's value is path-escaped.
	Path string
	// Timeout bounds one event's filter and transformation. Default
	// DefaultTimeout.
	Timeout time.Duration
	// MaxOutput bounds the transformed body, in bytes. Default
	// DefaultMaxOutput.
	MaxOutput int
}

// Empty reports whether the spec neither filters nor transforms.
func (s Spec) Empty() bool {
	return s.Filter == "" && s.Transform == "" && len(s.Headers) == 0 && s.Path == ""
}

// Stage names the part of a mapping an error comes from.
type Stage string

// Stages.
const (
	StageFilter    Stage = "filter"
	StageTransform Stage = "transform"
	StageHeader    Stage = "header"
	StagePath      Stage = "path"
)

// Error is a compile or evaluation error of one part of a mapping.
type Error struct {
	// Stage is the part: filter, transform, header or path.
	Stage Stage
	// Name is the header's name (StageHeader).
	Name string
	// Expr is the expression or placeholder that failed, as written.
	Expr string
	Err  error
}

func (e *Error) Error() string {
	where := string(e.Stage)
	if e.Name != "" {
		where += " " + e.Name
	}
	if e.Expr != "" {
		where += " " + quoteShort(e.Expr)
	}
	return where + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// quoteShort quotes an expression for an error message, shortened so that a
// long program does not drown the reason.
func quoteShort(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return fmt.Sprintf("%q", s)
}

// Evaluation errors, wrapped in *Error.
var (
	// ErrTimeout: the evaluation ran out of its time bound.
	ErrTimeout = errors.New("took longer than the mapping's timeout")
	// ErrOutputTooLarge: the transformed body is larger than MaxOutput.
	ErrOutputTooLarge = errors.New("the transformed body is larger than max_output")
	// ErrNotJSON: a transformation or a template needs the body as JSON.
	ErrNotJSON = errors.New("the body is not JSON")
)

// Mapping is a compiled Spec. It is safe for concurrent use.
type Mapping struct {
	spec      Spec
	filter    *filter
	transform *transform
	headers   []headerTemplate
	path      *template
	version   string
	bound     *bound
}

type headerTemplate struct {
	name string
	t    *template
}

// Compile compiles and type-checks every part of s. The error is an *Error
// naming the part and the expression.
func Compile(s Spec) (*Mapping, error) {
	if s.Timeout <= 0 {
		s.Timeout = DefaultTimeout
	}
	if s.MaxOutput <= 0 {
		s.MaxOutput = DefaultMaxOutput
	}
	m := &Mapping{spec: s, bound: newBound(s.Timeout)}
	var err error
	if strings.TrimSpace(s.Filter) != "" {
		if m.filter, err = compileFilter(s.Filter); err != nil {
			return nil, &Error{Stage: StageFilter, Expr: s.Filter, Err: err}
		}
	}
	if strings.TrimSpace(s.Transform) != "" {
		if m.transform, err = compileTransform(s.Transform); err != nil {
			return nil, &Error{Stage: StageTransform, Expr: s.Transform, Err: err}
		}
	}
	names := make([]string, 0, len(s.Headers))
	for name := range s.Headers {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if err := checkHeaderName(name); err != nil {
			return nil, &Error{Stage: StageHeader, Name: name, Err: err}
		}
		t, err := parseTemplate(s.Headers[name])
		if err != nil {
			return nil, &Error{Stage: StageHeader, Name: name, Expr: s.Headers[name], Err: err}
		}
		m.headers = append(m.headers, headerTemplate{name: http.CanonicalHeaderKey(name), t: t})
	}
	if s.Path != "" {
		if !strings.HasPrefix(s.Path, "/") {
			return nil, &Error{Stage: StagePath, Expr: s.Path, Err: errors.New("must start with /")}
		}
		if strings.ContainsAny(s.Path, "?#") {
			return nil, &Error{Stage: StagePath, Expr: s.Path, Err: errors.New("is a path: no query (?) or fragment (#)")}
		}
		if m.path, err = parseTemplate(s.Path); err != nil {
			return nil, &Error{Stage: StagePath, Expr: s.Path, Err: err}
		}
		for _, lit := range m.path.parts {
			if _, err := url.PathUnescape(lit); err != nil {
				return nil, &Error{Stage: StagePath, Expr: s.Path, Err: fmt.Errorf("not an escaped URL path: %w", err)}
			}
		}
	}
	m.version = version(s, names)
	return m, nil
}

// reservedHeaders are set by the dispatcher itself (or carry credentials)
// and may not come from a template.
var reservedHeaders = []string{"Authorization", "Content-Length", "Host", "Idempotency-Key", "Transfer-Encoding",
	"Webhook-Id", "Webhook-Timestamp", "Webhook-Signature"}

func checkHeaderName(name string) error {
	if strings.TrimSpace(name) == "" || strings.ContainsAny(name, " :\r\n\t") {
		return errors.New("not a valid header name")
	}
	c := http.CanonicalHeaderKey(name)
	if slices.Contains(reservedHeaders, c) || strings.HasPrefix(c, "Switchyard-") {
		return fmt.Errorf("%s is set by Switchyard (or carries credentials: use auth) and cannot be templated", c)
	}
	return nil
}

// version is a short hash of everything that shapes the request: the
// transformation, the templates and the bounds.
func version(s Spec, headerNames []string) string {
	if s.Transform == "" && len(s.Headers) == 0 && s.Path == "" {
		return ""
	}
	h := sha256.New()
	fmt.Fprintf(h, "jq\x00%s\x00path\x00%s\x00max\x00%d\x00", s.Transform, s.Path, s.MaxOutput)
	for _, n := range headerNames {
		fmt.Fprintf(h, "h\x00%s\x00%s\x00", n, s.Headers[n])
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// Version names the transformation (program, templates, size bound) with a
// short hash, "" when the mapping does not change the request. Records and
// logs quote it so that a delivered body can be traced to the program that
// made it.
func (m *Mapping) Version() string { return m.version }

// Filters reports whether the mapping has a filter.
func (m *Mapping) Filters() bool { return m.filter != nil }

// Transforms reports whether the mapping changes the request (body, headers
// or path).
func (m *Mapping) Transforms() bool {
	return m.transform != nil || len(m.headers) > 0 || m.path != nil
}

// Event is what a mapping reads of a stored event.
type Event struct {
	ID      string
	Type    string
	Source  string
	Subject string
	// Header is the stored event's headers (a nats.Header fits).
	Header map[string][]string
	Body   []byte
}

// Input is one event prepared for a mapping: its body is parsed at most
// once for the filter and the transformation.
type Input struct {
	ev Event

	once    sync.Once
	data    any
	dataErr error

	// headers are the stored headers by lower-case name, made when a
	// program reads them.
	headersOnce sync.Once
	headers     map[string]any
}

// NewInput prepares ev.
func NewInput(ev Event) *Input { return &Input{ev: ev} }

func (in *Input) parse() {
	in.once.Do(func() {
		if len(in.ev.Body) == 0 {
			in.dataErr = fmt.Errorf("%w: it is empty", ErrNotJSON)
			return
		}
		in.data, in.dataErr = decode(in.ev.Body)
		if in.dataErr != nil {
			in.dataErr = fmt.Errorf("%w: %v", ErrNotJSON, in.dataErr)
		}
	})
}

// headerValues is the stored headers by lower-case name (the first value
// of each).
func (in *Input) headerValues() map[string]any {
	in.headersOnce.Do(func() {
		in.headers = make(map[string]any, len(in.ev.Header))
		for k, vs := range in.ev.Header {
			if len(vs) > 0 {
				in.headers[strings.ToLower(k)] = vs[0]
			}
		}
	})
	return in.headers
}

// Output is the request a transformation made.
type Output struct {
	// Body is the body to send; the stored body when there is no
	// transformation program.
	Body []byte
	// ContentType is application/json after a transformation program, a
	// Content-Type header template's value, or "" (keep the stored one).
	ContentType string
	// Header holds the templated headers (nil without).
	Header http.Header
	// Path is the templated URL path ("" without).
	Path string
}

// Filter reports whether the destination gets the event. An error (an
// evaluation error, a result that is not a bool, the time bound) is an
// *Error; the event is neither kept nor dropped by it.
//
// Filter and Apply stop at the mapping's time bound, not when ctx ends: an
// evaluation is short, and one cut off half-way by a shutdown would fail
// its event.
func (m *Mapping) Filter(ctx context.Context, in *Input) (bool, error) {
	if m.filter == nil {
		return true, nil
	}
	in.parse()
	ctx = m.bound.context()
	keep, err := m.filter.eval(ctx, in)
	if err != nil {
		if ctx.Err() != nil {
			err = ErrTimeout
		}
		return false, &Error{Stage: StageFilter, Expr: m.spec.Filter, Err: err}
	}
	return keep, nil
}

// Apply runs the transformation and the templates. An error is an *Error
// naming the part that failed.
func (m *Mapping) Apply(ctx context.Context, in *Input) (Output, error) {
	out := Output{Body: in.ev.Body}
	if !m.Transforms() {
		return out, nil
	}
	in.parse()
	ctx = m.bound.context()
	var body any
	if m.transform != nil {
		if in.dataErr != nil {
			return Output{}, &Error{Stage: StageTransform, Err: in.dataErr}
		}
		v, err := m.run(ctx, in)
		if err != nil {
			return Output{}, &Error{Stage: StageTransform, Expr: m.spec.Transform, Err: err}
		}
		b, fits, err := marshal(v, m.spec.MaxOutput)
		if err != nil {
			return Output{}, &Error{Stage: StageTransform, Expr: m.spec.Transform, Err: fmt.Errorf("encode the result: %w", err)}
		}
		if !fits {
			return Output{}, &Error{Stage: StageTransform, Expr: m.spec.Transform,
				Err: fmt.Errorf("%w (more than max_output %d bytes)", ErrOutputTooLarge, m.spec.MaxOutput)}
		}
		out.Body, out.ContentType, body = b, "application/json", v
	}
	if len(m.headers) == 0 && m.path == nil {
		return out, nil
	}
	root := templateRoot{in: in, body: in.data}
	if m.transform != nil {
		root.body = body
	}
	for _, h := range m.headers {
		v, err := h.t.render(ctx, root, false)
		if err != nil {
			return Output{}, &Error{Stage: StageHeader, Name: h.name, Expr: errExpr(err, h.t), Err: err}
		}
		if h.name == "Content-Type" {
			out.ContentType = v
			continue
		}
		if out.Header == nil {
			out.Header = http.Header{}
		}
		out.Header.Set(h.name, v)
	}
	if m.path != nil {
		p, err := m.path.render(ctx, root, true)
		if err != nil {
			return Output{}, &Error{Stage: StagePath, Expr: errExpr(err, m.path), Err: err}
		}
		out.Path = p
	}
	return out, nil
}

// templateRoot is what templates read: the envelope, .data the stored
// body and .body the transformed one. Plain paths read it as it is; only a
// placeholder run by gojq needs it as a document (doc).
type templateRoot struct {
	in   *Input
	body any
}

// field is the root's value under name.
func (r templateRoot) field(name string) (any, bool) {
	switch name {
	case "id":
		return r.in.ev.ID, true
	case "type":
		return r.in.ev.Type, true
	case "source":
		return r.in.ev.Source, true
	case "subject":
		return r.in.ev.Subject, true
	case "headers":
		return r.in.headerValues(), true
	case "data":
		return r.in.data, true
	case "body":
		return r.body, true
	}
	return nil, false
}

func (r templateRoot) doc() map[string]any {
	d := r.in.event()
	d["data"], d["body"] = r.in.data, r.body
	return d
}

// event is $event of a transformation: the envelope without the body.
func (in *Input) event() map[string]any {
	return map[string]any{"id": in.ev.ID, "type": in.ev.Type, "source": in.ev.Source, "subject": in.ev.Subject, "headers": in.headerValues()}
}

// transform is a compiled gojq program.
type transform struct {
	code *gojq.Code
	// event: the program reads $event (otherwise it is not built).
	event bool
}

func compileTransform(src string) (*transform, error) {
	q, err := gojq.Parse(src)
	if err != nil {
		return nil, err
	}
	// No environment ($ENV, env) and no input/inputs: the program sees the
	// event and nothing else.
	code, err := gojq.Compile(q, gojq.WithVariables([]string{"$event"}), gojq.WithEnvironLoader(func() []string { return nil }))
	if err != nil {
		return nil, err
	}
	// The parsed program written back names every variable it reads (a
	// string that merely contains the name only costs building $event).
	return &transform{code: code, event: strings.Contains(q.String(), "$event")}, nil
}

// run evaluates the program: exactly one value.
func (m *Mapping) run(ctx context.Context, in *Input) (any, error) {
	var event map[string]any
	if m.transform.event {
		event = in.event()
	}
	it := m.transform.code.RunWithContext(ctx, in.data, event)
	var out any
	n := 0
	for {
		v, ok := it.Next()
		if !ok {
			break
		}
		if err, isErr := v.(error); isErr {
			var halt *gojq.HaltError
			if errors.As(err, &halt) && halt.Value() == nil {
				break
			}
			if ctx.Err() != nil {
				return nil, ErrTimeout
			}
			return nil, err
		}
		if n++; n > 1 {
			return nil, errors.New("the program yields more than one value; a body is one (collect them with [ ... ])")
		}
		out = v
	}
	if ctx.Err() != nil {
		return nil, ErrTimeout
	}
	if n == 0 {
		return nil, errors.New("the program yields no value (use the filter to leave events out)")
	}
	return out, nil
}

// template is text with {{ gojq }} placeholders.
type template struct {
	src   string
	parts []string         // literal text; parts[i] precedes exprs[i]
	exprs []*jsonexpr.Expr // len(parts) == len(exprs)+1
	// paths[i] is exprs[i] when it is a plain path (.a.b), read without
	// running gojq; nil otherwise.
	paths [][]string
}

// plainPath matches the placeholders read by walking the document.
var plainPath = regexp.MustCompile(`^\s*(\.[A-Za-z_][A-Za-z0-9_]*)+\s*$`)

// pathOf splits a plain path placeholder; nil when it is not one.
func pathOf(src string) []string {
	if !plainPath.MatchString(src) {
		return nil
	}
	return strings.Split(strings.TrimSpace(src), ".")[1:]
}

// lookup walks a plain path; false when a step is missing or not an
// object (gojq would fail or yield null: both are "no value" here).
func lookup(root templateRoot, path []string) (any, bool) {
	v, ok := root.field(path[0])
	if !ok {
		return nil, false
	}
	for _, k := range path[1:] {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = m[k]; !ok {
			return nil, false
		}
	}
	return v, v != nil
}

func parseTemplate(src string) (*template, error) {
	t := &template{src: src}
	rest := src
	for {
		i := strings.Index(rest, "{{")
		if i < 0 {
			if strings.Contains(rest, "}}") {
				return nil, errors.New("}} without {{")
			}
			t.parts = append(t.parts, rest)
			return t, nil
		}
		j := strings.Index(rest[i:], "}}")
		if j < 0 {
			return nil, errors.New("{{ without }}")
		}
		if strings.Contains(rest[:i], "}}") {
			return nil, errors.New("}} without {{")
		}
		e, err := jsonexpr.Compile(rest[i+2 : i+j])
		if err != nil {
			return nil, err
		}
		t.parts = append(t.parts, rest[:i])
		t.exprs = append(t.exprs, e)
		t.paths = append(t.paths, pathOf(rest[i+2:i+j]))
		rest = rest[i+j+2:]
	}
}

// placeholderError is a placeholder's evaluation error.
type placeholderError struct {
	expr string
	err  error
}

func (e *placeholderError) Error() string { return e.err.Error() }
func (e *placeholderError) Unwrap() error { return e.err }

func errExpr(err error, t *template) string {
	var pe *placeholderError
	if errors.As(err, &pe) {
		return pe.expr
	}
	return t.src
}

// render fills the placeholders with text values (a string, number or
// bool); escape path-escapes them. A missing value is an error naming the
// placeholder.
func (t *template) render(ctx context.Context, root templateRoot, escape bool) (string, error) {
	var b strings.Builder
	var doc map[string]any // root for gojq, made on first use
	for i, e := range t.exprs {
		b.WriteString(t.parts[i])
		var v any
		var ok bool
		var err error
		if p := t.paths[i]; p != nil {
			v, ok = lookup(root, p)
		} else {
			if doc == nil {
				doc = root.doc()
			}
			v, ok, err = e.First(ctx, doc)
		}
		if err != nil {
			if ctx.Err() != nil {
				err = ErrTimeout
			}
			return "", &placeholderError{expr: e.String(), err: err}
		}
		if !ok {
			return "", &placeholderError{expr: e.String(), err: errors.New("no value (missing or null)")}
		}
		s, ok := jsonexpr.Text(v)
		if !ok {
			return "", &placeholderError{expr: e.String(), err: errors.New("not a string, number or bool")}
		}
		if escape {
			s = url.PathEscape(s)
		} else if strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return "", &placeholderError{expr: e.String(), err: errors.New("the value has control characters, which a header cannot carry")}
		}
		b.WriteString(s)
	}
	b.WriteString(t.parts[len(t.parts)-1])
	return b.String(), nil
}
