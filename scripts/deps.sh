#!/usr/bin/env bash
# scripts/deps.sh build|build-arm64|test: installs the Debian packages k8s needs, once (only the missing ones).
#   build  what `make run` and `make dist` need: building the payload (bootstrap/ installs its own
#          compilers and libraries), and running a single node (iptables, iproute2, zstd)
#   test   those, plus what only the tests use: etcd and etcdctl (the datastore's differential tests
#          and benchmarks), sshd and sudo (the ssh and `k8s up` tests run their own sshd), protoc (the
#          etcd-client crate), jq, python3, sqlite3, openssl, and a registry with basic auth for
#          e2e/registry.sh (docker-registry, htpasswd from apache2-utils)
#
# It never stops, disables or reconfigures a service the host already had. Packages that start a
# service when installed (openssh-server, etcd-server, docker-registry) are installed with a policy-rc.d that forbids
# starting anything, and the units of packages this run installed are then disabled: the tests start
# their own processes, and a machine that had no sshd or etcd does not get one listening after a
# reboot. A host's running ssh stays enabled and running (e2e/deps.sh checks it).
#
# DEPS_PACKAGES="a b" replaces the list (used by e2e/deps.sh, whose hosts have no package mirror).
set -euo pipefail
profile=${1:-test}
build=(zstd iproute2 util-linux iptables openssl)
test=(protobuf-compiler etcd-server etcd-client sqlite3 jq python3 openssh-server openssh-client sudo curl docker-registry apache2-utils)
case $profile in
  build) want=("${build[@]}") ;;
  # Cross-building for arm64 on another machine (make dist ARCH=arm64): Debian's cross gcc and
  # arm64 libc links the Rust binary; qemu runs its parts in e2e/arm64.sh (bootstrap adds the rest).
  build-arm64) want=("${build[@]}" gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static) ;;
  test) want=("${build[@]}" "${test[@]}") ;;
  *) echo "usage: scripts/deps.sh build|build-arm64|test" >&2; exit 2 ;;
esac
[[ -n ${DEPS_PACKAGES:-} ]] && read -r -a want <<<"$DEPS_PACKAGES"

missing=()
for p in "${want[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
((${#missing[@]} == 0)) && exit 0

echo "installing: ${missing[*]}"
# Debian's invoke-rc.d asks policy-rc.d before starting a service: 101 means "not now". Only when
# the host has none of its own, and removed again whatever happens.
policy=/usr/sbin/policy-rc.d
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 0755 "$policy"
  trap 'rm -f "$policy"' EXIT
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
# The units these packages brought are enabled by their postinst: disable those, and only those

if command -v systemctl >/dev/null 2>&1; then
  for p in "${missing[@]}"; do
    for unit in $(dpkg -L "$p" 2>/dev/null | grep -E '^/(usr/)?lib/systemd/system/[^/]+\.(service|socket)$' | xargs -r -n1 basename); do
      [[ $unit == *@* ]] && continue
      systemctl disable "$unit" >/dev/null 2>&1 || true
    done
  done
fi
