package mapping

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/interpreter"
)

// filterCostLimit bounds the work of one filter evaluation (CEL's cost
// units: about one per operation and per element visited), besides the
// time bound.
const filterCostLimit = 1_000_000

// filter is a compiled CEL expression.
type filter struct {
	prg cel.Program
}

var (
	envOnce sync.Once
	env     *cel.Env
	envErr  error
)

// filterEnv declares what a filter reads: the envelope as strings, the
// stored headers by lower-case name, and the parsed body as data (null when
// the body is not JSON).
func filterEnv() (*cel.Env, error) {
	envOnce.Do(func() {
		var reg *types.Registry
		if reg, envErr = types.NewRegistry(); envErr != nil {
			return
		}
		env, envErr = cel.NewEnv(
			cel.CustomTypeAdapter(numberAdapter{reg}),
			cel.CustomTypeProvider(reg),
			cel.CrossTypeNumericComparisons(true),
			cel.Variable("id", cel.StringType),
			cel.Variable("type", cel.StringType),
			cel.Variable("source", cel.StringType),
			cel.Variable("subject", cel.StringType),
			cel.Variable("headers", cel.MapType(cel.StringType, cel.StringType)),
			cel.Variable("data", cel.DynType),
		)
	})
	return env, envErr
}

func compileFilter(src string) (*filter, error) {
	e, err := filterEnv()
	if err != nil {
		return nil, err
	}
	ast, iss := e.Compile(src)
	if iss.Err() != nil {
		return nil, errors.New(strings.TrimSpace(iss.Err().Error()))
	}
	if t := ast.OutputType(); !t.IsExactType(cel.BoolType) && !t.IsExactType(cel.DynType) {
		return nil, fmt.Errorf("yields %s, not a bool", t)
	}
	opts := []cel.ProgramOption{cel.InterruptCheckFrequency(64)}
	if est, err := e.EstimateCost(ast, unknownSizes{}); err != nil || est.Max > staticCostBound {
		opts = append(opts, cel.CostLimit(filterCostLimit))
	}
	prg, err := e.Program(ast, opts...)
	if err != nil {
		return nil, err
	}
	return &filter{prg: prg}, nil
}

// staticCostBound is the estimated worst-case cost up to which a filter
// runs without CEL's cost tracking. Tracking the cost as it goes triples
// the cost of a small filter (wrapping every step); an expression whose
// worst case CEL estimates at compile time, whatever the event holds, is
// well within filterCostLimit without it. The estimate is CEL's own cost
// model and can be a few units short (TestStaticCostBound); the bound
// leaves a hundredfold margin. Anything that depends on the event's sizes
// (a comprehension over the body, a regular expression, contains on a
// string of the body) is estimated unbounded and keeps the tracking.
const staticCostBound = filterCostLimit / 100

// unknownSizes tells CEL's estimator nothing: every value of the event may
// be of any size.
type unknownSizes struct{}

func (unknownSizes) EstimateSize(checker.AstNode) *checker.SizeEstimate { return nil }
func (unknownSizes) EstimateCallCost(string, string, *checker.AstNode, []checker.AstNode) *checker.CallEstimate {
	return nil
}

func (f *filter) eval(ctx context.Context, in *Input) (bool, error) {
	out, _, err := f.prg.ContextEval(ctx, (*activation)(in))
	if err != nil {
		return false, err
	}
	b, ok := out.(types.Bool)
	if !ok {
		return false, fmt.Errorf("yields %s, not a bool", out.Type())
	}
	return bool(b), nil
}

// activation is the filter's variables, read from the Input as CEL asks
// for them instead of copied into a map per event.
type activation Input

func (a *activation) ResolveName(name string) (any, bool) {
	switch name {
	case "id":
		return a.ev.ID, true
	case "type":
		return a.ev.Type, true
	case "source":
		return a.ev.Source, true
	case "subject":
		return a.ev.Subject, true
	case "headers":
		return (*Input)(a).headerValues(), true
	case "data":
		if a.dataErr != nil {
			return nil, true
		}
		return a.data, true
	}
	return nil, false
}

func (a *activation) Parent() interpreter.Activation { return nil }

// numberAdapter reads the body as jsonexpr.Decode leaves it: numbers as
// json.Number (exact, for the transformation), which CEL sees as int when
// they are whole and fit, double otherwise.
type numberAdapter struct{ types.Adapter }

func (a numberAdapter) NativeToValue(v any) ref.Val {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return types.Int(i)
		}
		if f, err := x.Float64(); err == nil {
			return types.Double(f)
		}
		return types.String(x)
	case map[string]any:
		return types.NewStringInterfaceMap(a, x)
	case []any:
		return types.NewDynamicList(a, x)
	}
	return a.Adapter.NativeToValue(v)
}
