#!/usr/bin/env bash
# bootstrap/build.sh: build the payload the k8s binary carries, i.e. the
# upstream components pinned in versions.env (built from vendored Go modules
# with patches/ applied) and the node images, into
#   ${K8S_CACHE_DIR:-~/.cache/k8s}/payload/<key>/{bin/,images/,manifest.json,payload.tar.zst}
# where <key> is a sha256 over versions.env, patches/, bootstrap/ sources, the
# Go version and the target ARCH (amd64 by default on amd64; ARCH=arm64). An existing complete payload is reused at once. The last
# line of stdout is the payload directory; logs go to stderr.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
source "$here/versions.env"
source "$here/lib/go-env.sh"

log() { echo "[bootstrap $(date +%T)] $*" >&2; }
die() { echo "bootstrap: error: $*" >&2; exit 1; }

command -v go >/dev/null || die "go not found on PATH (make toolchains installs it; see README.md)"
# ARCH: the machines the payload runs on, in Go's names (amd64, arm64); this
# host's by default. Another arch is cross-compiled: Go by itself, cgo (runc,
# the pause binary) with Debian's cross gcc and the arch's libseccomp.
ARCH=${ARCH:-$(go env GOHOSTARCH)}
case $ARCH in
amd64) GNU_ARCH=x86_64 ;;
arm64) GNU_ARCH=aarch64 ;;
*) die "ARCH=$ARCH: the payload is built for amd64 or arm64" ;;
esac
# The C compiler and pkg-config dir of the target's programs (gobuild, the pause
# binary); the build's own tools (imagetool) stay this machine's.
TARGET_CC=gcc TARGET_PKG_CONFIG_LIBDIR=
if [[ $ARCH != "$(go env GOHOSTARCH)" ]]; then
	TARGET_CC=$GNU_ARCH-linux-gnu-gcc
	TARGET_PKG_CONFIG_LIBDIR=/usr/lib/$GNU_ARCH-linux-gnu/pkgconfig:/usr/share/pkgconfig
fi

# cache_key: what the payload depends on; docs, tests and pin.sh (its output,
# go.mod and go.sum, is hashed) are left out.
cache_key() {
	(
		cd "$root"
		# conformance/ builds the test kit, which the payload does not carry.
		find bootstrap patches -type f ! -name '*.md' ! -name 'test-*' ! -name pin.sh \
			! -path 'bootstrap/conformance/*' 2>/dev/null |
			LC_ALL=C sort | xargs sha256sum
		go env GOVERSION
		echo "$ARCH"
	) | sha256sum | cut -d' ' -f1
}

complete() { [[ -f $1/manifest.json && -f $1/payload.tar.zst ]]; }

key=$(cache_key)
out="$K8S_CACHE_DIR/payload/$key"
if complete "$out"; then echo "$out"; exit 0; fi

mkdir -p "$K8S_CACHE_DIR/payload"
exec 9>"$K8S_CACHE_DIR/build.lock"
flock 9 # one build at a time: they share $work and Go's caches
if complete "$out"; then echo "$out"; exit 0; fi

source "$here/lib/deps.sh"
source "$here/lib/modules.sh"
source "$here/lib/components.sh"
source "$here/lib/images.sh"
source "$here/lib/manifest.sh"

# step NAME CMD...: run one step and log how long it took.
step() {
	local t=$SECONDS
	"${@:2}"
	log "done: $1 ($((SECONDS - t)) s)"
}

# check_pins: modules/*/go.mod must match versions.env (pin.sh writes them).
check_pins() {
	local m want
	while read -r m want; do
		grep -qE "(^|[[:space:]])${want//./\\.}([[:space:]]|\$)" "$here/modules/$m/go.mod" ||
			die "modules/$m/go.mod lacks \"$want\" (from versions.env); run bootstrap/pin.sh $m"
	done <<-PINS
		kube k8s.io/kubernetes $KUBERNETES_VERSION
		kube k8s.io/api => k8s.io/api v0.${KUBERNETES_VERSION#v1.}
		etcd go.etcd.io/etcd/server/v3 $ETCD_VERSION
		containerd github.com/containerd/containerd/v2 $CONTAINERD_VERSION
		runc github.com/opencontainers/runc $RUNC_VERSION
		cni github.com/containernetworking/plugins $CNI_PLUGINS_VERSION
		coredns github.com/coredns/coredns $COREDNS_VERSION
		metrics-server sigs.k8s.io/metrics-server $METRICS_SERVER_VERSION
		crictl sigs.k8s.io/cri-tools $CRICTL_VERSION
	PINS
	for m in $CNI_PLUGINS; do
		grep -q "github.com/containernetworking/plugins/plugins/$m\$" "$here/modules/cni/go.mod" ||
			die "modules/cni/go.mod lacks the tool for CNI plugin $m; run bootstrap/pin.sh cni"
	done
}

# pack: payload.tar.zst of the tree, reproducible (sorted, root, mtime 0).
# --long=27 lets zstd find the code the binaries share; it needs no special
# decoder setting (27 is the default window limit of zstd decoders).
# Measured on the 264 MB tar: -19 68 MB in ~200 CPU-s (one thread: the window
# covers the whole input); -15 77 MB in 60 s; -9 79 MB in 7 s.
PAYLOAD_ZSTD=(-19 --long=27)
pack() {
	tar -C "$stage" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 \
		-cf - manifest.json bin images |
		zstd -q -T0 "${PAYLOAD_ZSTD[@]}" -o "$stage/payload.tar.zst"
}

# prune: keep the three newest payloads; each is ~330 MB. (A payload still in
# use elsewhere is the caller's copy to keep: extract it, as k8s does.)
prune() {
	local old
	find "$K8S_CACHE_DIR/payload" -mindepth 1 -maxdepth 1 -type d ! -name '.*' -printf '%T@ %p\n' |
		sort -rn | tail -n +4 | cut -d' ' -f2- | while IFS= read -r old; do
		log "prune: $old"
		rm -rf "$old"
	done
}

log "building the $ARCH payload $key (cold build: ~25 min on 2 cores; see bootstrap/README.md)"
start=$SECONDS
host_deps
check_pins
work="$K8S_CACHE_DIR/work"
stage="$K8S_CACHE_DIR/payload/.tmp-$key"
rm -rf "$K8S_CACHE_DIR"/payload/.tmp-* "$work/out" "$work/rootfs" # left by an interrupted build
mkdir -p "$stage/bin" "$stage/images" "$work/out"
BUILD_DATE=$(date -u -d "@${SOURCE_DATE_EPOCH:-0}" +%Y-%m-%dT%H:%M:%SZ)

step vendor vendor_modules
step patches apply_patches
step kube build_kube
step etcd build_etcd
step containerd build_containerd
step runc build_runc
step cni build_cni
step coredns build_coredns
step metrics-server build_metrics_server
step crictl build_crictl
step imagetool build_imagetool
step image-pause image_pause
step image-coredns image_coredns
step image-metrics-server image_metrics_server
step image-busybox image_busybox
step manifest write_manifest "$key"
step pack pack
mv "$stage" "$out"
prune
log "payload ready in $((SECONDS - start)) s: $out"
echo "$out"
