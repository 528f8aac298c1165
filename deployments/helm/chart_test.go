package helm

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	chartutil "helm.sh/helm/v4/pkg/chart/v2/util"
	"helm.sh/helm/v4/pkg/engine"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"

	"github.com/switchyard/switchyard/pkg/config"
)

// No Kubernetes runs in this project's CI: the chart is rendered with the
// Helm SDK, as `helm template` does, and every manifest is decoded strictly
// into the Kubernetes API types, so that a misspelt or misplaced field
// fails here rather than at `helm install`.

const chartDir = "switchyard"

// services are the Switchyard services, one Deployment each.
var services = []string{"ingress", "dispatcher", "notifier", "auditor"}

// rendered is a rendered chart, decoded.
type rendered struct {
	deployments map[string]*appsv1.Deployment // by component
	pdbs        map[string]*policyv1.PodDisruptionBudget
	services    map[string]*corev1.Service // by name
	configMaps  []*corev1.ConfigMap
}

func TestChartRendersWithDefaultValues(t *testing.T) {
	checkChart(t, render(t, ""), 2)
}

func TestChartRendersWithProductionValues(t *testing.T) {
	r := render(t, "values-production.yaml")
	checkChart(t, r, 2)
	if n := *r.deployments["ingress"].Spec.Replicas; n < 3 {
		t.Errorf("production ingress runs %d replicas, want at least 3", n)
	}
}

// A field that is not in the Kubernetes API, or in the wrong place, fails
// the decoding.
func TestStrictDecodingRefusesUnknownFields(t *testing.T) {
	for name, doc := range map[string]string{
		"typo":           "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n  selectr: {a: b}\n",
		"wrong place":    "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  template:\n    spec:\n      readinessProbe: {}\n",
		"duplicate":      "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: b}\ndata: {c: d}\n",
		"unknown kind":   "apiVersion: v1\nkind: Secret\nmetadata: {name: x}\nstringData: {password: hunter2}\n",
		"unknown apiver": "apiVersion: apps/v2\nkind: Deployment\nmetadata: {name: x}\n",
	} {
		if _, err := decodeStrict([]byte(doc)); err == nil {
			t.Errorf("%s: decoded without an error", name)
		}
	}
	if _, err := decodeStrict([]byte("apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n  selector: {a: b}\n")); err != nil {
		t.Errorf("a valid Service: %v", err)
	}
}

// render renders the chart with its values.yaml and, if given, another
// values file over it, and decodes every manifest strictly.
func render(t *testing.T, valuesFile string) rendered {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("load the chart: %v", err)
	}
	checkNATSDependency(t, ch)
	vals := map[string]any{}
	if valuesFile != "" {
		v, err := common.ReadValuesFile(filepath.Join(chartDir, valuesFile))
		if err != nil {
			t.Fatalf("read %s: %v", valuesFile, err)
		}
		vals = v
	}
	// The NATS dependency is off (nats.enabled: false) and not in charts/:
	// nothing is fetched.
	if err := chartutil.ProcessDependencies(ch, vals); err != nil {
		t.Fatalf("process dependencies: %v", err)
	}
	rv, err := util.ToRenderValues(ch, vals, common.ReleaseOptions{Name: "sy", Namespace: "switchyard", IsInstall: true}, nil)
	if err != nil {
		t.Fatalf("values: %v", err)
	}
	files, err := engine.Render(ch, rv)
	if err != nil {
		t.Fatalf("render the chart with %q: %v", valuesFile, err)
	}
	r := rendered{
		deployments: map[string]*appsv1.Deployment{},
		pdbs:        map[string]*policyv1.PodDisruptionBudget{},
		services:    map[string]*corev1.Service{},
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if !strings.HasSuffix(name, ".yaml") {
			continue // NOTES.txt, helpers
		}
		for i, doc := range splitDocuments(files[name]) {
			obj, err := decodeStrict(doc)
			if err != nil {
				t.Errorf("%s, document %d: %v\n%s", name, i+1, err, doc)
				continue
			}
			switch o := obj.(type) {
			case *appsv1.Deployment:
				r.deployments[o.Labels["app.kubernetes.io/component"]] = o
			case *policyv1.PodDisruptionBudget:
				r.pdbs[o.Labels["app.kubernetes.io/component"]] = o
			case *corev1.Service:
				r.services[o.Name] = o
			case *corev1.ConfigMap:
				r.configMaps = append(r.configMaps, o)
			}
		}
	}
	return r
}

// checkNATSDependency: NATS comes from the official chart, optional and off
// by default (a documented prerequisite).
func checkNATSDependency(t *testing.T, ch *chart.Chart) {
	t.Helper()
	var nats *chart.Dependency
	for _, d := range ch.Metadata.Dependencies {
		if d.Name == "nats" {
			nats = d
		}
	}
	if nats == nil || nats.Repository != "https://nats-io.github.io/k8s/helm/charts/" || nats.Condition != "nats.enabled" {
		t.Errorf("Chart.yaml: the NATS dependency is %+v; want the official chart with condition nats.enabled", nats)
	}
	if enabled, _ := ch.Values["nats"].(map[string]any)["enabled"].(bool); enabled {
		t.Error("values.yaml enables the NATS subchart; it is a prerequisite, off by default")
	}
}

// scheme knows the kinds the chart may render; any other kind fails.
var scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme, policyv1.AddToScheme} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}()

// decodeStrict decodes one YAML manifest into its API type; unknown and
// duplicate fields are errors. Secrets are not among the kinds: the chart
// references existing ones and renders none.
func decodeStrict(doc []byte) (runtime.Object, error) {
	ser := json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme, scheme, json.SerializerOptions{Yaml: true, Strict: true})
	obj, gvk, err := ser.Decode(doc, nil, nil)
	if err != nil {
		return nil, err
	}
	if _, ok := obj.(*corev1.Secret); ok {
		return nil, fmt.Errorf("the chart renders a Secret (%s): reference an existing one instead", gvk)
	}
	return obj, nil
}

// splitDocuments splits a rendered file into its non-empty YAML documents.
func splitDocuments(s string) [][]byte {
	var out [][]byte
	for _, doc := range strings.Split("\n"+s, "\n---") {
		trimmed := strings.TrimSpace(doc)
		empty := true
		for _, line := range strings.Split(trimmed, "\n") {
			if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
				empty = false
			}
		}
		if !empty {
			out = append(out, []byte(trimmed+"\n"))
		}
	}
	return out
}

// checkChart checks what the chart promises: a Deployment per service with
// probes on the ops port, resource requests, a non-root read-only
// container, secrets only by reference; a PodDisruptionBudget each; a
// Service per HTTP listener; the configuration in a ConfigMap that
// config.Load accepts, with every secret a ${VAR} one of the Deployments
// provides from a Secret.
func checkChart(t *testing.T, r rendered, minReplicas int32) {
	t.Helper()
	if len(r.configMaps) != 1 {
		t.Fatalf("%d ConfigMaps, want the configuration's", len(r.configMaps))
	}
	cm := r.configMaps[0]
	for _, name := range services {
		d := r.deployments[name]
		if d == nil {
			t.Errorf("no Deployment for %s", name)
			continue
		}
		if d.Spec.Replicas == nil || *d.Spec.Replicas < minReplicas {
			t.Errorf("%s: %v replicas, want at least %d", name, d.Spec.Replicas, minReplicas)
		}
		pod := d.Spec.Template
		for k, v := range d.Spec.Selector.MatchLabels {
			if pod.Labels[k] != v {
				t.Errorf("%s: the selector %s=%s does not match the pod labels %v", name, k, v, pod.Labels)
			}
		}
		if len(pod.Spec.Containers) != 1 {
			t.Fatalf("%s: %d containers", name, len(pod.Spec.Containers))
		}
		c := pod.Spec.Containers[0]
		ops := containerPort(c, "ops")
		for probe, want := range map[*corev1.Probe]string{c.ReadinessProbe: "/readyz", c.LivenessProbe: "/healthz"} {
			if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Path != want || probe.HTTPGet.Port.String() != "ops" || ops == 0 {
				t.Errorf("%s: want an HTTP probe of %s on the ops port, got %+v", name, want, probe)
			}
		}
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
			t.Errorf("%s: no CPU or memory request: %v", name, c.Resources.Requests)
		}
		psc, csc := pod.Spec.SecurityContext, c.SecurityContext
		if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || csc == nil || csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem ||
			csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation {
			t.Errorf("%s: want a non-root pod with a read-only root filesystem and no privilege escalation", name)
		}
		for _, e := range c.Env {
			if e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil || e.ValueFrom.SecretKeyRef.Name == "" {
				t.Errorf("%s: env %s is not a reference to an existing Secret", name, e.Name)
			}
		}
		if !mountsConfigMap(pod.Spec, cm.Name) {
			t.Errorf("%s does not mount the ConfigMap %s", name, cm.Name)
		}
		checkConfig(t, name, cm, c.Env)

		pdb := r.pdbs[name]
		if pdb == nil || pdb.Spec.MinAvailable == nil && pdb.Spec.MaxUnavailable == nil {
			t.Errorf("%s: no PodDisruptionBudget with minAvailable or maxUnavailable", name)
		} else if !reflect.DeepEqual(pdb.Spec.Selector.MatchLabels, d.Spec.Selector.MatchLabels) {
			t.Errorf("%s: the PodDisruptionBudget selects %v, the Deployment %v", name, pdb.Spec.Selector.MatchLabels, d.Spec.Selector.MatchLabels)
		}

		// A Service for every HTTP listener: ops on each, and ingress's
		// and the audit API's.
		listeners := []string{"ops"}
		if containerPort(c, "http") != 0 {
			listeners = append(listeners, "http")
		}
		for _, l := range listeners {
			if !servedBy(r.services, d, l) {
				t.Errorf("%s: no Service for its %s port", name, l)
			}
		}
	}
}

func containerPort(c corev1.Container, name string) int32 {
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	return 0
}

func mountsConfigMap(spec corev1.PodSpec, name string) bool {
	for _, v := range spec.Volumes {
		if v.ConfigMap != nil && v.ConfigMap.Name == name {
			for _, m := range spec.Containers[0].VolumeMounts {
				if m.Name == v.Name && strings.HasPrefix(m.MountPath, "/etc/switchyard") {
					return true
				}
			}
		}
	}
	return false
}

// servedBy reports whether a Service selects the Deployment's pods and
// targets its named port.
func servedBy(svcs map[string]*corev1.Service, d *appsv1.Deployment, port string) bool {
	for _, s := range svcs {
		selects := len(s.Spec.Selector) > 0
		for k, v := range s.Spec.Selector {
			if d.Spec.Template.Labels[k] != v {
				selects = false
			}
		}
		for _, p := range s.Spec.Ports {
			if selects && p.TargetPort.String() == port {
				return true
			}
		}
	}
	return false
}

// checkConfig loads the ConfigMap's switchyard.yaml with config.Load, as
// the service does, with the environment its Deployment gives it: it must
// load, and every secret in it must come from that environment.
func checkConfig(t *testing.T, service string, cm *corev1.ConfigMap, env []corev1.EnvVar) {
	t.Helper()
	raw, ok := cm.Data["switchyard.yaml"]
	if !ok {
		t.Fatalf("the ConfigMap has no switchyard.yaml: %v", cm.Data)
	}
	path := filepath.Join(t.TempDir(), "switchyard.yaml")
	if err := os.WriteFile(path, []byte(raw), 0o600); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{}
	for _, e := range env {
		// Secret-looking values that pass validation (whsec_ for Standard
		// Webhooks, a URL for URLs), marked so that the check below finds
		// where they went.
		vars[e.Name] = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
		if strings.HasSuffix(e.Name, "_URL") {
			vars[e.Name] = "https://secret.example.com/" + e.Name
			if strings.Contains(e.Name, "DATABASE") {
				vars[e.Name] = "postgres://switchyard:secret@postgres/switchyard"
			}
		}
	}
	cfg, err := config.Load(path, func(k string) (string, bool) { v, ok := vars[k]; return v, ok })
	if err != nil {
		t.Fatalf("%s: the ConfigMap's configuration does not load with its Deployment's environment: %v", service, err)
	}
	if cfg.NATS.URL == "" || cfg.NATS.Replicas != 3 {
		t.Errorf("%s: nats.url %q, replicas %d; want the cluster's nodes and 3", service, cfg.NATS.URL, cfg.NATS.Replicas)
	}
	for field, v := range secrets(reflect.ValueOf(cfg), "") {
		if !slices.Contains(mapValues(vars), v) {
			t.Errorf("%s: secret %s is written in the ConfigMap; make it a ${VAR} from secretEnv", service, field)
		}
	}
}

// secrets returns every non-empty config.Secret in v, by field path.
func secrets(v reflect.Value, path string) map[string]string {
	out := map[string]string{}
	secretType := reflect.TypeFor[config.Secret]()
	var walk func(v reflect.Value, path string)
	walk = func(v reflect.Value, path string) {
		switch {
		case v.Type() == secretType:
			if s := v.String(); s != "" {
				out[path] = s
			}
		case v.Kind() == reflect.Struct:
			for i := range v.NumField() {
				if v.Type().Field(i).IsExported() {
					walk(v.Field(i), path+"."+v.Type().Field(i).Name)
				}
			}
		case v.Kind() == reflect.Slice || v.Kind() == reflect.Array:
			for i := range v.Len() {
				walk(v.Index(i), fmt.Sprintf("%s[%d]", path, i))
			}
		case v.Kind() == reflect.Map:
			for _, k := range v.MapKeys() {
				walk(v.MapIndex(k), fmt.Sprintf("%s[%v]", path, k))
			}
		case v.Kind() == reflect.Pointer && !v.IsNil():
			walk(v.Elem(), path)
		}
	}
	walk(v, path)
	return out
}

func mapValues(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}
