#!/usr/bin/env bash
# chaos-ha.sh: the chaos run of chaos.sh against an HA control plane: three `k8s server`s (etcd, control plane only,
# `--disable-agent`, as ha.sh) in three test hosts (e2e/lib/testhost.sh), steady API load through all three while one
# server at a time gets kill -9 of its whole k8s process tree (k8s, etcd, kube-apiserver, controller-manager,
# scheduler) at a random moment and is started again with the flags it joined with.
#
#   e2e/chaos-ha.sh                  exit 0 = every check passed, 1 = a check failed, 77 = skipped
#   CHAOS_KILLS=20 e2e/chaos-ha.sh   (make test-chaos-ha)
#
# What runs (see e2e/README.md, "Chaos run, HA"):
#   - three test hosts: the first server starts the etcd cluster (--cluster-init), the other two join it through its
#     join endpoint with the server token (--server https://S1:9345 --token-file F), one after the other;
#   - from the workstation netns (`testhost.sh ws`; the carried kubectl with the admin credentials, `--server` set per
#     request): CHAOS_WRITERS writers, each creating, replacing, patching and deleting ConfigMaps of its own in
#     namespace e2e-chaos-ha, one request at a time. Each writer SPREADS its requests over the three servers' API
#     addresses, round robin (request SEQ of writer W goes to server (SEQ + W) mod 3), so every server takes writes
#     from every writer; a request to the killed server fails and is logged as not sent (connection refused) or
#     unknown (anything else), as in chaos.sh. And 3 watchers, one per server (watcher N's home is server N), doing
#     what a reflector does: list, watch from the list's resourceVersion (with bookmarks), relist whenever the stream
#     ends. A watcher whose home server is down (or not yet caught up) lists and watches on the next server that
#     answers, and goes back home (a new list there) as soon as its home has caught up again;
#   - CHAOS_KILLS times: a random 2-10 s of load, then SIGSTOP + SIGKILL of the k8s process tree of one server (the
#     servers in a random order within each round of three, never the same one twice in a row, never two down at
#     once: the next kill waits until the last one caught up); start it again with the flags it joined with, and wait
#     until it has caught up: its API answers /readyz, its etcd member answers `etcdctl endpoint health` (a
#     linearizable read through that member), and `k8s etcd members` on another server shows 3 voting members.
#     Whether the killed member was the etcd leader is printed.
#
# Checks, after the last restart, with the load stopped and every server logging "k8s server ready":
#   - writes: the final state is listed through each of the three servers; the three lists must be equal, and in each
#     every ConfigMap is in the state its last acknowledged write left it in (deleted: absent; else that write's
#     content and resourceVersion), or in the outcome of a later write whose result is unknown; a name in any other
#     state counts as lost (must be 0). Every definite answer must fit the writer's own history (an AlreadyExists
#     after an acknowledged delete means a lost delete), acknowledged resourceVersions grow within each writer, and a
#     write acknowledged before another was sent (by any writer, through any server) has the smaller resourceVersion;
#   - watches: in every stream no event's resourceVersion is at or below the one before it (or below its list's);
#     every acknowledged write between a stream's list and the last resourceVersion it saw is one of its events; each
#     watcher's view (last list + its stream's events) equals the final state, both as kept by watching until the
#     end and after a final relist.
# Prints: kills (how many hit the etcd leader), restart times (start to /readyz, start to caught up), writes
# acknowledged / unknown / rejected / not sent (also per server), lost, watch events, the run time.
#
# Environment:
#   K8S_BIN=/work/main/dist/k8s    the binary under test (copied to a shared path before use)
#   K8S_SERVER_ARGS="..."          extra `k8s server` flags for every server (as for single-node.sh)
#   CHAOS_KILLS=6                  how many kill -9 + restart rounds (one server each)
#   CHAOS_WRITERS=3                concurrent writers (each owns CHAOS_NAMES ConfigMaps)
#   CHAOS_NAMES=8                  ConfigMap names per writer
#   CHAOS_PAUSE=0.1                seconds a writer waits between two requests
#   CHAOS_SEED=<random>            seed of the random choices (printed; the timing is not reproducible)
#   CHAOS_READY_TIMEOUT=180        seconds a restarted server has to catch up (/readyz, etcd health, 3 voters)
#   E2E_HOST_PREFIX=cha            test host names: PREFIX-s1, PREFIX-s2, PREFIX-s3
#   E2E_TIMEOUT=600+120*KILLS      hard limit for the whole run, in seconds
#   TESTHOST_KEEP=1                keep the hosts' disks, and the load's logs in $WORK, after the run (post-mortem)
# Needs: root, jq, python3, and Debian's etcdctl (package etcd-client, `make deps`) on the machine.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SELF=$ROOT/e2e/chaos-ha.sh
T=$ROOT/e2e/lib/testhost.sh
. "$ROOT/e2e/lib/chaos-check.sh"     # chaos_check: the checks after the run (shared with the other chaos script)

# ------------------------------------------------------------------------------------------ load (workstation side)
# These run as `testhost.sh ws chaos-ha.sh _writer N` / `_watcher N`, with the settings in the environment
# (CHAOS_WORK, CHAOS_KUBECTL, CHAOS_KUBECONFIG, CHAOS_NS, CHAOS_SERVERS = the servers' addresses, CHAOS_DEADLINE,
# ...). Files in $CHAOS_WORK steer them: stop-writers, stop-watchers, relist (a generation number: a change makes the
# watchers relist), ready-I (server I, from 0, is up and caught up: a watcher away from home I goes back).
now_s() { echo "${EPOCHREALTIME%.*}"; }
kcw() {   # one bounded kubectl request to the server at $SRV
  timeout -k 5 40 "$CHAOS_KUBECTL" --kubeconfig "$CHAOS_KUBECONFIG" --server "https://$SRV:6443" \
    --cache-dir "$KCACHE" --request-timeout=30s "$@"
}
cm_yaml() {   # NAME CONTENT WRITER
  printf 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s\ndata:\n  v: "%s"\n  writer: "%s"\n' "$1" "$2" "$3"
}

# writer N: one request at a time on its own names cm-N-0 .. cm-N-(NAMES-1), request SEQ to server (SEQ + N) mod 3.
# Log lines (writer-N.log):
#   SEQ NAME OP RESULT RV CONTENT T_SENT T_ANSWERED SERVER
# first with RESULT "pending" (before the request), then with its outcome: ack (exit 0; RV of the object written,
# "-" for a delete), rejected (AlreadyExists / NotFound: a definite answer, nothing written), down (connection
# refused: never sent), unknown (any other failure). CONTENT is the data.v written ("-" for a delete). SERVER is
# the index (from 0) of the server the request went to. The outcome is read from kubectl's own error lines, not from
# klog's warnings (a refused discovery followed by a write that was sent and failed otherwise is unknown, not down).
writer() {
  local w=$1 log=$CHAOS_WORK/writer-$1.log errlog=$CHAOS_WORK/writer-$1.err errf=$CHAOS_WORK/writer-$1.tmp
  local seq name op out rc res rv content t0 t1 r e srv nsrv
  local -a ips
  local -A state=()
  local ops=(create replace patch delete)
  read -r -a ips <<<"$CHAOS_SERVERS"
  nsrv=${#ips[@]}
  KCACHE=$CHAOS_WORK/kcache/writer-$w
  RANDOM=$((CHAOS_SEED + w))
  for ((seq = 1; seq <= CHAOS_MAX_WRITES; seq++)); do
    [ -e "$CHAOS_WORK/stop-writers" ] && break
    [ "$(now_s)" -lt "$CHAOS_DEADLINE" ] || break
    name=cm-$w-$((RANDOM % CHAOS_NAMES))
    case ${state[$name]:-absent} in
      absent) op=create ;;
      present) r=$((RANDOM % 10)); if ((r < 4)); then op=replace; elif ((r < 7)); then op="patch"; else op="delete"; fi ;;
      *) op=${ops[RANDOM % 4]} ;;
    esac
    content=w$w-$seq; [ "$op" = delete ] && content=-
    srv=$(((seq + w) % nsrv)); SRV=${ips[srv]}
    t0=$EPOCHREALTIME
    echo "$seq $name $op pending - $content $t0 - $srv" >>"$log"
    case $op in
      create|replace)
        out=$(cm_yaml "$name" "$content" "$w" | kcw -n "$CHAOS_NS" "$op" -f - -o 'jsonpath={.metadata.resourceVersion}' 2>"$errf") ;;
      patch)
        out=$(kcw -n "$CHAOS_NS" patch configmap "$name" --type merge -p "{\"data\":{\"v\":\"$content\"}}" \
          -o 'jsonpath={.metadata.resourceVersion}' 2>"$errf") ;;
      delete)
        out=$(kcw -n "$CHAOS_NS" delete configmap "$name" --wait=false 2>"$errf") ;;
    esac
    rc=$?; t1=$EPOCHREALTIME
    rv=-
    if [ "$rc" = 0 ]; then
      res=ack
      if [ "$op" = delete ]; then state[$name]=absent; else state[$name]=present; rv=${out:-?}; fi
    else
      # kubectl's own message (klog lines "E1205 12:00:00.000000 ..." are warnings along the way, e.g. discovery)
      e=$(grep -v '^[EWI][0-9]\{4\} ' "$errf" | tr '\n' ' ' | cut -c1-400)
      [ -n "$e" ] || e="rc=$rc, no message: $(tr '\n' ' ' <"$errf" | cut -c1-300)"
      case $e in
        *"(AlreadyExists)"*) res=rejected; state[$name]=present ;;
        *"(NotFound)"*) res=rejected; state[$name]=absent ;;
        *"connect: connection refused"*|*"was refused - did you specify"*) res=down ;;
        *) res=unknown; state[$name]=unknown ;;
      esac
      echo "$seq srv=$srv rc=$rc $res: $e" >>"$errlog"
    fi
    echo "$seq $name $op $res $rv $content $t0 $t1 $srv" >>"$log"
    case $res in
      down) sleep 0.5 ;;
      unknown) sleep 0.3 ;;
      *) sleep "$CHAOS_PAUSE" ;;
    esac
  done
  rm -f "$errf"
}

# watcher N (home: server N-1): list, watch from the list's resourceVersion (with bookmarks), relist when the stream
# ends (or when told to). The list goes to the home server if it is caught up (ready-HOME), else to the next ones in
# turn; the watch goes where the list went. Away from home, the stream is ended as soon as home is caught up again.
# Files in watch-N/: list-K.json, stream-K.jsonl (the raw watch events), and log:
#   LIST K RV GEN TIME SERVER  the K-th successful list, at RV, under relist generation GEN, through SERVER (from 0)
#   END K RC WHY TIME          its stream ended: WHY = ended (by itself: server gone, timeout, error), relist, home
#                              (went back to its home server), stop, deadline
watcher() {
  local w=$1 d=$CHAOS_WORK/watch-$1 n=0 a rv gen g wpid rc why home srv s i order nsrv
  local -a ips
  read -r -a ips <<<"$CHAOS_SERVERS"
  nsrv=${#ips[@]}
  home=$(((w - 1) % nsrv))
  mkdir -p "$d"
  KCACHE=$CHAOS_WORK/kcache/watcher-$w
  for ((a = 1; a <= CHAOS_MAX_STREAMS; a++)); do
    [ -e "$CHAOS_WORK/stop-watchers" ] && break
    [ "$(now_s)" -lt "$CHAOS_DEADLINE" ] || break
    gen=0; read -r gen 2>/dev/null <"$CHAOS_WORK/relist"
    order=""
    [ -e "$CHAOS_WORK/ready-$home" ] && order=$home
    for ((i = 1; i < nsrv; i++)); do order="$order $(((home + i) % nsrv))"; done
    [ -e "$CHAOS_WORK/ready-$home" ] || order="$order $home"
    srv=""
    for s in $order; do
      SRV=${ips[s]}
      if kcw get --raw "/api/v1/namespaces/$CHAOS_NS/configmaps" >"$d/list.tmp" 2>>"$d/err" &&
        rv=$(jq -er '.metadata.resourceVersion' "$d/list.tmp" 2>>"$d/err"); then
        srv=$s
        break
      fi
    done
    if [ -z "$srv" ]; then sleep 1; continue; fi
    n=$((n + 1))
    mv "$d/list.tmp" "$d/list-$n.json"
    echo "LIST $n $rv $gen $EPOCHREALTIME $srv" >>"$d/log"
    SRV=${ips[srv]}
    "$CHAOS_KUBECTL" --kubeconfig "$CHAOS_KUBECONFIG" --server "https://$SRV:6443" --cache-dir "$KCACHE" get --raw \
      "/api/v1/namespaces/$CHAOS_NS/configmaps?watch=1&resourceVersion=$rv&allowWatchBookmarks=true" \
      >"$d/stream-$n.jsonl" 2>"$d/stream-$n.err" </dev/null &
    wpid=$!
    why=ended
    while kill -0 "$wpid" 2>/dev/null; do
      if [ -e "$CHAOS_WORK/stop-watchers" ]; then why=stop; break; fi
      g=0; read -r g 2>/dev/null <"$CHAOS_WORK/relist"
      if [ "$g" != "$gen" ]; then why=relist; break; fi
      if [ "$srv" != "$home" ] && [ -e "$CHAOS_WORK/ready-$home" ]; then why=home; break; fi
      if [ "$(now_s)" -ge "$CHAOS_DEADLINE" ]; then why=deadline; break; fi
      sleep 0.2
    done
    [ "$why" = ended ] || kill "$wpid" 2>/dev/null
    wait "$wpid"; rc=$?
    echo "END $n $rc $why $EPOCHREALTIME" >>"$d/log"
    [ "$why" = ended ] && sleep 0.5
  done
}

case ${1:-} in
  _writer) writer "$2"; exit 0 ;;
  _watcher) watcher "$2"; exit 0 ;;
esac

# ------------------------------------------------------------------------------------------ settings
PREFIX=${E2E_HOST_PREFIX:-cha}
HOSTS=("$PREFIX-s1" "$PREFIX-s2" "$PREFIX-s3")
NSRV=${#HOSTS[@]}
K8S_BIN=${K8S_BIN:-$ROOT/dist/k8s}
SERVER_ARGS=${K8S_SERVER_ARGS:-}
KILLS=${CHAOS_KILLS:-6}
WRITERS=${CHAOS_WRITERS:-3}
WATCHERS=$NSRV                         # one per server
NAMES=${CHAOS_NAMES:-8}
SEED=${CHAOS_SEED:-$(( $(od -An -N2 -tu2 /dev/urandom) ))}
RESTART_READY_TIMEOUT=${CHAOS_READY_TIMEOUT:-180}
READY_TIMEOUT=300                      # each first start / join, and every server's "k8s server ready" at the end
TOTAL_TIMEOUT=${E2E_TIMEOUT:-$((600 + 120 * KILLS))}
WORK=/var/tmp/k8s-e2e-chaos-ha.$PREFIX # shared with the hosts (/var/tmp is the machine's): binary, logs, files
BIN=$WORK/bin/k8s
NS=e2e-chaos-ha                        # the test's own namespace
T0=$(date +%s)
DEADLINE=$((T0 + TOTAL_TIMEOUT))
FAILS=0
FAILED_CHECKS=()
SPID=()                                # per server (index from 0): PID of its running `k8s server` (our child)
SLOG=()                                # per server: log of its current start
SARGS=()                               # per server: the flags it started (joined) with
NSTART=()                              # per server: how many starts
IP=()
HDISK=()
LOAD_PIDS=()                           # watchers, then writers (each its own process group)
RESTART_MS=()                          # start → /readyz after each kill
CATCHUP_MS=()                          # start → caught up (readyz, etcd health, 3 voters) after each kill
DONE_KILLS=0
LEADER_KILLS=0

# ------------------------------------------------------------------------------------------ output
. "$ROOT/e2e/lib/report.sh"           # ts say step ok fail die noansi indent

# ------------------------------------------------------------------------------------------ preconditions
[ "$(id -u)" = 0 ] || { echo "chaos-ha: SKIP: must run as root (test hosts need namespaces)"; exit 77; }
if [ ! -x "$K8S_BIN" ]; then
  echo "chaos-ha: SKIP: no binary at $K8S_BIN; run \`make dist\`, or set K8S_BIN (and K8S_SERVER_ARGS, see single-node.sh)"
  exit 77
fi
for c in jq python3 timeout setsid etcdctl; do
  command -v "$c" >/dev/null || { echo "chaos-ha: SKIP: $c is not installed (make deps)"; exit 77; }
done
[[ $KILLS =~ ^[0-9]+$ && $WRITERS =~ ^[1-9][0-9]*$ && $NAMES =~ ^[1-9][0-9]*$ && $SEED =~ ^[0-9]+$ ]] ||
  { echo "chaos-ha: CHAOS_KILLS, CHAOS_WRITERS, CHAOS_NAMES and CHAOS_SEED must be numbers"; exit 2; }

# ------------------------------------------------------------------------------------------ helpers
left() { echo $((DEADLINE - $(date +%s))); }
bounded() {   # timeout ${TMO:-60} s (never past the global deadline) of CMD...
  local t=${TMO:-60}
  [ "$(left)" -lt "$t" ] && t=$(left)
  [ "$t" -gt 0 ] || { echo "global timeout" >&2; return 124; }
  timeout -k 5 "$t" "$@"
}
in_host() { local i=$1; shift; bounded "$T" exec "${HOSTS[i]}" "$@"; }   # I CMD...: run CMD inside server I's host
kc_at() {     # I ARGS...: kubectl from the workstation netns, at server I's address
  local i=$1; shift
  bounded "$T" ws "$KUBECTL" --kubeconfig "$KCFG" --server "https://${IP[i]}:6443" --cache-dir "$WORK/kcache/main" \
    --request-timeout=20s "$@"
}
members_at() { TMO=${TMO:-30} in_host "$1" "$BIN" etcd members; }   # I: `k8s etcd members` on server I
voters_at() { members_at "$1" | awk 'NR > 1 && ($3 == "leader" || $3 == "voter")' | wc -l; }
role_at() {   # I J: the etcd role (leader, voter, learner) of server J's member, as server I sees it
  members_at "$1" 2>/dev/null | awk -v n="${HOSTS[$2]}" 'NR > 1 && $1 == n { print $3 }'
}
etcdctl_at() {  # I ARGS...: Debian's etcdctl on the workstation against server I's member (the apiserver's client cert)
  local i=$1; shift
  TMO=${TMO:-20} bounded "$T" ws env ETCDCTL_API=3 etcdctl --endpoints="https://${IP[i]}:2379" --dial-timeout=3s \
    --command-timeout=5s --cacert="$WORK/etcd/ca.crt" --cert="$WORK/etcd/client.crt" --key="$WORK/etcd/client.key" "$@"
}
etcd_healthy() { etcdctl_at "$1" endpoint health 2>&1 | grep -q 'is healthy'; }
api_ready() { [ "$(TMO=10 kc_at "$1" get --raw /readyz 2>/dev/null)" = ok ]; }
other() { echo $((($1 + 1) % NSRV)); }   # I: a server that is not I

# wait_until SECONDS DESCRIPTION CMD...: retry CMD (quietly) until it succeeds; 1 on timeout
wait_until() {
  local limit=$1 what=$2 end; shift 2
  end=$(($(date +%s) + limit)); [ "$end" -gt "$DEADLINE" ] && end=$DEADLINE
  while :; do
    if "$@" >/dev/null 2>&1; then return 0; fi
    [ "$(date +%s)" -ge "$end" ] && { say "timed out after ${limit}s waiting for: $what"; return 1; }
    sleep 1
  done
}

# alive PID: some thread of PID is not yet a zombie (a Go process's sockets close only after its last thread)
alive() {
  local f s
  for f in /proc/"$1"/task/*/stat; do
    read -r s 2>/dev/null <"$f" || continue
    s=${s##*) }; case ${s:0:1} in Z|X) ;; *) return 0 ;; esac
  done
  return 1
}
descendants() { # PID and all its descendants (machine-wide ps; there is no PID namespace)
  ps -e -o pid=,ppid= | awk -v root="$1" '
    { kids[$2] = kids[$2] " " $1 }
    END { q = root; while (q != "") { split(q, a, " "); q = ""; for (i in a) { print a[i]; q = q " " kids[a[i]] } } }'
}
ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
secs() { printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)); }   # MS as seconds

# ------------------------------------------------------------------------------------------ servers
launch() {      # I: start `k8s server` in server I's host, in the background, with its flags; SPID[I], SLOG[I]
  local i=$1
  NSTART[i]=$((${NSTART[i]:-0} + 1))
  SLOG[i]=$WORK/server-${HOSTS[i]}-${NSTART[i]}.log
  # setsid: no terminal signals; testhost exec and nsenter exec, so $! is the k8s process itself
  # shellcheck disable=SC2086 # the flags are words
  setsid "$T" exec "${HOSTS[i]}" "$BIN" server --disable-agent ${SARGS[i]} $SERVER_ARGS </dev/null >"${SLOG[i]}" 2>&1 &
  SPID[i]=$!
}
server_exited() {   # I WHY: server I is gone: say how, and give up
  local i=$1 rc
  wait "${SPID[i]}"; rc=$?; SPID[i]=""
  echo "--- ${SLOG[i]}"; noansi <"${SLOG[i]}" | tail -n 30 | indent
  die "k8s server on ${HOSTS[i]} (start #${NSTART[i]}) exited with code $rc $2"
}
wait_logged_ready() {   # I SECONDS T0_NS: "k8s server ready" in server I's current log within SECONDS of T0
  local i=$1
  while ! grep -q "k8s server ready" "${SLOG[i]}"; do
    alive "${SPID[i]}" || server_exited "$i" "before it logged \"k8s server ready\""
    if [ $(( $(ms_since "$3") / 1000 )) -ge "$2" ] || [ "$(left)" -le 0 ]; then
      die "k8s server on ${HOSTS[i]} (start #${NSTART[i]}) did not log \"k8s server ready\" within ${2}s"
    fi
    sleep 0.5
  done
}
# catch_up I SECONDS T0_NS: after a restart, wait until server I answers /readyz (RESTART_MS), its etcd member is
# healthy and another server lists 3 voting members (CATCHUP_MS); a server that does not come back is fatal
catch_up() {
  local i=$1 limit=$2 t0=$3 phase=readyz o v=""
  o=$(other "$i")
  while :; do
    alive "${SPID[i]}" || server_exited "$i" "while catching up (waiting for: $phase)"
    case $phase in
      readyz) if api_ready "$i"; then RESTART_MS+=("$(ms_since "$t0")"); phase=etcd; continue; fi ;;
      etcd) if etcd_healthy "$i"; then phase=voters; continue; fi ;;
      voters) v=$(voters_at "$o" 2>/dev/null); if [ "$v" = "$NSRV" ]; then CATCHUP_MS+=("$(ms_since "$t0")"); return 0; fi ;;
    esac
    if [ $(( $(ms_since "$t0") / 1000 )) -ge "$limit" ] || [ "$(left)" -le 0 ]; then
      echo "--- ${HOSTS[o]}: k8s etcd members"; TMO=20 members_at "$o" 2>&1 | indent
      echo "--- etcdctl endpoint health of ${HOSTS[i]}"; etcdctl_at "$i" endpoint health 2>&1 | indent
      die "${HOSTS[i]} (start #${NSTART[i]}) did not catch up within ${limit}s: still waiting for $phase (a server that does not come back)"
    fi
    sleep 0.5
  done
}
kill_tree() {   # I: SIGSTOP then SIGKILL of server I's k8s and every descendant; wait until every thread is gone
  local i=$1 tree more still p q rc n
  tree=$(descendants "${SPID[i]}" | sort -un | tr '\n' ' ')
  # shellcheck disable=SC2086
  kill -STOP $tree 2>/dev/null           # freeze first, so nothing restarts anything while we kill
  more=$(descendants "${SPID[i]}" | sort -un | tr '\n' ' ')   # children forked between the listing and the STOP
  # shellcheck disable=SC2086
  kill -STOP $more 2>/dev/null
  # shellcheck disable=SC2086
  tree=$(echo $tree $more | tr ' ' '\n' | sort -un | tr '\n' ' ')
  n=$(for p in $tree; do tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline" | awk '{ n = $1; sub(".*/", "", n); print n }'; done | sort | uniq -c | awk '{ printf "%s%s", sep, $2 ($1 > 1 ? " x" $1 : ""); sep = ", " }')
  # shellcheck disable=SC2086
  kill -KILL $tree 2>/dev/null
  wait "${SPID[i]}" 2>/dev/null; rc=$?
  for ((p = 0; p < 200; p++)); do
    still=""; for q in $tree; do alive "$q" && still="$still $q"; done
    [ -z "$still" ] && break; sleep 0.1
  done
  [ -z "$still" ] || die "processes survive kill -9:$still"
  SPID[i]=""
  say "  killed ${HOSTS[i]}'s k8s process tree ($(wc -w <<<"$tree") processes: $n; k8s exited with $rc)"
}

# ------------------------------------------------------------------------------------------ load control
start_load() {
  local i
  export CHAOS_WORK=$WORK CHAOS_KUBECTL=$KUBECTL CHAOS_KUBECONFIG=$KCFG CHAOS_NS=$NS CHAOS_DEADLINE=$DEADLINE
  export CHAOS_SEED=$SEED CHAOS_NAMES=$NAMES CHAOS_PAUSE=${CHAOS_PAUSE:-0.1} CHAOS_MAX_WRITES=100000 CHAOS_MAX_STREAMS=10000
  export CHAOS_SERVERS="${IP[*]}"
  export HOME=$WORK/home                 # kubectl writes nothing to the machine's home
  mkdir -p "$HOME" "$WORK/kcache"
  echo 0 >"$WORK/relist"
  rm -f "$WORK/stop-writers" "$WORK/stop-watchers"
  for ((i = 1; i <= WATCHERS; i++)); do
    setsid "$T" ws bash "$SELF" _watcher "$i" </dev/null >>"$WORK/watcher-$i.out" 2>&1 &
    LOAD_PIDS+=($!)
  done
  for ((i = 1; i <= WRITERS; i++)); do
    setsid "$T" ws bash "$SELF" _writer "$i" </dev/null >>"$WORK/writer-$i.out" 2>&1 &
    LOAD_PIDS+=($!)
  done
}
stop_group() {  # FLAGFILE SECONDS PIDS...: ask, then wait; what is still running after SECONDS is killed
  local flag=$1 limit=$2 p end; shift 2
  touch "$WORK/$flag"
  end=$(($(date +%s) + limit))
  for p in "$@"; do
    while kill -0 "$p" 2>/dev/null && [ "$(date +%s)" -lt "$end" ]; do sleep 0.2; done
    if kill -0 "$p" 2>/dev/null; then
      say "warning: load process $p did not stop within ${limit}s; killing its process group"
      kill -KILL -- -"$p" 2>/dev/null
    fi
    wait "$p" 2>/dev/null
  done
}
count_lines() { cat "$@" 2>/dev/null | wc -l; }
load_summary() {   # one line: writes so far by outcome, watch streams
  local acks unk down
  acks=$(cat "$WORK"/writer-*.log 2>/dev/null | awk '$4 == "ack"' | wc -l)
  unk=$(cat "$WORK"/writer-*.log 2>/dev/null | awk '$4 == "unknown"' | wc -l)
  down=$(cat "$WORK"/writer-*.log 2>/dev/null | awk '$4 == "down"' | wc -l)
  echo "writes: $acks acknowledged, $unk unknown, $down not sent; watch streams: $(cat "$WORK"/watch-*/log 2>/dev/null | grep -c '^LIST')"
}

# ------------------------------------------------------------------------------------------ cleanup
cleanup() {
  local rc=$? d f p i
  trap - EXIT INT TERM
  [ -n "${WATCHDOG:-}" ] && kill "$WATCHDOG" 2>/dev/null
  [ "$rc" != 0 ] && [ "$FAILS" = 0 ] && fail "aborted (exit code $rc)"
  for p in "${LOAD_PIDS[@]}"; do kill -TERM -- -"$p" 2>/dev/null; done
  if [ "$FAILS" != 0 ]; then
    echo; say "==== diagnostics"
    mkdir -p "$WORK/evidence"
    for ((i = 0; i < NSRV; i++)); do
      [ -n "${SPID[i]:-}" ] && alive "${SPID[i]}" || continue
      echo "--- ${HOSTS[i]}: k8s etcd members"; TMO=20 members_at "$i" 2>&1 | tee "$WORK/evidence/members-${HOSTS[i]}.txt" | indent
      [ -s "$WORK/etcd/client.key" ] && { etcdctl_at "$i" endpoint status -w table 2>&1 | indent; }
    done
    for ((i = 0; i < NSRV; i++)); do
      for f in $(ls -v "$WORK"/server-"${HOSTS[i]}"-*.log 2>/dev/null | tail -n 2); do
        echo "--- $f (last 30 lines)"; noansi <"$f" | tail -n 30 | indent
      done
      d=$("$T" dir "${HOSTS[i]}" 2>/dev/null)/fs/var-lib-k8s/logs
      for f in "$d"/*.log; do
        [ -f "$f" ] || continue
        [[ $f == */audit.log ]] && continue
        echo "--- ${HOSTS[i]}:/var/lib/k8s/logs/${f##*/} (last 20 lines)"; noansi <"$f" | tail -n 20 | indent
      done
      # evidence for a post-mortem: the host's component logs, as they were
      [ -d "$d" ] && cp -a "$d" "$WORK/evidence/logs-${HOSTS[i]}" 2>/dev/null
    done
    for f in "$WORK"/writer-*.err "$WORK"/watch-*/err; do
      [ -s "$f" ] || continue
      echo "--- $f (last 10 lines)"; tail -n 10 "$f" | cut -c1-300 | indent
    done
  fi
  for p in "${LOAD_PIDS[@]}"; do kill -KILL -- -"$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  for ((i = 0; i < NSRV; i++)); do   # down kills them; no "Killed" job notice from bash
    p=${SPID[i]:-}
    [ -n "$p" ] || continue
    alive "$p" && kill -TERM "$p" 2>/dev/null
    disown "$p" 2>/dev/null
  done
  say "downing test hosts"
  for h in "${HOSTS[@]}"; do "$T" down "$h" 2>&1 | indent; done
  rm -rf "${WORK:?}/bin" "${WORK:?}/kcache" "${WORK:?}/home" "${WORK:?}/etcd" "${WORK:?}/token"
  echo
  if [ "$FAILS" = 0 ]; then
    [ "${TESTHOST_KEEP:-0}" = 1 ] || rm -rf "$WORK"
    say "chaos-ha: PASS ($(($(date +%s) - T0)) s)"
    exit 0
  fi
  say "chaos-ha: FAIL: $FAILS check(s) failed ($(($(date +%s) - T0)) s); logs kept in $WORK"
  for f in "${FAILED_CHECKS[@]}"; do echo "  - $f"; done
  exit 1
}
trap cleanup EXIT
trap 'echo "[$(ts)] interrupted"; exit 130' INT
trap 'fail "global timeout: the run took more than ${TOTAL_TIMEOUT}s"; exit 124' TERM
( sleep "$TOTAL_TIMEOUT"; kill -TERM $$ 2>/dev/null ) </dev/null >/dev/null 2>&1 &
WATCHDOG=$!

# ------------------------------------------------------------------------------------------ setup
step "setup: binary $K8S_BIN, hosts ${HOSTS[*]}, $KILLS kills, $WRITERS writers x $NAMES ConfigMaps, $WATCHERS watchers, seed $SEED, time limit ${TOTAL_TIMEOUT}s"
RANDOM=$SEED
rm -rf "$WORK"; mkdir -p "$WORK/bin"
cp "$K8S_BIN" "$BIN.tmp" && mv "$BIN.tmp" "$BIN" || die "cannot copy $K8S_BIN to $BIN"
"$BIN" version 2>&1 | indent
for ((i = 0; i < NSRV; i++)); do
  "$T" up "${HOSTS[i]}" 2>&1 | indent; [ "${PIPESTATUS[0]}" = 0 ] || die "cannot bring up test host ${HOSTS[i]}"
  HDISK[i]=$("$T" dir "${HOSTS[i]}")
  IP[i]=$("$T" ip "${HOSTS[i]}")
done

step "HA control plane: ${HOSTS[0]} starts the etcd cluster, ${HOSTS[1]} and ${HOSTS[2]} join it"
SARGS[0]="--cluster-init"
t0=$(date +%s%N)
launch 0
say "k8s server on ${HOSTS[0]} (${IP[0]}, pid ${SPID[0]}, log ${SLOG[0]})"
wait_logged_ready 0 "$READY_TIMEOUT" "$t0"
ok "${HOSTS[0]} ready after $(ms_since "$t0") ms (cluster-init)"
cp "${HDISK[0]}/fs/var-lib-k8s/server/token" "$WORK/token" && chmod 600 "$WORK/token" || die "no server token on ${HOSTS[0]}"
for ((i = 1; i < NSRV; i++)); do
  SARGS[i]="--server https://${IP[0]}:9345 --token-file $WORK/token"
  t0=$(date +%s%N)
  launch "$i"
  say "k8s server on ${HOSTS[i]} (${IP[i]}, pid ${SPID[i]}): ${SARGS[i]}"
  wait_logged_ready "$i" "$READY_TIMEOUT" "$t0"
  ok "${HOSTS[i]} joined and is ready after $(ms_since "$t0") ms"
done
# the carried kubectl, from the first host's extracted payload (the host's disk is on the machine)
# (or from --components-dir DIR in K8S_SERVER_ARGS, a path on the machine)
KUBECTL=$(ls -d "${HDISK[0]}"/fs/var-lib-k8s/bin/*/bin/kubectl 2>/dev/null | head -n 1)
if [ -z "$KUBECTL" ]; then
  CDIR=$(sed -n 's/.*--components-dir[= ]\([^ ]*\).*/\1/p' <<<"$SERVER_ARGS")
  for c in "$CDIR/bin/kubectl" "$CDIR/kubectl"; do [ -n "$CDIR" ] && [ -x "$c" ] && { KUBECTL=$c; break; }; done
fi
[ -n "$KUBECTL" ] && [ -x "$KUBECTL" ] || die "no kubectl under ${HDISK[0]}/fs/var-lib-k8s/bin/*/bin/ (nor --components-dir)"
# the admin kubeconfig of the first server (every server's API trusts the cluster's one CA); every request names
# its server with --server https://10.99.0.X:6443: the workstation talks to the hosts inside the namespaces
KCFG=$WORK/admin.kubeconfig
sed "s#server: https://127.0.0.1:6443#server: https://${IP[0]}:6443#" "${HDISK[0]}/fs/etc-k8s/admin.kubeconfig" >"$KCFG" &&
  grep -q "server: https://${IP[0]}:6443" "$KCFG" || die "cannot make a workstation kubeconfig from ${HOSTS[0]}'s admin.kubeconfig"
chmod 600 "$KCFG"
# etcd's client CA and the apiserver's etcd client certificate, for etcdctl on the workstation
mkdir -p "$WORK/etcd"; chmod 700 "$WORK/etcd"
for f in etcd/ca.crt:ca.crt apiserver-etcd-client.crt:client.crt apiserver-etcd-client.key:client.key; do
  cp "${HDISK[0]}/fs/var-lib-k8s/pki/${f%:*}" "$WORK/etcd/${f#*:}" || die "no ${f%:*} in ${HOSTS[0]}'s PKI"
done
for ((i = 0; i < NSRV; i++)); do
  api_ready "$i" || die "the API of ${HOSTS[i]} does not answer /readyz at https://${IP[i]}:6443 from the workstation netns"
  etcd_healthy "$i" || die "the etcd member of ${HOSTS[i]} is not healthy (etcdctl endpoint health at https://${IP[i]}:2379)"
done
ok "every server's API answers /readyz and every etcd member is healthy, asked from the workstation netns"
v=$(voters_at 0)
[ "$v" = "$NSRV" ] || { members_at 0 2>&1 | indent; die "expected $NSRV voting etcd members, got $v"; }
ok "etcd has $NSRV voting members:"
members_at 0 2>&1 | indent
kc_at 0 create namespace "$NS" 2>&1 | indent
[ "${PIPESTATUS[0]}" = 0 ] || die "cannot create namespace $NS"
for ((i = 0; i < NSRV; i++)); do touch "$WORK/ready-$i"; done

step "load: $WRITERS writers spreading their requests over the $NSRV servers, $WATCHERS watchers (one per server), from the workstation netns"
start_load
sleep 3
say "$(load_summary)"
[ "$(count_lines "$WORK"/watch-*/log)" -ge "$WATCHERS" ] && [ "$(count_lines "$WORK"/writer-*.log)" -gt 0 ] &&
  ok "writers and watchers are running" || die "the load does not run: $(load_summary)"

# ========================================================================================== kills
step "$KILLS x (2-10 s of load, kill -9 of one server's k8s process tree, start it again, wait until it caught up)"
rand_sleep() { ms=$((2000 + RANDOM % 8001)); sleep "$((ms / 1000)).$(printf %03d $((ms % 1000)))"; }   # sets ms
ORDER=()
last=-1
for ((k = 1; k <= KILLS; k++)); do
  if [ "${#ORDER[@]}" = 0 ]; then   # a new round: the servers in a random order, not the last one first
    ORDER=(0 1 2)
    for ((j = NSRV - 1; j > 0; j--)); do r=$((RANDOM % (j + 1))); x=${ORDER[j]}; ORDER[j]=${ORDER[r]}; ORDER[r]=$x; done
    [ "${ORDER[0]}" = "$last" ] && { x=${ORDER[0]}; ORDER[0]=${ORDER[1]}; ORDER[1]=$x; }
  fi
  vi=${ORDER[0]}; ORDER=("${ORDER[@]:1}"); last=$vi
  rand_sleep
  for ((i = 0; i < NSRV; i++)); do alive "${SPID[i]}" || server_exited "$i" "between kills"; done
  role=$(role_at "$(other "$vi")" "$vi")
  [ "$role" = leader ] && LEADER_KILLS=$((LEADER_KILLS + 1))
  say "kill $k/$KILLS: ${HOSTS[vi]} (etcd ${role:-role unknown}) after $ms ms of load ($(load_summary))"
  rm -f "$WORK/ready-$vi"
  kill_tree "$vi"
  DONE_KILLS=$k
  t0=$(date +%s%N)
  launch "$vi"
  catch_up "$vi" "$RESTART_READY_TIMEOUT" "$t0"
  touch "$WORK/ready-$vi"
  say "  ${HOSTS[vi]} start #${NSTART[vi]}: /readyz after ${RESTART_MS[-1]} ms, caught up (etcd healthy, $NSRV voters) after ${CATCHUP_MS[-1]} ms"
done

# ========================================================================================== stop, settle
step "last round of load, then stop it"
rand_sleep
say "stopping the writers after $ms ms more ($(load_summary))"
stop_group stop-writers 60 "${LOAD_PIDS[@]:WATCHERS}"
ok "writers stopped: $(load_summary)"
t_last=$(date +%s%N)
for ((i = 0; i < NSRV; i++)); do wait_logged_ready "$i" "$READY_TIMEOUT" "$t_last"; done
ok "every server's last start logged \"k8s server ready\" (starts: $(for ((i = 0; i < NSRV; i++)); do printf '%s #%s, ' "${HOSTS[i]}" "${NSTART[i]}"; done | sed 's/, $//'))"
v=$(voters_at 0)
[ "$v" = "$NSRV" ] && ok "etcd has $NSRV voting members" || { members_at 0 2>&1 | indent; fail "etcd has $v voting members, want $NSRV"; }

# the watchers: give their streams a moment to deliver the last events, then make them relist, then stop them
sleep 3
echo 1 >"$WORK/relist"
relisted() { local i; for ((i = 1; i <= WATCHERS; i++)); do grep -q '^LIST [0-9]* [0-9]* 1 ' "$WORK/watch-$i/log" || return 1; done; }
wait_until 60 "every watcher relisted" relisted && ok "every watcher relisted after the load stopped" ||
  fail "not every watcher could relist after the load stopped"
sleep 2
stop_group stop-watchers 30 "${LOAD_PIDS[@]:0:WATCHERS}"
LOAD_PIDS=()
for ((i = 0; i < NSRV; i++)); do
  TMO=30 kc_at "$i" get --raw "/api/v1/namespaces/$NS/configmaps" >"$WORK/final-$((i + 1)).json" 2>"$WORK/final.err" &&
    jq -e '.items' "$WORK/final-$((i + 1)).json" >/dev/null || die "cannot list the final ConfigMaps through ${HOSTS[i]}: $(cat "$WORK/final.err")"
  ok "final state through ${HOSTS[i]}: $(jq '[.items[] | select(.metadata.name | startswith("cm-"))] | length' "$WORK/final-$((i + 1)).json") test ConfigMaps at resourceVersion $(jq -r .metadata.resourceVersion "$WORK/final-$((i + 1)).json")"
done

# ========================================================================================== checks
step "checks"
# writes and watches: one pass over the logs
chaos_check "$WORK" "$WRITERS" "$WATCHERS" "${HOSTS[@]}"

# ========================================================================================== summary
step "summary"
stats() {   # NAME MS...: "NAME: median X s, min Y s, max Z s"
  local name=$1 sorted; shift
  [ "$#" -gt 0 ] || { echo "$name: -"; return; }
  sorted=$(printf '%s\n' "$@" | sort -n)
  echo "$name: median $(secs "$(sed -n "$((($# + 1) / 2))p" <<<"$sorted")") s, min $(secs "$(head -n 1 <<<"$sorted")") s, max $(secs "$(tail -n 1 <<<"$sorted")") s"
}
say "kills: $DONE_KILLS ($LEADER_KILLS of the etcd leader; starts: $(for ((i = 0; i < NSRV; i++)); do printf '%s %s, ' "${HOSTS[i]}" "${NSTART[i]}"; done | sed 's/, $//'))"
say "$(stats "start to /readyz after a kill" "${RESTART_MS[@]}"); $(stats "start to caught up" "${CATCHUP_MS[@]}")"
say "writes acknowledged: ${CNT[acknowledged]:-?}, unknown: ${CNT[unknown]:-?}, rejected (AlreadyExists/NotFound): ${CNT[rejected]:-?}, not sent (API down): ${CNT[notsent]:-?}"
say "lost: ${CNT[lost]:-?} (of ${CNT[names]:-?} ConfigMaps, read through each of the $NSRV servers)"
say "watch events seen: ${CNT[events]:-?} (+ ${CNT[bookmarks]:-?} bookmarks, ${CNT[errors]:-?} ERROR events) in ${CNT[streams]:-?} streams"
say "time: $(($(date +%s) - T0)) s"
exit 0
