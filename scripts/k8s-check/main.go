// k8s-check decodes Kubernetes manifests strictly into the API's own Go types
// (k8s.io/api): an unknown or misspelt field, or a value of the wrong type, fails.
// It stands in for kubeconform where the JSON schemas cannot be downloaded.
//
//	kubectl kustomize deploy/k8s | go run ./scripts/k8s-check
package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

func target(kind string) any {
	switch kind {
	case "Deployment":
		return &appsv1.Deployment{}
	case "StatefulSet":
		return &appsv1.StatefulSet{}
	case "Service":
		return &corev1.Service{}
	case "ConfigMap":
		return &corev1.ConfigMap{}
	case "Secret":
		return &corev1.Secret{}
	case "Namespace":
		return &corev1.Namespace{}
	case "PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}
	}
	return nil
}

func main() {
	data, err := io.ReadAll(bufio.NewReader(os.Stdin))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	failed, checked := 0, 0
	for _, doc := range bytes.Split(data, []byte("\n---")) {
		if len(strings.TrimSpace(string(doc))) == 0 {
			continue
		}
		var head struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &head); err != nil {
			fmt.Printf("not YAML: %v\n", err)
			failed++
			continue
		}
		obj := target(head.Kind)
		if obj == nil {
			fmt.Printf("%s %s: kind not known to this checker\n", head.Kind, head.Metadata.Name)
			failed++
			continue
		}
		if err := yaml.UnmarshalStrict(doc, obj); err != nil {
			fmt.Printf("%s %s: %v\n", head.Kind, head.Metadata.Name, err)
			failed++
			continue
		}
		checked++
		fmt.Printf("%s %s: ok\n", head.Kind, head.Metadata.Name)
	}
	fmt.Printf("%d valid, %d invalid\n", checked, failed)
	if failed > 0 || checked == 0 {
		os.Exit(1)
	}
}
