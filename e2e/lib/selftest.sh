#!/usr/bin/env bash
# selftest.sh: checks e2e/lib/testhost.sh end to end with the real parts from the payload.
#   two test hosts up at once; containerd + runc (from the payload) inside one of them; a busybox container
#   prints, lands in the host's cgroup subtree and pings the other host over the bridge; kubelet-style sysctl
#   writes land in the per-host files; then both hosts go down and nothing is left on the machine.
# Usage: e2e/lib/selftest.sh [PAYLOAD_DIR]   (default: $K8S_PAYLOAD, else the first ~/.cache/k8s/payload/*/)
# Exit 0: all checks passed; 1: a check failed; 77: skipped (not root, or no payload built yet).
set -euo pipefail

HERE=$(dirname "$(readlink -f "$0")")
T=$HERE/testhost.sh
A=selftest-a
B=selftest-b
fail=0

say() { printf '%s\n' "selftest: $*" >&2; }
ok() { say "ok   $*"; }
bad() { say "FAIL $*"; fail=1; }
ms() { date +%s%N | cut -c1-13; }

[ "$(id -u)" = 0 ] || { say "skip: must run as root"; exit 77; }
P=${1:-${K8S_PAYLOAD:-$(ls -d "$HOME"/.cache/k8s/payload/*/ 2>/dev/null | head -1)}}
P=${P%/}
[ -x "$P/bin/containerd" ] && [ -f "$P/images/busybox.tar" ] ||
  { say "skip: no payload with bin/containerd and images/busybox.tar (build it: make payload)"; exit 77; }

cleanup() { "$T" down "$A" >/dev/null 2>&1 || true; "$T" down "$B" >/dev/null 2>&1 || true; }
trap cleanup EXIT

t=$(ms); "$T" up "$A"; "$T" up "$B"; t_up=$(( $(ms) - t ))
ipb=$("$T" ip "$B")
X=("$T" exec "$A" env "PATH=$P/bin:$PATH")   # the payload's bin first: the shim finds runc on PATH

# containerd, minimal config, cgroupfs (runc's default)
disk=$("$T" dir "$A")
cat >"$disk/fs/etc-containerd/config.toml" <<'EOF'
version = 3
root = "/var/lib/containerd"
state = "/run/containerd"
EOF
setsid "${X[@]}" containerd --config /etc/containerd/config.toml </dev/null >"$disk/containerd.log" 2>&1 &
disown
for ((i = 0; i < 100; i++)); do "${X[@]}" ctr version >/dev/null 2>&1 && break; sleep 0.1; done
"${X[@]}" ctr version >/dev/null 2>&1 && ok "containerd runs in $A" || { bad "containerd did not start"; tail "$disk/containerd.log" >&2; exit 1; }

"${X[@]}" ctr -n k8s.io images import "$P/images/busybox.tar" >/dev/null 2>&1 || bad "image import"
img=$("${X[@]}" ctr -n k8s.io images ls -q 2>/dev/null | grep busybox | head -1)
out=$("${X[@]}" ctr -n k8s.io run --rm "$img" hello sh -c 'echo hello-from-busybox; hostname' 2>/dev/null || true)
[[ $out == *hello-from-busybox*$A* ]] && ok "container ran and printed ($img)" || bad "container output: $out"

"${X[@]}" ctr -n k8s.io run -d "$img" sleeper sleep 600 >/dev/null 2>&1
pid=$("${X[@]}" ctr -n k8s.io tasks ls 2>/dev/null | awk '$1 == "sleeper" { print $2 }')
if [ -n "$pid" ] && ! grep -v ":/k8s-e2e/$A/" "/proc/$pid/cgroup" | grep -q .; then
  ok "container cgroups are under <hierarchy>/k8s-e2e/$A/ ($(grep ':cpu:' "/proc/$pid/cgroup"))"
else
  bad "container cgroups: $(cat "/proc/$pid/cgroup" 2>&1 | tr '\n' ' ')"
fi

out=$("${X[@]}" ctr -n k8s.io run --rm --net-host "$img" pinger ping -c 1 -W 2 "$ipb" 2>/dev/null || true)
[[ $out == *" 0% packet loss"* ]] && ok "$A reaches $B ($ipb) over the bridge" || bad "ping $A -> $B: $out"

before=$(cat /proc/sys/vm/overcommit_memory)
"$T" exec "$A" sh -c 'echo 1 >/proc/sys/vm/overcommit_memory'
inside=$("$T" exec "$A" cat /proc/sys/vm/overcommit_memory)
[ "$inside" = 1 ] && [ "$(cat /proc/sys/vm/overcommit_memory)" = "$before" ] &&
  ok "vm.overcommit_memory written inside lands in the host's file (machine keeps $before)" || bad "sysctl shim"

t=$(ms); "$T" down "$A"; "$T" down "$B"; t_down=$(( $(ms) - t ))
trap - EXIT

left=$(grep -E "k8s-e2e/($A|$B)" /proc/self/mountinfo || true)
[ -z "$left" ] && ok "no mounts left" || bad "mounts left: $left"
ip netns | grep -qE "k8se-($A|$B)" && bad "netns left: $(ip netns)" || ok "no netns left"
left=$(ls -d /sys/fs/cgroup/*/k8s-e2e/{$A,$B} 2>/dev/null || true)
[ -z "$left" ] && ok "no cgroups left" || bad "cgroups left: $left"
left=$(ps -eo pid=,stat=,cgroup= | awk -v re="k8s-e2e/($A|$B)" '$2 !~ /^Z/ && $3 ~ re' || true)
[ -z "$left" ] && ok "no processes left" || bad "processes left: $left"
say "timings: up 2 hosts ${t_up} ms, down 2 hosts ${t_down} ms"
[ $fail = 0 ] && say "all checks passed" || say "some checks FAILED"
exit $fail
