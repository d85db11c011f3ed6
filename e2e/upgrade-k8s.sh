#!/usr/bin/env bash
# e2e/upgrade-k8s.sh (make test-upgrade-k8s; not in make test: it builds a second Kubernetes): a real Kubernetes patch
# upgrade. The payload of the previous Kubernetes patch (versions.env's KUBERNETES_VERSION with patch - 1, or
# PREV_KUBERNETES_VERSION) is built by bootstrap/ from its own pinned modules, in a copy of bootstrap/ under
# $K8S_CACHE_DIR (its go.mod pinned by pin.sh; cached like the payload), and attached to this k8s binary: that is
# the old cluster. dist/k8s-next (the next k8s version, with the current payload) is the new one. Then
# e2e/upgrade-ha.sh runs with the two: 3 servers + 1 agent installed on the old Kubernetes, upgraded through
# `k8s up`, every kubelet and the API server reporting the new version after.
#
#   e2e/upgrade-k8s.sh       exit 0 = pass, 1 = fail, 77 = skipped (no dist/k8s-next)
#
# Environment: K8S_NEXT_BIN (default dist/k8s-next), PREV_KUBERNETES_VERSION. The old binary is PLAIN_BIN (make test-upgrade-k8s: the static build)
# (the code of dist/k8s) with the previous payload attached: dist/k8s-kube-<version>.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
K8S_NEXT_BIN=${K8S_NEXT_BIN:-$root/dist/k8s-next}
[[ -x $K8S_NEXT_BIN ]] || { echo "e2e/upgrade-k8s.sh: SKIP: no $K8S_NEXT_BIN (make dist-next)"; exit 77; }
# shellcheck source=../bootstrap/versions.env
source "$root/bootstrap/versions.env"
cur=$KUBERNETES_VERSION
patch=${cur##*.}
((patch > 0)) || { echo "e2e/upgrade-k8s.sh: $cur has no previous patch; set PREV_KUBERNETES_VERSION"; exit 1; }
prev=${PREV_KUBERNETES_VERSION:-${cur%.*}.$((patch - 1))}
cache=${K8S_CACHE_DIR:-$HOME/.cache/k8s}
tree=$cache/prev-kube/$prev
echo "e2e/upgrade-k8s.sh: the old cluster carries Kubernetes $prev, the new one $cur"

# A copy of bootstrap/ and patches/ pinned to $prev (pin.sh rewrites the kube module's go.mod and go.sum only).
if [[ ! -f $tree/pinned ]]; then
  rm -rf "$tree"
  mkdir -p "$tree"
  cp -a "$root/bootstrap" "$root/patches" "$tree/" 2>/dev/null || cp -a "$root/bootstrap" "$tree/"
  sed -i "s/^KUBERNETES_VERSION=.*/KUBERNETES_VERSION=$prev/" "$tree/bootstrap/versions.env"
  "$tree/bootstrap/pin.sh" kube
  touch "$tree/pinned"
fi
t=$SECONDS
payload=$("$tree/bootstrap/build.sh" | tail -n 1)
echo "e2e/upgrade-k8s.sh: payload $payload ($((SECONDS - t)) s)"
old=$root/dist/k8s-kube-$prev
plain=${PLAIN_BIN:-$root/target/x86_64-unknown-linux-gnu/release/k8s}   # the same code as K8S_BIN, without a payload (make dist builds both)
"$plain" attach-payload --exe "$plain" --payload "$payload/payload.tar.zst" --out "$old"
"$old" version | sed -n '1p;/^kubernetes/p'
"$K8S_NEXT_BIN" version | sed -n '1p;/^kubernetes/p'
K8S_BIN=$old K8S_NEXT_BIN=$K8S_NEXT_BIN E2E_CLUSTER=e2e-upgk8s "$root/e2e/upgrade-ha.sh"
