package config_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/switchyard/switchyard/pkg/config"
)

// testSecret is a Standard Webhooks secret used by the test files; tests
// that check redaction look for it (and for its base64 body) in output.
const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// minimalYAML is the smallest useful configuration: one source, one
// destination, everything else defaulted.
const minimalYAML = `
sources:
  - name: shop
    scheme: standard-webhooks
    secrets: ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]
destinations:
  - name: crm
    url: https://crm.example.com/hooks
    subjects: ["events.order.>"]
`

// envMap returns a LookupEnv reading m, as main would read os.LookupEnv.
func envMap(m map[string]string) config.LookupEnv {
	return func(name string) (string, bool) {
		v, ok := m[name]
		return v, ok
	}
}

// noEnv is an environment with nothing set.
var noEnv = envMap(nil)

// validConfig returns a configuration that passes Validate, for tests that
// break one field.
func validConfig(t *testing.T) config.Config {
	t.Helper()
	c, err := config.Parse([]byte(minimalYAML), noEnv)
	if err != nil {
		t.Fatalf("parse minimal config: %v", err)
	}
	return c
}

// checkErr asserts that err matches wantErr (errors.Is) and, when it should
// fail, that it has a problem with field whose text says problem: a
// FieldError of a *ValidationError when Validate found it. A YAML error
// (a misspelt key, a value of the wrong type) is text only, "field: line
// N: problem", and is checked as text. The problem's words are checked as
// text because they are what a person reads to fix the file: that is the
// behaviour under test.
func checkErr(t *testing.T, err, wantErr error, field, problem string) {
	t.Helper()
	if wantErr == nil {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	if !errors.Is(err, wantErr) {
		t.Fatalf("error = %v, want errors.Is(err, %v)", err, wantErr)
	}
	var ve *config.ValidationError
	if field != "" && errors.As(err, &ve) {
		for _, p := range ve.Problems {
			if p.Field == field && strings.Contains(p.Problem, problem) {
				return
			}
		}
		t.Errorf("no problem with %s saying %q:\n%v", field, problem, err)
		return
	}
	if !strings.Contains(err.Error(), field) || !strings.Contains(err.Error(), problem) {
		t.Errorf("error does not say %q about %q:\n%v", problem, field, err)
	}
}

// fieldProblems returns the FieldErrors of a *ValidationError, failing the
// test if err is not one.
func fieldProblems(t *testing.T, err error) []config.FieldError {
	t.Helper()
	var ve *config.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error %v (%T) is not a *config.ValidationError", err, err)
	}
	return ve.Problems
}

// hasField reports whether problems include one for field.
func hasField(problems []config.FieldError, field string) bool {
	for _, p := range problems {
		if p.Field == field {
			return true
		}
	}
	return false
}
