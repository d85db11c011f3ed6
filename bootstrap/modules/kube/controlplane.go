package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/component-base/cli"
	logsapi "k8s.io/component-base/logs/api/v1"
	"k8s.io/klog/v2"
	apiserver_app "k8s.io/kubernetes/cmd/kube-apiserver/app"
	kcm_app "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	scheduler_app "k8s.io/kubernetes/cmd/kube-scheduler/app"
)

// kube-control-plane runs kube-apiserver, kube-controller-manager and
// kube-scheduler as goroutines of one process, as k3s does: one Go runtime,
// one copy of every package's init data and one heap's slack instead of three
// (38 MiB less PSS on a single node, nearly all of it heap: make bench-node). Its command line is the three components'
// names, each followed by that component's flags, in any order:
//
//	kube-control-plane kube-scheduler --a=1 ... kube-controller-manager ... kube-apiserver ...
//
// Lifecycle:
//   - the API server starts first; the controller manager and the scheduler
//     start once /readyz answers ok to the controller manager's own identity
//     (its --kubeconfig), as they would have waited from processes of their own
//     (the controller manager gives up after 10 s without an API server);
//   - the three share one signal context (patches/0003 makes
//     SetupSignalContext idempotent and lets a leader-elected scheduler return
//     on a stop): SIGTERM/SIGINT drains the API server, and the process exits
//     with the API server's status;
//   - any of the three ending on its own (an error, a lost lease) ends the
//     process with status 1 at once, so its supervisor restarts all three;
//   - process-wide settings are shared: the logging configuration (the first
//     one applied wins; a different one later is an error) and the feature
//     gates, so `k8s` gives the three the same of each.
func controlPlane() int {
	args, err := controlPlaneArgs(os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "kube-control-plane: %v\n", err)
		return 2
	}
	logsapi.ReapplyHandling = logsapi.ReapplyHandlingIgnoreUnchanged
	stop := genericapiserver.SetupSignalContext()

	type ended struct {
		name string
		code int
	}
	done := make(chan ended, len(args))
	start := func(name string, cmd *cobra.Command) {
		cmd.SetArgs(args[name])
		go func() { done <- ended{name, cli.Run(cmd)} }()
	}
	// Built before any runs: building registers flags and feature gates.
	kcm, scheduler := kcm_app.NewControllerManagerCommand(), scheduler_app.NewSchedulerCommand()
	start("kube-apiserver", apiserver_app.NewAPIServerCommand())

	ready := make(chan error, 1)
	go func() { ready <- waitReady(stop, flagValue(args["kube-controller-manager"], "kubeconfig")) }()
	select {
	case e := <-done:
		return e.code
	case err := <-ready:
		if stop.Err() != nil {
			return (<-done).code // asked to stop before the API server was ready: let it drain
		}
		if err != nil {
			klog.ErrorS(err, "kube-control-plane: cannot ask the API server whether it is ready")
			klog.Flush()
			return 1
		}
	}
	start("kube-controller-manager", kcm)
	start("kube-scheduler", scheduler)
	for e := range done {
		switch {
		case e.name == "kube-apiserver":
			return e.code
		case stop.Err() == nil:
			klog.ErrorS(nil, "kube-control-plane: a component ended; stopping the control plane so that it is restarted", "component", e.name, "status", e.code)
			klog.Flush()
			return 1
		}
	}
	return 1
}

// controlPlaneArgs splits the command line at the components' names: every
// component once, each name followed by its flags.
func controlPlaneArgs(argv []string) (map[string][]string, error) {
	args := map[string][]string{}
	current := ""
	for _, a := range argv {
		switch a {
		case "kube-apiserver", "kube-controller-manager", "kube-scheduler":
			if _, seen := args[a]; seen {
				return nil, fmt.Errorf("%s is named twice", a)
			}
			current = a
			args[a] = []string{}
		default:
			if current == "" {
				return nil, fmt.Errorf("%q comes before a component's name; usage: kube-control-plane kube-apiserver FLAGS... kube-controller-manager FLAGS... kube-scheduler FLAGS...", a)
			}
			args[current] = append(args[current], a)
		}
	}
	for _, name := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
		if _, ok := args[name]; !ok {
			return nil, fmt.Errorf("no %s on the command line; usage: kube-control-plane kube-apiserver FLAGS... kube-controller-manager FLAGS... kube-scheduler FLAGS...", name)
		}
	}
	return args, nil
}

// flagValue is the value of --name=value among args ("" if absent).
func flagValue(args []string, name string) string {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v
		}
	}
	return ""
}

// waitReady polls the API server's /readyz with the identity of kubeconfig
// every 100 ms until it answers ok or stop ends.
func waitReady(stop context.Context, kubeconfig string) error {
	if kubeconfig == "" {
		return fmt.Errorf("kube-controller-manager has no --kubeconfig to ask the API server's /readyz with")
	}
	config, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	config.Timeout = 2 * time.Second
	client, err := kubernetes.NewForConfig(config)
	if err != nil {
		return err
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		body, err := client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(stop)
		if err == nil && string(body) == "ok" {
			return nil
		}
		select {
		case <-stop.Done():
			return stop.Err()
		case <-tick.C:
		}
	}
}
