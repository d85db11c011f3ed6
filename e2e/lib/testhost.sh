#!/usr/bin/env bash
# testhost.sh: lightweight "test hosts" on this machine for end-to-end tests of `k8s server` / `k8s agent`.
# A test host is a set of namespaces (network, mount, cgroup, uts, ipc; no pid namespace, no systemd, no
# sshd) held open by one long-lived holder process. See e2e/README.md for what is and is not isolated.
#
#   testhost.sh up NAME [IP]     create host NAME (cleans stale state of NAME first); IP is 10.99.0.X or X
#                                (default: the first free address from 10.99.0.11 up)
#   testhost.sh exec NAME CMD... run CMD inside host NAME (cwd /, stdin passed through, exit code propagated;
#                                CMD replaces this process, so its PID is the one you started)
#   testhost.sh ws CMD...        run CMD in the workstation netns k8se-ws (the place to talk to hosts from)
#   testhost.sh down NAME        kill everything in host NAME, remove its namespaces, cgroups, disk and
#                                state (and the workstation netns once no host is left); idempotent
#   testhost.sh down-all         down every host (also those whose state was lost) and the workstation
#   testhost.sh list             one line per host: NAME IP HOLDER_PID up|dead
#   testhost.sh ip NAME | pid NAME | dir NAME    address / holder PID / per-host disk directory
#
# Sourcing this file (". e2e/lib/testhost.sh") defines a shell function `testhost` (same arguments; runs the
# script in a child bash, so the caller's shell options are untouched) and does nothing else.
#
# Layout:
#   network   netns k8se-ws: bridge br0 10.99.0.1/24, ip_forward=1, no route anywhere else.
#             netns k8se-NAME: lo, eth0 (veth peer of v-NAME on br0) 10.99.0.X/24, default via 10.99.0.1.
#             Nothing is created in the root netns (only the netns files in /run/netns).
#   mounts    private mount namespace (propagation: private towards the machine, then rshared inside, like
#             a systemd host): per-host plain directories /var/tmp/k8s-e2e/NAME/fs/* bound over every path a
#             node writes (TESTHOST_PATHS below, plus TESTHOST_EXTRA_PATHS; /var/lib/kubelet is
#             fs/var-lib-kubelet), tmpfs /run and /dev/shm, per-host /etc/{hostname,hosts,resolv.conf,machine-id},
#             per-host files over the machine-wide sysctls kubelet sets, a fresh read-only sysfs (so
#             /sys/class/net shows the host's netns) with fresh read-write cgroup mounts below it.
#   cgroups   <every hierarchy>/k8s-e2e/NAME; the holder sits there and unshares a cgroup namespace, so
#             inside the host that subtree is "/" (kubelet's kubepods and runc's containers land below it).
#   state     /run/k8s-e2e/NAME/{holder.pid,ip,holder.log,...}; disk /var/tmp/k8s-e2e/NAME (deleted by down
#             unless TESTHOST_KEEP=1).
#
# Environment:
#   TESTHOST_EXTRA_PATHS="/a /b"  more directories to replace with per-host ones
#   TESTHOST_KEEP=1               `down` keeps /var/tmp/k8s-e2e/NAME (logs, containerd state) for a post-mortem
#   TESTHOST_UP_TIMEOUT=20        seconds `up` waits for the holder to finish its mounts
if [ -n "${BASH_SOURCE[0]:-}" ] && [ "${BASH_SOURCE[0]}" != "$0" ]; then
  # sourced: expose a function, change nothing else in the caller's shell
  TESTHOST_SH=$(readlink -f "${BASH_SOURCE[0]}")
  testhost() { bash "$TESTHOST_SH" "$@"; }
  return 0
fi

set -euo pipefail

SELF=$(readlink -f "$0")
RUNDIR=/run/k8s-e2e                 # state (holder pids, ip, logs); outside the hosts
DISKDIR=/var/tmp/k8s-e2e            # per-host disks (plain ext4 dirs: overlayfs snapshots need a real fs)
CG=k8s-e2e                          # cgroups: <hierarchy>/k8s-e2e/NAME
WS=k8se-ws                          # workstation netns
WSNS=/run/netns/$WS
BR=br0
NET=10.99.0
GW=$NET.1
TESTHOST_PATHS="/etc/k8s /var/lib/k8s /var/lib/kubelet /var/lib/containerd /var/lib/cni /var/lib/etcd
  /var/log/pods /var/log/containers /etc/cni /opt/cni /etc/containerd /opt/containerd /usr/libexec/kubernetes /tmp"
SYSCTLS="vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops kernel/keys/root_maxkeys
  kernel/keys/root_maxbytes"
UP_TIMEOUT=${TESTHOST_UP_TIMEOUT:-20}

log() { echo "testhost: $*" >&2; }
die() { log "error: $*"; exit 1; }
usage() { sed -n '2,/^if \[ -n/p' "$SELF" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }

check_name() {
  [[ ${1:-} =~ ^[a-z][a-z0-9-]{0,12}$ ]] && [ "$1" != ws ] ||
    die "host name must match [a-z][a-z0-9-]{0,12} and not be 'ws' (the veth v-NAME must fit in 15 chars): '${1:-}'"
  H=$1; ST=$RUNDIR/$H; DISK=$DISKDIR/$H; HNS=k8se-$H; VETH=v-$H
}

# ---------------------------------------------------------------- processes
starttime() { local s; read -r s 2>/dev/null <"/proc/$1/stat" || return 1; s=${s##*) }; set -- $s; echo "${20}"; }
running() {      # PID exists and is not a zombie (pid 1 here reaps orphans only every few seconds)
  local s; read -r s 2>/dev/null <"/proc/$1/stat" || return 1; s=${s##*) }; [ "${s:0:1}" != Z ]
}
holder_pid() {   # print the holder's PID if it is alive (and is the process we started, not a reused PID)
  local p s
  [ -f "$ST/holder.pid" ] && read -r p s <"$ST/holder.pid" 2>/dev/null && [ -n "${p:-}" ] &&
    [ "$(starttime "$p" 2>/dev/null)" = "$s" ] && running "$p" && echo "$p"
}
ancestors() {    # " PID PPID ... 1 ": never kill ourselves or whoever called us
  local p=$$ s out=" "
  while [ "${p:-0}" -gt 1 ]; do
    out="$out$p "; read -r s 2>/dev/null <"/proc/$p/stat" || break; s=${s##*) }; set -- $s; p=$2
  done
  echo "$out"
}

# ---------------------------------------------------------------- cgroups
cg_mounts() { findmnt -rn -t cgroup,cgroup2 -o TARGET,FSTYPE,OPTIONS | grep '^/sys/fs/cgroup/'; }
cg_opts() {      # mount options of a hierarchy -> the ones that select it (cpu / none,name=systemd / ...)
  local x out="" ctrl=""
  for x in ${1//,/ }; do
    case $x in
      rw|ro|relatime|noatime|strictatime|nosuid|nodev|noexec|seclabel) ;;
      cpu|cpuacct|cpuset|memory|devices|freezer|blkio|pids|net_cls|net_prio|perf_event|hugetlb|rdma|misc)
        ctrl=1; out=$out,$x ;;
      *) out=$out,$x ;;
    esac
  done
  case ,$out, in *,name=*) [ -n "$ctrl" ] || out=",none$out" ;; esac
  echo "${out#,}"
}
cg_dirs() {      # every <hierarchy>/k8s-e2e/NAME that exists
  local t _
  while read -r t _; do [ -d "$t/$CG/$H" ] && echo "$t/$CG/$H"; done < <(cg_mounts)
  return 0
}
cg_create() {
  local t f o d c
  while read -r t f o; do
    d=$t
    for c in "$CG" "$H"; do
      d=$d/$c
      mkdir -p "$d"
      if [ -f "$d/cpuset.cpus" ]; then   # cpuset: a new cgroup has no cpus/mems; no task may join it then
        [ -n "$(cat "$d/cpuset.cpus")" ] || cat "${d%/*}/cpuset.cpus" >"$d/cpuset.cpus"
        [ -n "$(cat "$d/cpuset.mems")" ] || cat "${d%/*}/cpuset.mems" >"$d/cpuset.mems"
      fi
    done
  done < <(cg_mounts)
}
cg_join() {      # PID: move PID into the host's cgroup in every hierarchy
  local t _
  while read -r t _; do
    [ -d "$t/$CG/$H" ] || die "cgroup $t/$CG/$H is missing (host $H is not up?)"
    echo "$1" >"$t/$CG/$H/cgroup.procs"
  done < <(cg_mounts)
}
cg_pids() {      # every PID in the host's cgroups (any hierarchy, any depth)
  local d
  for d in $(cg_dirs); do find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null; done | sort -un
}
cg_thaw() {      # a frozen task does not die from SIGKILL until thawed (runc freezes while it updates cgroups)
  local t _
  while read -r t _; do
    [ -d "$t/$CG/$H" ] && [ -f "$t/$CG/$H/freezer.state" ] || continue
    find "$t/$CG/$H" -name freezer.state | while read -r f; do echo THAWED >"$f" 2>/dev/null || true; done
  done < <(cg_mounts)
  return 0
}
cg_remove() {    # rmdir the host's cgroups, deepest first
  local d
  for d in $(cg_dirs); do find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true; done
  [ -z "$(cg_dirs)" ]
}

# ---------------------------------------------------------------- network
ws_up() {        # the workstation netns with the bridge; shared by all hosts
  if [ ! -e "$WSNS" ]; then
    ip netns add "$WS"
    ip -n "$WS" link set lo up
    ip -n "$WS" link add "$BR" type bridge
    ip -n "$WS" addr add "$GW/24" dev "$BR"
    ip -n "$WS" link set "$BR" up
    # /proc/sys/net is per netns: this write lands in k8se-ws only
    nsenter --net="$WSNS" -- sh -c 'echo 1 >/proc/sys/net/ipv4/ip_forward'
  fi
}
ws_down() {      # only when no host is left
  local p anc
  if [ -e "$WSNS" ]; then
    anc=$(ancestors)
    for p in $(ip netns pids "$WS" 2>/dev/null); do
      case "$anc" in *" $p "*) continue ;; esac
      kill -KILL "$p" 2>/dev/null || true
    done
    ip netns del "$WS" 2>/dev/null || true
  fi
  # `ip netns add` turns /run/netns into a (shared) mount point; undo that once nothing uses it. A plain
  # umount fails (EBUSY) if another netns file appeared meanwhile, so this cannot break anyone else.
  if [ -f "$RUNDIR/netns-mount-created" ]; then
    if [ -z "$(ls -A /run/netns 2>/dev/null)" ] && findmnt -rn /run/netns >/dev/null; then
      umount /run/netns 2>/dev/null && rmdir /run/netns 2>/dev/null || true
    fi
    rm -f "$RUNDIR/netns-mount-created"
  fi
}
hosts_file() {   # /etc/hosts of every live host: all hosts' names (rewritten in place: it is bind-mounted)
  local d n
  for d in "$RUNDIR"/*/ip; do
    [ -f "$d" ] || continue
    n=${d%/ip}; n=${n##*/}
    [ -f "$DISKDIR/$n/etc/hosts" ] || continue
    {
      printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n%s\t%s\n' "$GW" "$WS"
      for f in "$RUNDIR"/*/ip; do
        if [ -f "$f" ]; then m=${f%/ip}; printf '%s\t%s\n' "$(cat "$f")" "${m##*/}"; fi
      done
    } >"$DISKDIR/$n/etc/hosts"
  done
}

# ---------------------------------------------------------------- down
down_one() {     # needs check_name; caller holds the lock
  local p pids holder mntns anc i q
  holder=$(holder_pid || true)
  mntns=""; [ -n "$holder" ] && mntns=$(readlink "/proc/$holder/ns/mnt" 2>/dev/null || true)
  anc=$(ancestors)
  for ((i = 0; i < 100; i++)); do
    cg_thaw
    pids=$(cg_pids || true)
    # also anything that entered the host's netns or mount namespace without joining its cgroups
    [ -e "/run/netns/$HNS" ] && pids="$pids $(ip netns pids "$HNS" 2>/dev/null || true)"
    if [ -n "$mntns" ]; then   # stat -L of /proc/PID/ns/mnt: the inode is the namespace id in mnt:[ID]
      pids="$pids $(stat -L -c '%i %n' /proc/[0-9]*/ns/mnt 2>/dev/null |
        awk -v id="${mntns//[^0-9]/}" '$1 == id { split($2, a, "/"); print a[3] }' || true)"
    fi
    if [ -n "$holder" ]; then pids="$pids $holder"; fi
    q=""
    for p in $pids; do
      case "$anc" in *" $p "*) continue ;; esac
      running "$p" || continue
      case "$q " in *" $p "*) continue ;; esac
      q="$q $p"
    done
    [ -z "$q" ] && break
    kill -KILL $q 2>/dev/null || true
    sleep 0.05
  done
  [ -z "$q" ] || log "warning: $H: processes survive SIGKILL:$q"
  for ((i = 0; i < 50; i++)); do cg_remove && break; cg_thaw; sleep 0.1; done
  [ -z "$(cg_dirs)" ] || log "warning: $H: cannot remove cgroups: $(cg_dirs | tr '\n' ' ')"
  # the veth pair goes with the host netns, but delete it explicitly in case something still pins that netns
  [ -e "$WSNS" ] && ip -n "$WS" link del "$VETH" 2>/dev/null || true
  [ -e "/run/netns/$HNS" ] && ip netns del "$HNS" 2>/dev/null || true
  rm -rf "$ST"
  if [ "${TESTHOST_KEEP:-0}" != 1 ]; then rm -rf "$DISK"; fi
}
finish_down() {  # after the last host: workstation, mount points we made, top cgroups, state dirs
  local t _ d
  ls "$RUNDIR"/*/ip >/dev/null 2>&1 && return 0
  ls -d /run/netns/k8se-* 2>/dev/null | grep -qv "/$WS\$" && return 0
  ws_down
  if [ -f "$RUNDIR/created-dirs" ]; then   # mount points that did not exist on the machine before
    sort -r "$RUNDIR/created-dirs" | while read -r d; do rmdir "$d" 2>/dev/null || true; done
    rm -f "$RUNDIR/created-dirs"
  fi
  while read -r t _; do rmdir "$t/$CG" 2>/dev/null || true; done < <(cg_mounts)
  rm -f "$RUNDIR/.lock"; rmdir "$RUNDIR" 2>/dev/null || true
  [ "${TESTHOST_KEEP:-0}" = 1 ] || rmdir "$DISKDIR" 2>/dev/null || true
}
lock() { mkdir -p "$RUNDIR"; exec 9>"$RUNDIR/.lock"; flock 9; }

cmd_down() {
  [ $# -eq 1 ] || usage
  check_name "$1"; lock
  down_one; hosts_file; finish_down
}
cmd_down_all() {
  [ $# -eq 0 ] || usage
  local n t _ names
  lock
  names=$( {
    for n in "$RUNDIR"/*/; do [ -d "$n" ] && basename "$n"; done
    while read -r t _; do ls "$t/$CG" 2>/dev/null | while read -r n; do [ -d "$t/$CG/$n" ] && echo "$n"; done; done < <(cg_mounts)
    ls /run/netns 2>/dev/null | sed -n 's/^k8se-//p' | grep -vx ws
    ls "$DISKDIR" 2>/dev/null
  } | grep -E '^[a-z][a-z0-9-]{0,12}$' | grep -vx ws | sort -u || true)
  for n in $names; do check_name "$n"; down_one; done
  finish_down
}

# ---------------------------------------------------------------- up
cmd_up() {
  [ $# -ge 1 ] && [ $# -le 2 ] || usage
  [ "$(id -u)" = 0 ] || die "must run as root"
  check_name "$1"
  local ip=${2:-} x t0 st pid i p d launcher
  t0=$(date +%s%N)
  if [ -n "$ip" ]; then
    [[ $ip =~ ^[0-9]+$ ]] && ip=$NET.$ip
    [[ $ip =~ ^10\.99\.0\.([0-9]+)$ ]] && x=${BASH_REMATCH[1]} && [ "$x" -ge 2 ] && [ "$x" -le 254 ] ||
      die "IP must be $NET.2 .. $NET.254 (or just the last number): '$2'"
  fi
  lock
  trap 'rc=$?; [ $rc -eq 0 ] || { log "up $H failed; cleaning up"; down_one; hosts_file; finish_down; }; exit $rc' EXIT
  down_one                                     # stale state of the same name
  if [ -n "$ip" ]; then
    x=$(grep -lxF "$ip" "$RUNDIR"/*/ip 2>/dev/null | head -1) || true
    [ -z "$x" ] || { x=${x%/ip}; die "$ip is already used by host ${x##*/}"; }
  else
    for ((x = 11; x <= 254; x++)); do grep -qxF "$NET.$x" "$RUNDIR"/*/ip 2>/dev/null || break; done
    [ "$x" -le 254 ] || die "no free address in $NET.0/24"
    ip=$NET.$x
  fi
  mkdir -p "$ST" "$DISK/fs" "$DISK/etc" "$DISK/sysctl"
  echo "$ip" >"$ST/ip"

  # network
  [ -e /run/netns ] && findmnt -rn /run/netns >/dev/null || touch "$RUNDIR/netns-mount-created"
  ws_up
  ip netns add "$HNS"
  ip -n "$HNS" link set lo up
  ip -n "$WS" link add "$VETH" type veth peer name eth0 netns "$HNS"
  ip -n "$WS" link set "$VETH" master "$BR" up
  ip -n "$HNS" addr add "$ip/24" dev eth0
  ip -n "$HNS" link set eth0 up
  ip -n "$HNS" route add default via "$GW"

  # per-host files
  echo "$H" >"$DISK/etc/hostname"
  echo "nameserver $GW" >"$DISK/etc/resolv.conf"   # nothing answers there: lookups fail fast and stay inside
  : >"$DISK/etc/hosts"
  od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$DISK/etc/machine-id"; echo >>"$DISK/etc/machine-id"
  for p in $SYSCTLS; do
    [ -e "/proc/sys/$p" ] && cat "/proc/sys/$p" >"$DISK/sysctl/${p//\//.}"
  done
  for p in $TESTHOST_PATHS ${TESTHOST_EXTRA_PATHS:-}; do
    [[ $p == /* ]] || die "not an absolute path: $p"
    x=${p#/}; d=$DISK/fs/${x//\//-}
    mkdir -p "$d"
    [ "$p" = /tmp ] && chmod 1777 "$d"
    if [ ! -e "$p" ]; then
      # find the topmost missing component: that is what we create on the machine, and remove at the end
      x=$p; while [ ! -e "${x%/*}" ]; do x=${x%/*}; done
      mkdir -p "$p"
      grep -qxF "$x" "$RUNDIR/created-dirs" 2>/dev/null || echo "$x" >>"$RUNDIR/created-dirs"
    fi
    echo "$p $d" >>"$ST/binds"
  done
  hosts_file

  # cgroups + the holder
  cg_create
  : >"$ST/init.status"
  setsid nsenter --net="/run/netns/$HNS" -- bash "$SELF" _boot "$H" </dev/null >"$ST/holder.log" 2>&1 9>&- &
  launcher=$!
  for ((i = 0; i < UP_TIMEOUT * 100; i++)); do
    st=$(cat "$ST/init.status")
    [ -n "$st" ] && break
    running "$launcher" || { st=$(cat "$ST/init.status"); st=${st:-"holder exited"}; break; }
    sleep 0.01
  done
  [ "$st" = ok ] || { cat "$ST/holder.log" >&2; die "host $H did not come up: ${st:-timeout}"; }
  pid=$(holder_pid) || { cat "$ST/holder.log" >&2; die "host $H: holder died"; }
  trap - EXIT
  log "$H is up: $ip, holder $pid, disk $DISK ($(( ($(date +%s%N) - t0) / 1000000 )) ms)"
}

# The holder, step 1 (in the host netns, still in the machine's mount and cgroup namespaces): join the host's
# cgroups, then unshare the rest. unshare execs, so the PID stays the same through every step.
boot() {
  check_name "$1"
  echo "$$ $(starttime $$)" >"$ST/holder.pid"
  cg_join $$
  exec unshare --cgroup --mount --uts --ipc --propagation private -- bash "$SELF" _init "$H"
}

# The holder, step 2: inside the new namespaces; mounts everything, reports, then sleeps forever.
init() {
  check_name "$1"
  exec 3>"$ST/init.status"
  trap 'echo "failed at line $LINENO: $BASH_COMMAND" >&3' ERR
  local p d t f o m binds cgs
  binds=$(cat "$ST/binds")           # read now: /run (where $ST is) is about to be replaced
  cgs=$(cg_mounts)
  hostname "$H"
  # /run: a private tmpfs. First detach what the machine has below /run (notably the netns files in
  # /run/netns: our copies would keep other hosts' network namespaces alive after they are deleted).
  for m in $(findmnt -rn -o TARGET | grep '^/run/' | sort -r); do umount -l "$m" 2>/dev/null || true; done
  mount -t tmpfs -o mode=755,nosuid,nodev,size=512m tmpfs /run
  mkdir -m 1777 /run/lock
  mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm
  while read -r p d; do mount --bind "$d" "$p"; done <<<"$binds"
  for f in hostname hosts resolv.conf machine-id; do
    [ -f "/etc/$f" ] && mount --bind "$DISK/etc/$f" "/etc/$f"
  done
  # kubelet reads the machine id from either file; all hosts sharing the machine's would be confusing
  [ -f /var/lib/dbus/machine-id ] && mount --bind "$DISK/etc/machine-id" /var/lib/dbus/machine-id
  for p in $SYSCTLS; do
    f=$DISK/sysctl/${p//\//.}
    [ -f "$f" ] && mount --bind "$f" "/proc/sys/$p"
  done
  # /sys: a fresh sysfs belongs to this netns (/sys/class/net shows eth0, not the machine's interfaces).
  # Read-only: the rest of sysfs is the whole machine's. Then fresh cgroup mounts: mounted inside our cgroup
  # namespace their root is <hierarchy>/k8s-e2e/NAME.
  umount -l /sys
  mount -t sysfs -o ro,nosuid,nodev,noexec sysfs /sys
  mount -t tmpfs -o mode=755,nosuid,nodev,noexec tmpfs /sys/fs/cgroup
  while read -r t f o; do
    mkdir -p "$t"
    o=$(cg_opts "$o")
    if [ "$f" = cgroup2 ]; then
      mount -t cgroup2 -o "nosuid,nodev,noexec${o:+,$o}" cgroup2 "$t"
    else
      mount -t cgroup -o "nosuid,nodev,noexec,$o" cgroup "$t"
    fi
  done <<<"$cgs"
  # Like a systemd host: mounts made inside propagate to containers that ask for it (kubelet, CSI).
  # Private towards the machine already, so nothing reaches the machine's mount namespace.
  mount --make-rshared /
  trap - ERR
  echo ok >&3
  exec 3>&- 9>&-
  cd /
  exec -a "testhost-holder-$H" sleep infinity
}

cmd_exec() {
  [ $# -ge 2 ] || usage
  check_name "$1"; shift
  local pid; pid=$(holder_pid) || die "host $H is not up"
  cg_join $$        # so `down` finds (and kills) whatever CMD starts, and runc nests under the host's cgroups
  exec nsenter -t "$pid" --net --mount --cgroup --uts --ipc --wd=/ -- "$@"
}
cmd_ws() {
  [ $# -ge 1 ] || usage
  [ -e "$WSNS" ] || die "the workstation netns $WS does not exist (no host is up)"
  exec nsenter --net="$WSNS" -- "$@"
}
cmd_list() {
  local f n p s
  for f in "$RUNDIR"/*/ip; do
    [ -f "$f" ] || continue
    n=${f%/ip}; n=${n##*/}; check_name "$n"
    if p=$(holder_pid); then s=up; else p=-; s=dead; fi
    echo "$n $(cat "$f") $p $s"
  done
}
cmd_ip() { [ $# -eq 1 ] || usage; check_name "$1"; cat "$ST/ip" 2>/dev/null || die "host $H is not up"; }
cmd_pid() { [ $# -eq 1 ] || usage; check_name "$1"; holder_pid || die "host $H is not up"; }
cmd_dir() { [ $# -eq 1 ] || usage; check_name "$1"; echo "$DISK"; }

[ $# -ge 1 ] || usage
sub=$1; shift
case $sub in
  up) cmd_up "$@" ;;
  exec) cmd_exec "$@" ;;
  ws) cmd_ws "$@" ;;
  down) cmd_down "$@" ;;
  down-all) cmd_down_all "$@" ;;
  list) cmd_list "$@" ;;
  ip) cmd_ip "$@" ;;
  pid) cmd_pid "$@" ;;
  dir) cmd_dir "$@" ;;
  _boot) boot "$@" ;;
  _init) init "$@" ;;
  -h|--help|help) usage ;;
  *) usage ;;
esac
