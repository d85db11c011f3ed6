#!/usr/bin/env bash
# selftest.sh: checks e2e/lib/nspawn.sh end to end: N hosts (default 4) boot with systemd and sshd; ssh as root,
# debian (passwordless sudo) and pwsudo (sudo wants a password) from the workstation netns; the hosts reach each
# other by name; the sysctl shim keeps kubelet's writes in the host; the payload's containerd + runc run a busybox
# container inside a host, in that host's cgroups; kill + start and stop + start of a host; then down, and
# nothing of the cluster is left on the machine (netns, links, mounts, cgroups, processes, state).
# Usage: e2e/lib/nspawn/selftest.sh [N [PAYLOAD_DIR]]   (payload default: $K8S_PAYLOAD, else ~/.cache/k8s/payload/*/)
# Exit 0: all checks passed; 1: a check failed; 77: skipped (not root).
set -euo pipefail

T=$(dirname "$(readlink -f "$0")")/../nspawn.sh
C=${NSPAWN_SELFTEST_CLUSTER:-nst}
N=${1:-4}
fail=0
say() { printf '%s\n' "selftest: $*" >&2; }
ok() { say "ok   $*"; }
bad() { say "FAIL $*"; fail=1; }
ms() { date +%s%3N; }
secs() { local d=$(( $(ms) - $1 )); printf '%d.%d s' $((d / 1000)) $((d % 1000 / 100)); }

[ "$(id -u)" = 0 ] || { say "skip: must run as root"; exit 77; }
[ "$N" -ge 2 ] || { say "N must be at least 2"; exit 2; }
P=${2:-${K8S_PAYLOAD:-$(ls -d "$HOME"/.cache/k8s/payload/*/ 2>/dev/null | head -1)}}
P=${P%/}

trap '"$T" down "$C" >/dev/null 2>&1 || true' EXIT
"$T" rootfs >/dev/null
t=$(ms); "$T" up "$C" "$N" >/dev/null; t_up=$(secs "$t")
D=$("$T" dir "$C")
ok "up $N hosts: $t_up (rootfs cached)"

for f in hosts.txt id_ed25519 id_ed25519.pub known_hosts ssh_config env home/.ssh/config; do
  [ -s "$D/$f" ] || bad "state file $D/$f missing"
done
[ "$(wc -l <"$D/hosts.txt")" = "$N" ] && ok "hosts.txt: $(tr '\n' ' ' <"$D/hosts.txt")" || bad "hosts.txt"

# ssh from the workstation netns, with the generated ssh_config/known_hosts (StrictHostKeyChecking yes)
for ((i = 1; i <= N; i++)); do
  st=$("$T" ssh "$C" "$i" systemctl is-system-running 2>/dev/null || true)
  case $st in running|degraded) ok "$C-$i: ssh as root; systemctl is-system-running: $st" ;;
    *) bad "$C-$i: is-system-running: '$st' ($("$T" ssh "$C" "$i" systemctl --failed --no-legend 2>&1 | tr '\n' ' '))" ;; esac
done
out=$("$T" ssh "$C" debian@1 'id -un; sudo -n true && echo sudo-ok' 2>&1 || true)
[[ $out == *debian*sudo-ok* ]] && ok "debian: ssh + sudo -n true" || bad "debian: $out"
out=$("$T" ssh "$C" pwsudo@2 'sudo -n true' 2>&1 && echo UNEXPECTED || true)
[[ $out == *"password is required"* ]] && ok "pwsudo: sudo -n fails ($out)" || bad "pwsudo sudo -n: $out"
out=$("$T" ssh "$C" pwsudo@2 'echo pwsudo | sudo -S -p "" id -un' 2>&1 || true)
[ "$out" = root ] && ok "pwsudo: sudo -S with its password works" || bad "pwsudo sudo -S: $out"
out=$("$T" ws "$C" ssh -F "$D/ssh_config" "$(sed -n 2p "$D/hosts.txt" | cut -d' ' -f2)" hostname 2>&1 || true)
[ "$out" = "$C-2" ] && ok "ssh by IP address with the same known_hosts" || bad "ssh by IP: $out"
out=$("$T" ssh "$C" 1 "ping -c1 -W2 $C-$N >/dev/null && echo ping-ok" 2>&1 || true)
[ "$out" = ping-ok ] && ok "$C-1 pings $C-$N by name" || bad "ping between hosts: $out"
out=$("$T" ssh "$C" 1 'ping -c1 -W1 10.98.255.1 >/dev/null 2>&1 && echo LEAK || echo no-route' 2>&1 || true)
[ "$out" = no-route ] && ok "nothing beyond the workstation bridge answers" || bad "outside reachable: $out"

# sysctl shim: kubelet's machine-wide writes stay in the host
before=$(cat /proc/sys/kernel/panic)
"$T" exec "$C" 1 sh -c 'echo 10 >/proc/sys/kernel/panic'
inside=$("$T" exec "$C" 1 cat /proc/sys/kernel/panic)
[ "$inside" = 10 ] && [ "$(cat /proc/sys/kernel/panic)" = "$before" ] &&
  ok "kernel.panic=10 inside; the machine keeps $before" || bad "sysctl shim: inside $inside, machine $(cat /proc/sys/kernel/panic)"
out=$("$T" exec "$C" 1 sh -c 'echo 1 >/proc/sys/kernel/sysrq' 2>&1 && echo WRITABLE || true)
[[ $out != *WRITABLE* ]] && ok "other /proc/sys files are read-only" || bad "/proc/sys/kernel/sysrq is writable"
out=$("$T" exec "$C" 1 sh -c 'findmnt -rn -t cgroup -o OPTIONS | grep -c "^ro,"' 2>/dev/null || true)
[ "$out" = 0 ] && ok "cgroup v1 controllers are read-write inside" || bad "read-only cgroup mounts inside: $out"

# containerd + runc + busybox from the payload, inside host 1, started as a systemd unit
if [ -x "$P/bin/containerd" ] && [ -f "$P/images/busybox.tar" ]; then
  for f in containerd containerd-shim-runc-v2 ctr runc; do "$T" push "$C" "$P/bin/$f" "/usr/local/bin/$f" 1; done
  "$T" push "$C" "$P/images/busybox.tar" /root/busybox.tar 1
  out=$("$T" exec "$C" 1 sh -c '
    mkdir -p /etc/containerd
    printf "version = 3\nroot = \"/var/lib/containerd\"\nstate = \"/run/containerd\"\n" >/etc/containerd/config.toml
    systemd-run -q --unit=containerd -p Delegate=yes -p KillMode=process containerd --config /etc/containerd/config.toml
    for i in $(seq 100); do ctr version >/dev/null 2>&1 && break; sleep 0.1; done
    ctr -n k8s.io images import /root/busybox.tar >/dev/null 2>&1 || echo import-failed
    img=$(ctr -n k8s.io images ls -q | grep busybox | head -1)
    ctr -n k8s.io run --rm "$img" hello sh -c "echo hello-from-busybox; hostname" 2>/dev/null
    ctr -n k8s.io run -d "$img" sleeper sleep 600 >/dev/null 2>&1; sleep 0.5
    ctr -n k8s.io tasks ls 2>/dev/null | grep -q "sleeper.*RUNNING" && echo sleeper-running' 2>&1 || true)
  [[ $out == *hello-from-busybox*$C-1*sleeper-running* ]] && ok "containerd + runc ran busybox in $C-1" || bad "containerd: $out"
  n=$(cat /sys/fs/cgroup/memory/k8s-e2e-nspawn/"$C"/"$C"-1/k8s.io/sleeper/cgroup.procs 2>/dev/null | wc -l)
  [ "$n" -ge 1 ] && ok "the container's cgroup is <memory>/k8s-e2e-nspawn/$C/$C-1/k8s.io/sleeper" || bad "container cgroup not found"
else
  say "skip containerd check: no payload with bin/containerd and images/busybox.tar ($P)"
fi
say "memory per host (memory cgroup, incl. page cache / rss):"
"$T" status "$C" | sed 's/^/selftest:      /' >&2

# power failure and clean power-off of a host; disks survive both
t=$(ms); "$T" kill "$C" 1; t_kill=$(secs "$t")
[[ $("$T" status "$C") == *"$C-1 "*" stopped"* ]] && ok "kill $C-1: $t_kill" || bad "kill: $("$T" status "$C" | head -1)"
t=$(ms); "$T" start "$C" 1 2>/dev/null; t_start=$(secs "$t")
out=$("$T" ssh "$C" 1 'systemctl is-system-running; test -f /usr/local/bin/containerd && echo disk-kept' 2>&1 || true)
[[ $out == *disk-kept* ]] && ok "start $C-1 after kill: $t_start (${out//$'\n'/, })" || bad "start after kill: $out"
t=$(ms); "$T" stop "$C" 2; t_stop=$(secs "$t")
tail -3 "$D/hosts/$C-2/console.log" | grep -q 'Powering off' &&
  ok "stop $C-2 (clean power-off): $t_stop" || bad "stop $C-2: no power-off in its console log"
t=$(ms); "$T" start "$C" 2 2>/dev/null; t_start=$(secs "$t")
"$T" ssh "$C" 2 true && ok "start $C-2 after stop: $t_start" || bad "start after stop"

t=$(ms); "$T" down "$C" 2>/dev/null; t_down=$(secs "$t")
trap - EXIT
ok "down: $t_down"
ip netns | grep -q "^$C-ws" && bad "netns left: $(ip netns | grep "^$C-ws")" || ok "no netns left"
left=$(ip -o link | grep -E "vb-$C|$C-" || true); [ -z "$left" ] && ok "no links in the root netns" || bad "links: $left"
left=$(grep -E "k8s-e2e-nspawn/clusters/$C/" /proc/self/mountinfo || true)
[ -z "$left" ] && ok "no mounts left" || bad "mounts left: $left"
left=$(ls -d /sys/fs/cgroup/*/k8s-e2e-nspawn/"$C" 2>/dev/null || true)
[ -z "$left" ] && ok "no cgroups left" || bad "cgroups left: $left"
left=$(ps -eo pid=,stat=,args= | awk -v c="$C" '$2 !~ /^Z/ && ($0 ~ ("clusters/" c "/") || $0 ~ ("_boot " c " "))' || true)
[ -z "$left" ] && ok "no processes left" || bad "processes left: $left"
[ ! -e "$D" ] && ok "state dir removed" || bad "state dir left: $D"
[ $fail = 0 ] && say "all checks passed" || say "some checks FAILED"
exit $fail
