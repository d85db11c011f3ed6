#!/usr/bin/env bash
# Regenerate bootstrap/modules/*/go.mod and go.sum (and the conformance kit's
# bootstrap/conformance/module) from versions.env.
# Run after changing a version; commit the result. Needs the Go module proxy.
#   bootstrap/pin.sh [module...]   (default: all modules; `conformance` for the kit)
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/versions.env"
source "$here/lib/go-env.sh"

# fresh_mod DIR MODULE-PATH REQUIRE@VERSION...: start go.mod over with these requires
# (DIR: under modules/, or a path under bootstrap/ when it has a slash).
fresh_mod() {
	local dir=$1 path=$2; shift 2
	[[ $dir == */* ]] || dir=modules/$dir
	mkdir -p "$here/$dir" # a new module's first pin
	cd "$here/$dir"
	rm -f go.mod go.sum
	go mod init "$path" 2>/dev/null
	go mod edit -go="$GO_LANG_VERSION"
	local r; for r in "$@"; do go mod edit -require="$r"; done
}

# pin_staging: k8s.io/kubernetes replaces its staging modules with ./staging/src/...;
# a module requiring it must pin each one to the matching v0.x tag itself.
pin_staging() {
	local gomod staging m
	gomod=$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
	staging=$(awk '$2 == "=>" && $3 ~ /^\.\/staging\// {print $1}' "$gomod")
	for m in $staging; do
		go mod edit -replace="$m=$m@v0.${KUBERNETES_VERSION#v1.}"
	done
}

pin_kube() {
	fresh_mod kube k8s.local/bootstrap/kube "k8s.io/kubernetes@$KUBERNETES_VERSION"
	pin_staging
	go mod tidy
}

# pin_conformance: upstream's e2e suite (our e2e_test.go imports its packages),
# the ginkgo CLI that runs it in parallel, and the Go programs of its images.
pin_conformance() {
	fresh_mod conformance/module k8s.local/bootstrap/conformance "k8s.io/kubernetes@$KUBERNETES_VERSION"
	pin_staging
	local t
	for t in k8s.io/kubernetes/test/images/agnhost k8s.io/kubernetes/test/images/nonewprivs \
		"k8s.io/sample-apiserver@v0.${KUBERNETES_VERSION#v1.}"; do
		go get -tool "$t"
	done
	go mod tidy
	# The ginkgo CLI at the version the suite's library is: they talk over a private protocol.
	go get -tool "github.com/onsi/ginkgo/v2/ginkgo@$(go list -m -f '{{.Version}}' github.com/onsi/ginkgo/v2)"
	go mod tidy
}

pin_etcd() {
	fresh_mod etcd k8s.local/bootstrap/etcd "go.etcd.io/etcd/server/v3@$ETCD_VERSION" \
		"go.etcd.io/etcd/etcdutl/v3@$ETCD_VERSION" "go.etcd.io/etcd/pkg/v3@$ETCD_VERSION"
	go mod tidy
}

pin_containerd() {
	fresh_mod containerd k8s.local/bootstrap/containerd "github.com/containerd/containerd/v2@$CONTAINERD_VERSION"
	go mod tidy
}

pin_runc() {
	# runc's main package is its module root: build it as a go.mod tool.
	fresh_mod runc k8s.local/bootstrap/runc
	go get -tool "github.com/opencontainers/runc@$RUNC_VERSION"
	go mod tidy
}

pin_cni() {
	# Plugin mains are package main (not importable): vendor them as tools;
	# build.sh turns them into packages of one multicall binary (gen-cni.sh).
	fresh_mod cni k8s.local/bootstrap/cni
	local p plugins
	read -ra plugins <<<"$CNI_PLUGINS"
	for p in "${plugins[@]}"; do
		go get -tool "github.com/containernetworking/plugins/plugins/$p@$CNI_PLUGINS_VERSION"
	done
	go mod tidy
}

pin_coredns() {
	fresh_mod coredns k8s.local/bootstrap/coredns "github.com/coredns/coredns@$COREDNS_VERSION"
	go mod tidy
}

pin_metrics_server() {
	# Its main package is upstream's cmd/metrics-server: build it as a go.mod
	# tool, so the binary is exactly upstream's (as runc).
	fresh_mod metrics-server k8s.local/bootstrap/metrics-server
	go get -tool "sigs.k8s.io/metrics-server/cmd/metrics-server@$METRICS_SERVER_VERSION"
	go mod tidy
}

pin_crictl() {
	# Its main package is cri-tools' cmd/crictl: a go.mod tool, as runc.
	fresh_mod crictl k8s.local/bootstrap/crictl
	go get -tool "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"
	go mod tidy
}

mods=("$@"); [[ ${#mods[@]} -gt 0 ]] || mods=(kube etcd containerd runc cni coredns metrics-server crictl)
for m in "${mods[@]}"; do
	echo "pin: $m" >&2
	"pin_${m//-/_}"
done
