#!/usr/bin/env bash
# chaos.sh: a bounded chaos run of `k8s server` on one test host (e2e/lib/testhost.sh): steady API load while the
# whole k8s process tree is killed with kill -9 at random moments and started again.
#
#   e2e/chaos.sh                  exit 0 = every check passed, 1 = a check failed, 77 = skipped
#   CHAOS_KILLS=100 e2e/chaos.sh  (make test-chaos)
#
# What runs (see e2e/README.md, "Chaos run"):
#   - one test host with `k8s server` (single node: the SQLite datastore inside the k8s process);
#   - a busybox pod, started before the first kill;
#   - from the workstation netns (`testhost.sh ws`; the carried kubectl with the admin credentials, pointed at the
#     host's address): CHAOS_WRITERS writers, each creating, replacing, patching and deleting ConfigMaps of its own
#     in namespace e2e-chaos, one request at a time, logging each request before it is sent and its outcome after
#     (acknowledged with the resourceVersion, rejected by a definite answer, not sent, or unknown); and 2 watchers
#     doing what a reflector does: list, watch from the list's resourceVersion, relist whenever the watch ends;
#   - CHAOS_KILLS times: a random 2-10 s of load, then SIGSTOP + SIGKILL of the k8s process tree (k8s and its
#     descendants, as step 4 of single-node.sh; shims and pods are not descendants and live on), start again, and
#     wait until the API answers /readyz again (the rest of the bring-up goes on under the load and the next kill).
# Not done: killing the datastore alone. In single-node mode the datastore (SQLite behind the etcd v3 API) runs inside
# the `k8s` process itself, so it cannot be killed without killing k8s; the kill of the whole tree covers it. (In HA
# mode etcd is a child process of k8s; ha.sh kills one of three servers with kill -9.)
#
# Checks, after the last restart, with the load stopped:
#   - writes: every ConfigMap is in the state its last acknowledged write left it in (deleted: absent; created,
#     replaced, patched: present with that write's content and resourceVersion), or in the outcome of a later write
#     whose result is unknown (kubectl failed without a definite answer: reset, EOF, timeout); a name in any other
#     state counts as lost (must be 0). Every definite answer along the way must fit the writer's own history too
#     (an AlreadyExists after an acknowledged delete means a delete was lost), acknowledged resourceVersions grow
#     within each writer, and a write acknowledged before another was sent has the smaller resourceVersion;
#   - watches: no event's resourceVersion is at or below the one before it in the same stream (or below the list the
#     stream started from); every acknowledged write between a stream's list and the last resourceVersion it saw is
#     one of its events; each watcher's view (last list + its stream's events) equals the final state, both as kept
#     by watching until the end and after a final relist;
#   - the busybox pod is Running and ready, the same container (containerID, startedAt, the same process in the
#     host), restartCount 0.
# Prints: kills, writes acknowledged / unknown / rejected / not sent, lost, watch events, restart times, run time.
#
# Environment:
#   K8S_BIN=/work/main/dist/k8s    the binary under test (copied to a shared path before use)
#   K8S_SERVER_ARGS="..."          extra `k8s server` flags (as for single-node.sh)
#   CHAOS_KILLS=10                 how many kill -9 + restart rounds
#   CHAOS_WRITERS=3                concurrent writers (each owns CHAOS_NAMES ConfigMaps)
#   CHAOS_NAMES=8                  ConfigMap names per writer
#   CHAOS_PAUSE=0.1                seconds a writer waits between two requests
#   CHAOS_SEED=<random>            seed of the random choices (printed; the timing is not reproducible)
#   CHAOS_READY_TIMEOUT=120        seconds a restarted server has to answer /readyz
#   E2E_HOST=chaos1                test host name
#   E2E_TIMEOUT=300+60*KILLS       hard limit for the whole run, in seconds
#   TESTHOST_KEEP=1                keep the host's disk, and the load's logs in $WORK, after the run (post-mortem)
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SELF=$ROOT/e2e/chaos.sh
T=$ROOT/e2e/lib/testhost.sh
. "$ROOT/e2e/lib/chaos-check.sh"     # chaos_check: the checks after the run (shared with the other chaos script)

# ------------------------------------------------------------------------------------------ load (workstation side)
# These run as `testhost.sh ws chaos.sh _writer N` / `_watcher N`, with the settings in the environment
# (CHAOS_WORK, CHAOS_KUBECTL, CHAOS_KUBECONFIG, CHAOS_NS, CHAOS_DEADLINE, ...). Files in $CHAOS_WORK steer them:
# stop-writers, stop-watchers, relist (a generation number: a change makes the watchers relist).
now_s() { echo "${EPOCHREALTIME%.*}"; }
kcw() {   # one bounded kubectl request
  timeout -k 5 40 "$CHAOS_KUBECTL" --kubeconfig "$CHAOS_KUBECONFIG" --cache-dir "$KCACHE" --request-timeout=30s "$@"
}
cm_yaml() {   # NAME CONTENT WRITER
  printf 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s\ndata:\n  v: "%s"\n  writer: "%s"\n' "$1" "$2" "$3"
}

# writer N: one request at a time on its own names cm-N-0 .. cm-N-(NAMES-1). Log lines (writer-N.log):
#   SEQ NAME OP RESULT RV CONTENT T_SENT T_ANSWERED SERVER (always 0: the one server; the shape e2e/lib/chaos-check.py reads)
# first with RESULT "pending" (before the request), then with its outcome: ack (exit 0; RV of the object written,
# "-" for a delete), rejected (AlreadyExists / NotFound: a definite answer, nothing written), down (connection
# refused: never sent), unknown (any other failure). CONTENT is the data.v written ("-" for a delete).
writer() {
  local w=$1 log=$CHAOS_WORK/writer-$1.log errlog=$CHAOS_WORK/writer-$1.err errf=$CHAOS_WORK/writer-$1.tmp
  local seq name op out rc res rv content t0 t1 r e
  local -A state=()
  local ops=(create replace patch delete)
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
    t0=$EPOCHREALTIME
    echo "$seq $name $op pending - $content $t0 - 0" >>"$log"
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
      e=$(tr '\n' ' ' <"$errf" | cut -c1-400)
      case $e in
        *"(AlreadyExists)"*) res=rejected; state[$name]=present ;;
        *"(NotFound)"*) res=rejected; state[$name]=absent ;;
        *"connect: connection refused"*|*"was refused - did you specify"*) res=down ;;
        *) res=unknown; state[$name]=unknown ;;
      esac
      echo "$seq rc=$rc $res: $e" >>"$errlog"
    fi
    echo "$seq $name $op $res $rv $content $t0 $t1 0" >>"$log"
    case $res in
      down) sleep 0.5 ;;
      unknown) sleep 0.3 ;;
      *) sleep "$CHAOS_PAUSE" ;;
    esac
  done
  rm -f "$errf"
}

# watcher N: list, watch from the list's resourceVersion (with bookmarks), relist when the stream ends (or when
# told to). Files in watch-N/: list-K.json, stream-K.jsonl (the raw watch events), and log:
#   LIST K RV GEN TIME 0      the K-th successful list, at RV, under relist generation GEN (through server 0)
#   END K RC WHY TIME         its stream ended: WHY = ended (by itself: server gone, timeout, error), relist, stop
watcher() {
  local w=$1 d=$CHAOS_WORK/watch-$1 n=0 a rv gen g wpid rc why
  mkdir -p "$d"
  KCACHE=$CHAOS_WORK/kcache/watcher-$w
  for ((a = 1; a <= CHAOS_MAX_STREAMS; a++)); do
    [ -e "$CHAOS_WORK/stop-watchers" ] && break
    [ "$(now_s)" -lt "$CHAOS_DEADLINE" ] || break
    gen=0; read -r gen 2>/dev/null <"$CHAOS_WORK/relist"
    if ! kcw get --raw "/api/v1/namespaces/$CHAOS_NS/configmaps" >"$d/list.tmp" 2>>"$d/err" ||
      ! rv=$(jq -er '.metadata.resourceVersion' "$d/list.tmp" 2>>"$d/err"); then
      sleep 1
      continue
    fi
    n=$((n + 1))
    mv "$d/list.tmp" "$d/list-$n.json"
    echo "LIST $n $rv $gen $EPOCHREALTIME 0" >>"$d/log"
    "$CHAOS_KUBECTL" --kubeconfig "$CHAOS_KUBECONFIG" --cache-dir "$KCACHE" get --raw \
      "/api/v1/namespaces/$CHAOS_NS/configmaps?watch=1&resourceVersion=$rv&allowWatchBookmarks=true" \
      >"$d/stream-$n.jsonl" 2>"$d/stream-$n.err" </dev/null &
    wpid=$!
    why=ended
    while kill -0 "$wpid" 2>/dev/null; do
      if [ -e "$CHAOS_WORK/stop-watchers" ]; then why=stop; break; fi
      g=0; read -r g 2>/dev/null <"$CHAOS_WORK/relist"
      if [ "$g" != "$gen" ]; then why=relist; break; fi
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
H=${E2E_HOST:-chaos1}
K8S_BIN=${K8S_BIN:-$ROOT/dist/k8s}
SERVER_ARGS=${K8S_SERVER_ARGS:-}
KILLS=${CHAOS_KILLS:-10}
WRITERS=${CHAOS_WRITERS:-3}
WATCHERS=2
NAMES=${CHAOS_NAMES:-8}
SEED=${CHAOS_SEED:-$(( $(od -An -N2 -tu2 /dev/urandom) ))}
RESTART_READY_TIMEOUT=${CHAOS_READY_TIMEOUT:-120}
READY_TIMEOUT=300                     # first start, and the last one's "k8s server ready"
TOTAL_TIMEOUT=${E2E_TIMEOUT:-$((300 + 60 * KILLS))}
WORK=/var/tmp/k8s-e2e-chaos.$H        # shared with the hosts (/var/tmp is the machine's): binary, logs, files
BIN=$WORK/bin/k8s
NS=e2e-chaos                          # the test's own namespace
T0=$(date +%s)
DEADLINE=$((T0 + TOTAL_TIMEOUT))
FAILS=0
FAILED_CHECKS=()
SPID=""                               # PID of the running `k8s server` (our child)
NSTART=0
LOAD_PIDS=()                          # writers and watchers (each its own process group)
RESTART_MS=()                         # start → /readyz after each kill
DONE_KILLS=0

# ------------------------------------------------------------------------------------------ output
. "$ROOT/e2e/lib/report.sh"           # ts say step ok fail die noansi indent

# ------------------------------------------------------------------------------------------ preconditions
[ "$(id -u)" = 0 ] || { echo "chaos: SKIP: must run as root (test hosts need namespaces)"; exit 77; }
if [ ! -x "$K8S_BIN" ]; then
  echo "chaos: SKIP: no binary at $K8S_BIN; run \`make dist\`, or set K8S_BIN (and K8S_SERVER_ARGS, see single-node.sh)"
  exit 77
fi
for c in jq python3 timeout setsid; do
  command -v "$c" >/dev/null || { echo "chaos: SKIP: $c is not installed (make deps)"; exit 77; }
done
[[ $KILLS =~ ^[0-9]+$ && $WRITERS =~ ^[1-9][0-9]*$ && $NAMES =~ ^[1-9][0-9]*$ && $SEED =~ ^[0-9]+$ ]] ||
  { echo "chaos: CHAOS_KILLS, CHAOS_WRITERS, CHAOS_NAMES and CHAOS_SEED must be numbers"; exit 2; }

# ------------------------------------------------------------------------------------------ helpers
left() { echo $((DEADLINE - $(date +%s))); }
in_host() {   # bounded run of CMD inside the host (timeout $TMO, default 60 s, never past the global deadline)
  local t=${TMO:-60}
  [ "$(left)" -lt "$t" ] && t=$(left)
  [ "$t" -gt 0 ] || { echo "global timeout" >&2; return 124; }
  timeout -k 5 "$t" "$T" exec "$H" "$@"
}
kc() {        # kubectl from the workstation netns, at the host's address (bounded like in_host)
  local t=${TMO:-60}
  [ "$(left)" -lt "$t" ] && t=$(left)
  [ "$t" -gt 0 ] || { echo "global timeout" >&2; return 124; }
  timeout -k 5 "$t" "$T" ws "$KUBECTL" --kubeconfig "$KCFG" --cache-dir "$WORK/kcache/main" --request-timeout=20s "$@"
}
kns() { kc -n "$NS" "$@"; }

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

hierarchy() {   # one cgroup hierarchy of the machine that has the host's subtree
  local t
  for t in /sys/fs/cgroup/pids /sys/fs/cgroup/memory /sys/fs/cgroup/*; do
    [ -d "$t/k8s-e2e/$1" ] && { echo "$t/k8s-e2e/$1"; return 0; }
  done
  return 1
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
host_pids() {   # live processes of the host (its cgroup subtree), minus the holder
  local d holder p
  d=$(hierarchy "$H") || return 0
  holder=$("$T" pid "$H" 2>/dev/null || true)
  for p in $(find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -un); do
    [ "$p" = "$holder" ] && continue
    alive "$p" && echo "$p"
  done
}
descendants() { # PID and all its descendants (machine-wide ps; there is no PID namespace)
  ps -e -o pid=,ppid= | awk -v root="$1" '
    { kids[$2] = kids[$2] " " $1 }
    END { q = root; while (q != "") { split(q, a, " "); q = ""; for (i in a) { print a[i]; q = q " " kids[a[i]] } } }'
}
describe_pids() { local p; for p in "$@"; do printf '%s %s\n' "$p" "$(tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline" | cut -c1-150)"; done; }
ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

# ------------------------------------------------------------------------------------------ server
launch() {      # start `k8s server` in the host, in the background; SPID, SLOG
  NSTART=$((NSTART + 1))
  SLOG=$WORK/server-$NSTART.log
  # setsid: no terminal signals; testhost exec and nsenter exec, so $! is the k8s process itself
  setsid "$T" exec "$H" "$BIN" server $SERVER_ARGS </dev/null >"$SLOG" 2>&1 &
  SPID=$!
}
server_exited() {   # the server is gone: say how, and give up
  local rc
  wait "$SPID"; rc=$?; SPID=""
  echo "--- $SLOG"; noansi <"$SLOG" | tail -n 30 | indent
  die "k8s server (start #$NSTART) exited with code $rc $1"
}
wait_logged_ready() {   # "k8s server ready" in the current server's log within $1 s
  local t0=$2
  while ! grep -q "k8s server ready" "$SLOG"; do
    alive "$SPID" || server_exited "before it logged \"k8s server ready\""
    if [ $(( $(ms_since "$t0") / 1000 )) -ge "$1" ] || [ "$(left)" -le 0 ]; then
      die "k8s server (start #$NSTART) did not log \"k8s server ready\" within ${1}s"
    fi
    sleep 0.5
  done
}
api_ready() { [ "$(TMO=10 kc get --raw /readyz 2>/dev/null)" = ok ]; }
wait_api() {    # /readyz answers "ok" (from the workstation) within $1 s of $2 (ns)
  local t0=$2
  until api_ready; do
    alive "$SPID" || server_exited "before the API answered /readyz"
    if [ $(( $(ms_since "$t0") / 1000 )) -ge "$1" ] || [ "$(left)" -le 0 ]; then
      die "the API did not answer /readyz within ${1}s of start #$NSTART (a server that does not come back)"
    fi
    sleep 0.5
  done
}
kill_tree() {   # SIGSTOP then SIGKILL of k8s and every descendant; wait until every thread is gone
  local tree more still i rc
  tree=$(descendants "$SPID" | sort -un | tr '\n' ' ')
  kill -STOP $tree 2>/dev/null           # freeze first, so nothing restarts anything while we kill
  more=$(descendants "$SPID" | sort -un | tr '\n' ' ')   # children forked between the listing and the STOP
  kill -STOP $more 2>/dev/null
  tree=$(echo $tree $more | tr ' ' '\n' | sort -un | tr '\n' ' ')
  kill -KILL $tree 2>/dev/null
  wait "$SPID" 2>/dev/null; rc=$?
  for ((i = 0; i < 200; i++)); do
    still=""; for p in $tree; do alive "$p" && still="$still $p"; done
    [ -z "$still" ] && break; sleep 0.1
  done
  [ -z "$still" ] || die "processes survive kill -9:$still"
  SPID=""
  say "killed the k8s process tree ($(wc -w <<<"$tree") processes; k8s exited with $rc)"
}

# ------------------------------------------------------------------------------------------ load control
start_load() {
  local i
  export CHAOS_WORK=$WORK CHAOS_KUBECTL=$KUBECTL CHAOS_KUBECONFIG=$KCFG CHAOS_NS=$NS CHAOS_DEADLINE=$DEADLINE
  export CHAOS_SEED=$SEED CHAOS_NAMES=$NAMES CHAOS_PAUSE=${CHAOS_PAUSE:-0.1} CHAOS_MAX_WRITES=100000 CHAOS_MAX_STREAMS=10000
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
  local rc=$? d f p
  trap - EXIT INT TERM
  [ -n "${WATCHDOG:-}" ] && kill "$WATCHDOG" 2>/dev/null
  [ "$rc" != 0 ] && [ "$FAILS" = 0 ] && fail "aborted (exit code $rc)"
  for p in "${LOAD_PIDS[@]}"; do kill -TERM -- -"$p" 2>/dev/null; done
  if [ "$FAILS" != 0 ]; then
    echo; say "==== diagnostics"
    if [ -n "$SPID" ] && alive "$SPID"; then
      TMO=20 kc get nodes,pods -A -o wide 2>&1 | indent
    fi
    for f in $(ls -v "$WORK"/server-*.log 2>/dev/null | tail -n 2); do
      echo "--- $f (last 40 lines)"; noansi <"$f" | tail -n 40 | indent
    done
    d=$("$T" dir "$H")/fs/var-lib-k8s/logs
    for f in "$d"/*.log; do
      [ -f "$f" ] || continue
      [[ $f == */audit.log ]] && continue
      echo "--- $H:/var/lib/k8s/logs/${f##*/} (last 30 lines)"; noansi <"$f" | tail -n 30 | indent
    done
    for f in "$WORK"/writer-*.err "$WORK"/watch-*/err; do
      [ -s "$f" ] || continue
      echo "--- $f (last 10 lines)"; tail -n 10 "$f" | cut -c1-300 | indent
    done
    # evidence for a post-mortem: the host's component logs and the datastore, as they were
    mkdir -p "$WORK/evidence"
    cp -a "$d" "$WORK/evidence/logs" 2>/dev/null
    cp -a "$("$T" dir "$H")"/fs/var-lib-k8s/server/db "$WORK/evidence/" 2>/dev/null
  fi
  for p in "${LOAD_PIDS[@]}"; do kill -KILL -- -"$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  if [ -n "$SPID" ]; then   # down kills it; no "Killed" job notice from bash
    alive "$SPID" && kill -TERM "$SPID" 2>/dev/null
    disown "$SPID" 2>/dev/null
  fi
  say "downing test host"
  "$T" down "$H" 2>&1 | indent
  rm -rf "${WORK:?}/bin" "${WORK:?}/kcache" "${WORK:?}/home"
  echo
  if [ "$FAILS" = 0 ]; then
    [ "${TESTHOST_KEEP:-0}" = 1 ] || rm -rf "$WORK"
    say "chaos: PASS ($(($(date +%s) - T0)) s)"
    exit 0
  fi
  say "chaos: FAIL: $FAILS check(s) failed ($(($(date +%s) - T0)) s); logs kept in $WORK"
  for f in "${FAILED_CHECKS[@]}"; do echo "  - $f"; done
  exit 1
}
trap cleanup EXIT
trap 'echo "[$(ts)] interrupted"; exit 130' INT
trap 'fail "global timeout: the run took more than ${TOTAL_TIMEOUT}s"; exit 124' TERM
( sleep "$TOTAL_TIMEOUT"; kill -TERM $$ 2>/dev/null ) </dev/null >/dev/null 2>&1 &
WATCHDOG=$!

# ------------------------------------------------------------------------------------------ setup
step "setup: binary $K8S_BIN, $KILLS kills, $WRITERS writers x $NAMES ConfigMaps, $WATCHERS watchers, seed $SEED, time limit ${TOTAL_TIMEOUT}s"
RANDOM=$SEED
rm -rf "$WORK"; mkdir -p "$WORK/bin"
cp "$K8S_BIN" "$BIN.tmp" && mv "$BIN.tmp" "$BIN" || die "cannot copy $K8S_BIN to $BIN"
"$BIN" version 2>&1 | indent
"$T" up "$H" 2>&1 | indent; [ "${PIPESTATUS[0]}" = 0 ] || die "cannot bring up test host $H"
HDISK=$("$T" dir "$H")
HIP=$("$T" ip "$H")

step "first start"
t0=$(date +%s%N)
launch
say "k8s server #$NSTART (pid $SPID, log $SLOG)"
wait_logged_ready "$READY_TIMEOUT" "$t0"
ok "k8s server ready after $(ms_since "$t0") ms"
# the carried kubectl, from the host's extracted payload (the host's disk is on the machine)
# (or from --components-dir DIR in K8S_SERVER_ARGS, a path on the machine)
KUBECTL=$(ls -d "$HDISK"/fs/var-lib-k8s/bin/*/bin/kubectl 2>/dev/null | head -n 1)
if [ -z "$KUBECTL" ]; then
  CDIR=$(sed -n 's/.*--components-dir[= ]\([^ ]*\).*/\1/p' <<<"$SERVER_ARGS")
  for c in "$CDIR/bin/kubectl" "$CDIR/kubectl"; do [ -n "$CDIR" ] && [ -x "$c" ] && { KUBECTL=$c; break; }; done
fi
[ -n "$KUBECTL" ] && [ -x "$KUBECTL" ] || die "no kubectl under $HDISK/fs/var-lib-k8s/bin/*/bin/ (nor --components-dir)"
# the admin kubeconfig, pointed at the host's address: the workstation talks to 10.99.0.x inside the namespaces
KCFG=$WORK/admin.kubeconfig
sed "s#server: https://127.0.0.1:6443#server: https://$HIP:6443#" "$HDISK/fs/etc-k8s/admin.kubeconfig" >"$KCFG" &&
  grep -q "server: https://$HIP:6443" "$KCFG" || die "cannot make a workstation kubeconfig from the host's admin.kubeconfig"
chmod 600 "$KCFG"
api_ready && ok "the API answers /readyz at https://$HIP:6443 from the workstation netns" || die "the API does not answer from the workstation"

kc create namespace "$NS" 2>&1 | indent
kns apply -f - <<'EOF' 2>&1 | indent
apiVersion: v1
kind: Pod
metadata: {name: sleeper}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: sleep
    image: k8s.local/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sleep", "987654"]
EOF
pod_state() {   # phase ready containerID startedAt restartCount
  kns get pod sleeper -o jsonpath='{.status.phase} {.status.containerStatuses[0].ready} {.status.containerStatuses[0].containerID} {.status.containerStatuses[0].state.running.startedAt} {.status.containerStatuses[0].restartCount}'
}
pod_running() { local s; s=$(pod_state) && [[ $s == "Running true "* ]]; }
wait_until 120 "pod sleeper Running and ready" pod_running || { kns describe pod sleeper 2>&1 | tail -n 20 | indent; die "pod sleeper is not Running"; }
POD_BEFORE=$(pod_state)
sleeper_pid() {   # the pod's sleep process in the host
  local p
  for p in $(host_pids); do
    [ "$(tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline")" = "sleep 987654 " ] && { echo "$p"; return 0; }
  done
  return 1
}
SLEEPER_PID=$(sleeper_pid)
ok "pod sleeper Running: $POD_BEFORE; its process in the host: ${SLEEPER_PID:-not found}"
[ -n "$SLEEPER_PID" ] || fail "cannot find the pod's process (sleep 987654) in the host"

step "load: $WRITERS writers, $WATCHERS watchers (from the workstation netns)"
start_load
sleep 3
say "$(load_summary)"
[ "$(count_lines "$WORK"/watch-*/log)" -ge "$WATCHERS" ] && [ "$(count_lines "$WORK"/writer-*.log)" -gt 0 ] &&
  ok "writers and watchers are running" || die "the load does not run: $(load_summary)"

# ========================================================================================== kills
step "$KILLS x (2-10 s of load, kill -9 of the k8s process tree, start again, wait for /readyz)"
rand_sleep() { ms=$((2000 + RANDOM % 8001)); sleep "$((ms / 1000)).$(printf %03d $((ms % 1000)))"; }   # sets ms
for ((k = 1; k <= KILLS; k++)); do
  rand_sleep
  alive "$SPID" || server_exited "between kills"
  say "kill $k/$KILLS after $ms ms of load ($(load_summary))"
  kill_tree
  DONE_KILLS=$k
  t0=$(date +%s%N)
  launch
  wait_api "$RESTART_READY_TIMEOUT" "$t0"
  RESTART_MS+=("$(ms_since "$t0")")
  say "  start #$NSTART: /readyz after ${RESTART_MS[-1]} ms"
done

# ========================================================================================== stop, settle
step "last round of load, then stop it"
rand_sleep
say "stopping the writers after $ms ms more ($(load_summary))"
stop_group stop-writers 60 "${LOAD_PIDS[@]:WATCHERS}"
ok "writers stopped: $(load_summary)"
t_last=$(date +%s%N)
wait_logged_ready "$READY_TIMEOUT" "$t_last"
ok "the last k8s server (start #$NSTART) logged \"k8s server ready\""
node_ready() { [ "$(kc get node "$H" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]; }
wait_until 120 "node $H Ready" node_ready && ok "node $H Ready" || fail "node $H is not Ready after the last restart"

# the watchers: give their streams a moment to deliver the last events, then make them relist, then stop them
sleep 3
echo 1 >"$WORK/relist"
relisted() { local i; for ((i = 1; i <= WATCHERS; i++)); do grep -q '^LIST [0-9]* [0-9]* 1 ' "$WORK/watch-$i/log" || return 1; done; }
wait_until 60 "every watcher relisted" relisted && ok "every watcher relisted after the load stopped" ||
  fail "not every watcher could relist after the load stopped"
sleep 2
stop_group stop-watchers 30 "${LOAD_PIDS[@]:0:WATCHERS}"
LOAD_PIDS=()
TMO=30 kc get --raw "/api/v1/namespaces/$NS/configmaps" >"$WORK/final-1.json" 2>"$WORK/final.err" &&
  jq -e '.items' "$WORK/final-1.json" >/dev/null || die "cannot list the final ConfigMaps: $(cat "$WORK/final.err")"
ok "final state: $(jq '[.items[] | select(.metadata.name | startswith("cm-"))] | length' "$WORK/final-1.json") test ConfigMaps at resourceVersion $(jq -r .metadata.resourceVersion "$WORK/final-1.json")"

# ========================================================================================== checks
step "checks"
# the pod
pod_ok() { local s; s=$(pod_state) && [[ $s == "Running true "* ]]; }
wait_until 120 "pod sleeper Running and ready" pod_ok
POD_AFTER=$(pod_state)
read -r _ _ cid_b st_b rc_b <<<"$POD_BEFORE"
read -r ph_a rd_a cid_a st_a rc_a <<<"$POD_AFTER"
[ "$ph_a $rd_a" = "Running true" ] && ok "pod sleeper is Running and ready after $DONE_KILLS kills" ||
  fail "pod sleeper after $DONE_KILLS kills: phase '$ph_a', ready '$rd_a'"
[ "$cid_a" = "$cid_b" ] && [ "$st_a" = "$st_b" ] && ok "the same container (${cid_a:0:25}…, started $st_a)" ||
  fail "pod sleeper's container changed: before '$cid_b' started '$st_b', after '$cid_a' started '$st_a'"
[ "$rc_a" = 0 ] && ok "restartCount $rc_a" || fail "pod sleeper restartCount is '$rc_a' (was $rc_b)"
if [ -n "$SLEEPER_PID" ]; then
  alive "$SLEEPER_PID" && [ "$(tr '\0' ' ' 2>/dev/null <"/proc/$SLEEPER_PID/cmdline")" = "sleep 987654 " ] &&
    ok "its process $SLEEPER_PID ran through every kill (its shim is not a descendant of k8s)" ||
    fail "the pod's process $SLEEPER_PID is gone (now: $(sleeper_pid || echo none))"
fi

# writes and watches: one pass over the logs
chaos_check "$WORK" "$WRITERS" "$WATCHERS" "$H"

# ========================================================================================== summary
step "summary"
if [ "${#RESTART_MS[@]}" -gt 0 ]; then
  sorted=$(printf '%s\n' "${RESTART_MS[@]}" | sort -n)
  rmin=$(head -n 1 <<<"$sorted"); rmax=$(tail -n 1 <<<"$sorted"); rmed=$(sed -n "$(( (${#RESTART_MS[@]} + 1) / 2 ))p" <<<"$sorted")
  restarts="start to /readyz after a kill: median $((rmed / 1000)).$(printf %03d $((rmed % 1000))) s, min $((rmin / 1000)).$(printf %03d $((rmin % 1000))) s, max $((rmax / 1000)).$(printf %03d $((rmax % 1000))) s"
else
  restarts="no restarts"
fi
say "kills: $DONE_KILLS; $restarts"
say "writes acknowledged: ${CNT[acknowledged]:-?}, unknown: ${CNT[unknown]:-?}, rejected (AlreadyExists/NotFound): ${CNT[rejected]:-?}, not sent (API down): ${CNT[notsent]:-?}"
say "lost: ${CNT[lost]:-?} (of ${CNT[names]:-?} ConfigMaps)"
say "watch events seen: ${CNT[events]:-?} (+ ${CNT[bookmarks]:-?} bookmarks, ${CNT[errors]:-?} ERROR events) in ${CNT[streams]:-?} streams"
say "pod sleeper: $POD_AFTER"
say "time: $(($(date +%s) - T0)) s"
exit 0
