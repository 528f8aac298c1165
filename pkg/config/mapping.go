package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/switchyard/switchyard/pkg/mapping"
)

// Transform maps the body of every event a destination gets to the
// partner's shape (pkg/mapping).
type Transform struct {
	// JQ is a gojq program: . is the stored body (JSON), $event its
	// envelope (id, type, source, subject, headers); it must yield exactly
	// one value, sent as application/json. Default none: the body is sent
	// as stored.
	JQ string `yaml:"jq"`
	// File holds the program instead of JQ: a path relative to the
	// configuration file's directory.
	File string `yaml:"file"`
	// Headers are header templates: text with {{ gojq }} placeholders over
	// .id, .type, .source, .subject, .headers, .data (the stored body) and
	// .body (the transformed one).
	Headers map[string]string `yaml:"headers"`
	// Path is a URL path template appended to the destination's url, e.g.
	// /orders/{{.data.order_id}}; placeholders' values are path-escaped.
	Path string `yaml:"path"`
	// Timeout bounds the filter and the transformation of one event.
	// Default 1s.
	Timeout Duration `yaml:"timeout"`
	// MaxOutput bounds the transformed body. Default 1MiB.
	MaxOutput ByteSize `yaml:"max_output"`

	// fromFile is File's contents, read by Parse/Load; fileErr the error
	// reading it.
	fromFile string
	fileErr  error
}

// Mapping defaults.
const (
	DefaultTransformTimeout   = Duration(mapping.DefaultTimeout)
	DefaultTransformMaxOutput = ByteSize(mapping.DefaultMaxOutput)
)

// Program is the transformation program: JQ, or the contents of File.
func (t Transform) Program() string {
	if t.JQ != "" {
		return t.JQ
	}
	return t.fromFile
}

// MappingSpec is what pkg/mapping compiles of the destination's filter and
// transformation.
func (d Destination) MappingSpec() mapping.Spec {
	return mapping.Spec{
		Filter: d.Filter, Transform: d.Transform.Program(), Headers: d.Transform.Headers, Path: d.Transform.Path,
		Timeout: d.Transform.Timeout.D(), MaxOutput: int(d.Transform.MaxOutput),
	}
}

func (t Transform) withDefaults() Transform {
	setDefault(&t.Timeout, DefaultTransformTimeout)
	setDefault(&t.MaxOutput, DefaultTransformMaxOutput)
	return t
}

// readTransformFiles reads every destination's transform.file, relative to
// dir ("" for the working directory).
func readTransformFiles(c *Config, dir string) {
	for i := range c.Destinations {
		t := &c.Destinations[i].Transform
		if t.File == "" {
			continue
		}
		path := t.File
		if !filepath.IsAbs(path) && dir != "" {
			path = filepath.Join(dir, path)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.fileErr = err
			continue
		}
		t.fromFile = string(b)
		if strings.TrimSpace(t.fromFile) == "" {
			t.fileErr = fmt.Errorf("%s is empty", path)
		}
	}
}

// validateMapping compiles the destination's filter and transformation, so
// that a typo stops the program at start with the destination and the
// expression named; f names the destination's field.
func validateMapping(p *problems, f string, d Destination) {
	t := d.Transform
	if t.JQ != "" && t.File != "" {
		p.add(f+".transform", "destination %q: set jq or file, not both", d.Name)
	}
	if t.fileErr != nil {
		p.add(f+".transform.file", "destination %q: %v", d.Name, t.fileErr)
	}
	if t.Timeout.D() <= 0 || t.Timeout.D() > 10*time.Second {
		p.add(f+".transform.timeout", "must be between 0 and 10s, not %s", t.Timeout)
	}
	if t.MaxOutput <= 0 || t.MaxOutput > 64<<20 {
		p.add(f+".transform.max_output", "must be between 1 and 64MiB, not %d", t.MaxOutput)
	}
	_, err := mapping.Compile(d.MappingSpec())
	var me *mapping.Error
	if !errors.As(err, &me) {
		return
	}
	field, what := f+".filter", "CEL expression"
	switch me.Stage {
	case mapping.StageTransform:
		field, what = f+".transform.jq", "gojq program"
		if t.JQ == "" {
			field = f + ".transform.file"
		}
	case mapping.StageHeader:
		field, what = f+".transform.headers."+me.Name, "header template"
	case mapping.StagePath:
		field, what = f+".transform.path", "path template"
	}
	expr := ""
	if me.Expr != "" {
		expr = " " + shortExpr(me.Expr)
	}
	p.add(field, "destination %q: %s%s: %v", d.Name, what, expr, strings.TrimSpace(me.Err.Error()))
}

func shortExpr(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 120 {
		s = s[:117] + "..."
	}
	return fmt.Sprintf("%q", s)
}
