#!/usr/bin/env bash
# Build the conformance kit: upstream's e2e suite and the images it pulls, from
# the Kubernetes module the payload is built from, with no registry at run time.
#
#   bootstrap/conformance/build.sh        prints the kit's directory (last line)
#
#   ${K8S_CACHE_DIR:-~/.cache/k8s}/conformance/<key>/
#     bin/e2e.test     test/e2e as `go test -c` links it (our e2e_test.go)
#     bin/ginkgo       the CLI that runs it in parallel (same ginkgo version)
#     images/*.tar     OCI archives, named as `e2e.test --list-images` names them
#     images.txt       "<image ref> <archive>" per built image, "missing <ref> <why>" per other
#
# <key> covers this directory, versions.env, imagetool and the Go version, and
# nothing of the payload's own sources: the kit is not in the binary, and
# changing it must not rebuild the payload (the payload's key skips this dir).
# See README.md here for the times and what each image is made of.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
boot=$(dirname "$here")
source "$boot/versions.env"
source "$boot/lib/go-env.sh"

log() { echo "[conformance $(date +%T)] $*" >&2; }
die() { echo "conformance kit: error: $*" >&2; exit 1; }

cache_key() {
	(
		cd "$boot"
		find conformance imagetool versions.env lib/go-env.sh lib/deps.sh -type f ! -name '*.md' |
			LC_ALL=C sort | xargs sha256sum
		go env GOVERSION
	) | sha256sum | cut -d' ' -f1
}

complete() { [[ -x $1/bin/e2e.test && -f $1/images.txt ]]; }

command -v go >/dev/null || die "go not found on PATH (Go >= $GO_LANG_VERSION is needed; see bootstrap/README.md)"
key=$(cache_key)
out="$K8S_CACHE_DIR/conformance/$key"
if complete "$out"; then echo "$out"; exit 0; fi
mkdir -p "$K8S_CACHE_DIR/conformance"
exec 9>"$K8S_CACHE_DIR/conformance/build.lock"
flock 9
if complete "$out"; then echo "$out"; exit 0; fi

source "$boot/lib/deps.sh"
source "$here/images.sh"

work="$K8S_CACHE_DIR/conformance/.work"
stage="$K8S_CACHE_DIR/conformance/.tmp-$key"
rm -rf "$work" "$stage"
mkdir -p "$work/out" "$stage/bin" "$stage/images"
KUBERNETES_SRC=$(cd "$here/module" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)
export KUBERNETES_SRC

imagetool() { "$work/out/imagetool" "$@"; }

step() {
	local t=$SECONDS
	"${@:2}"
	log "done: $1 ($((SECONDS - t)) s)"
}

# gotool OUT PKG [args]: one program of the kit's module, static and stripped.
gotool() {
	local o=$1 pkg=$2; shift 2
	log "build: $(basename "$o") ($pkg)"
	(cd "$here/module" && CGO_ENABLED=0 go build -trimpath -o "$o" "$@" "$pkg")
}

# The version ldflags of the payload's kube (components.sh), so the suite's
# own version check and report name the same release.
version_ldflags() {
	local v=$KUBERNETES_VERSION minor pkg x=""
	minor=${v#v1.} && minor=${minor%%.*}
	for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		x+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
	done
	echo "-s -w$x"
}

build_suite() {
	log "build: e2e.test (test/e2e of k8s.io/kubernetes $KUBERNETES_VERSION; ~15 CPU-minutes cold)"
	(cd "$here/module" && CGO_ENABLED=0 go test -c -trimpath -o "$stage/bin/e2e.test" \
		-ldflags "$(version_ldflags)" .)
	gotool "$stage/bin/ginkgo" github.com/onsi/ginkgo/v2/ginkgo -ldflags "-s -w"
}

build_image_programs() {
	gotool "$work/out/agnhost" k8s.io/kubernetes/test/images/agnhost -ldflags "-s -w"
	gotool "$work/out/nnp" k8s.io/kubernetes/test/images/nonewprivs -ldflags "-s -w"
	gotool "$work/out/sample-apiserver" k8s.io/sample-apiserver -ldflags "-s -w"
	log "build: imagetool"
	(cd "$boot/imagetool" && go build -trimpath -o "$work/out/imagetool" .)
}

log "building conformance kit $key"
start=$SECONDS
step suite build_suite
step programs build_image_programs
step images conformance_images
rm -rf "$out"
mv "$stage" "$out"
rm -rf "$work"
log "kit ready in $((SECONDS - start)) s: $out"
echo "$out"
