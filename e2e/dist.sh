#!/usr/bin/env bash
# e2e/dist.sh [DIST_BIN] [PLAIN_BIN]: the one-file binary carries its parts:
# `k8s version` lists them, the first use extracts them, the extracted
# kube-apiserver reports the pinned version, a damaged attachment is refused
# with nothing extracted, and a plain build says how to get the parts.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
DIST=${1:-$here/../dist/k8s}
PLAIN=${2:-$here/../target/x86_64-unknown-linux-gnu/release/k8s}
source "$here/../bootstrap/versions.env"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
ok() { echo "ok   $*"; }

out=$("$DIST" version)
grep -q "^kubernetes: $KUBERNETES_VERSION$" <<<"$out" || fail "k8s version does not name Kubernetes $KUBERNETES_VERSION: $out"
for part in kube etcd containerd runc; do
  grep -qE "^  $part +v" <<<"$out" || fail "k8s version does not list $part: $out"
done
ok "k8s version lists Kubernetes $KUBERNETES_VERSION and the carried parts"

K8S_DATA_DIR=$tmp/data "$DIST" kubectl version --client >"$tmp/kubectl.out" 2>&1 ||
  fail "k8s kubectl failed: $(cat "$tmp/kubectl.out")"
grep -q "Client Version: $KUBERNETES_VERSION" "$tmp/kubectl.out" || fail "kubectl: $(cat "$tmp/kubectl.out")"
extracted=$(ls -d "$tmp"/data/bin/*/)
[[ $(ls -d "$tmp"/data/bin/*/ | wc -l) == 1 ]] || fail "expected one extracted copy: $extracted"
got=$("$extracted/bin/kube-apiserver" --version)
[[ $got == "Kubernetes $KUBERNETES_VERSION" ]] || fail "extracted kube-apiserver says '$got'"
ok "first use extracted the parts; kube-apiserver --version: $got"
echo "     dist/k8s: $(du -h "$DIST" | cut -f1), extracted: $(du -sh "$extracted" | cut -f1)"

K8S_DATA_DIR=$tmp/data "$DIST" kubectl version --client >/dev/null || fail "second use failed"
[[ $(ls -d "$tmp"/data/bin/*/) == "$extracted" ]] || fail "the second use extracted again"
ok "a second use reuses the extracted copy"

head -c -1000 "$DIST" >"$tmp/truncated" && chmod +x "$tmp/truncated"
if out=$(K8S_DATA_DIR=$tmp/data2 "$tmp/truncated" kubectl version --client 2>&1); then fail "a truncated binary ran kubectl"; fi
grep -q "damaged" <<<"$out" || fail "truncated: unclear message: $out"
[[ ! -e $tmp/data2/bin ]] || [[ -z $(ls -A "$tmp/data2/bin") ]] || fail "a truncated binary extracted something"
ok "a truncated binary is refused: $out"

if out=$(K8S_DATA_DIR=$tmp/data3 "$PLAIN" kubectl version --client 2>&1); then fail "a plain build ran kubectl"; fi
grep -q "make dist" <<<"$out" || fail "plain build: unclear message: $out"
ok "a plain build says how to get the parts"
echo "PASS e2e/dist.sh"
