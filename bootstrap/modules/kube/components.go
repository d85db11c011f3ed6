package main

import (
	"context"
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/component-base/logs"
	apiserver_app "k8s.io/kubernetes/cmd/kube-apiserver/app"
	kcm_app "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	proxy_app "k8s.io/kubernetes/cmd/kube-proxy/app"
	scheduler_app "k8s.io/kubernetes/cmd/kube-scheduler/app"
	kubelet_app "k8s.io/kubernetes/cmd/kubelet/app"

	_ "k8s.io/client-go/plugin/pkg/client/auth" // kubectl: client auth plugins
	kubectl_cmd "k8s.io/kubectl/pkg/cmd"
	kubectl_util "k8s.io/kubectl/pkg/cmd/util"
)

// Each function is the body of the matching upstream cmd/<name> main.

func apiserver() int         { return cli.Run(apiserver_app.NewAPIServerCommand()) }
func controllerManager() int { return cli.Run(kcm_app.NewControllerManagerCommand()) }
func scheduler() int         { return cli.Run(scheduler_app.NewSchedulerCommand()) }
func kubelet() int           { return cli.Run(kubelet_app.NewKubeletCommand(context.Background())) }
func proxy() int             { return cli.Run(proxy_app.NewProxyCommand()) }

func kubectl() int {
	// As upstream: set verbosity before the command is built (plugins, .kuberc).
	logs.GlogSetter(kubectl_cmd.GetLogVerbosity(os.Args)) // nolint:errcheck
	if err := cli.RunNoErrOutput(kubectl_cmd.NewDefaultKubectlCommand()); err != nil {
		kubectl_util.CheckErr(err) // prints and exits non-zero
	}
	return 0
}
