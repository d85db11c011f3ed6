#!/usr/bin/env bash
# e2e/static.sh [DIST_BIN]: dist/k8s needs nothing of the host's libc. `file` says it is statically
# linked, and `k8s version` and `k8s check-config` run in two root filesystems that are not this
# machine's: Debian 11 (glibc 2.31, older than the 2.34 a dynamic build needs; debootstrap minbase,
# built once into /var/tmp/k8s-e2e-static) and one with no libc at all (Debian's busybox-static, a
# shell and its applets, and k8s). Each runs chrooted in its own mount, PID and network namespaces
# (nothing is sent anywhere, nothing is left mounted); check-config there says glibc is not needed,
# and names the tools that root lacks (iptables, ip) with what to do.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
DIST=$(readlink -f "${1:-$here/../dist/k8s}")
source "$here/../bootstrap/versions.env"
BASE=/var/tmp/k8s-e2e-static
OLD=$BASE/bullseye
fail() { echo "FAIL: $*"; exit 1; }
ok() { echo "ok   $*"; }
t0=$SECONDS

what=$(file -b "$DIST")
[[ $what == *"static-pie linked"* || $what == *"statically linked"* ]] || fail "file $DIST: $what"
ok "file dist/k8s: ${what%%, BuildID*}"

# run_in ROOT CMD...: CMD chrooted into ROOT with /proc, /sys and /dev, in new mount, PID and
# network namespaces (the mounts go with the namespace).
run_in() {
  unshare --mount --pid --net --fork --propagation private sh -ec '
    r=$1; shift
    mount -t proc proc "$r/proc"; mount --rbind /sys "$r/sys"; mount --rbind /dev "$r/dev"
    exec chroot "$r" "$@"' sh "$@"
}

# check ROOT NAME GLIBC: k8s version and check-config in ROOT, whose glibc is GLIBC ("no glibc").
check() {
  local root=$1 name=$2 glibc=$3 out rc
  install -m 0755 "$DIST" "$root/usr/local/bin/k8s"
  out=$(run_in "$root" /usr/local/bin/k8s version 2>&1) || fail "$name: k8s version: $out"
  grep -q "^kubernetes: $KUBERNETES_VERSION$" <<<"$out" || fail "$name: k8s version: $out"
  grep -q "^binary: linux/amd64, static$" <<<"$out" || fail "$name: k8s version: $out"
  ok "$name: k8s version runs ($(head -n1 <<<"$out"), Kubernetes $KUBERNETES_VERSION)"
  rc=0 && out=$(run_in "$root" /usr/local/bin/k8s check-config 2>&1) || rc=$?
  ((rc <= 1)) || fail "$name: k8s check-config exited $rc: $out"
  grep -q "glibc.*not needed: k8s is linked statically ($glibc here)" <<<"$out" ||
    fail "$name: check-config does not say glibc is not needed with $glibc: $out"
  grep -q "FAIL.*host tools.*iptables.*not found; install them" <<<"$out" ||
    fail "$name: check-config does not name the missing iptables: $out"
  ((rc == 1)) || fail "$name: check-config exited 0 with iptables missing"
  ok "$name: check-config runs, glibc not needed, the missing iptables named (exit 1)"
  rm -f "$root/usr/local/bin/k8s"
}

# Debian 11, once (the package list is the minimal base).
if [[ ! -f $OLD/.complete ]]; then
  command -v debootstrap >/dev/null || apt-get install -y -q --no-install-recommends debootstrap >/dev/null
  mirror=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  rm -rf --one-file-system "$OLD" && mkdir -p "$BASE"
  echo "building $OLD: debootstrap bullseye (once, about a minute)"
  debootstrap --variant=minbase bullseye "$OLD" "${mirror:-http://deb.debian.org/debian}" >"$BASE/debootstrap.log" 2>&1 ||
    { tail -20 "$BASE/debootstrap.log"; fail "debootstrap bullseye failed (log: $BASE/debootstrap.log)"; }
  touch "$OLD/.complete"
fi
have=$(chroot "$OLD" getconf GNU_LIBC_VERSION)
[[ $have == "glibc 2.31" ]] || fail "the Debian 11 root has $have, not glibc 2.31"
check "$OLD" "Debian 11 (glibc 2.31)" "glibc 2.31"

# No libc: busybox-static (the .deb the payload's busybox image comes from) and k8s.
deb=$(compgen -G "${K8S_CACHE_DIR:-$HOME/.cache/k8s}/debs/busybox-static_*_amd64.deb" | head -n1 || true)
if [[ -z $deb ]]; then
  mkdir -p "$BASE/debs" && (cd "$BASE/debs" && apt-get -q download busybox-static >/dev/null)
  deb=$(compgen -G "$BASE/debs/busybox-static_*_amd64.deb" | head -n1)
fi
bare=$(mktemp -d "$BASE/bare.XXXXXX")
trap 'rm -rf --one-file-system "$bare"' EXIT
dpkg-deb -x "$deb" "$bare/pkg"
mkdir -p "$bare/root/bin" "$bare/root/usr/local/bin" "$bare/root/proc" "$bare/root/sys" "$bare/root/dev" "$bare/root/tmp"
install -m 0755 "$bare/pkg/bin/busybox" "$bare/root/bin/busybox"
for applet in $("$bare/root/bin/busybox" --list); do
  [[ $applet == busybox ]] || ln -s busybox "$bare/root/bin/$applet"
done
[[ -z $(find "$bare/root" -name 'libc*' -o -name 'ld-linux*') ]] || fail "the bare root has a libc"
check "$bare/root" "no libc (busybox only)" "no glibc"
echo "PASS e2e/static.sh ($((SECONDS - t0)) s)"
