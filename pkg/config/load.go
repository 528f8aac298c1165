package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// LookupEnv finds an environment variable; os.LookupEnv in main, a map in
// tests.
type LookupEnv func(name string) (string, bool)

// Load reads, interpolates, defaults and validates the file at path.
func Load(path string, env LookupEnv) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read config: %w", err)
	}
	c, err := parse(data, env, filepath.Dir(path))
	if err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	// Schema files are next to the configuration file, wherever the
	// process runs.
	c.resolveContracts(filepath.Dir(path))
	return c, nil
}

// Parse is Load for bytes already read; files the configuration names
// (transform.file) are read relative to the working directory.
func Parse(data []byte, env LookupEnv) (Config, error) { return parse(data, env, "") }

// parse reads files the configuration names relative to dir.
func parse(data []byte, env LookupEnv, dir string) (Config, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return Config{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if doc.Kind == 0 {
		return Config{}, fmt.Errorf("%w: the file is empty", ErrInvalid)
	}
	var p problems
	interpolate(&doc, "", env, &p)
	if len(p) > 0 {
		return Config{}, &ValidationError{Problems: p}
	}
	// Decode from the interpolated tree with unknown fields refused, so a
	// misspelt key is an error instead of a silently ignored setting.
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	if err := enc.Encode(&doc); err != nil {
		return Config{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(buf.Bytes()))
	dec.KnownFields(true)
	var c Config
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("%w: %s", ErrInvalid, humanizeYAMLError(err, &doc, buf.Bytes()))
	}
	readTransformFiles(&c, dir)
	c = c.WithDefaults()
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// humanizeYAMLError drops the yaml package's type names ("in type
// config.Destination") that mean nothing to the person editing the file,
// and, since decoding reads the re-encoded tree, replaces its line numbers
// by the field and the line in the file as written. Every problem is kept.
func humanizeYAMLError(err error, orig *yaml.Node, encoded []byte) string {
	var loc map[int]string
	var encDoc yaml.Node
	if yaml.Unmarshal(encoded, &encDoc) == nil {
		loc = locations(orig, &encDoc)
	}
	msg := strings.TrimPrefix(err.Error(), "yaml: unmarshal errors:\n")
	lines := strings.Split(msg, "\n")
	for i, l := range lines {
		l = strings.TrimSpace(l)
		if m := yamlLineRef.FindStringSubmatch(l); m != nil {
			n, _ := strconv.Atoi(m[1])
			if where, ok := loc[n]; ok {
				l = where + ": " + l[len(m[0]):]
			}
		}
		if j := strings.Index(l, " in type config."); j >= 0 {
			l = l[:j] + " (check the spelling against the configuration reference)"
		}
		lines[i] = friendlyTypeError(l)
	}
	return strings.Join(lines, "\n  ")
}

var yamlLineRef = regexp.MustCompile(`^line ([0-9]+): `)

// yamlTypeError matches the yaml package's "cannot unmarshal !!str `value`
// into []config.Secret". The value is dropped from the message: it may be
// a secret written in the wrong shape.
var yamlTypeError = regexp.MustCompile("cannot unmarshal !!(\\w+)(?: `[^`]*`)? into (\\S+)")

// friendlyTypeError rewrites a yaml type error into words a person editing
// the file understands, without quoting the value.
func friendlyTypeError(l string) string {
	return yamlTypeError.ReplaceAllStringFunc(l, func(m string) string {
		sub := yamlTypeError.FindStringSubmatch(m)
		return "found " + yamlKinds[sub[1]] + ", want " + describeGoType(sub[2])
	})
}

var yamlKinds = map[string]string{
	"str": "a text value", "int": "a number", "float": "a number", "bool": "true/false",
	"seq": "a list", "map": "a mapping (key: value lines)", "null": "nothing",
}

func describeGoType(t string) string {
	switch {
	case strings.HasPrefix(t, "[]"):
		return "a list (e.g. [a, b], or one \"- item\" per line)"
	case strings.HasPrefix(t, "map["):
		return "a mapping (key: value lines)"
	}
	switch t {
	case "config.Secret", "string":
		return "a string"
	case "config.Duration":
		return "a duration such as 500ms, 10s, 2m or 7d"
	case "config.ByteSize":
		return "a size such as 1048576, 512KiB or 1MiB"
	case "int", "int64", "float64":
		return "a number"
	case "bool":
		return "true or false"
	}
	return "a mapping of its fields (see the configuration reference)"
}

// locations maps the lines of the re-encoded document to "<field>: line
// <n>" in the original one. The two trees have the same shape; keys and
// scalars are recorded, the first on a line winning, so a flow sequence is
// reported by its key.
func locations(orig, enc *yaml.Node) map[int]string {
	loc := map[int]string{}
	var walk func(o, e *yaml.Node, path string)
	walk = func(o, e *yaml.Node, path string) {
		if o.Kind != e.Kind || len(o.Content) != len(e.Content) {
			return
		}
		switch o.Kind {
		case yaml.DocumentNode:
			for i := range o.Content {
				walk(o.Content[i], e.Content[i], path)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(o.Content); i += 2 {
				child := o.Content[i].Value
				if path != "" {
					child = path + "." + child
				}
				walk(o.Content[i], e.Content[i], child)
				walk(o.Content[i+1], e.Content[i+1], child)
			}
		case yaml.SequenceNode:
			for i := range o.Content {
				walk(o.Content[i], e.Content[i], path+"["+strconv.Itoa(i)+"]")
			}
		default:
			if _, ok := loc[e.Line]; !ok {
				where := "line " + strconv.Itoa(o.Line)
				if path != "" {
					where = path + ": " + where
				}
				loc[e.Line] = where
			}
		}
	}
	walk(orig, enc, "")
	return loc
}

// interpolate expands ${VAR} and ${VAR:-default} in every scalar value of the
// tree; $$ is a literal $. A plain (unquoted) scalar that was only a
// reference gets its type from the substituted value, so `port: ${PORT}`
// reads as a number.
func interpolate(n *yaml.Node, path string, env LookupEnv, p *problems) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			interpolate(c, path, env, p)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := n.Content[i].Value
			child := key
			if path != "" {
				child = path + "." + key
			}
			interpolate(n.Content[i+1], child, env, p)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			interpolate(c, path+"["+strconv.Itoa(i)+"]", env, p)
		}
	case yaml.ScalarNode:
		if !strings.Contains(n.Value, "$") {
			return
		}
		v, err := expand(n.Value, env)
		if err != nil {
			p.add(path, "%v", err)
			return
		}
		n.Value = v
		if n.Style == 0 || n.Style == yaml.FlowStyle {
			n.Tag = "" // resolve the type from the new value
		}
	}
}

// expand replaces environment references in s.
func expand(s string, env LookupEnv) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 < len(s) && s[i+1] == '$' {
			b.WriteByte('$')
			i++
			continue
		}
		if i+1 >= len(s) || s[i+1] != '{' {
			b.WriteByte('$')
			continue
		}
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return "", fmt.Errorf("unclosed ${ in value (write $$ for a literal $)")
		}
		ref := s[i+2 : i+end]
		name, def, hasDef := strings.Cut(ref, ":-")
		if !validEnvName(name) {
			return "", fmt.Errorf("${%s} is not a valid environment variable reference", ref)
		}
		v, ok := env(name)
		switch {
		case ok && v != "":
			b.WriteString(v)
		case hasDef:
			b.WriteString(def)
		case ok:
			// Set but empty: keep it empty; validation reports a required field.
		default:
			return "", fmt.Errorf("environment variable %s is not set (set it, or write ${%s:-default})", name, name)
		}
		i += end
	}
	return b.String(), nil
}

func validEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		if r == '_' || (r >= 'A' && r <= 'Z') || (r >= 'a' && r <= 'z') || (i > 0 && r >= '0' && r <= '9') {
			continue
		}
		return false
	}
	return true
}
