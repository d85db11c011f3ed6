#!/usr/bin/env bash
# e2e/arm64.sh ARM64_DIST [HOST_PLAIN]: the arm64 file `make dist ARCH=arm64` writes, checked on this
# amd64 machine under qemu's user mode (qemu-aarch64-static, no binfmt registration): it is a static
# aarch64 executable, `k8s version` runs and names arm64 components, and every carried program
# (extracted by the host's k8s: the extraction is the same code for any architecture) is a static
# aarch64 executable answering `--version` with its pinned version; the images are arm64 images.
# `make test-arm64`; not in `make test` (the arm64 payload is a second cold Kubernetes build).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
ARM=$(readlink -f "${1:?usage: e2e/arm64.sh dist/k8s-arm64 [plain host k8s]}")
HOST=$(readlink -f "${2:-$here/../target/x86_64-unknown-linux-gnu/release/k8s}")
source "$here/../bootstrap/versions.env"
fail() { echo "FAIL: $*"; exit 1; }
ok() { echo "ok   $*"; }
Q=qemu-aarch64-static
command -v $Q >/dev/null || fail "$Q not found (apt-get install qemu-user-static; bootstrap installs it for ARCH=arm64)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
t0=$SECONDS

# static_arm64 FILE: `file` says a static aarch64 executable.
static_arm64() {
  local what; what=$(file -bL "$1")
  [[ $what == *"ARM aarch64"* && ($what == *"statically linked"* || $what == *"static-pie linked"*) ]] ||
    fail "$(basename "$1") is not a static aarch64 executable: $what"
}
static_arm64 "$ARM"
ok "file: $(file -b "$ARM" | cut -d, -f1-2), static"

out=$($Q "$ARM" version 2>&1) || fail "k8s version under qemu: $out"
for want in "^binary: linux/arm64, static$" "^components for: arm64$" "^kubernetes: $KUBERNETES_VERSION$"; do
  grep -q "$want" <<<"$out" || fail "k8s version under qemu lacks '$want': $out"
done
ok "k8s version under qemu: $(head -n1 <<<"$out"), arm64 components, Kubernetes $KUBERNETES_VERSION"

dir=$("$HOST" extract-payload --exe "$ARM" --data-dir "$tmp/data")
# part ARGV0 BINARY EXPECTED ARGS...: the part answers under qemu with EXPECTED in its output.
part() {
  local name=$1 bin=$2 want=$3 got; shift 3
  static_arm64 "$dir/bin/$bin"
  got=$($Q -0 "$name" "$dir/bin/$bin" "$@" 2>&1) || fail "$name $* under qemu: $got"
  grep -qF -- "$want" <<<"$got" || fail "$name $* under qemu said '$got', not '$want'"
  ok "$name $*: $(head -n1 <<<"$got")"
}
for c in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy; do
  part "$c" kube "Kubernetes $KUBERNETES_VERSION" --version
done
part kubectl kube "$KUBERNETES_VERSION" version --client
part containerd containerd "${CONTAINERD_VERSION}" --version
part ctr containerd "${CONTAINERD_VERSION#v}" --version
part containerd-shim-runc-v2 containerd-shim-runc-v2 "${CONTAINERD_VERSION}" -v
part runc runc "runc version ${RUNC_VERSION#v}" --version
part etcd etcd "etcd Version: ${ETCD_VERSION#v}" --version
part crictl crictl "crictl version ${CRICTL_VERSION#v}" --version
part bridge cni/cni "CNI bridge plugin $CNI_PLUGINS_VERSION" --version

for image in "$dir"/images/*.tar; do
  arch=$(tar -xOf "$image" index.json | python3 -c 'import json,sys; print(json.load(sys.stdin)["manifests"][0]["platform"]["architecture"])')
  [[ $arch == arm64 ]] || fail "$(basename "$image"): the image is for $arch"
done
ok "the carried images are arm64 images ($(ls "$dir/images" | tr '\n' ' '))"

# The host's binary refuses to carry the arm64 payload.
payload=$tmp/arm64.tar.zst
size=$(stat -c %s "$ARM")
footer=$(tail -c 56 "$ARM" | od -An -t u8 -j 8 -N 16 | xargs)
read -r offset length <<<"$footer"
tail -c +$((offset + 1)) "$ARM" | head -c "$length" >"$payload"
((offset + length + 56 == size)) || fail "cannot read the footer of $ARM"
rc=0 && out=$("$HOST" attach-payload --exe "$HOST" --payload "$payload" --out "$tmp/mixed" 2>&1) || rc=$?
((rc != 0)) && grep -q "carries arm64 parts but .* is an amd64 executable" <<<"$out" && [[ ! -e $tmp/mixed ]] ||
  fail "attaching arm64 parts to the amd64 binary was not refused: $out"
ok "attach-payload refuses arm64 parts on the amd64 binary"
echo "PASS e2e/arm64.sh ($((SECONDS - t0)) s)"
