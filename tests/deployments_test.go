package tests

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/svcboot"
)

// The files under deployments/ are not run here (there is no container
// engine on the build machine); these checks keep them consistent with the
// code: the configs load and validate, and the compose file and Dockerfile
// name things that exist.

const repoRoot = ".."

// productionConfig is deployments/compose/switchyard.yaml.
var productionConfig = filepath.Join(repoRoot, "deployments/compose/switchyard.yaml")

// productionEnv is the environment of the production layout: .env.example
// with its blanks filled the way an operator would.
func productionEnv(t *testing.T) map[string]string {
	t.Helper()
	env := dotEnv(t, filepath.Join(repoRoot, "deployments/compose/.env.example"))
	for k, v := range map[string]string{
		"SHOPIFY_WEBHOOK_SECRET": "shpss_0123456789abcdef",
		"GITHUB_WEBHOOK_SECRET":  "It's a Secret to Everybody",
		"STRIPE_WEBHOOK_SECRET":  "whsec_0123456789abcdefghijklmnop",
		"ERP_CLIENT_SECRET":      "erp-client-secret",
		"ERP_SIGNING_SECRET":     "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
		"WAREHOUSE_TOKEN":        "warehouse-token",
	} {
		env[k] = v
	}
	return env
}

// loadProduction loads the production config in its environment.
func loadProduction(t *testing.T) config.Config {
	t.Helper()
	env := productionEnv(t)
	cfg, err := config.Load(productionConfig, func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	})
	if err != nil {
		t.Fatalf("the production config does not load: %v", err)
	}
	return cfg
}

func TestProductionConfigLoads(t *testing.T) {
	cfg := loadProduction(t)
	env := productionEnv(t)
	if cfg.NATS.Replicas != 3 || cfg.DatabaseURL == "" || cfg.Auditor.AdminToken == "" {
		t.Errorf("production config: replicas %d, database_url set %v, admin token set %v", cfg.NATS.Replicas, cfg.DatabaseURL != "", cfg.Auditor.AdminToken != "")
	}
	// An operator who forgets a secret is told which one.
	delete(env, "ERP_CLIENT_SECRET")
	_, err := config.Load(productionConfig, func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	})
	// The field is checked as data; the variable's name, as what the
	// operator reads.
	var ve *config.ValidationError
	named := false
	if errors.As(err, &ve) {
		for _, p := range ve.Problems {
			named = named || (strings.HasSuffix(p.Field, ".auth.client_secret") && strings.Contains(p.Problem, "ERP_CLIENT_SECRET"))
		}
	}
	if !named {
		t.Errorf("a missing secret gave %v; want a problem with the client secret naming ERP_CLIENT_SECRET", err)
	}
}

func TestComposeFileNamesWhatExists(t *testing.T) {
	dir := filepath.Join(repoRoot, "deployments/compose")
	raw, err := os.ReadFile(filepath.Join(dir, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Services map[string]struct {
			Image string `yaml:"image"`
			Build *struct {
				Context    string            `yaml:"context"`
				Dockerfile string            `yaml:"dockerfile"`
				Args       map[string]string `yaml:"args"`
			} `yaml:"build"`
			Volumes   []string       `yaml:"volumes"`
			EnvFile   string         `yaml:"env_file"`
			DependsOn map[string]any `yaml:"depends_on"`
		} `yaml:"services"`
		Volumes map[string]any `yaml:"volumes"`
	}
	if err := yaml.Unmarshal(raw, &compose); err != nil {
		t.Fatalf("docker-compose.yml is not valid YAML: %v", err)
	}
	built := 0
	for name, svc := range compose.Services {
		for dep := range svc.DependsOn {
			if _, ok := compose.Services[dep]; !ok {
				t.Errorf("service %s depends on %s, which is not defined", name, dep)
			}
		}
		for _, v := range svc.Volumes {
			src := strings.SplitN(v, ":", 2)[0]
			if strings.HasPrefix(src, ".") {
				if _, err := os.Stat(filepath.Join(dir, src)); err != nil {
					t.Errorf("service %s mounts %s, which does not exist", name, src)
				}
			} else if _, ok := compose.Volumes[src]; !ok {
				t.Errorf("service %s uses volume %s, which is not declared", name, src)
			}
		}
		if svc.EnvFile != "" {
			if _, err := os.Stat(filepath.Join(dir, svc.EnvFile+".example")); err != nil {
				t.Errorf("service %s reads %s, but there is no %s.example to copy it from", name, svc.EnvFile, svc.EnvFile)
			}
		}
		if svc.Build == nil {
			if svc.Image == "" {
				t.Errorf("service %s has neither image nor build", name)
			}
			continue
		}
		built++
		ctx := filepath.Join(dir, svc.Build.Context)
		if _, err := os.Stat(filepath.Join(ctx, svc.Build.Dockerfile)); err != nil {
			t.Errorf("service %s: Dockerfile %s not found in its context", name, svc.Build.Dockerfile)
		}
		s := svc.Build.Args["SERVICE"]
		if _, err := os.Stat(filepath.Join(ctx, "services", s, "cmd", s, "main.go")); err != nil {
			t.Errorf("service %s builds SERVICE=%q, which has no services/%s/cmd/%s", name, s, s, s)
		}
	}
	for _, want := range []string{"ingress", "dispatcher", "notifier", "auditor"} {
		if _, ok := compose.Services[want]; !ok {
			t.Errorf("docker-compose.yml has no %s service", want)
		}
	}
	if built != 4 {
		t.Errorf("%d services are built from source, want the 4 Switchyard services", built)
	}
}

func TestDockerfileCopiesWhatExists(t *testing.T) {
	f, err := os.Open(filepath.Join(repoRoot, "deployments/docker/Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	copyLine := regexp.MustCompile(`^COPY\s+(\S+)\s+\S+$`)
	var copied []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := copyLine.FindStringSubmatch(strings.TrimSpace(sc.Text())); m != nil {
			copied = append(copied, m[1])
			if _, err := os.Stat(filepath.Join(repoRoot, m[1])); err != nil {
				t.Errorf("the Dockerfile copies %s, which is not in the repository", m[1])
			}
		}
	}
	// A service module builds with GOWORK=off from pkg/, proto/ and
	// services/: the image must have all three.
	for _, want := range []string{"pkg/", "proto/", "services/"} {
		if !slices.Contains(copied, want) {
			t.Errorf("the Dockerfile does not copy %s", want)
		}
	}
}

// dotEnv reads KEY=VALUE lines.
func dotEnv(t *testing.T, path string) map[string]string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, line := range strings.Split(string(raw), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, _ := strings.Cut(line, "=")
		env[k] = v
	}
	return env
}

// The image's CMD starts every binary the Dockerfile builds: the services
// (which accept a leading run) and the all-in-one (`switchyard run`), with
// the configuration where the compose file mounts it.
func TestDockerfileCmdFitsEveryBinary(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(repoRoot, "deployments/docker/Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^CMD (\[.*\])$`).FindSubmatch(raw)
	if m == nil {
		t.Fatal("the Dockerfile has no CMD in exec form")
	}
	var cmd []string
	if err := json.Unmarshal(m[1], &cmd); err != nil {
		t.Fatalf("CMD %s: %v", m[1], err)
	}
	compose, err := os.ReadFile(filepath.Join(repoRoot, "deployments/compose/docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	mount := regexp.MustCompile(`switchyard\.yaml:(\S+):ro`).FindSubmatch(compose)
	if mount == nil {
		t.Fatal("docker-compose.yml mounts no switchyard.yaml")
	}
	if want := []string{"run", "--config", string(mount[1])}; !slices.Equal(cmd, want) {
		t.Fatalf("CMD is %q, want %q: the all-in-one needs its run subcommand, and the file is mounted at %s", cmd, want, mount[1])
	}
	// A service reads the command line: a missing file is reported as
	// such, not as a usage error.
	err = svcboot.Main(context.Background(), "ingress", cmd, io.Discard, func(context.Context, *svcboot.Env) (svcboot.Service, error) {
		return nil, errors.New("must not be reached")
	})
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ingress %s: %v, want the configuration file not found", strings.Join(cmd, " "), err)
	}
}
