#!/usr/bin/env bash
# nspawn.sh: multi-host test machines for `k8s up`: throwaway Debian bookworm hosts booted by systemd-nspawn
# with systemd as PID 1 and sshd, on a private bridge that only a "workstation" network namespace can reach.
#
#   nspawn.sh up CLUSTER N           boot CLUSTER-1..N at 10.98.K.11.. (downs stale state of CLUSTER first; builds
#                                    the rootfs cache if missing) and wait until every host answers ssh
#   nspawn.sh ws CLUSTER CMD...      run CMD in the workstation netns CLUSTER-ws (everything that talks to 10.98.x)
#   nspawn.sh ssh CLUSTER [USER@]I CMD...   ssh to host I (number or name; user root by default) from CLUSTER-ws
#   nspawn.sh exec CLUSTER I CMD...  run CMD inside host I with nsenter (no ssh; clean env, cwd /, exit code passed)
#   nspawn.sh push CLUSTER SRC DEST [I...]  copy file SRC to DEST (same mode) in hosts I... (default: all running)
#   nspawn.sh stop CLUSTER I         clean power-off (SIGKILL after NSPAWN_STOP_TIMEOUT s); disk kept
#   nspawn.sh kill CLUSTER I         pull the plug: SIGKILL the host's PID 1 (whole PID namespace); disk kept
#   nspawn.sh start CLUSTER I        boot a stopped host again with its disk and wait for ssh
#   nspawn.sh status CLUSTER         one line per host: NAME IP running|stopped pid=PID mem=MiB rss=MiB
#   nspawn.sh down CLUSTER           kill everything of CLUSTER, remove netns, cgroups, state; idempotent
#   nspawn.sh dir CLUSTER | ip CLUSTER I | pid CLUSTER I    state dir / address / host's PID 1 on the machine
#   nspawn.sh rootfs | rootfs-rm     build / delete the cached rootfs
#
# Sourcing this file defines a shell function `nspawn_hosts` (same arguments, runs in a child bash) and nothing else.
#
# State dir (`nspawn.sh dir CLUSTER`): /var/tmp/k8s-e2e-nspawn/clusters/CLUSTER/
#   hosts.txt        "NAME IP" per host            env          K=, N=, ROOTFS=, NET= (shell syntax)
#   id_ed25519{,.pub} the test's key (authorized for root, debian, pwsudo on every host)
#   known_hosts      every host's keys as "NAME,IP TYPE KEY"
#   ssh_config       Host NAME -> HostName IP; User root, that key, that known_hosts, StrictHostKeyChecking yes
#   home/.ssh/       config, known_hosts, id_ed25519 (links): for programs that find ~/.ssh through $HOME
#                    (OpenSSH itself takes the home dir from passwd: give it -F ssh_config)
#   hosts/NAME/      upper/ (overlay upper dir = the host's disk), disk/<path> (plain dirs bound over
#                    NSPAWN_BINDS), console.log (systemd's console), nspawn.pid, leader.pid
# Users on every host: root, debian (passwordless sudo), pwsudo (password "pwsudo"; sudo asks for it).
#
# Environment:
#   NSPAWN_K=                third octet of 10.98.K.0/24 (default: the lowest one no other live cluster uses)
#   NSPAWN_MIRROR=URL        Debian mirror for debootstrap (default: the one apt uses)
#   NSPAWN_EXTRA_PKGS=a,b    more packages in the rootfs (the cache is keyed by the package list)
#   NSPAWN_BINDS="..."       paths bound to per-host plain dirs (default below; containerd's snapshots and our data
#                            dir cannot live on the overlay root)
#   NSPAWN_HOST_KEYS="ed25519 ecdsa"  the hosts' ssh host key types (add rsa if a test needs it: ~1 s per host)
#   NSPAWN_BOOT_TIMEOUT=180  NSPAWN_STOP_TIMEOUT=30   seconds
#   NSPAWN_KEEP=1            `down` keeps the state dir (logs, disks) for a post-mortem; the next `up` removes it
#
# Network rule: everything that talks to 10.98.x runs in CLUSTER-ws. The bridge lives there, and systemd-nspawn
# runs there, so the veths are made there: nothing is added to the machine's own network namespace.
if [ -n "${BASH_SOURCE[0]:-}" ] && [ "${BASH_SOURCE[0]}" != "$0" ]; then
  NSPAWN_SH=$(readlink -f "${BASH_SOURCE[0]}")
  nspawn_hosts() { bash "$NSPAWN_SH" "$@"; }
  return 0
fi

set -euo pipefail

SELF=$(readlink -f "$0")
LIBDIR=$(dirname "$SELF")/nspawn
BASE=/var/tmp/k8s-e2e-nspawn         # plain ext4: overlay upper dirs and containerd need a real fs
SUITE=bookworm
ROOTFS_DIR=$BASE/rootfs-$SUITE        # one subdir per package-list key
CLDIR=$BASE/clusters
LOCKDIR=$BASE/locks
CG=k8s-e2e-nspawn                     # cgroups: <every hierarchy>/k8s-e2e-nspawn/CLUSTER/NAME
BR=br0                                # the bridge, inside CLUSTER-ws
PKGS=systemd,systemd-sysv,dbus,openssh-server,openssh-sftp-server,iproute2,iptables,procps,ca-certificates,sudo,iputils-ping
BINDS=${NSPAWN_BINDS-/var/lib/k8s /var/lib/kubelet /var/lib/containerd /var/lib/etcd}
BOOT_TIMEOUT=${NSPAWN_BOOT_TIMEOUT:-180}
STOP_TIMEOUT=${NSPAWN_STOP_TIMEOUT:-30}
INIT=/usr/lib/k8s-e2e/init            # inside the hosts
USERS="root debian pwsudo"
HOST_KEYS=${NSPAWN_HOST_KEYS:-ed25519 ecdsa}

log() { echo "nspawn: $*" >&2; }
die() { log "error: $*"; exit 1; }
usage() { sed -n '2,/^if \[ -n/p' "$SELF" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
ms() { date +%s%3N; }
since() { local d=$(( $(ms) - $1 )); printf '%d.%d s' $((d / 1000)) $((d % 1000 / 100)); }   # since T0_MS

# ---------------------------------------------------------------- names, state
check_cluster() {
  [[ ${1:-} =~ ^[a-z][a-z0-9-]{0,19}$ ]] || die "cluster name must match [a-z][a-z0-9-]{0,19}: '${1:-}'"
  CL=$1; STATE=$CLDIR/$CL; WS=$CL-ws; NS=/run/netns/$WS
}
load_state() {
  check_cluster "$1"
  [ -f "$STATE/env" ] || die "cluster $CL is not up (no $STATE/env)"
  # shellcheck disable=SC1091
  . "$STATE/env"   # K N NET ROOTFS
}
host_name() {      # I | NAME -> NAME
  case $1 in
    ''|*[!0-9]*) [ -d "$STATE/hosts/$1" ] || die "no host $1 in $CL"; echo "$1" ;;
    *) [ "$1" -ge 1 ] && [ "$1" -le "$N" ] || die "host index $1 is not in 1..$N"; echo "$CL-$1" ;;
  esac
}
host_ip() { echo "$NET.$((10 + ${1##*-}))"; }
all_hosts() { local i; for ((i = 1; i <= N; i++)); do echo "$CL-$i"; done; }
lock_cluster() { mkdir -p "$LOCKDIR"; exec 8>"$LOCKDIR/$CL"; flock 8; }

# ---------------------------------------------------------------- processes
starttime() { local s; read -r s 2>/dev/null <"/proc/$1/stat" || return 1; s=${s##*) }; set -- $s; echo "${20}"; }
running() { local s; read -r s 2>/dev/null <"/proc/$1/stat" || return 1; s=${s##*) }; [ "${s:0:1}" != Z ]; }
read_pidfile() {   # FILE -> PID, if that process (same start time: no reused PID) is still running
  local p s
  [ -f "$1" ] && read -r p s <"$1" 2>/dev/null && [ -n "${p:-}" ] && [ "$(starttime "$p" 2>/dev/null)" = "$s" ] &&
    running "$p" && echo "$p"
}
nspawn_pid() { read_pidfile "$STATE/hosts/$1/nspawn.pid"; }
leader_pid() { read_pidfile "$STATE/hosts/$1/leader.pid"; }
ancestors() {      # " PID PPID ... ": never kill ourselves or whoever called us
  local p=$$ s out=" "
  while [ "${p:-0}" -gt 1 ]; do
    out="$out$p "; read -r s 2>/dev/null <"/proc/$p/stat" || break; s=${s##*) }; set -- $s; p=$2
  done
  echo "$out"
}
wait_gone() {      # PID SECONDS
  local i
  for ((i = 0; i < $2 * 10; i++)); do running "$1" || return 0; sleep 0.1; done
  return 1
}

# ---------------------------------------------------------------- cgroups
cg_hierarchies() { findmnt -rn -t cgroup,cgroup2 -o TARGET | grep '^/sys/fs/cgroup/'; }
cg_enter() {       # NAME PID: put PID into <hierarchy>/k8s-e2e-nspawn/CLUSTER/NAME in every hierarchy
  local h d c
  for h in $(cg_hierarchies); do
    d=$h
    for c in "$CG" "$CL" "$1"; do
      d=$d/$c
      mkdir "$d" 2>/dev/null || [ -d "$d" ]
      if [ -f "$d/cpuset.cpus" ]; then   # a new cpuset has no cpus/mems, and no task may join it then
        [ -n "$(cat "$d/cpuset.cpus")" ] || cat "${d%/*}/cpuset.cpus" >"$d/cpuset.cpus"
        [ -n "$(cat "$d/cpuset.mems")" ] || cat "${d%/*}/cpuset.mems" >"$d/cpuset.mems"
      fi
    done
    echo "$2" >"$d/cgroup.procs"
  done
}
cg_dirs() {        # [NAME]: the host's (or the whole cluster's) cgroup dirs that exist
  local h
  for h in $(cg_hierarchies); do [ -d "$h/$CG/$CL${1:+/$1}" ] && echo "$h/$CG/$CL${1:+/$1}"; done
  return 0
}
cg_pids() {        # [NAME]: every PID in those cgroups, any depth
  local d
  for d in $(cg_dirs "${1:-}"); do find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null; done | sort -un
}
cg_thaw() {        # [NAME]: a frozen task (runc freezes while it updates cgroups) ignores SIGKILL until thawed
  local d f
  for d in $(cg_dirs "${1:-}"); do
    [ -f "$d/freezer.state" ] || continue
    find "$d" -name freezer.state | while read -r f; do echo THAWED >"$f" 2>/dev/null || true; done
  done
  return 0
}
cg_kill() {        # [NAME]: SIGKILL everything in those cgroups until nothing is left
  local i p q anc; anc=$(ancestors)
  for ((i = 0; i < 100; i++)); do
    cg_thaw "${1:-}"
    q=""
    for p in $(cg_pids "${1:-}"); do
      case "$anc" in *" $p "*) continue ;; esac
      running "$p" && q="$q $p"
    done
    [ -z "$q" ] && return 0
    kill -KILL $q 2>/dev/null || true
    sleep 0.05
  done
  log "warning: processes survive SIGKILL:$q"
}
cg_remove() {      # [NAME]: rmdir the cgroups deepest first (retry: a cgroup empties a moment after its tasks die)
  local i d h
  for ((i = 0; i < 50; i++)); do
    for d in $(cg_dirs "${1:-}"); do find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true; done
    [ -z "$(cg_dirs "${1:-}")" ] && break
    cg_thaw "${1:-}"; sleep 0.1
  done
  [ -z "$(cg_dirs "${1:-}")" ] || log "warning: cannot remove cgroups: $(cg_dirs "${1:-}" | tr '\n' ' ')"
  if [ -z "${1:-}" ]; then for h in $(cg_hierarchies); do rmdir "$h/$CG" 2>/dev/null || true; done; fi
  return 0
}

# ---------------------------------------------------------------- rootfs
mirror() {
  local f m=${NSPAWN_MIRROR:-}
  if [ -z "$m" ]; then
    for f in /etc/apt/sources.list.d/*.sources; do
      [ -f "$f" ] || continue
      m=$(awk -v RS= -v s="$SUITE" '$0 ~ ("Suites:[^\n]*[ \t]" s "([ \t\n]|$)") && $0 !~ /Enabled:[ \t]*no/ {
            if (match($0, /URIs:[ \t]*[^ \t\n]+/)) { u = substr($0, RSTART, RLENGTH); sub(/URIs:[ \t]*/, "", u); print u; exit } }' "$f")
      [ -n "$m" ] && break
    done
  fi
  if [ -z "$m" ] && [ -f /etc/apt/sources.list ]; then
    m=$(sed 's/\[[^]]*\]//' /etc/apt/sources.list | awk -v s="$SUITE" '$1 == "deb" && $3 == s { print $2; exit }')
  fi
  echo "${m:-http://deb.debian.org/debian}"
}
all_pkgs() { echo "$PKGS${NSPAWN_EXTRA_PKGS:+,$NSPAWN_EXTRA_PKGS}"; }
rootfs_path() {    # the cache key: suite, package list and the customization below
  local key
  key=$({ echo "$SUITE $(all_pkgs)"; declare -f customize_rootfs; } | sha256sum | cut -c1-12)
  echo "$ROOTFS_DIR/$key"
}
need_tools() {     # the machine's side: debootstrap and systemd-nspawn (Debian packages)
  local missing=""
  command -v debootstrap >/dev/null || missing="$missing debootstrap"
  command -v systemd-nspawn >/dev/null || missing="$missing systemd-container"
  command -v ssh-keygen >/dev/null && command -v ssh >/dev/null || missing="$missing openssh-client"
  [ -z "$missing" ] && return 0
  mkdir -p "$BASE"
  log "installing$missing (apt-get)"
  # --no-install-recommends: systemd-container recommends libnss-mymachines, which would edit nsswitch.conf
  { apt-get install -y --no-install-recommends $missing || { apt-get update && apt-get install -y --no-install-recommends $missing; }; } \
    >"$BASE/apt.log" 2>&1 || { tail -20 "$BASE/apt.log" >&2; die "cannot install$missing (log: $BASE/apt.log)"; }
}
build_rootfs() {   # sets ROOTFS
  ROOTFS=$(rootfs_path)
  [ -f "$ROOTFS/.k8s-e2e-complete" ] && return 0
  mkdir -p "$ROOTFS_DIR"
  need_tools
  (
    flock 9
    [ -f "$ROOTFS/.k8s-e2e-complete" ] && exit 0
    tmp=$ROOTFS.tmp; rm -rf --one-file-system "$tmp" "$ROOTFS"
    m=$(mirror); t0=$SECONDS
    log "building $ROOTFS: debootstrap $SUITE from $m (a minute or two, once)"
    if ! debootstrap --variant=minbase --include="$(all_pkgs)" "$SUITE" "$tmp" "$m" >"$ROOTFS_DIR/debootstrap.log" 2>&1; then
      tail -20 "$ROOTFS_DIR/debootstrap.log" >&2; die "debootstrap failed (log: $ROOTFS_DIR/debootstrap.log)"
    fi
    customize_rootfs "$tmp"
    all_pkgs >"$tmp/.k8s-e2e-complete"
    mv "$tmp" "$ROOTFS"
    log "rootfs built in $((SECONDS - t0)) s ($(du -sh "$ROOTFS" | cut -f1))"
    prune_rootfs
  ) 9>"$ROOTFS_DIR/.lock"
}
prune_rootfs() {   # drop caches of other keys that no cluster uses
  local d used
  used=$(cat "$CLDIR"/*/env 2>/dev/null | sed -n 's/^ROOTFS=//p' || true)
  for d in "$ROOTFS_DIR"/*/; do
    d=${d%/}
    [ "$d" = "$ROOTFS" ] || [ ! -d "$d" ] && continue
    grep -qxF "$d" <<<"$used" && continue
    log "removing the old rootfs cache $d"; rm -rf --one-file-system "$d"
  done
}
customize_rootfs() {   # runs once per cache key; per-host identity goes into each host's upper dir instead
  local r=$1 u
  rm -f "$r"/etc/ssh/ssh_host_*
  : >"$r/etc/machine-id"
  mkdir -p "$r/var/lib/dbus"; ln -sf /etc/machine-id "$r/var/lib/dbus/machine-id"
  rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/lib/apt/lists/*
  systemctl --root="$r" enable systemd-networkd.service >/dev/null 2>&1
  # nobody types on the console; nothing to download (no network out); keep the hosts quiet
  systemctl --root="$r" mask console-getty.service apt-daily.timer apt-daily-upgrade.timer \
    dpkg-db-backup.timer e2scrub_all.timer fstrim.timer >/dev/null 2>&1 || true
  mkdir -p "$r/etc/ssh/sshd_config.d" "$r/etc/ssh/authorized_keys" "$r/etc/systemd/journald.conf.d"
  # /dev/kmsg is the whole machine's kernel log (bound in for kubelet): keep it out of every host's journal
  printf '[Journal]\nReadKMsg=no\nSystemMaxUse=64M\n' >"$r/etc/systemd/journald.conf.d/10-k8s-e2e.conf"
  # Keys of the test in /etc/ssh/authorized_keys/USER (per host, in its upper dir); ~/.ssh/authorized_keys works too
  printf '%s\n' 'PermitRootLogin prohibit-password' 'PasswordAuthentication no' 'KbdInteractiveAuthentication no' \
    'UseDNS no' 'AuthorizedKeysFile .ssh/authorized_keys /etc/ssh/authorized_keys/%u' \
    >"$r/etc/ssh/sshd_config.d/10-k8s-e2e.conf"
  # debian: sudo without a password (like cloud images); pwsudo: sudo asks for its password "pwsudo"
  for u in debian pwsudo; do chroot "$r" useradd --create-home --shell /bin/bash --user-group "$u"; done
  echo 'pwsudo:pwsudo' | chroot "$r" chpasswd
  echo 'debian ALL=(ALL:ALL) NOPASSWD: ALL' >"$r/etc/sudoers.d/10-debian"
  echo 'pwsudo ALL=(ALL:ALL) ALL' >"$r/etc/sudoers.d/10-pwsudo"
  chmod 440 "$r"/etc/sudoers.d/10-*
}

# ---------------------------------------------------------------- hosts
prepare_host() {   # NAME: identity, network, keys and the init wrapper in the host's own upper dir
  local name=$1 hd=$STATE/hosts/$1 u ip b i t
  u=$hd/upper; ip=$(host_ip "$name")
  mkdir -p "$hd/work" "$hd/root" "$u/etc/ssh/authorized_keys" "$u/etc/ssh/sshd_config.d" "$u/etc/systemd/network" "$u${INIT%/*}"
  for b in $BINDS; do mkdir -p "$hd/disk$b"; done
  install -m 755 "$LIBDIR/init" "$u$INIT"
  echo "$name" >"$u/etc/hostname"
  od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$u/etc/machine-id"; echo >>"$u/etc/machine-id"
  echo "nameserver $NET.1" >"$u/etc/resolv.conf"   # nothing answers there: lookups fail fast and stay inside
  {
    printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n'
    printf '%s.1\t%s\n' "$NET" "$WS"
    for ((i = 1; i <= N; i++)); do printf '%s.%s\t%s\n' "$NET" $((10 + i)) "$CL-$i"; done
  } >"$u/etc/hosts"
  cat >"$u/etc/systemd/network/10-host0.network" <<EOF
[Match]
Name=host0

[Network]
Address=$ip/24
Gateway=$NET.1
LinkLocalAddressing=no
IPv6AcceptRA=no
EOF
  for t in $USERS; do install -m 644 "$STATE/id_ed25519.pub" "$u/etc/ssh/authorized_keys/$t"; done
  # host keys: only these types (RSA costs 0.5-2 s per host); HostKey lines, so sshd does not look for the others
  : >"$u/etc/ssh/sshd_config.d/05-k8s-e2e-hostkeys.conf"
  for t in $HOST_KEYS; do
    ssh-keygen -q -t "$t" -N '' -C "root@$name" -f "$u/etc/ssh/ssh_host_${t}_key"
    echo "HostKey /etc/ssh/ssh_host_${t}_key" >>"$u/etc/ssh/sshd_config.d/05-k8s-e2e-hostkeys.conf"
    echo "$name,$ip $(cut -d' ' -f1,2 "$u/etc/ssh/ssh_host_${t}_key.pub")"
  done >"$hd/known_hosts"
}

launch_host() {    # NAME: boot in the background; returns once the host's PID 1 is known
  local name=$1 hd=$STATE/hosts/$1 i p c launcher
  rm -f "$hd/nspawn.pid" "$hd/leader.pid"
  echo "=== boot $(date -Is)" >>"$hd/console.log"
  setsid nsenter --net="$NS" -- unshare --mount --propagation private -- bash "$SELF" _boot "$CL" "$name" \
    </dev/null >>"$hd/console.log" 2>&1 8>&- &
  launcher=$!
  for ((i = 0; i < 300; i++)); do
    if p=$(nspawn_pid "$name"); then
      for c in $(ps -o pid= --ppid "$p" 2>/dev/null); do
        if grep -qE '^NSpid:[[:space:]]+[0-9]+[[:space:]]+1$' "/proc/$c/status" 2>/dev/null; then
          echo "$c $(starttime "$c")" >"$hd/leader.pid"; return 0
        fi
      done
    elif ! running "$launcher"; then
      break
    fi
    sleep 0.1
  done
  tail -20 "$hd/console.log" >&2; die "$name did not start (console: $hd/console.log)"
}

boot_inner() {     # runs as: nsenter --net=CLUSTER-ws unshare --mount --propagation private nspawn.sh _boot CL NAME
  load_state "$1"; local name=$2 hd=$STATE/hosts/$2 b args=()
  cg_enter "$name" $$
  # our private copy of /run/netns would pin the other namespaces (and the ws netns) after they are deleted
  umount -l /run/netns 2>/dev/null || true
  mount -t overlay overlay -o "lowerdir=$ROOTFS,upperdir=$hd/upper,workdir=$hd/work" "$hd/root"
  for b in $BINDS; do args+=("--bind=$hd/disk$b:$b"); done
  [ -c /dev/kmsg ] && args+=("--bind-ro=/dev/kmsg")   # kubelet's OOM watcher reads it
  echo "$$ $(starttime $$)" >"$hd/nspawn.pid"
  # Not --boot: PID 1 is the init wrapper, which execs systemd. SIGTERM to nspawn -> SIGRTMIN+4 to it = clean power-off.
  # No machined here: --register=no --keep-unit. The hosts share the machine's user namespace (--private-users=no).
  exec env -u SYSTEMD_NSPAWN_API_VFS_WRITABLE systemd-nspawn --quiet --directory="$hd/root" --machine="$name" \
    --hostname="$name" --kill-signal=SIGRTMIN+4 --register=no --keep-unit --console=read-only \
    --link-journal=no --resolv-conf=off --timezone=off --private-users=no --capability=all \
    --system-call-filter=@keyring --network-bridge="$BR" "${args[@]}" "$INIT"
}

ssh_ok() { nsenter --net="$NS" -- ssh -F "$STATE/ssh_config" -o ConnectTimeout=2 "$1" true </dev/null >/dev/null 2>&1; }
wait_ssh() {       # NAME...: wait until every host answers ssh (from the ws netns)
  local name t0=$SECONDS
  for name in "$@"; do
    until ssh_ok "$name"; do
      if ! nspawn_pid "$name" >/dev/null; then
        tail -30 "$STATE/hosts/$name/console.log" >&2; die "$name exited while booting (console: $STATE/hosts/$name/console.log)"
      fi
      [ $((SECONDS - t0)) -lt "$BOOT_TIMEOUT" ] || {
        tail -30 "$STATE/hosts/$name/console.log" >&2; die "$name: no ssh after $BOOT_TIMEOUT s"; }
      sleep 0.2
    done
  done
}

stop_hosts() {     # graceful|hard NAME...: stop these hosts together
  local mode=$1 name hd p; shift
  if [ "$mode" = graceful ]; then
    for name in "$@"; do p=$(nspawn_pid "$name") && kill -TERM "$p" 2>/dev/null || true; done
    for name in "$@"; do
      p=$(nspawn_pid "$name") || continue
      wait_gone "$p" "$STOP_TIMEOUT" || log "$name: no clean halt in $STOP_TIMEOUT s, killing it"
    done
  fi
  # SIGKILL to the host's PID 1 makes the kernel kill its whole PID namespace; nspawn then exits by itself
  for name in "$@"; do p=$(leader_pid "$name") && kill -KILL "$p" 2>/dev/null || true; done
  for name in "$@"; do
    hd=$STATE/hosts/$name
    if p=$(nspawn_pid "$name"); then wait_gone "$p" 10 || kill -KILL "$p" 2>/dev/null || true; fi
    cg_kill "$name"   # anything left (`exec` processes outside the PID namespace, a stuck nspawn)
    rm -f "$hd/nspawn.pid" "$hd/leader.pid"
    cg_remove "$name"
    # nspawn cannot remove this itself when /run is not a tmpfs (as here); it is empty once the host is gone
    rmdir "/run/systemd/nspawn/propagate/$name" 2>/dev/null || true
  done
}

# ---------------------------------------------------------------- commands
cmd_up() {
  [ $# -eq 2 ] || usage
  [ "$(id -u)" = 0 ] || die "must run as root"
  check_cluster "$1"; N=$2
  [[ $N =~ ^[0-9]+$ ]] && [ "$N" -ge 1 ] && [ "$N" -le 200 ] || die "N must be 1..200: '$N'"
  local t0 i name p pids=() k used
  t0=$(ms)
  mkdir -p "$CLDIR"
  need_tools
  build_rootfs
  lock_cluster
  if [ -e "$STATE" ] || [ -e "$NS" ] || [ -n "$(cg_dirs)" ]; then log "$CL: removing stale state first"; down_locked; fi
  # K: the lowest third octet no other live cluster uses (only for readable logs: each cluster's net is private)
  (
    flock 9
    k=${NSPAWN_K:-}
    if [ -z "$k" ]; then
      used=$(cat "$CLDIR"/*/env 2>/dev/null | sed -n 's/^K=//p' || true)
      for ((k = 0; k < 256; k++)); do grep -qxF "$k" <<<"$used" || break; done
    fi
    [[ $k =~ ^[0-9]+$ ]] && [ "$k" -le 255 ] || die "NSPAWN_K must be 0..255: '$k'"
    mkdir -p "$STATE/hosts"
    printf 'K=%s\nN=%s\nNET=10.98.%s\nROOTFS=%s\n' "$k" "$N" "$k" "$ROOTFS" >"$STATE/env"
  ) 9>"$CLDIR/.lock"
  load_state "$CL"
  trap 'rc=$?; if [ $rc -ne 0 ]; then log "up $CL failed; cleaning up (NSPAWN_KEEP=1 keeps the logs)"; down_locked; fi; exit $rc' EXIT
  ssh-keygen -q -t ed25519 -N '' -C "k8s-e2e@$CL" -f "$STATE/id_ed25519"

  # network: the bridge lives in the workstation netns; /proc/sys/net there is that netns' own
  [ -e /run/netns ] && findmnt -rn /run/netns >/dev/null || { mkdir -p "$BASE/run"; touch "$BASE/run/netns-mount-created"; }
  ip netns add "$WS"
  ip -n "$WS" link set lo up
  ip -n "$WS" link add "$BR" type bridge
  ip -n "$WS" addr add "$NET.1/24" dev "$BR"
  ip -n "$WS" link set "$BR" up

  : >"$STATE/hosts.txt"; : >"$STATE/ssh_config"
  for name in $(all_hosts); do
    echo "$name $(host_ip "$name")" >>"$STATE/hosts.txt"
    printf 'Host %s\n  HostName %s\n' "$name" "$(host_ip "$name")" >>"$STATE/ssh_config"
    prepare_host "$name" & pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || die "preparing a host failed"; done
  cat "$STATE"/hosts/*/known_hosts >"$STATE/known_hosts"
  cat >>"$STATE/ssh_config" <<EOF
Host *
  User root
  IdentityFile $STATE/id_ed25519
  IdentitiesOnly yes
  UserKnownHostsFile $STATE/known_hosts
  StrictHostKeyChecking yes
  BatchMode yes
  ConnectTimeout 5
  ServerAliveInterval 10
  LogLevel ERROR
EOF
  mkdir -p "$STATE/home"; mkdir -m 700 "$STATE/home/.ssh"
  ln -s ../../ssh_config "$STATE/home/.ssh/config"
  ln -s ../../known_hosts "$STATE/home/.ssh/known_hosts"
  ln -s ../../id_ed25519 "$STATE/home/.ssh/id_ed25519"
  ln -s ../../id_ed25519.pub "$STATE/home/.ssh/id_ed25519.pub"
  local t1; t1=$(ms)
  for name in $(all_hosts); do launch_host "$name"; done
  # shellcheck disable=SC2046
  wait_ssh $(all_hosts)
  trap - EXIT
  log "$CL: all $N hosts answer ssh; up took $(since "$t0") (boot to ssh: $(since "$t1")); state: $STATE"
  cat "$STATE/hosts.txt"
}

cmd_ws() {
  [ $# -ge 2 ] || usage
  load_state "$1"; shift
  [ -e "$NS" ] || die "the workstation netns $WS is gone"
  export K8S_E2E_NSPAWN_STATE=$STATE
  exec nsenter --net="$NS" -- "$@"
}

cmd_ssh() {
  [ $# -ge 2 ] || usage
  load_state "$1"; local target=$2 user="" name; shift 2
  case $target in *@*) user=${target%%@*}; target=${target#*@} ;; esac
  name=$(host_name "$target")
  exec nsenter --net="$NS" -- ssh -F "$STATE/ssh_config" ${user:+-l "$user"} "$name" "$@"
}

cmd_exec() {
  [ $# -ge 3 ] || usage
  load_state "$1"; local name p; name=$(host_name "$2"); shift 2
  p=$(leader_pid "$name") || die "$name is not running"
  # a clean environment, like a login; the process is in the host's PID namespace, so it dies with the host
  exec nsenter -t "$p" -a -- env -i -C / HOME=/root LANG=C.UTF-8 TERM="${TERM:-dumb}" \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"
}

cmd_push() {
  [ $# -ge 3 ] || usage
  load_state "$1"; local src=$2 dest=$3 mode name names=() p rc=0; shift 3
  [ -f "$src" ] || die "not a file: $src"
  [[ $dest == /* ]] || die "DEST must be an absolute path inside the hosts: $dest"
  mode=$(stat -L -c %a "$src")
  if [ $# -gt 0 ]; then for p in "$@"; do names+=("$(host_name "$p")"); done
  else for name in $(all_hosts); do nspawn_pid "$name" >/dev/null && names+=("$name"); done; fi
  [ ${#names[@]} -gt 0 ] || die "no running host in $CL"
  for name in "${names[@]}"; do
    p=$(leader_pid "$name") || { log "$name is not running: not copied"; rc=1; continue; }
    # write a temp file and rename it: replacing a running binary works, and readers never see half a file
    nsenter -t "$p" -m -- sh -c 'd=${1%/*}; mkdir -p "${d:-/}" && cat >"$1.push-tmp" && chmod "$2" "$1.push-tmp" &&
      mv -f "$1.push-tmp" "$1"' push "$dest" "$mode" <"$src" || { log "$name: copying to $dest failed"; rc=1; }
  done
  return $rc
}

cmd_stop() {       # graceful|hard CLUSTER I
  [ $# -eq 3 ] || usage
  load_state "$2"; local name; name=$(host_name "$3")
  lock_cluster
  stop_hosts "$1" "$name"
}

cmd_start() {
  [ $# -eq 2 ] || usage
  load_state "$1"; local name t0; name=$(host_name "$2")
  lock_cluster
  ! nspawn_pid "$name" >/dev/null || die "$name is already running"
  [ -e "$NS" ] || die "the workstation netns $WS is gone"
  t0=$(ms)
  stop_hosts hard "$name"   # leftovers of a host that died by itself
  launch_host "$name"
  wait_ssh "$name"
  log "$name answers ssh ($(since "$t0"))"
}

cmd_status() {
  [ $# -eq 1 ] || usage
  load_state "$1"; local name ip p m mem rss
  while read -r name ip; do
    if p=$(leader_pid "$name"); then
      mem=-; rss=-
      m=$(findmnt -rn -t cgroup -o TARGET | grep -E '/memory(,|$)' | head -1)
      if [ -n "$m" ] && [ -f "$m/$CG/$CL/$name/memory.usage_in_bytes" ]; then
        mem=$(( $(cat "$m/$CG/$CL/$name/memory.usage_in_bytes") >> 20 ))
        rss=$(( $(awk '$1 == "total_rss" { print $2 }' "$m/$CG/$CL/$name/memory.stat") >> 20 ))
      fi
      echo "$name $ip running pid=$p mem=${mem}MiB rss=${rss}MiB"
    else
      echo "$name $ip stopped"
    fi
  done <"$STATE/hosts.txt"
}

down_locked() {    # needs check_cluster and the cluster lock
  local p anc hostlist=""
  [ -d "$STATE/hosts" ] && hostlist=$(ls "$STATE/hosts")
  if [ -n "$hostlist" ]; then
    if [ -f "$STATE/env" ]; then . "$STATE/env"; fi
    # shellcheck disable=SC2086
    stop_hosts hard $hostlist
  fi
  cg_kill        # whatever is left in the cluster's cgroups (also when the state dir was lost)
  if [ -e "$NS" ]; then
    # anything else in the ws netns was started through `ws`: kill it by PID, sparing ourselves and our callers
    anc=$(ancestors)
    for p in $(ip netns pids "$WS" 2>/dev/null); do
      case "$anc" in *" $p "*) continue ;; esac
      kill -KILL "$p" 2>/dev/null || true
    done
    ip netns del "$WS"
  fi
  cg_remove
  if [ "${NSPAWN_KEEP:-0}" = 1 ] && [ -d "$STATE" ]; then
    rm -f "$STATE/env"; log "$CL: kept $STATE (NSPAWN_KEEP=1)"
  else
    rm -rf --one-file-system "$STATE"
  fi
  # once no cluster is left: what nspawn and `ip netns add` left on the machine
  if ! ls "$CLDIR"/*/env >/dev/null 2>&1; then
    rmdir /run/systemd/nspawn/propagate /run/systemd/nspawn/locks /run/systemd/nspawn 2>/dev/null || true
    if [ -f "$BASE/run/netns-mount-created" ]; then
      # a plain umount fails (EBUSY) if someone added a netns meanwhile, so this cannot break anyone else
      if [ -z "$(ls -A /run/netns 2>/dev/null)" ] && findmnt -rn /run/netns >/dev/null; then
        umount /run/netns 2>/dev/null && rmdir /run/netns 2>/dev/null || true
      fi
      rm -f "$BASE/run/netns-mount-created"; rmdir "$BASE/run" 2>/dev/null || true
    fi
  fi
}
cmd_down() {
  [ $# -eq 1 ] || usage
  check_cluster "$1"
  lock_cluster
  down_locked
  log "$CL is down"
}

cmd_dir() { [ $# -eq 1 ] || usage; load_state "$1"; echo "$STATE"; }
cmd_ip() { [ $# -eq 2 ] || usage; load_state "$1"; host_ip "$(host_name "$2")"; }
cmd_pid() { [ $# -eq 2 ] || usage; load_state "$1"; local n; n=$(host_name "$2"); leader_pid "$n" || die "$n is not running"; }

cmd_rootfs() { [ "$(id -u)" = 0 ] || die "must run as root"; build_rootfs; echo "$ROOTFS"; }
cmd_rootfs_rm() {
  local f; for f in "$CLDIR"/*/env; do [ -f "$f" ] && die "cluster $(basename "$(dirname "$f")") still uses the rootfs"; done
  rm -rf --one-file-system "$ROOTFS_DIR"
}

[ $# -ge 1 ] || usage
sub=$1; shift
case $sub in
  up) cmd_up "$@" ;;
  ws) cmd_ws "$@" ;;
  ssh) cmd_ssh "$@" ;;
  exec) cmd_exec "$@" ;;
  push) cmd_push "$@" ;;
  stop) cmd_stop graceful "$@" ;;
  kill) cmd_stop hard "$@" ;;
  start) cmd_start "$@" ;;
  status) cmd_status "$@" ;;
  down) cmd_down "$@" ;;
  dir) cmd_dir "$@" ;;
  ip) cmd_ip "$@" ;;
  pid) cmd_pid "$@" ;;
  rootfs) cmd_rootfs "$@" ;;
  rootfs-rm) cmd_rootfs_rm "$@" ;;
  _boot) boot_inner "$@" ;;
  -h|--help|help) usage ;;
  *) usage ;;
esac
