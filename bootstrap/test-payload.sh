#!/usr/bin/env bash
# bootstrap/test-payload.sh [PAYLOAD-DIR]: check a built payload.
#  - every manifest part exists with its sha256; payload.tar.zst unpacks;
#  - each component reports the pinned version;
#  - as root: a throwaway containerd (own root/state/socket in a temp dir)
#    imports the four images and runs busybox, CoreDNS and metrics-server through the shim
#    and runc, then everything it made is removed.
# Without an argument it runs build.sh first. Ends with "N passed, N failed".
# shellcheck source-path=SCRIPTDIR
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/versions.env"
P=${1:-$("$here/build.sh" | tail -n1)}
pass=0 fail=0
ok() { echo "ok   $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }
check() { # check DESC CMD...: pass if CMD succeeds
	local d=$1; shift
	if "$@" >/dev/null 2>&1; then ok "$d"; else bad "$d"; fi
}
has() { # has DESC WANT CMD...: pass if CMD's output contains WANT
	local d=$1 want=$2 got; shift 2
	got=$("$@" 2>&1)
	if [[ $got == *"$want"* ]]; then ok "$d"; else bad "$d: want '$want', got: ${got:0:200}"; fi
}

# manifest: one part per line, "path": "...", ..., "sha256": "..."
while IFS=$'\t' read -r path sum; do
	has "sha256 $path" "$sum" sha256sum "$P/$path"
done < <(sed -n 's/.*"path": "\([^"]*\)".*"sha256": "\([0-9a-f]*\)".*/\1\t\2/p' "$P/manifest.json")
has "manifest kubernetes_version" "\"kubernetes_version\": \"$KUBERNETES_VERSION\"" cat "$P/manifest.json"
check "payload.tar.zst unpacks" bash -c "zstd -dc --long=27 '$P/payload.tar.zst' | tar -t >/dev/null"

b=$P/bin
for c in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy; do
	has "$c --version" "Kubernetes $KUBERNETES_VERSION" "$b/$c" --version
done
has "kubectl version" "Client Version: $KUBERNETES_VERSION" "$b/kubectl" version --client
has "kube kubelet --version" "Kubernetes $KUBERNETES_VERSION" "$b/kube" kubelet --version
has "etcd --version" "etcd Version: ${ETCD_VERSION#v}" "$b/etcd" --version
has "etcdutl version" "etcdutl version: ${ETCD_VERSION#v}" "$b/etcdutl" version
has "containerd --version" "$CONTAINERD_VERSION" "$b/containerd" --version
has "ctr --version" "$CONTAINERD_VERSION" "$b/ctr" --version
has "containerd-shim-runc-v2 -v" "$CONTAINERD_VERSION" "$b/containerd-shim-runc-v2" -v
has "runc --version" "runc version ${RUNC_VERSION#v}" "$b/runc" --version
has "runc has seccomp" "libseccomp:" "$b/runc" --version
read -ra plugins <<<"$CNI_PLUGINS"
for p in "${plugins[@]}"; do
	has "cni ${p##*/} VERSION" '"cniVersion"' env CNI_COMMAND=VERSION "$b/cni/${p##*/}"
done

if [[ $(id -u) -eq 0 ]]; then
	source "$here/lib/test-containerd.sh"
	containerd_smoke "$P"
else
	echo "skip containerd smoke test (needs root)"
fi
echo "$pass passed, $fail failed"
[[ $fail -eq 0 ]]
