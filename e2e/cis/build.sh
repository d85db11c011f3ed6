#!/usr/bin/env bash
# e2e/cis/build.sh: build kube-bench (the CIS Kubernetes Benchmark runner) from its Go module,
# pinned here, for `make test-cis` (e2e/cis.sh). Not part of the payload: a tool of the tests only.
#
#   ${K8S_CACHE_DIR:-~/.cache/k8s}/kube-bench-<version>/
#     kube-bench      the binary (version ldflag set, so `kube-bench version` prints it)
#     cfg/            the module's benchmark definitions, as released (kube-bench reads them from --config-dir)
#
# An existing complete dir is reused at once. Otherwise the build happens in a throwaway module
# (go mod init x; go get kube-bench@version; go build) and the result is renamed into place, so the dir is
# never half written. Only the Go module proxy is used. The last line of stdout is the dir; logs go to stderr.
# KUBE_BENCH_GOTOOLCHAIN: a Go toolchain to use when the installed one is too old for the module
# (e.g. go1.27.3; default: the installed Go, GOTOOLCHAIN=local).
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../../bootstrap/lib/go-env.sh"   # GOCACHE/GOMODCACHE in $K8S_CACHE_DIR, GOTOOLCHAIN=local, GOFLAGS

# v0.16.0 is the newest release the Go module proxy serves here (v0.15.0 and v0.16.1+ are refused).
KUBE_BENCH_MODULE=github.com/aquasecurity/kube-bench
KUBE_BENCH_VERSION=v0.16.0
[[ -n ${KUBE_BENCH_GOTOOLCHAIN:-} ]] && export GOTOOLCHAIN=$KUBE_BENCH_GOTOOLCHAIN

log() { echo "[kube-bench $(date +%T)] $*" >&2; }
die() { echo "kube-bench build: error: $*" >&2; exit 1; }

out="$K8S_CACHE_DIR/kube-bench-$KUBE_BENCH_VERSION"
complete() { [[ -x $1/kube-bench && -f $1/cfg/config.yaml ]]; }
if complete "$out"; then echo "$out"; exit 0; fi

command -v go >/dev/null || die "go not found on PATH"
mkdir -p "$K8S_CACHE_DIR"
exec 9>"$K8S_CACHE_DIR/kube-bench.lock"
flock 9
if complete "$out"; then echo "$out"; exit 0; fi

tmp="$K8S_CACHE_DIR/.tmp-kube-bench-$KUBE_BENCH_VERSION"
rm -rf "$tmp"
mkdir -p "$tmp/src" "$tmp/out"
trap 'rm -rf "$tmp"' EXIT
t0=$SECONDS
log "building $KUBE_BENCH_MODULE@$KUBE_BENCH_VERSION with $(go env GOVERSION) (GOTOOLCHAIN=$GOTOOLCHAIN)"
(
	cd "$tmp/src"
	go mod init x >/dev/null 2>&1
	go get "$KUBE_BENCH_MODULE@$KUBE_BENCH_VERSION" >&2 ||
		die "go get $KUBE_BENCH_MODULE@$KUBE_BENCH_VERSION failed (a newer Go needed? KUBE_BENCH_GOTOOLCHAIN=go1.27.3)"
	# kube-bench's Makefile sets the version the same way
	CGO_ENABLED=0 go build -trimpath \
		-ldflags "-s -w -X $KUBE_BENCH_MODULE/cmd.KubeBenchVersion=$KUBE_BENCH_VERSION" \
		-o "$tmp/out/kube-bench" "$KUBE_BENCH_MODULE" >&2
)
moddir=$(cd "$tmp/src" && go list -m -f '{{.Dir}}' "$KUBE_BENCH_MODULE")
[[ -f $moddir/cfg/config.yaml ]] || die "no cfg/config.yaml in the module dir $moddir"
cp -r "$moddir/cfg" "$tmp/out/cfg"
chmod -R u+w "$tmp/out/cfg"          # the module cache is read-only
"$tmp/out/kube-bench" version >&2 || die "the built kube-bench does not run"
rm -rf "$out"
mv "$tmp/out" "$out"
log "done: $out ($((SECONDS - t0)) s)"
echo "$out"
