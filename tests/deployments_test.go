package tests

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
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

// composeDir holds the compose file, its NATS configs and switchyard.yaml.
var composeDir = filepath.Join(repoRoot, "deployments/compose")

// composeFile is the part of docker-compose.yml the tests read (merge keys
// applied).
type composeFile struct {
	Services map[string]struct {
		Image   string   `yaml:"image"`
		Command []string `yaml:"command"`
		Build   *struct {
			Context    string            `yaml:"context"`
			Dockerfile string            `yaml:"dockerfile"`
			Args       map[string]string `yaml:"args"`
		} `yaml:"build"`
		Volumes   []string       `yaml:"volumes"`
		EnvFile   string         `yaml:"env_file"`
		DependsOn map[string]any `yaml:"depends_on"`
		Deploy    struct {
			Replicas int `yaml:"replicas"`
		} `yaml:"deploy"`
	} `yaml:"services"`
	Volumes map[string]any `yaml:"volumes"`
}

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(composeDir, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var compose composeFile
	if err := yaml.Unmarshal(raw, &compose); err != nil {
		t.Fatalf("docker-compose.yml is not valid YAML: %v", err)
	}
	return compose
}

// mountSource returns the host side of a service's bind mount of target,
// relative to the compose directory ("" if none).
func mountSource(volumes []string, target string) string {
	for _, v := range volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 && parts[1] == target {
			return parts[0]
		}
	}
	return ""
}

func TestComposeFileNamesWhatExists(t *testing.T) {
	dir := composeDir
	compose := loadCompose(t)
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

// The compose file runs the topology the cluster test runs: three NATS
// servers in one JetStream cluster (their config files beside it), R3,
// two replicas of every service, Prometheus scraping each of them and
// Grafana with the dashboard. The NATS image is the release the tests
// build from the Go module.
func TestComposeMatchesTheTestedTopology(t *testing.T) {
	compose := loadCompose(t)
	cfg := loadProduction(t)

	// Three JetStream servers routed to each other; nats.url lists them.
	var natsHosts []string
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("nats-%d", i)
		svc, ok := compose.Services[name]
		if !ok {
			t.Fatalf("docker-compose.yml has no %s service", name)
		}
		natsHosts = append(natsHosts, name)
		if want := "nats:" + natsMinor(server.VERSION) + "-alpine"; svc.Image != want {
			t.Errorf("%s runs %s; the tests run nats-server %s, so want %s", name, svc.Image, server.VERSION, want)
		}
		conf := mountSource(svc.Volumes, "/etc/nats/nats.conf")
		if conf == "" || !slices.Equal(svc.Command, []string{"-c", "/etc/nats/nats.conf"}) {
			t.Errorf("%s does not run its config file from /etc/nats/nats.conf: command %v, volumes %v", name, svc.Command, svc.Volumes)
			continue
		}
		opts, err := server.ProcessConfigFile(filepath.Join(composeDir, conf))
		if err != nil {
			t.Errorf("%s: %v", conf, err)
			continue
		}
		if opts.ServerName != name || !opts.JetStream || opts.StoreDir != "/data" || opts.Port != 4222 {
			t.Errorf("%s: server_name %q, jetstream %v, store_dir %q, port %d; want %s, JetStream in /data (its volume), 4222",
				conf, opts.ServerName, opts.JetStream, opts.StoreDir, opts.Port, name)
		}
		if mountSource(svc.Volumes, "/data") != name {
			t.Errorf("%s does not keep /data in its own volume %s: %v", name, name, svc.Volumes)
		}
		var routes []string
		for _, r := range opts.Routes {
			routes = append(routes, r.Host)
		}
		slices.Sort(routes)
		if opts.Cluster.Name != "switchyard" || opts.Cluster.Port != 6222 ||
			!slices.Equal(routes, []string{"nats-1:6222", "nats-2:6222", "nats-3:6222"}) {
			t.Errorf("%s: cluster %q on %d with routes %v; want cluster switchyard on 6222 routed to all three nodes", conf, opts.Cluster.Name, opts.Cluster.Port, routes)
		}
		if opts.MaxPayload != 1<<20 {
			t.Errorf("%s: max_payload %d; ingress's default body limit is sized for 1 MiB", conf, opts.MaxPayload)
		}
	}
	var urlHosts []string
	for _, u := range strings.Split(cfg.NATS.URL, ",") {
		pu, err := url.Parse(strings.TrimSpace(u))
		if err != nil || pu.Port() != "4222" {
			t.Errorf("nats.url %q: want nats://nats-N:4222", u)
			continue
		}
		urlHosts = append(urlHosts, pu.Hostname())
	}
	if !slices.Equal(urlHosts, natsHosts) || cfg.NATS.Replicas != 3 {
		t.Errorf("switchyard.yaml: nats.url hosts %v with replicas %d; want every node %v and replicas 3", urlHosts, cfg.NATS.Replicas, natsHosts)
	}

	// Two replicas of each service, like the cluster test.
	services := []string{"ingress", "dispatcher", "notifier", "auditor"}
	for _, name := range services {
		if r := compose.Services[name].Deploy.Replicas; r != 2 {
			t.Errorf("%s runs %d replicas, want 2 (what the cluster test runs)", name, r)
		}
	}

	// Prometheus scrapes every service on its ops port.
	prom, ok := compose.Services["prometheus"]
	if !ok {
		t.Fatal("docker-compose.yml has no prometheus service")
	}
	promDir := mountSource(prom.Volumes, "/etc/prometheus")
	raw, err := os.ReadFile(filepath.Join(composeDir, promDir, "prometheus.yml"))
	if err != nil {
		t.Fatalf("prometheus: %v", err)
	}
	var promCfg struct {
		ScrapeConfigs []struct {
			DNSSD []struct {
				Names []string `yaml:"names"`
				Port  int      `yaml:"port"`
			} `yaml:"dns_sd_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(raw, &promCfg); err != nil {
		t.Fatalf("prometheus.yml: %v", err)
	}
	_, opsPort, _ := strings.Cut(cfg.Ops.Listen, ":")
	scraped := map[string]bool{}
	for _, sc := range promCfg.ScrapeConfigs {
		for _, sd := range sc.DNSSD {
			for _, n := range sd.Names {
				if strconv.Itoa(sd.Port) == opsPort {
					scraped[n] = true
				}
			}
		}
	}
	for _, name := range services {
		if !scraped[name] {
			t.Errorf("prometheus.yml does not scrape %s on the ops port %s", name, opsPort)
		}
	}

	// Grafana gets the data source and dashboards of deployments/observability.
	graf, ok := compose.Services["grafana"]
	if !ok {
		t.Fatal("docker-compose.yml has no grafana service")
	}
	prov := mountSource(graf.Volumes, "/etc/grafana/provisioning")
	dash := mountSource(graf.Volumes, "/var/lib/grafana/dashboards")
	for _, want := range []string{filepath.Join(prov, "datasources"), filepath.Join(prov, "dashboards"), dash} {
		if fi, err := os.Stat(filepath.Join(composeDir, want)); err != nil || !fi.IsDir() {
			t.Errorf("grafana mounts %q, which is not a directory of deployments/observability/grafana", want)
		}
	}
}

// natsMinor is "2.15" of "2.15.3".
func natsMinor(v string) string {
	parts := strings.SplitN(v, ".", 3)
	return parts[0] + "." + parts[1]
}

// The image is built in stages, and the final one is a small base with a
// numeric non-root user (Kubernetes checks runAsNonRoot against it).
func TestDockerImageIsSmallAndNonRoot(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(repoRoot, "deployments/docker/Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var froms []string
	user := ""
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 2 && f[0] == "FROM":
			froms = append(froms, f[1])
			user = "" // USER applies to its stage
		case len(f) == 2 && f[0] == "USER":
			user = f[1]
		}
	}
	if len(froms) < 2 {
		t.Fatalf("the Dockerfile has %d stages, want a build stage and a runtime stage", len(froms))
	}
	final := froms[len(froms)-1]
	if !strings.HasPrefix(final, "gcr.io/distroless/static") && !strings.HasPrefix(final, "alpine") {
		t.Errorf("the runtime stage is %s, want distroless/static or alpine", final)
	}
	uid, _, _ := strings.Cut(user, ":")
	if n, err := strconv.Atoi(uid); err != nil || n == 0 {
		t.Errorf("the runtime stage runs as %q, want a numeric non-root user", user)
	}
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
