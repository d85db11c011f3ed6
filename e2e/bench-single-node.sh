#!/usr/bin/env bash
# bench-single-node.sh: figures for one `k8s server` on a test host (e2e/lib/testhost.sh). A bench, not a
# test: it prints figures (and a markdown table to paste into the README) and fails only if it cannot measure.
#
#   - time from `k8s server` start to "k8s server ready" (node Ready): a first start on a fresh data dir
#     (with dist/k8s that includes extracting the payload) and restarts (SIGTERM, start again)
#   - the steady memory of everything in the host (its cgroup: k8s, kube-control-plane (kube-apiserver,
#     controller-manager and scheduler), containerd, shims, kubelet, kube-proxy, pods) with the 2-replica test deployment running,
#     after a settle time: RSS and PSS per process, and the memory cgroup's own figures
#   - density: the node filled to 110 pods (the kubelet's max-pods) with sleeping busybox pods: the time from
#     the apply to all Running, and the memory per kind of process again
#
# Environment: K8S_BIN (default dist/k8s), K8S_SERVER_ARGS (e.g. "--components-dir DIR" for a plain build),
# E2E_HOST (default bench1), BENCH_RESTARTS (default 3), BENCH_SETTLE (seconds, default 60),
# BENCH_DENSITY_PODS (default 110; 0: no density phase).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
T=$ROOT/e2e/lib/testhost.sh
H=${E2E_HOST:-bench1}
K8S_BIN=${K8S_BIN:-$ROOT/dist/k8s}
SERVER_ARGS=${K8S_SERVER_ARGS:-}
RESTARTS=${BENCH_RESTARTS:-3}
SETTLE=${BENCH_SETTLE:-60}
WORK=/var/tmp/k8s-e2e-bench.$H
BIN=$WORK/bin/k8s
NS=bench
SPID=""
NSTART=0

[ "$(id -u)" = 0 ] || { echo "bench-single-node: SKIP: must run as root"; exit 77; }
[ -x "$K8S_BIN" ] || { echo "bench-single-node: SKIP: no binary at $K8S_BIN (make dist, or set K8S_BIN and K8S_SERVER_ARGS)"; exit 77; }
CDIR=""
read -r -a _args <<<"$SERVER_ARGS"
for ((i = 0; i < ${#_args[@]}; i++)); do
  case ${_args[i]} in
    --components-dir=*) CDIR=${_args[i]#*=} ;;
    --components-dir) CDIR=${_args[i + 1]:-} ;;
  esac
done
KENV=(); [ -n "$CDIR" ] && KENV=("K8S_COMPONENTS_DIR=$CDIR")

say() { echo "bench: $*" >&2; }
die() {
  say "error: $*"
  # a `k8s reset` in another test host on this machine detaches this host's /var/lib/k8s (see e2e/README.md)
  [ -n "${HDISK:-}" ] && ! timeout 10 "$T" exec "$H" findmnt -rn /var/lib/k8s >/dev/null 2>&1 &&
    say "note: /var/lib/k8s of $H is no longer a mount: something (k8s reset in another host?) detached it"
  exit 1
}
noansi() { sed -e 's/\x1b\[[0-9;]*m//g'; }
kc() { timeout -k 5 60 "$T" exec "$H" env "${KENV[@]}" "$BIN" kubectl "$@"; }
alive() {   # some thread of PID is not a zombie yet
  local f s
  for f in /proc/"$1"/task/*/stat; do
    read -r s 2>/dev/null <"$f" || continue
    s=${s##*) }; case ${s:0:1} in Z|X) ;; *) return 0 ;; esac
  done
  return 1
}
now_ms() { echo $(($(date +%s%N) / 1000000)); }
secs() { awk -v ms="$1" 'BEGIN { printf "%.1f s", ms / 1000 }'; }
mib() { awk -v kb="$1" 'BEGIN { printf "%.0f", kb / 1024 }'; }

cleanup() {
  trap - EXIT INT TERM
  if [ -n "$SPID" ] && alive "$SPID"; then
    kill -TERM "$SPID" 2>/dev/null
    for _ in $(seq 300); do alive "$SPID" || break; sleep 0.1; done
    { kill -KILL "$SPID"; wait "$SPID"; } 2>/dev/null
  fi
  "$T" down "$H" >&2 2>&1
  rm -rf "$WORK/bin"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_server: sets START_MS, the milliseconds from launch to the "k8s server ready" line
start_server() {
  NSTART=$((NSTART + 1))
  local log=$WORK/server-$NSTART.log t0
  t0=$(now_ms)
  setsid "$T" exec "$H" "$BIN" server $SERVER_ARGS </dev/null >"$log" 2>&1 &
  SPID=$!
  while ! grep -q "k8s server ready" "$log" 2>/dev/null; do
    alive "$SPID" || { noansi <"$log" | tail -n 20 >&2; die "k8s server exited before it was ready"; }
    [ $(($(now_ms) - t0)) -lt 300000 ] || die "k8s server not ready after 300 s"
    sleep 0.1
  done
  START_MS=$(($(now_ms) - t0))
}
stop_server() {   # sets STOP_MS, the milliseconds from SIGTERM to exit
  local t0
  t0=$(now_ms)
  kill -TERM "$SPID"
  while alive "$SPID"; do
    [ $(($(now_ms) - t0)) -lt 120000 ] || die "k8s server did not exit within 120 s of SIGTERM"
    sleep 0.05
  done
  STOP_MS=$(($(now_ms) - t0))
  wait "$SPID"; SPID=""
}
own() {   # the figure k8s logs itself on the ready line, and how long the payload/apiserver took
  noansi <"$WORK/server-$1.log" | awk '
    /components ready/ { if (match($0, /ms=[0-9]+/)) c = substr($0, RSTART + 3, RLENGTH - 3) }
    /kube-apiserver ready/ { if (match($0, /ms=[0-9]+/)) a = substr($0, RSTART + 3, RLENGTH - 3) }
    /k8s server ready/ { if (match($0, /seconds="[0-9.]+"/)) s = substr($0, RSTART + 9, RLENGTH - 10) }
    END { printf "%s %s %s\n", (c == "" ? "?" : c), (a == "" ? "?" : a), (s == "" ? "?" : s) }'
}

# ------------------------------------------------------------------------------------------ run
rm -rf "$WORK"; mkdir -p "$WORK/bin"
cp "$K8S_BIN" "$BIN.tmp" && mv "$BIN.tmp" "$BIN" || die "cannot copy $K8S_BIN"
attached=$("$BIN" version 2>/dev/null | grep -q 'none attached' && echo no || echo yes)
"$T" up "$H" >&2 || die "cannot bring up test host $H"
HDISK=$("$T" dir "$H")
HOSTCG=""
for t in /sys/fs/cgroup/memory /sys/fs/cgroup/pids /sys/fs/cgroup/*; do
  [ -d "$t/k8s-e2e/$H" ] && { HOSTCG=$t/k8s-e2e/$H; break; }
done
[ -n "$HOSTCG" ] || die "cannot find the cgroup of host $H"
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)

say "first start (fresh data dir; payload attached: $attached)"
start_server; first=$START_MS
read -r first_components first_api first_own < <(own 1)
say "ready after $(secs "$first") (k8s says ${first_own} s; components ${first_components} ms, kube-apiserver ${first_api} ms)"

stops=(); restarts=()
for ((r = 1; r <= RESTARTS; r++)); do
  stop_server; s=$STOP_MS; stops+=("$s")
  start_server; t=$START_MS; restarts+=("$t")
  say "restart $r: stop $(secs "$s"), start to ready $(secs "$t")"
done

say "deploying the 2-replica test workload"
kc create namespace "$NS" >/dev/null
timeout 60 "$T" exec "$H" env "${KENV[@]}" "$BIN" kubectl -n "$NS" apply -f - >/dev/null <<'EOF' || die "cannot apply the workload"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
        - name: httpd
          image: k8s.local/busybox:latest
          imagePullPolicy: IfNotPresent
          command: [sh, -c, 'mkdir -p /www && echo "bench $(hostname)" >/www/index.html && exec httpd -f -p 8080 -h /www']
          ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
EOF
kc -n "$NS" rollout status deploy/web --timeout=120s >/dev/null || die "the workload did not become ready"
say "settling for ${SETTLE} s"
sleep "$SETTLE"

# ------------------------------------------------------------------------------------------ measure
# measure ROWS: one line per process of the host into ROWS ("rss pss anon pid name", KiB, largest RSS first;
# anon: the anonymous part of the PSS, what the kernel cannot drop and read again from a file)
measure() {
  local rows=$1 p rss pss anon argv0 name cg uid holder
  declare -A podname
  while read -r uid name; do [ -n "$uid" ] && podname[$uid]=$name; done < <(
    kc get pods -A -o jsonpath='{range .items[*]}{.metadata.uid} {.metadata.namespace}/{.metadata.name}{"\n"}{end}' 2>/dev/null)
  holder=$("$T" pid "$H")
  : >"$rows"
  for p in $(find "$HOSTCG" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -un); do
    [ "$p" = "$holder" ] && continue
    rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$p/status" 2>/dev/null)
    [ -n "$rss" ] || continue             # gone, or a kernel thread
    read -r pss anon < <(awk '/^Pss:/ { p = $2 } /^Pss_Anon:/ { a = $2 } END { print p + 0, a + 0 }' "/proc/$p/smaps_rollup" 2>/dev/null)
    argv0=$(tr '\0' '\n' 2>/dev/null <"/proc/$p/cmdline" | head -n 1); name=${argv0##*/}
    [ "$p" = "$SPID" ] && name="k8s (supervisor + datastore)"
    cg=$(grep -m1 -o 'kubepods[^ ]*' "/proc/$p/cgroup" 2>/dev/null || true)
    if [ -n "$cg" ]; then
      uid=$(grep -o 'pod[0-9a-f_-]\{36\}' <<<"$cg" | head -n 1); uid=${uid#pod}; uid=${uid//_/-}
      name="pod ${podname[$uid]:-?}: $name"
    fi
    echo "$rss ${pss:-0} ${anon:-0} $p $name" >>"$rows"
  done
  sort -rn "$rows" -o "$rows"
}
rows=$WORK/rows
measure "$rows"
total_rss=$(awk '{ s += $1 } END { print s }' "$rows")
total_pss=$(awk '{ s += $2 } END { print s }' "$rows")
total_anon=$(awk '{ s += $3 } END { print s }' "$rows")
# group RE [ROWS]: the RSS, PSS and anonymous PSS sums and the count of the processes whose name matches RE
group() { awk -v re="$1" '{ n = $0; sub(/^[^ ]+ [^ ]+ [^ ]+ [^ ]+ /, "", n) } n ~ re { r += $1; p += $2; a += $3; c++ } END { printf "%d %d %d %d\n", r, p, a, c }' "${2:-$rows}"; }
read -r cp_rss cp_pss cp_anon _ < <(group '^(k8s |kube-control-plane|kube-apiserver|kube-controller-manager|kube-scheduler)')
read -r node_rss node_pss node_anon _ < <(group '^(containerd|kubelet|kube-proxy)')
read -r pod_rss pod_pss pod_anon _ < <(group '^pod ')
mcg=/sys/fs/cgroup/memory/k8s-e2e/$H
cg_usage=""; cg_rss=""; cg_cache=""
if [ -f "$mcg/memory.usage_in_bytes" ]; then
  cg_usage=$(($(cat "$mcg/memory.usage_in_bytes") / 1024))
  cg_rss=$(awk '$1 == "total_rss" { print int($2 / 1024) }' "$mcg/memory.stat")
  cg_cache=$(awk '$1 == "total_cache" { print int($2 / 1024) }' "$mcg/memory.stat")
elif [ -f /sys/fs/cgroup/k8s-e2e/$H/memory.current ]; then
  cg_usage=$(($(cat /sys/fs/cgroup/k8s-e2e/$H/memory.current) / 1024))
fi
datadir_kb=$(du -sk "$HDISK/fs/var-lib-k8s" 2>/dev/null | cut -f1)
db_kb=$(du -sk "$HDISK/fs/var-lib-k8s/server/db" 2>/dev/null | cut -f1)
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)

# ------------------------------------------------------------------------------------------ density
# The node filled up to BENCH_DENSITY_PODS pods (default 110, the kubelet's max-pods) with sleeping busybox
# pods of one Deployment: the time from its apply to all of them Running, then the memory again.
DENSITY=${BENCH_DENSITY_PODS:-110}
density_ms=""
if [ "$DENSITY" -gt 0 ]; then
  have=$(kc get pods -A --field-selector "spec.nodeName=$H" --no-headers 2>/dev/null | wc -l)
  want=$((DENSITY - have))
  say "density: $want more pods, $DENSITY on the node"
  t0=$(now_ms)
  timeout 60 "$T" exec "$H" env "${KENV[@]}" "$BIN" kubectl -n "$NS" apply -f - >/dev/null <<EOF || die "cannot apply the density workload"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: fill
spec:
  replicas: $want
  selector:
    matchLabels: {app: fill}
  template:
    metadata:
      labels: {app: fill}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: sleep
          image: k8s.local/busybox:latest
          imagePullPolicy: IfNotPresent
          command: [sleep, "86400"]
EOF
  running=0
  while [ "$running" -lt "$want" ]; do
    [ $(($(now_ms) - t0)) -lt 600000 ] || die "only $running of $want density pods Running after 600 s"
    sleep 1
    running=$(kc -n "$NS" get pods -l app=fill --field-selector status.phase=Running --no-headers 2>/dev/null | wc -l)
  done
  density_ms=$(($(now_ms) - t0))
  say "density: $want pods Running after $(secs "$density_ms"); settling for 20 s"
  sleep 20
  measure "$WORK/rows-density"
fi
# density_rows: the density table's rows, one per kind of process
density_rows() {
  local label re r p c
  while IFS='|' read -r label re; do
    read -r r p a c < <(group "$re" "$WORK/rows-density")
    [ "$c" -gt 0 ] && echo "| $label | $c | $(mib "$r") MiB | $(mib "$p") MiB | $(mib "$a") MiB |"
  done <<'ROWS'
kube-control-plane (kube-apiserver, controller-manager, scheduler)|^kube-control-plane
kube-apiserver|^kube-apiserver
kube-controller-manager|^kube-controller-manager
kube-scheduler|^kube-scheduler
k8s (supervisor + datastore)|^k8s
kubelet|^kubelet
kube-proxy|^kube-proxy
containerd|^containerd$
containerd shims (one per pod)|^containerd-shim
the pods' own processes (pause, containers)|^pod 
ROWS
}

sorted() { printf '%s\n' "$@" | sort -n; }
med() { sorted "$@" | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
minv() { sorted "$@" | head -n 1; }
maxv() { sorted "$@" | tail -n 1; }

# ------------------------------------------------------------------------------------------ report
cat <<EOF

### Single-node bench ($(date -u +%Y-%m-%d), $(nproc) vCPU, load average ${LOAD0} at start, ${LOAD1} at the end)

Binary: \`$K8S_BIN\` (payload attached: $attached${SERVER_ARGS:+; server args: $SERVER_ARGS}), $("$BIN" version 2>/dev/null | sed -n 's/^kubernetes: /Kubernetes /p')

| start | time to "k8s server ready" (node Ready) |
| --- | --- |
| first start, fresh data dir$([ "$attached" = yes ] && echo ", incl. payload extraction") | $(secs "$first") (k8s: ${first_own} s; components ready after ${first_components} ms, kube-apiserver ready after ${first_api} ms) |
| restart (SIGTERM, start again), median of $RESTARTS | $(secs "$(med "${restarts[@]}")") (min $(secs "$(minv "${restarts[@]}")"), max $(secs "$(maxv "${restarts[@]}")")) |
| stop: SIGTERM to exit, median of $RESTARTS | $(secs "$(med "${stops[@]}")") (min $(secs "$(minv "${stops[@]}")"), max $(secs "$(maxv "${stops[@]}")")) |

Steady memory with the 2-replica busybox httpd Deployment + Service running, ${SETTLE} s after it was ready
(every process in the host's cgroup; RSS counts shared pages in every process that maps them, PSS splits them;
kube-control-plane (kube-apiserver, controller-manager and scheduler in one process), kubelet and kube-proxy are one multicall binary; anonymous: the part
of the PSS that is heaps and stacks, the rest being the binaries' pages, which the kernel can drop and read again):

| | RSS | PSS | PSS anonymous |
| --- | ---: | ---: | ---: |
| **total, $(wc -l <"$rows") processes** | **$(mib "$total_rss") MiB** | **$(mib "$total_pss") MiB** | **$(mib "$total_anon") MiB** |
| control plane: k8s (supervisor + datastore), kube-control-plane | $(mib "$cp_rss") MiB | $(mib "$cp_pss") MiB | $(mib "$cp_anon") MiB |
| node: containerd + shims, kubelet, kube-proxy | $(mib "$node_rss") MiB | $(mib "$node_pss") MiB | $(mib "$node_anon") MiB |
| pods (coredns, 2 × httpd, pause) | $(mib "$pod_rss") MiB | $(mib "$pod_pss") MiB | $(mib "$pod_anon") MiB |
$([ -n "$cg_usage" ] && echo "| memory cgroup of the host: usage (rss + page cache) | $(mib "$cg_usage") MiB${cg_rss:+ (rss $(mib "$cg_rss") MiB, cache $(mib "$cg_cache") MiB)} | |")
| data dir on disk (datastore) | $(mib "${datadir_kb:-0}") MiB ($(mib "${db_kb:-0}") MiB) | |

| process | pid | RSS MiB | PSS MiB | PSS anonymous MiB |
| --- | ---: | ---: | ---: | ---: |
$(awk '{ n = $0; sub(/^[^ ]+ [^ ]+ [^ ]+ [^ ]+ /, "", n); printf "| %s | %s | %.1f | %.1f | %.1f |\n", n, $4, $1 / 1024, $2 / 1024, $3 / 1024 }' "$rows")

For comparison, k3s publishes about 1.6 GB for a server with a small workload.
EOF
[ -n "$density_ms" ] && cat <<EOF

Density: the node filled to $DENSITY pods ($want sleeping busybox pods of one Deployment, beside the ones above):
all Running $(secs "$density_ms") after the apply; memory 20 s later:

| processes | count | RSS | PSS | PSS anonymous |
| --- | ---: | ---: | ---: | ---: |
| **total** | **$(wc -l <"$WORK/rows-density")** | **$(mib "$(awk '{ s += $1 } END { print s }' "$WORK/rows-density")") MiB** | **$(mib "$(awk '{ s += $2 } END { print s }' "$WORK/rows-density")") MiB** | **$(mib "$(awk '{ s += $3 } END { print s }' "$WORK/rows-density")") MiB** |
$(density_rows)
EOF
exit 0
