package main

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/callpop/callpop/internal/apiauth"
	"github.com/callpop/callpop/internal/testcerts"
)

const kubeDir = "../../deploy/kubernetes"

// kubeManifests are deploy/kubernetes's objects, each decoded strictly (an
// unknown or misspelt field is an error) with the Kubernetes API types, or
// the Prometheus operator's for the ServiceMonitor.
type kubeManifests struct {
	deploy  *appsv1.Deployment
	svc     *corev1.Service
	cm      *corev1.ConfigMap
	pdb     *policyv1.PodDisruptionBudget
	monitor *monitoringv1.ServiceMonitor
}

// decodeManifest decodes one manifest into the type its kind names.
func decodeManifest(data []byte, m *kubeManifests) error {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(data, &tm); err != nil {
		return err
	}
	var obj any
	switch tm.APIVersion + " " + tm.Kind {
	case "apps/v1 Deployment":
		m.deploy = &appsv1.Deployment{}
		obj = m.deploy
	case "v1 Service":
		m.svc = &corev1.Service{}
		obj = m.svc
	case "v1 ConfigMap":
		m.cm = &corev1.ConfigMap{}
		obj = m.cm
	case "policy/v1 PodDisruptionBudget":
		m.pdb = &policyv1.PodDisruptionBudget{}
		obj = m.pdb
	case "monitoring.coreos.com/v1 ServiceMonitor":
		m.monitor = &monitoringv1.ServiceMonitor{}
		obj = m.monitor
	default:
		return &unknownKind{tm.APIVersion, tm.Kind}
	}
	// As the API server decodes: field names match exactly (encoding/json
	// would take readOnlyRootFileSystem), no unknown or duplicate fields.
	j, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return err
	}
	strict, err := kjson.UnmarshalStrict(j, obj, kjson.DisallowUnknownFields)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

type unknownKind struct{ apiVersion, kind string }

func (u *unknownKind) Error() string { return "unexpected kind " + u.apiVersion + " " + u.kind }

func loadManifests(t *testing.T) *kubeManifests {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(kubeDir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in %s: %v", kubeDir, err)
	}
	m := &kubeManifests{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := decodeManifest(data, m); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
	}
	if m.deploy == nil || m.svc == nil || m.cm == nil || m.pdb == nil || m.monitor == nil {
		t.Fatalf("want a Deployment, Service, ConfigMap, PodDisruptionBudget and ServiceMonitor, got %+v", m)
	}
	return m
}

// The decoder sees mistakes: a misspelt field and a field of the wrong type
// are errors.
func TestKubernetesDecoderIsStrict(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(kubeDir, "deployment.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{
		strings.Replace(string(data), "readOnlyRootFilesystem", "readOnlyRootFileSystem", 1),
		strings.Replace(string(data), "replicas: 2", "replicas: two", 1),
	} {
		if err := decodeManifest([]byte(bad), &kubeManifests{}); err == nil {
			t.Error("a broken Deployment decoded")
		}
	}
	data, err = os.ReadFile(filepath.Join(kubeDir, "servicemonitor.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := decodeManifest([]byte(strings.Replace(string(data), "interval:", "intervall:", 1)), &kubeManifests{}); err == nil {
		t.Error("a broken ServiceMonitor decoded")
	}
}

// deploy/kubernetes is the secure set-up, its parts fit together, and the
// Deployment's environment over the ConfigMap is a configuration `callpop
// run` accepts: allow-lists, TLS, API keys whose values come from the Secret.
func TestKubernetesManifests(t *testing.T) {
	m := loadManifests(t)
	pod := m.deploy.Spec.Template
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("%d containers", len(pod.Spec.Containers))
	}
	c := pod.Spec.Containers[0]
	checkPodSecurity(t, pod.Spec, c)

	// The ConfigMap is config.example.yaml.
	example, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	if m.cm.Data["callpop.yaml"] != string(example) {
		t.Error("the ConfigMap's callpop.yaml differs from config.example.yaml (regenerate it: see configmap.yaml)")
	}

	// The environment: every variable is a key's, an API key's value, or
	// one a value refers to; secrets come from the Secret, never inline.
	known := knownEnv()
	var refs strings.Builder
	for _, e := range c.Env {
		refs.WriteString(e.Value + "\n")
	}
	secretKeys := map[string]bool{}
	dir := t.TempDir()
	// The TLS Secret's files, made up, where the test can read them.
	tlsMount := ""
	for _, vm := range c.VolumeMounts {
		if volumeOf(pod.Spec, vm.Name).Secret != nil {
			tlsMount = vm.MountPath + "/"
		}
	}
	testcerts.NewCA(t, "callpop test CA").Server(t, "callpop.callpop.svc").Write(t, dir, "tls")
	for _, e := range c.Env {
		switch {
		case known[e.Name], apiauth.IsKeyEnv(e.Name), strings.Contains(refs.String(), "${"+e.Name+"}"):
		default:
			t.Errorf("env %s overrides no configuration key and no value refers to it", e.Name)
		}
		secret := regexp.MustCompile(`(KEY|SECRET|PASSWORD|TOKEN|DSN)$`).MatchString(e.Name)
		if secret && (e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil) {
			t.Errorf("env %s is a secret: want valueFrom.secretKeyRef", e.Name)
		}
		switch {
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			secretKeys[e.ValueFrom.SecretKeyRef.Name+"/"+e.ValueFrom.SecretKeyRef.Key] = true
			t.Setenv(e.Name, "made-up-secret-0123456789abcdef")
		case e.Name == "CALLPOP_CONFIG":
			mounted := false
			for _, vm := range c.VolumeMounts {
				mounted = mounted || strings.HasPrefix(e.Value, vm.MountPath+"/") && volumeOf(pod.Spec, vm.Name).ConfigMap != nil
			}
			if !mounted {
				t.Errorf("CALLPOP_CONFIG=%s is not in the ConfigMap's mount", e.Value)
			}
			p := filepath.Join(dir, "callpop.yaml")
			if err := os.WriteFile(p, []byte(m.cm.Data["callpop.yaml"]), 0o600); err != nil {
				t.Fatal(err)
			}
			t.Setenv(e.Name, p)
		case tlsMount != "" && strings.HasPrefix(e.Value, tlsMount):
			t.Setenv(e.Name, filepath.Join(dir, strings.TrimPrefix(e.Value, tlsMount)))
		default:
			t.Setenv(e.Name, e.Value)
		}
	}
	lc, err := loadConfig(os.Getenv("CALLPOP_CONFIG"), true)
	if err != nil {
		t.Fatalf("the Deployment's configuration: %v", err)
	}
	if _, err := lc.runCRM(); err != nil {
		t.Errorf("run would refuse: %v", err)
	}
	if _, err := apiauth.New(lc.API, apiauth.Options{}); err != nil {
		t.Errorf("run would refuse the keys: %v", err)
	}
	if w := exposureWarnings(lc.Config); len(w) > 0 {
		t.Errorf("start-up would warn: %q", w)
	}
	if !lc.TLS.Enabled() || volumeOf(pod.Spec, "tls").Secret == nil {
		t.Error("no TLS from a mounted Secret")
	}
	for _, vm := range c.VolumeMounts {
		if vm.SubPath != "" {
			t.Errorf("volume mount %s uses subPath: it never sees updates", vm.Name)
		}
	}
	checkProbes(t, c, lc.TLS.Enabled())
	checkDrain(t, pod.Spec, c, lc.Config)
	checkWiring(t, m, c, secretKeys)
}

// volumeOf is the pod's volume called name (zero when there is none).
func volumeOf(spec corev1.PodSpec, name string) corev1.Volume {
	for _, v := range spec.Volumes {
		if v.Name == name {
			return v
		}
	}
	return corev1.Volume{}
}

// checkPodSecurity: non-root, read-only root, no privileges, resources.
func checkPodSecurity(t *testing.T, spec corev1.PodSpec, c corev1.Container) {
	t.Helper()
	psc, sc := spec.SecurityContext, c.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Error("the pod does not run as a non-root user")
	}
	if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Error("no RuntimeDefault seccomp profile")
	}
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("the root file system is writable")
	}
	if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		t.Error("privilege escalation allowed or capabilities kept")
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources %+v: want CPU and memory requests and a memory limit", c.Resources)
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Error("the service account token is mounted (callpop needs no Kubernetes API)")
	}
}

// checkProbes: liveness on /healthz, readiness on /readyz, over HTTPS when
// the listener has TLS.
func checkProbes(t *testing.T, c corev1.Container, tls bool) {
	t.Helper()
	scheme := corev1.URISchemeHTTP
	if tls {
		scheme = corev1.URISchemeHTTPS
	}
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"liveness", c.LivenessProbe, "/healthz"}, {"readiness", c.ReadinessProbe, "/readyz"}, {"startup", c.StartupProbe, "/healthz"}} {
		if p.probe == nil || p.probe.HTTPGet == nil || p.probe.HTTPGet.Path != p.path || p.probe.HTTPGet.Scheme != scheme || p.probe.HTTPGet.Port.String() != "http" {
			t.Errorf("%s probe %+v: want GET %s over %s on port http", p.name, p.probe, p.path, scheme)
		}
	}
}

// checkDrain: preStop, then call.drain_delay and call.drain_timeout fit in
// terminationGracePeriodSeconds with room to spare.
func checkDrain(t *testing.T, spec corev1.PodSpec, c corev1.Container, cfg Config) {
	t.Helper()
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil {
		t.Fatal("no preStop sleep")
	}
	need := c.Lifecycle.PreStop.Sleep.Seconds + int64((cfg.Call.DrainDelay + cfg.Call.DrainTimeout).Seconds())
	if cfg.Call.DrainDelay != drainDelay {
		t.Errorf("call.drain_delay %s in the Deployment's configuration, want the default %s", cfg.Call.DrainDelay, drainDelay)
	}
	if spec.TerminationGracePeriodSeconds == nil || *spec.TerminationGracePeriodSeconds < need+5 {
		t.Errorf("terminationGracePeriodSeconds %v: preStop + drain_delay + drain_timeout is %ds, want 5s more", spec.TerminationGracePeriodSeconds, need)
	}
}

// checkWiring: the Service, the PodDisruptionBudget and the ServiceMonitor
// select the pods and name their ports; the monitor's key is the Secret's
// key the Deployment gives callpop as the prometheus API key.
func checkWiring(t *testing.T, m *kubeManifests, c corev1.Container, secretKeys map[string]bool) {
	t.Helper()
	podLabels := labels.Set(m.deploy.Spec.Template.Labels)
	sel, err := metav1.LabelSelectorAsSelector(m.deploy.Spec.Selector)
	if err != nil || !sel.Matches(podLabels) {
		t.Errorf("the Deployment's selector does not match its pods (%v)", err)
	}
	if !labels.SelectorFromSet(m.svc.Spec.Selector).Matches(podLabels) {
		t.Error("the Service selects no callpop pod")
	}
	portNames := map[string]bool{}
	for _, p := range c.Ports {
		portNames[p.Name] = true
	}
	svcPorts := map[string]bool{}
	for _, p := range m.svc.Spec.Ports {
		svcPorts[p.Name] = true
		if !portNames[p.TargetPort.String()] {
			t.Errorf("Service port %s targets %s, not a container port", p.Name, p.TargetPort.String())
		}
	}
	if sel, err := metav1.LabelSelectorAsSelector(m.pdb.Spec.Selector); err != nil || !sel.Matches(podLabels) {
		t.Errorf("the PodDisruptionBudget selects no callpop pod (%v)", err)
	}
	if sel, err := metav1.LabelSelectorAsSelector(&m.monitor.Spec.Selector); err != nil || !sel.Matches(labels.Set(m.svc.Labels)) {
		t.Errorf("the ServiceMonitor does not select the Service (%v)", err)
	}
	if len(m.monitor.Spec.Endpoints) != 1 {
		t.Fatalf("%d ServiceMonitor endpoints", len(m.monitor.Spec.Endpoints))
	}
	ep := m.monitor.Spec.Endpoints[0]
	if !svcPorts[ep.Port] || ep.Path != "/metrics" {
		t.Errorf("ServiceMonitor scrapes port %q path %q", ep.Port, ep.Path)
	}
	if ep.Authorization == nil || ep.Authorization.Credentials == nil ||
		!secretKeys[ep.Authorization.Credentials.Name+"/"+ep.Authorization.Credentials.Key] {
		t.Error("the ServiceMonitor's credentials are not an API key the Deployment gives callpop")
	}
	if ep.Scheme == nil || strings.ToLower(ep.Scheme.String()) != "https" {
		t.Error("the ServiceMonitor does not scrape over HTTPS")
	}
	for ns, obj := range map[string]metav1.ObjectMeta{"Deployment": m.deploy.ObjectMeta, "Service": m.svc.ObjectMeta, "ConfigMap": m.cm.ObjectMeta, "PodDisruptionBudget": m.pdb.ObjectMeta, "ServiceMonitor": m.monitor.ObjectMeta} {
		if obj.Namespace != m.deploy.Namespace {
			t.Errorf("%s is in namespace %q, the Deployment in %q", ns, obj.Namespace, m.deploy.Namespace)
		}
	}
}
