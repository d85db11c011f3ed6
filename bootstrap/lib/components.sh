# shellcheck shell=bash disable=SC2154 # $here $root $work $stage: set by build.sh
# Sourced by build.sh: one function per upstream component. Each builds from
# the vendored, patched tree in $work/src into $stage/bin, with the version
# flags upstream's own Makefile sets.

# Kubernetes build tags as in hack/lib/golang.sh for release builds
# (selinux,notest,grpcnotrace), plus providerless, which drops in-tree cloud
# providers where any code still has the tag (none left in 1.37; harmless).
KUBE_TAGS=providerless,selinux,notest,grpcnotrace
KUBE_COMPONENTS=(kube-apiserver kube-controller-manager kube-scheduler kube-control-plane kubelet kube-proxy kubectl)

build_kube() {
	local v=$KUBERNETES_VERSION minor x pkg
	minor=${v#v1.} && minor=${minor%%.*}
	# hack/lib/version.sh sets these in both version packages.
	for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		x+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
		x+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$BUILD_DATE"
	done
	CGO_ENABLED=0 gobuild kube "$stage/bin/kube" . -tags "$KUBE_TAGS" -ldflags "-s -w$x"
	for x in "${KUBE_COMPONENTS[@]}"; do ln -s kube "$stage/bin/$x"; done
}

build_etcd() {
	CGO_ENABLED=0 gobuild etcd "$stage/bin/etcd" . \
		-ldflags "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=$ETCD_VERSION"
	ln -s etcd "$stage/bin/etcdutl"
}

# containerd's Makefile: static build tags; no_grpc only for the shim.
CONTAINERD_TAGS="urfave_cli_no_docs osusergo netgo static_build no_btrfs no_devmapper no_zfs"
build_containerd() {
	local p=github.com/containerd/containerd/v2/version
	local x="-X $p.Version=$CONTAINERD_VERSION -X $p.Package=github.com/containerd/containerd/v2"
	CGO_ENABLED=0 gobuild containerd "$stage/bin/containerd" . \
		-tags "$CONTAINERD_TAGS" -ldflags "-s -w $x"
	ln -s containerd "$stage/bin/ctr"
	CGO_ENABLED=0 gobuild containerd "$stage/bin/containerd-shim-runc-v2" ./shim \
		-tags "$CONTAINERD_TAGS no_grpc" -ldflags "-s -w $x"
}

# runc's Makefile `static` target, minus libpathrs (a Rust C library Debian
# lacks; runc then uses its pure-Go pathrs-lite). cgo is required (nsenter);
# seccomp links libseccomp.a statically.
build_runc() {
	CGO_ENABLED=1 gobuild runc "$stage/bin/runc" github.com/opencontainers/runc \
		-buildmode=pie -tags "seccomp urfave_cli_no_docs netgo osusergo" \
		-ldflags "-s -w -linkmode external -extldflags -static-pie"
}

build_cni() {
	local p plugins
	read -ra plugins <<<"$CNI_PLUGINS"
	"$here/lib/gen-cni.sh" "$work/src/cni" "${plugins[@]}"
	mkdir -p "$stage/bin/cni"
	CGO_ENABLED=0 gobuild cni "$stage/bin/cni/cni" . -ldflags "-s -w \
		-X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=$CNI_PLUGINS_VERSION"
	for p in "${plugins[@]}"; do ln -s cni "$stage/bin/cni/${p##*/}"; done
}

# CoreDNS goes into the cluster DNS image, not bin/.
build_coredns() {
	CGO_ENABLED=0 gobuild coredns "$work/out/coredns" . -ldflags "-s -w \
		-X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION"
}

# metrics-server goes into its image, not bin/. Upstream's Makefile sets the
# version in client-go's version package (`metrics-server --version` prints
# gitVersion); gitCommit is left out: the module proxy does not give it.
build_metrics_server() {
	local p=k8s.io/client-go/pkg/version
	CGO_ENABLED=0 gobuild metrics-server "$work/out/metrics-server" sigs.k8s.io/metrics-server/cmd/metrics-server \
		-ldflags "-s -w -X $p.gitVersion=$METRICS_SERVER_VERSION -X $p.buildDate=$BUILD_DATE"
}

# crictl as cri-tools' Makefile builds it (version in pkg/version; no cgo).
build_crictl() {
	CGO_ENABLED=0 gobuild crictl "$stage/bin/crictl" sigs.k8s.io/cri-tools/cmd/crictl \
		-ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=${CRICTL_VERSION#v}"
}
