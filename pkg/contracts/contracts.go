// Package contracts checks event payloads against the contracts of the
// configuration (sources[].contract, ingress.api_keys[].contract): JSON
// Schemas (draft 2020-12) per event type, read from files and compiled
// once, at start. A payload that breaks its contract is not delivered:
// ingress stores it in the QUARANTINE stream with its violations, or
// refuses it (on_invalid: reject).
//
// Only sources and keys with a contract are checked, so that a
// configuration without one behaves as before
// (docs/decisions/0500-payload-contracts-are-opted-into.md).
package contracts

import (
	"bytes"
	"errors"
	"fmt"
	"mime"
	"os"
	"sort"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/untrusted"
)

// Bounds of what a check reports: a payload may break a schema in
// thousands of places, and the violations travel in headers, audit
// records and 422 answers.
const (
	// MaxViolations is the most violations reported for one payload.
	MaxViolations = 20
	// MaxMessage bounds one violation's message, in bytes.
	MaxMessage = 300
	// MaxPath bounds one violation's path, in bytes.
	MaxPath = 200
)

// Violation is one way a payload breaks its contract.
type Violation struct {
	// Path is the JSON pointer of the offending value ("" is the whole
	// body), e.g. /line_items/0/price.
	Path string `json:"path"`
	// Message says what is wrong, e.g. "missing property 'email'".
	Message string `json:"message"`
}

func (v Violation) String() string {
	p := v.Path
	if p == "" {
		p = "/"
	}
	return p + ": " + v.Message
}

// Owner names whose contract applies: a webhook source or a publish API
// key. Source and key names never collide (config.Validate).
type Owner struct {
	// Kind is KindSource or KindAPIKey.
	Kind string
	Name string
}

// Owner kinds.
const (
	KindSource = "source"
	KindAPIKey = "api_key"
)

// Source is the owner of a webhook source's contract.
func Source(name string) Owner { return Owner{Kind: KindSource, Name: name} }

// APIKey is the owner of a publish API key's contract.
func APIKey(name string) Owner { return Owner{Kind: KindAPIKey, Name: name} }

func (o Owner) String() string { return strings.ReplaceAll(o.Kind, "_", " ") + " " + o.Name }

// field is the owner's contract in the configuration file (for messages).
func (o Owner) field(i int) string {
	if o.Kind == KindAPIKey {
		return fmt.Sprintf("ingress.api_keys[%d].contract", i)
	}
	return fmt.Sprintf("sources[%d].contract", i)
}

// ErrInvalidSchema is matched (errors.Is) by the error of a schema file
// that cannot be read or compiled.
var ErrInvalidSchema = errors.New("invalid contract schema")

// contract is one owner's compiled contract.
type contract struct {
	byType    map[string]*jsonschema.Schema
	def       *jsonschema.Schema
	onInvalid string
}

// Set holds every compiled contract. The zero Set (and nil) has none.
type Set struct {
	byOwner map[Owner]*contract
}

// Compile reads and compiles the contracts of a loaded configuration
// (defaults applied, paths resolved by config.Load). A file that cannot be
// read, is not JSON or is not a valid draft 2020-12 schema is an error
// naming the field and the file.
func Compile(c config.Config) (*Set, error) {
	s := &Set{byOwner: map[Owner]*contract{}}
	cache := map[string]*jsonschema.Schema{}
	compiler := jsonschema.NewCompiler()
	compiler.DefaultDraft(jsonschema.Draft2020)
	var errs []error
	add := func(o Owner, field string, ct *config.Contract) {
		if ct == nil {
			return
		}
		cc := &contract{byType: map[string]*jsonschema.Schema{}, onInvalid: ct.OnInvalid}
		if cc.onInvalid == "" {
			cc.onInvalid = config.OnInvalidQuarantine
		}
		load := func(f, file string) *jsonschema.Schema {
			if sch, ok := cache[file]; ok {
				return sch
			}
			sch, err := compile(compiler, file)
			if err != nil {
				errs = append(errs, fmt.Errorf("%w: %s: %w", ErrInvalidSchema, f, err))
				return nil
			}
			cache[file] = sch
			return sch
		}
		types := make([]string, 0, len(ct.Schemas))
		for t := range ct.Schemas {
			types = append(types, t)
		}
		sort.Strings(types)
		for _, t := range types {
			if sch := load(fmt.Sprintf("%s.schemas[%q]", field, t), ct.Schemas[t]); sch != nil {
				cc.byType[t] = sch
			}
		}
		if ct.Default != "" {
			cc.def = load(field+".default", ct.Default)
		}
		s.byOwner[o] = cc
	}
	for i, src := range c.Sources {
		add(Source(src.Name), Source(src.Name).field(i), src.Contract)
	}
	for i, k := range c.Ingress.APIKeys {
		add(APIKey(k.Name), APIKey(k.Name).field(i), k.Contract)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return s, nil
}

// compile reads one schema file and compiles it.
func compile(c *jsonschema.Compiler, file string) (*jsonschema.Schema, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%s is not JSON: %w", file, err)
	}
	// The file's path is its URL: a $ref to a neighbouring file resolves
	// next to it.
	url := "file://" + file
	if err := c.AddResource(url, doc); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	sch, err := c.Compile(url)
	if err != nil {
		return nil, fmt.Errorf("%s is not a valid JSON Schema (draft 2020-12): %w", file, err)
	}
	return sch, nil
}

// Has reports whether o has a contract.
func (s *Set) Has(o Owner) bool {
	if s == nil {
		return false
	}
	_, ok := s.byOwner[o]
	return ok
}

// Rejects reports whether o's contract answers a broken payload 422
// (on_invalid: reject) rather than quarantining it.
func (s *Set) Rejects(o Owner) bool {
	if s == nil {
		return false
	}
	c, ok := s.byOwner[o]
	return ok && c.onInvalid == config.OnInvalidReject
}

// Validate checks a payload of o's of eventType against o's contract and
// returns its violations; none for a valid payload, or when o has no
// contract. With a contract, a body whose content type says JSON, or that
// has none, must be well-formed JSON; a body of another content type is
// not checked (a schema describes JSON). The body is then checked against
// the schema of its type, or the contract's default.
func (s *Set) Validate(o Owner, eventType, contentType string, body []byte) []Violation {
	if s == nil {
		return nil
	}
	c, ok := s.byOwner[o]
	if !ok || !jsonContent(contentType) {
		return nil
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		msg := "the body is not well-formed JSON"
		if len(body) == 0 {
			msg = "the body is empty; JSON was expected"
		} else {
			msg += ": " + err.Error()
		}
		return []Violation{{Path: "", Message: untrusted.Text(msg, MaxMessage)}}
	}
	sch := c.byType[eventType]
	if sch == nil {
		sch = c.def
	}
	if sch == nil {
		return nil
	}
	err = sch.Validate(doc)
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return []Violation{{Message: untrusted.Text(err.Error(), MaxMessage)}}
	}
	var out []Violation
	leaves(ve, &out)
	if len(out) == 0 {
		out = append(out, Violation{Path: pointer(ve.InstanceLocation), Message: untrusted.Text(ve.ErrorKind.LocalizedString(printer), MaxMessage)})
	}
	return out
}

var printer = message.NewPrinter(language.English)

// leaves collects the innermost errors: they name the values at fault
// ("missing property 'email'"), where the outer ones only say that a
// subschema failed.
func leaves(e *jsonschema.ValidationError, out *[]Violation) {
	if len(*out) >= MaxViolations {
		return
	}
	if len(e.Causes) == 0 {
		switch e.ErrorKind.(type) {
		case *kind.Schema, *kind.Reference, *kind.Group:
			return
		}
		*out = append(*out, Violation{
			Path:    untrusted.Text(pointer(e.InstanceLocation), MaxPath),
			Message: untrusted.Text(e.ErrorKind.LocalizedString(printer), MaxMessage),
		})
		return
	}
	for _, c := range e.Causes {
		leaves(c, out)
	}
}

// pointer is the JSON pointer (RFC 6901) of an instance location.
func pointer(tokens []string) string {
	var b strings.Builder
	for _, t := range tokens {
		b.WriteByte('/')
		t = strings.ReplaceAll(t, "~", "~0")
		b.WriteString(strings.ReplaceAll(t, "/", "~1"))
	}
	return b.String()
}

// jsonContent reports whether a content type says JSON, or says nothing.
func jsonContent(ct string) bool {
	if strings.TrimSpace(ct) == "" {
		return true
	}
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
}
