package tests

import (
	"bufio"
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/topology"
	"github.com/switchyard/switchyard/services/notifier"
)

// update rewrites the golden files: go test ./tests -run Golden -update.
var update = flag.Bool("update", false, "rewrite the golden files under testdata/ with what the code produces now")

// deployments are the two configurations whose resolved form is kept in
// testdata: a default that changes, or a stream that changes, shows in the
// diff of a review.
func deployments(t *testing.T) map[string]config.Config {
	t.Helper()
	demo, err := config.Load(filepath.Join(repoRoot, "deployments/demo.yaml"), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatalf("the demo config does not load: %v", err)
	}
	return map[string]config.Config{"demo": demo, "production": loadProduction(t)}
}

// golden compares got with testdata/<path>, or rewrites it with -update.
func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	path = filepath.Join("testdata", path)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o600); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./tests -run Golden -update to write it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is not what the code produces now; if the change is meant, run go test ./tests -run Golden -update and review the diff.\ngot:\n%s", path, got)
	}
}

// The fully resolved configuration of the demo and of the production
// layout, every default applied, secrets redacted.
func TestGoldenDefaults(t *testing.T) {
	for name, cfg := range deployments(t) {
		out, err := yaml.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(out, []byte("change-me")) || bytes.Contains(out, []byte("erp-client-secret")) {
			t.Fatalf("the resolved %s configuration shows a secret", name)
		}
		golden(t, filepath.Join("defaults", name+".yaml"), append([]byte("# The resolved configuration of "+name+" (go test ./tests -run Golden -update).\n"), out...))
	}
}

// What `switchyard topology` prints for the demo and the production layout.
func TestGoldenTopology(t *testing.T) {
	for name, cfg := range deployments(t) {
		var out bytes.Buffer
		if err := topology.ForConfig(cfg, notifier.Senders(cfg.Alerts)).WriteText(&out); err != nil {
			t.Fatal(err)
		}
		golden(t, filepath.Join("topology", name+".txt"), out.Bytes())
	}
}

// readmeRow is a row of the README's configuration reference: | `field` |
// default | meaning |.
var readmeRow = regexp.MustCompile("^\\| `([a-z_.\\[\\]]+)` \\| `([^`]*)`")

// Every default the README's configuration reference names is the one the
// code applies: the field set to the documented value resolves to exactly
// the configuration the field left out resolves to. Derived defaults
// ("per_second rounded up", "ingress.max_body") are checked by pkg/config's
// tests.
func TestReadmeDefaultsAreTheCodes(t *testing.T) {
	f, err := os.Open(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// A source and a destination for the sources[] and destinations[]
	// rows: the hmac scheme and OAuth2, whose defaults the README names.
	base := func() map[string]any {
		return map[string]any{
			"sources": []any{map[string]any{"name": "shop", "scheme": "hmac", "secrets": []any{"shop-secret"}, "hmac": map[string]any{"header": "X-Signature"}}},
			"destinations": []any{map[string]any{"name": "erp", "url": "https://erp.example/hooks", "subjects": []any{"events.>"},
				"auth": map[string]any{"type": "oauth2-client-credentials", "token_url": "https://erp.example/token", "client_id": "switchyard", "client_secret": "erp-secret"}}},
		}
	}
	resolve := func(doc map[string]any) config.Config {
		t.Helper()
		raw, err := yaml.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		c, err := config.Parse(raw, func(string) (string, bool) { return "", false })
		if err != nil {
			t.Fatalf("%v\n%s", err, raw)
		}
		return c
	}
	defaults := resolve(base())
	// The sources[].poll rows: a polled source in the sources[] place.
	polled := func() map[string]any {
		doc := base()
		doc["sources"] = []any{map[string]any{"name": "shop", "poll": map[string]any{"url": "https://api.example/orders", "items": "$.orders", "id": "$.id"}}}
		return doc
	}
	polledDefaults := resolve(polled())
	// The sources[].contract rows: the source with a contract.
	contracted := func() map[string]any {
		doc := base()
		doc["sources"].([]any)[0].(map[string]any)["contract"] = map[string]any{"default": "any.schema.json"}
		return doc
	}
	contractedDefaults := resolve(contracted())
	checked := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m := readmeRow.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		field, documented := m[1], m[2]
		if !isConfigField(field) || isFieldName(documented) {
			continue // another table, or a default that follows another field
		}
		var value any
		switch {
		case strings.HasPrefix(documented, "{") && !strings.Contains(documented, ":"):
			value = documented // a template such as {body}
		case strings.Contains(documented, ": ") && !strings.HasPrefix(documented, "{"):
			documented = "{" + documented + "}" // several fields: window: 5m, min_attempts: 20
			fallthrough
		default:
			if err := yaml.Unmarshal([]byte(documented), &value); err != nil {
				t.Errorf("README row %s: the default %s does not read as YAML: %v", field, documented, err)
				continue
			}
		}
		doc, want := base(), defaults
		switch {
		case strings.HasPrefix(field, "sources[].poll."):
			doc, want = polled(), polledDefaults
		case strings.HasPrefix(field, "sources[].contract."):
			doc, want = contracted(), contractedDefaults
		}
		if !set(doc, strings.Split(field, "."), value) {
			t.Errorf("README row %s: the field is not in the test's base configuration", field)
			continue
		}
		if got := resolve(doc); !reflect.DeepEqual(got, want) {
			t.Errorf("README: %s defaults to %s, but the code's default is another", field, documented)
		}
		checked++
	}
	if checked < 50 {
		t.Errorf("only %d rows of the configuration reference checked: the table's form changed?", checked)
	}
	t.Logf("%d documented defaults checked", checked)
}

// isConfigField reports whether a row's first column is a field of the
// configuration file (the README has other tables of the same shape).
func isConfigField(field string) bool {
	for _, p := range []string{"log.", "data_dir", "database_url", "nats.", "ops.", "ingress.", "auditor.", "sources[].", "destinations[].", "alerts.", "demo."} {
		if strings.HasPrefix(field, p) {
			return true
		}
	}
	return false
}

// isFieldName reports whether a documented default names another field
// (sources[].max_body defaults to `ingress.max_body`).
func isFieldName(s string) bool {
	return strings.Contains(s, ".") && !strings.ContainsAny(s, "0123456789{[ ") || s == "per_second"
}

// set puts value at path (sources[] and destinations[] address the first
// element) in doc, creating the maps on the way.
func set(doc map[string]any, path []string, value any) bool {
	key := path[0]
	if name, ok := strings.CutSuffix(key, "[]"); ok {
		list, ok := doc[name].([]any)
		if !ok || len(list) == 0 {
			return false
		}
		item := list[0].(map[string]any)
		if len(path) == 1 {
			return false
		}
		return set(item, path[1:], value)
	}
	if len(path) == 1 {
		doc[key] = value
		return true
	}
	next, ok := doc[key].(map[string]any)
	if !ok {
		next = map[string]any{}
		doc[key] = next
	}
	return set(next, path[1:], value)
}
