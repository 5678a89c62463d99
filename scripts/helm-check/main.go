// helm-check renders the chart as `helm template` does (the Helm SDK's client-only install,
// values.schema.json included) for its default values and for each values file given, and
// decodes every rendered object strictly into its API's Go types: Kubernetes (k8s.io/api),
// the Prometheus Operator and KEDA. An unknown or misspelt field, or a value of the wrong
// type, fails. It stands in for `helm template | kubeconform` where neither can be fetched.
//
//	go run ./scripts/helm-check -out DIR deploy/helm/lifecycle [values.yaml ...]
//
// Each value set's manifests are written to DIR/<set>.yaml for further checks.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	keda "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	monitoring "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	release "helm.sh/helm/v4/pkg/release/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

// target is the Go type an object of that apiVersion and kind must decode into.
func target(apiVersion, kind string) any {
	switch apiVersion + " " + kind {
	case "apps/v1 Deployment":
		return &appsv1.Deployment{}
	case "v1 Service":
		return &corev1.Service{}
	case "v1 ConfigMap":
		return &corev1.ConfigMap{}
	case "v1 Secret":
		return &corev1.Secret{}
	case "v1 ServiceAccount":
		return &corev1.ServiceAccount{}
	case "policy/v1 PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}
	case "autoscaling/v2 HorizontalPodAutoscaler":
		return &autoscalingv2.HorizontalPodAutoscaler{}
	case "monitoring.coreos.com/v1 ServiceMonitor":
		return &monitoring.ServiceMonitor{}
	case "monitoring.coreos.com/v1 PrometheusRule":
		return &monitoring.PrometheusRule{}
	case "keda.sh/v1alpha1 ScaledObject":
		return &keda.ScaledObject{}
	case "keda.sh/v1alpha1 TriggerAuthentication":
		return &keda.TriggerAuthentication{}
	}
	return nil
}

// render is `helm template <release> <chart> -f <values>` without a cluster.
func render(chartDir, valuesFile string) (string, error) {
	chrt, err := loader.Load(chartDir)
	if err != nil {
		return "", err
	}
	vals := map[string]any{}
	if valuesFile != "" {
		read, err := common.ReadValuesFile(valuesFile)
		if err != nil {
			return "", err
		}
		vals = read
	}
	install := action.NewInstall(&action.Configuration{})
	install.DryRunStrategy = action.DryRunClient
	install.ReleaseName = "lifecycle"
	install.Namespace = "lifecycle"
	install.Replace = true
	rel, err := install.RunWithContext(context.Background(), chrt, vals)
	if err != nil {
		return "", err
	}
	r, ok := rel.(*release.Release)
	if !ok {
		return "", fmt.Errorf("unexpected release type %T", rel)
	}
	return r.Manifest, nil
}

// check decodes every object of a rendered manifest; it returns (valid, invalid).
func check(set, manifest string) (int, int) {
	valid, invalid := 0, 0
	for _, doc := range strings.Split(manifest, "\n---") {
		if strings.TrimSpace(strings.TrimPrefix(doc, "---")) == "" {
			continue
		}
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
			fmt.Printf("%s: not YAML: %v\n", set, err)
			invalid++
			continue
		}
		if head.Kind == "" {
			continue // a template that rendered to comments only
		}
		obj := target(head.APIVersion, head.Kind)
		if obj == nil {
			fmt.Printf("%s: %s %s %s: kind not known to this checker\n", set, head.APIVersion, head.Kind, head.Metadata.Name)
			invalid++
			continue
		}
		if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
			fmt.Printf("%s: %s %s: %v\n", set, head.Kind, head.Metadata.Name, err)
			invalid++
			continue
		}
		valid++
		fmt.Printf("%s: %s %s: ok\n", set, head.Kind, head.Metadata.Name)
	}
	return valid, invalid
}

func main() {
	out := flag.String("out", "", "write each value set's manifests to DIR/<set>.yaml")
	flag.Parse()
	if flag.NArg() < 1 {
		fmt.Fprintln(os.Stderr, "usage: helm-check [-out DIR] CHART [VALUES.yaml ...]")
		os.Exit(2)
	}
	chartDir := flag.Arg(0)
	sets := append([]string{""}, flag.Args()[1:]...)
	failed := false
	for _, file := range sets {
		name := "default"
		if file != "" {
			name = strings.TrimSuffix(filepath.Base(file), filepath.Ext(file))
		}
		manifest, err := render(chartDir, file)
		if err != nil {
			fmt.Printf("%s: does not render: %v\n", name, err)
			failed = true
			continue
		}
		valid, invalid := check(name, manifest)
		fmt.Printf("%s: %d valid, %d invalid\n", name, valid, invalid)
		if invalid > 0 || valid == 0 {
			failed = true
		}
		if *out != "" {
			var buf bytes.Buffer
			buf.WriteString(manifest)
			if err := os.WriteFile(filepath.Join(*out, name+".yaml"), buf.Bytes(), 0o644); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(2)
			}
		}
	}
	if failed {
		os.Exit(1)
	}
}
