// Command kube is one binary for the Kubernetes components, like hyperkube:
// it runs the component named by argv[0]'s basename (kube-apiserver,
// kubelet, ...), or by its first argument (`kube kubelet --help`).
// One binary instead of six: the components share most of their code.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	_ "time/tzdata" // CronJob time zones (kube-apiserver, kube-controller-manager)

	_ "k8s.io/component-base/logs/json/register"          // JSON log format
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go metrics
	_ "k8s.io/component-base/metrics/prometheus/version"  // version metric
)

// components maps a command name to its upstream main, as in cmd/<name>/*.go.
var components = map[string]func() int{
	"kube-apiserver":          apiserver,
	"kube-controller-manager": controllerManager,
	"kube-scheduler":          scheduler,
	"kubelet":                 kubelet,
	"kube-proxy":              proxy,
	"kubectl":                 kubectl,
	// The first three in one process: controlplane.go.
	"kube-control-plane": controlPlane,
}

func main() {
	if run, ok := components[filepath.Base(os.Args[0])]; ok {
		os.Exit(run())
	}
	if len(os.Args) > 1 {
		if run, ok := components[os.Args[1]]; ok {
			os.Args = os.Args[1:] // the component sees itself as argv[0]
			os.Exit(run())
		}
	}
	names := make([]string, 0, len(components))
	for n := range components {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintf(os.Stderr, "usage: %s COMPONENT [ARGS...] (or call it through a link named COMPONENT)\ncomponents: %v\n",
		filepath.Base(os.Args[0]), names)
	os.Exit(2)
}
