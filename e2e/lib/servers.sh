# shellcheck shell=bash
# e2e/lib/servers.sh: `k8s server` processes in test hosts (lib/testhost.sh), for scripts that run
# them by hand (backup.sh, grow.sh, registry.sh). The script sets HOSTS=(...) and shared=DIR, then sources this:
# it brings the hosts up with the binary ($1, K8S_BIN or dist/k8s) copied to $shared/k8s, and takes
# them down on exit, showing each host's log when the script failed.
#   start HOST ARGS...   `k8s server ARGS` in HOST until "k8s server ready" (START_ENV="K=V ..." for
#                        its environment); log appended to $shared/HOST.log, pid in $shared/HOST.pid
#   stop HOST            SIGTERM, and wait for the exit
#   on HOST CMD...       CMD in HOST;  kc HOST ARGS...: `k8s kubectl ARGS` there
#   sleepers N           a Deployment `web` of N busybox pods that sleep (images carried, never pulled)
T=$here/lib/testhost.sh
BIN_SRC=${1:-${K8S_BIN:-$here/../dist/k8s}}
K8S=$shared/k8s

fail() { echo "FAIL: $*"; exit 1; }
ok() { echo "ok   $*"; }
servers_cleanup() {
  local rc=$? h
  if ((rc != 0)); then
    for h in "${HOSTS[@]}"; do
      echo "--- $h: last lines of its log"
      tail -n 20 "$shared/$h.log" 2>/dev/null || true
    done
  fi
  for h in "${HOSTS[@]}"; do $T down "$h" >/dev/null 2>&1 || true; done
  rm -rf "$shared"
  exit "$rc"
}
trap servers_cleanup EXIT

[[ -x $BIN_SRC ]] || fail "no k8s binary at $BIN_SRC (make dist)"
rm -rf "$shared" && mkdir -p "$shared"
cp "$BIN_SRC" "$K8S"
for h in "${HOSTS[@]}"; do $T up "$h" >/dev/null; done

wait_log() { # FILE PATTERN SECONDS FROM_LINE: PATTERN appears after FROM_LINE (an "error:" line ends it)
  local i
  for ((i = 0; i < $3; i++)); do
    tail -n +"$4" "$1" 2>/dev/null | grep -q "$2" && return 0
    tail -n +"$4" "$1" 2>/dev/null | grep -q '^error:' && return 1
    sleep 1
  done
  return 1
}
start() {
  local h=$1 from; shift
  touch "$shared/$h.log"
  from=$(($(wc -l <"$shared/$h.log") + 1))
  # shellcheck disable=SC2086 # START_ENV is a list of K=V words
  setsid "$T" exec "$h" env ${START_ENV:-} "$K8S" server "$@" </dev/null >>"$shared/$h.log" 2>&1 &
  echo $! >"$shared/$h.pid"
  disown
  wait_log "$shared/$h.log" "k8s server ready" 300 "$from" || fail "$h: the server did not become ready"
}
stop() {
  local pid i
  pid=$(cat "$shared/$1.pid")
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 90; i++)); do kill -0 "$pid" 2>/dev/null || return 0; sleep 1; done
  fail "$1: the server did not stop in 90 s"
}
on() { local h=$1; shift; "$T" exec "$h" "$@"; }
kc() { local h=$1; shift; "$T" exec "$h" "$K8S" kubectl "$@"; }
sleepers() {
  cat <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: $1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - {name: web, image: k8s.local/busybox:latest, imagePullPolicy: IfNotPresent, command: [sleep, "100000"]}
YAML
}
