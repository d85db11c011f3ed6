#!/usr/bin/env bash
# e2e/cis/cfg.sh KUBE_BENCH_DIR OUT_DIR: assemble the kube-bench config dir for a k8s node:
#
#   OUT_DIR/config.yaml             upstream's cfg/config.yaml, unchanged
#   OUT_DIR/cis-1.12/config.yaml    ours (e2e/cis/config.yaml): where k8s keeps its files
#   OUT_DIR/cis-1.12/*.yaml         upstream's checks, with the paths they spell out themselves mapped
#                                   to ours (the list below) and nothing else changed
#
# Then: kube-bench run --config-dir OUT_DIR --benchmark cis-1.12 --targets master,controlplane,node,policies
# KUBE_BENCH_DIR is what build.sh prints. The last line of stdout is the benchmark name (cis-1.12).
#
# Why cis-1.12: it is the newest CIS Kubernetes Benchmark kube-bench v0.16.0 carries (its
# version_mapping gives it to Kubernetes 1.32-1.34; nothing maps 1.35+ yet), and it checks upstream
# components by their command lines and config files, which is what k8s runs. The k3s benchmarks
# (k3s-cis-1.7 .. 1.9, for Kubernetes 1.25-1.27) read k3s's journal and k3s's own paths and mark many
# checks "skip" for k3s's embedded components: they fit a k3s process, not ours.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
BENCHMARK=cis-1.12

[[ $# == 2 ]] || { echo "usage: $0 KUBE_BENCH_DIR OUT_DIR" >&2; exit 2; }
src=$1/cfg out=$2
[[ -f $src/config.yaml && -d $src/$BENCHMARK ]] || { echo "cfg.sh: no $src/config.yaml or $src/$BENCHMARK" >&2; exit 1; }

# The paths the checks name themselves (not through a $variable), upstream's → ours:
#   1.1.9/1.1.10   host-local IPAM files: /var/lib/cni/networks → <data-dir>/agent/cni-ipam
#   1.1.13/1.1.14  the admin kubeconfig (kubeadm's admin.conf, super-admin.conf): /etc/k8s/admin.kubeconfig
#                  and the server's own copy <data-dir>/kubeconfigs/admin.kubeconfig
#   1.1.19-1.1.21  the PKI dir: <data-dir>/pki
# (The CNI config dir of 1.1.9/1.1.10 comes from kubelet's --cni-conf-dir, a flag kubelet no longer
# has since 1.24, so those checks see the IPAM files only; ours is <data-dir>/agent/etc/cni/net.d.)
PATHS=(
	"/var/lib/cni/networks|/var/lib/k8s/agent/cni-ipam"
	"/etc/kubernetes/super-admin.conf|/var/lib/k8s/kubeconfigs/admin.kubeconfig"
	"/etc/kubernetes/admin.conf|/etc/k8s/admin.kubeconfig"
	"/etc/kubernetes/pki/|/var/lib/k8s/pki/"
)
sed_of() { # sed_of forward|back: the substitutions, one -e each
	local p from to
	for p in "${PATHS[@]}"; do
		from=${p%%|*} to=${p#*|}
		if [[ $1 == back ]]; then local t=$from; from=$to; to=$t; fi
		printf -- '-e\0s|%s|%s|g\0' "$from" "$to"
	done
}

rm -rf "$out.tmp"
mkdir -p "$out.tmp/$BENCHMARK"
cp "$src/config.yaml" "$out.tmp/config.yaml"
mapfile -d '' fwd < <(sed_of forward)
mapfile -d '' back < <(sed_of back)
for f in "$src/$BENCHMARK"/*.yaml; do
	n=${f##*/}
	[[ $n == config.yaml ]] && continue
	sed "${fwd[@]}" "$f" >"$out.tmp/$BENCHMARK/$n"
	# prove that only those paths changed: mapping them back gives upstream's file byte for byte
	# (none of our paths occurs in upstream's files, so the way back is unambiguous)
	for p in "${PATHS[@]}"; do
		! grep -qF -- "${p#*|}" "$f" || { echo "cfg.sh: $f already holds ${p#*|}; the check below would be ambiguous" >&2; exit 1; }
	done
	cmp -s "$f" <(sed "${back[@]}" "$out.tmp/$BENCHMARK/$n") ||
		{ echo "cfg.sh: rewriting paths in $n changed more than paths" >&2; exit 1; }
done
cp "$here/config.yaml" "$out.tmp/$BENCHMARK/config.yaml"
rm -rf "$out"
mv "$out.tmp" "$out"
echo "$BENCHMARK"
