#!/usr/bin/env bash
# cis.sh: the CIS Kubernetes Benchmark (kube-bench) against a `k8s server --profile cis` on one test host.
#
#   e2e/cis.sh          exit 0 = no FAIL left in master, controlplane, node or policies;
#                       1 = a FAIL (or the run broke); 77 = skipped (not root, no binary, no kube-bench)
#
# Steps:
#   1. kube-bench (e2e/cis/build.sh) and its config dir for k8s (e2e/cis/cfg.sh:
#      benchmark cis-1.12, our paths; checks unchanged)
#   2. a test host whose machine-wide sysctls (the per-host files e2e/lib/testhost.sh binds over them)
#      hold what kubelet's protectKernelDefaults wants; /etc/k8s/config.yaml (0600) and the
#      k8s-server unit (0600) as `k8s up` writes them; `k8s server --profile $CIS_PROFILE`; node Ready,
#      kube-system pods Running and ready
#   3. kube-bench run --targets master,controlplane,node,policies inside the host, --json to the results
#      dir, in a mount namespace of its own where `ps` shows this host's processes only (there is no PID
#      namespace: the machine's `ps` would show every other cluster running on this machine, and the
#      checks grep the first kube-control-plane they see) and /bin/sh is bash (as in kube-bench's image)
#   4. the summary per section (also <results>/summary.txt), every FAIL and WARN with its id, text, what
#      kube-bench expected and what it found; FAILs that cannot apply to a single server (NOT_APPLICABLE
#      below, with the reasons) are shown and marked, and do not fail the test
#
# Environment:
#   K8S_BIN=/work/main/dist/k8s     the binary under test (copied to a shared path before use)
#   CIS_PROFILE=cis                 the profile to start with (`--profile cis`); empty: no --profile flag
#                                   (the standard profile: records what the profile has to change)
#   K8S_SERVER_ARGS="..."           extra `k8s server` flags (e.g. "--components-dir DIR" for a plain build)
#   KUBE_BENCH_DIR=DIR              kube-bench and its cfg/ (default: what e2e/cis/build.sh prints)
#   CIS_RESULTS=/var/tmp/k8s-e2e-cis   results: <dir>/<profile>/{kube-bench.json,summary.txt,cfg/} (kept)
#   E2E_HOST=cis1                   test host name
#   E2E_TIMEOUT=900                 hard limit for the whole run, in seconds
#   TESTHOST_KEEP=1                 keep the host's disk after the run (post-mortem)
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
T=$ROOT/e2e/lib/testhost.sh
H=${E2E_HOST:-cis1}
K8S_BIN=${K8S_BIN:-$ROOT/dist/k8s}
PROFILE=${CIS_PROFILE-cis}
SERVER_ARGS=${K8S_SERVER_ARGS:-}
TOTAL_TIMEOUT=${E2E_TIMEOUT:-900}
READY_TIMEOUT=300
WORK=/var/tmp/k8s-e2e-cis.$H         # shared with the host (/var/tmp is the machine's): binary, logs, ps
BIN=$WORK/bin/k8s
RESULTS=${CIS_RESULTS:-/var/tmp/k8s-e2e-cis}/${PROFILE:-standard}
TARGETS=master,controlplane,node,policies
T0=$(date +%s)
DEADLINE=$((T0 + TOTAL_TIMEOUT))
FAILS=0
FAILED_CHECKS=()
SPID=""

# Checks that cannot hold for a single server by construction, each with the reason. They are listed
# with the others and marked, but do not fail the test. (Nothing in kube-bench's checks is changed.)
declare -A NOT_APPLICABLE=(
  [1.1.7]="etcd pod specification file: there is no etcd; the SQLite datastore runs inside the k8s process and its settings are k8s's own (/etc/k8s/config.yaml, 1.1.1)"
  [1.1.8]="etcd pod specification file ownership: as 1.1.7"
  [1.1.12]="etcd data dir owned by etcd:etcd: the datastore (<data-dir>/server/db, 0700) belongs to the k8s process, which runs as root; there is no etcd user"
)

# ------------------------------------------------------------------------------------------ output
. "$ROOT/e2e/lib/report.sh"           # ts say step ok fail die noansi indent

# ------------------------------------------------------------------------------------------ preconditions
[ "$(id -u)" = 0 ] || { echo "cis: SKIP: must run as root (test hosts need namespaces)"; exit 77; }
if [ ! -x "$K8S_BIN" ]; then
  echo "cis: SKIP: no binary at $K8S_BIN; run \`make dist\`, or set K8S_BIN"
  exit 77
fi
if [ -n "$PROFILE" ] && ! "$K8S_BIN" server --help 2>/dev/null | grep -q -- '--profile'; then
  echo "cis: SKIP: $K8S_BIN has no \`k8s server --profile\`; rebuild it (make dist), or measure the"
  echo "  standard profile with CIS_PROFILE= (empty)"
  exit 77
fi
for c in jq unshare; do
  command -v "$c" >/dev/null || { echo "cis: SKIP: $c not found"; exit 77; }
done
if [ -z "${KUBE_BENCH_DIR:-}" ]; then
  KUBE_BENCH_DIR=$("$ROOT/e2e/cis/build.sh" | tail -n 1) ||
    { echo "cis: SKIP: cannot build kube-bench (e2e/cis/build.sh failed: Go module proxy?)"; exit 77; }
fi
KB=$KUBE_BENCH_DIR/kube-bench
[ -x "$KB" ] && [ -f "$KUBE_BENCH_DIR/cfg/config.yaml" ] ||
  { echo "cis: SKIP: no kube-bench in $KUBE_BENCH_DIR (run e2e/cis/build.sh)"; exit 77; }
CDIR=""                              # --components-dir from K8S_SERVER_ARGS, for `k8s kubectl`
read -r -a _args <<<"$SERVER_ARGS"
for ((i = 0; i < ${#_args[@]}; i++)); do
  case ${_args[i]} in
    --components-dir=*) CDIR=${_args[i]#*=} ;;
    --components-dir) CDIR=${_args[i + 1]:-} ;;
  esac
done
KENV=(); [ -n "$CDIR" ] && KENV=("K8S_COMPONENTS_DIR=$CDIR")
PROFILE_ARGS=(); [ -n "$PROFILE" ] && PROFILE_ARGS=(--profile "$PROFILE")

# ------------------------------------------------------------------------------------------ helpers
left() { echo $((DEADLINE - $(date +%s))); }
in_host() {   # bounded run of CMD inside host $1 (timeout $TMO, default 60 s, never past the global deadline)
  local h=$1 t=${TMO:-60}; shift
  [ "$(left)" -lt "$t" ] && t=$(left)
  [ "$t" -gt 0 ] || { echo "global timeout" >&2; return 124; }
  timeout -k 5 "$t" "$T" exec "$h" "$@"
}
hx() { in_host "$H" "$@"; }
kc() { hx env "${KENV[@]}" "$BIN" kubectl "$@"; }
wait_until() {   # wait_until SECONDS DESCRIPTION CMD...: retry CMD (quietly) until it succeeds; 1 on timeout
  local limit=$1 what=$2 end; shift 2
  end=$(($(date +%s) + limit)); [ "$end" -gt "$DEADLINE" ] && end=$DEADLINE
  while :; do
    if "$@" >/dev/null 2>&1; then return 0; fi
    [ "$(date +%s)" -ge "$end" ] && { say "timed out after ${limit}s waiting for: $what"; return 1; }
    sleep 2
  done
}
alive() {   # some thread of PID $1 is not a zombie yet
  local f s
  for f in /proc/"$1"/task/*/stat; do
    read -r s 2>/dev/null <"$f" || continue
    s=${s##*) }; case ${s:0:1} in Z|X) ;; *) return 0 ;; esac
  done
  return 1
}

# ------------------------------------------------------------------------------------------ cleanup
cleanup() {
  local rc=$? f
  trap - EXIT INT TERM
  [ -n "${WATCHDOG:-}" ] && kill "$WATCHDOG" 2>/dev/null
  [ "$rc" != 0 ] && [ "$FAILS" = 0 ] && fail "aborted (exit code $rc)"
  if [ "$FAILS" != 0 ] && [ -z "${BENCH_DONE:-}" ]; then   # the run broke before kube-bench: show why
    echo; say "==== diagnostics"
    [ -f "$WORK/server.log" ] && { echo "--- $WORK/server.log (last 40 lines)"; noansi <"$WORK/server.log" | tail -n 40 | indent; }
    for f in "$($T dir "$H" 2>/dev/null)"/fs/var-lib-k8s/logs/*.log; do
      [ -f "$f" ] || continue
      echo "--- $H:/var/lib/k8s/logs/${f##*/} (last 20 lines)"; noansi <"$f" | tail -n 20 | indent
    done
  fi
  if [ -n "$SPID" ] && alive "$SPID"; then
    kill -TERM "$SPID" 2>/dev/null
    for _ in $(seq 300); do alive "$SPID" || break; sleep 0.1; done
  fi
  say "downing test host $H"
  "$T" down "$H" 2>&1 | indent
  echo
  if [ "$FAILS" = 0 ]; then
    rm -rf "$WORK"
    say "cis: PASS ($(($(date +%s) - T0)) s); results in $RESULTS"
    exit 0
  fi
  rm -rf "${WORK:?}/bin"
  say "cis: FAIL: $FAILS check(s) failed ($(($(date +%s) - T0)) s); results in $RESULTS, logs in $WORK"
  for f in "${FAILED_CHECKS[@]}"; do echo "  - $f"; done
  exit 1
}
trap cleanup EXIT
trap 'echo "[$(ts)] interrupted"; exit 130' INT
trap 'fail "global timeout: the run took more than ${TOTAL_TIMEOUT}s"; exit 124' TERM
( sleep "$TOTAL_TIMEOUT"; kill -TERM $$ 2>/dev/null ) </dev/null >/dev/null 2>&1 &
WATCHDOG=$!

# ========================================================================================== 1
step "1. kube-bench $("$KB" version 2>/dev/null) and its config for k8s"
rm -rf "$WORK" "$RESULTS"; mkdir -p "$WORK/bin" "$RESULTS"
cp "$K8S_BIN" "$BIN.tmp" && mv "$BIN.tmp" "$BIN" || die "cannot copy $K8S_BIN to $BIN"
"$BIN" version 2>&1 | indent
BENCHMARK=$("$ROOT/e2e/cis/cfg.sh" "$KUBE_BENCH_DIR" "$RESULTS/cfg" | tail -n 1) ||
  die "e2e/cis/cfg.sh failed"
ok "config dir $RESULTS/cfg, benchmark $BENCHMARK (checks as released; our paths in $BENCHMARK/config.yaml)"

# `ps` for kube-bench: the machine's ps, limited to the processes of this test host. A process is the
# host's when it sits inside the host's cgroup subtree in every hierarchy: seen from the host's cgroup
# namespace its paths do not climb out ("/.."). Handles the forms kube-bench uses: `-ef`, `-fC NAME`,
# `-C NAME -o cmd --no-headers` (the selections -e/-A and -C become -p with this host's PIDs).
cp /usr/bin/ps "$WORK/ps.real" || die "cannot copy /usr/bin/ps"
cat >"$WORK/ps" <<EOF
#!/bin/bash
# ps, limited to the processes of test host $H (written by e2e/cis.sh)
REAL=$WORK/ps.real
EOF
cat >>"$WORK/ps" <<'EOF'
ours=$(grep -H '' /proc/[0-9]*/cgroup 2>/dev/null | awk -F: '
  { split($1, a, "/"); p = a[3]; seen[p] = 1; if ($4 ~ /^\/\.\./) out[p] = 1 }
  END { for (p in seen) if (!(p in out)) print p }' | sort -n | paste -sd,)
none=999999999                          # no such process: ps prints its header (if any) and exits 1
named() { "$REAL" -o pid=,comm= -p "${ours:-$none}" | awk -v n="${1:0:15}" '$2 == n { print $1 }' | paste -sd,; }
args=()
while (($#)); do
  a=$1; shift
  if [[ $a =~ ^-[a-zA-Z]+$ && $a != -o ]]; then
    letters=${a#-} sel=""
    if [[ $letters == *C ]]; then letters=${letters%C}; sel=$(named "${1:-}"); shift; sel=${sel:-$none}; fi
    if [[ $letters == *[eA]* ]]; then letters=${letters//[eA]/}; sel=${ours:-$none}; fi
    [[ -n $letters ]] && args+=("-$letters")
    [[ -n $sel ]] && args+=(-p "$sel")
  else
    args+=("$a")
  fi
done
exec "$REAL" "${args[@]}"
EOF
chmod 755 "$WORK/ps"
# in_bench CMD...: CMD in the host, in a mount namespace of its own where /usr/bin/ps (= /bin/ps) is the above
# and /bin/sh is bash: kube-bench's checks are written for the shell of its container image (busybox
# ash), and one (5.1.1) uses `[[`, which Debian's dash lacks
SH=$(readlink -f /bin/sh)
in_bench() {
  in_host "$H" unshare --mount --propagation private /bin/bash -c \
    'mount --bind "$0" /usr/bin/ps && { [ "$1" = /usr/bin/bash ] || mount --bind /usr/bin/bash "$1"; } && shift && exec "$@"' \
    "$WORK/ps" "$SH" "$@"
}

# ========================================================================================== 2
step "2. test host $H, k8s server ${PROFILE_ARGS[*]:-(no --profile)}"
others=$("$T" list 2>/dev/null | awk -v h="$H" '$1 != h { print $1 }' | tr '\n' ' ')
[ -n "$others" ] && say "other test hosts on this machine: $others(kube-bench will see only $H's processes)"
TESTHOST_EXTRA_PATHS="${TESTHOST_EXTRA_PATHS:+$TESTHOST_EXTRA_PATHS }/etc/systemd/system" "$T" up "$H" 2>&1 | indent
[ "${PIPESTATUS[0]}" = 0 ] || die "cannot bring up test host $H"
HDISK=$("$T" dir "$H")
HIP=$("$T" ip "$H")
# kubelet with protectKernelDefaults refuses to start unless the kernel already has its values; the host's
# files stand in for the machine's (never change the machine's own)
declare -A SYSCTL=([vm.overcommit_memory]=1 [vm.panic_on_oom]=0 [kernel.panic]=10 [kernel.panic_on_oops]=1
  [kernel.keys.root_maxkeys]=1000000 [kernel.keys.root_maxbytes]=25000000)
for k in "${!SYSCTL[@]}"; do
  [ -f "$HDISK/sysctl/$k" ] || die "no per-host file for $k in $HDISK/sysctl (testhost.sh binds one over each)"
  echo "${SYSCTL[$k]}" >"$HDISK/sysctl/$k"
  [ "$(hx cat "/proc/sys/${k//.//}")" = "${SYSCTL[$k]}" ] || die "$k in $H is not ${SYSCTL[$k]} after writing its per-host file"
done
ok "sysctls in $H (per-host files): $(for k in "${!SYSCTL[@]}"; do printf '%s=%s ' "$k" "${SYSCTL[$k]}"; done)"
# what `k8s up` installs on a host (src/up/apply.rs): the config file 0600, the unit 0600 (keep these modes
# in step with up's: they are what checks 1.1.1-1.1.6 and 4.1.1 measure)
hx sh -c "mkdir -p /etc/k8s && chmod 0755 /etc/k8s && umask 077 &&
  printf '# written by e2e/cis.sh as k8s up would\nnode-name: $H\nnode-ip: $HIP\n' >/etc/k8s/config.yaml" ||
  die "cannot write /etc/k8s/config.yaml in $H"
install -m 0600 "$ROOT/systemd/k8s-server.service" "$HDISK/fs/etc-systemd-system/k8s-server.service" ||
  die "cannot install the unit in $H"
ok "/etc/k8s/config.yaml (0600) and /etc/systemd/system/k8s-server.service (0600) as \`k8s up\` writes them"

say "starting k8s server (log $WORK/server.log)"
: >"$WORK/server.log"
t0=$(date +%s)
setsid "$T" exec "$H" "$BIN" server "${PROFILE_ARGS[@]}" $SERVER_ARGS </dev/null >"$WORK/server.log" 2>&1 &
SPID=$!
while ! grep -q "k8s server ready" "$WORK/server.log"; do
  if ! alive "$SPID"; then
    wait "$SPID"; rc=$?; SPID=""
    die "k8s server exited with code $rc before it was ready"
  fi
  [ $(($(date +%s) - t0)) -ge "$READY_TIMEOUT" ] || [ "$(left)" -le 0 ] && die "k8s server not ready after ${READY_TIMEOUT}s"
  sleep 0.5
done
ok "k8s server (pid $SPID) ready after $(($(date +%s) - t0)) s"
node_ready() { [ "$(kc get node "$H" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]; }
wait_until 60 "node $H Ready" node_ready && ok "node $H is Ready" || die "node $H is not Ready"
kube_system_running() {
  local out
  out=$(kc -n kube-system get pods -o jsonpath='{range .items[*]}{.metadata.name} {.status.phase} {.status.containerStatuses[*].ready}{"\n"}{end}') || return 1
  [ -n "$out" ] && ! grep -qv ' Running true$' <<<"$out" && ! grep -q false <<<"$out"
}
wait_until 180 "every kube-system pod Running and ready" kube_system_running &&
  ok "every kube-system pod is Running and ready" || fail "kube-system pods not all Running/ready"
kc -n kube-system get pods -o wide 2>&1 | indent

# the components' bin dir (kubectl for the policies checks) inside the host
CBIN=${CDIR:+$CDIR/bin}
[ -z "$CBIN" ] && CBIN=$(hx sh -c 'ls -d /var/lib/k8s/bin/*/bin | head -n 1')
hx test -x "$CBIN/kubectl" || die "no kubectl in $CBIN inside $H"
# the ps kube-bench gets sees this host's control plane (kube-apiserver, kube-controller-manager and
# kube-scheduler in one process, e2e/cis/config.yaml), and no other
seen=$(in_bench /bin/ps -C kube-control-pl -o pid= | tr -s ' \n' ' ')
mine=$(hx cat /run/k8s/status.json 2>/dev/null | jq -r '.components[] | select(.name == "kube-control-plane") | .pid' 2>/dev/null)
machine=$(ps -C kube-control-pl -o pid= | tr -s ' \n' ' ')
if [ -n "$mine" ] && [ "$(echo $seen)" = "$mine" ]; then
  ok "ps inside kube-bench's namespace shows kube-control-plane $mine only (the machine runs: ${machine:-none})"
else
  die "ps for kube-bench shows kube-control-plane '$seen', want this host's '$mine' (machine: $machine)"
fi

# ========================================================================================== 3
step "3. kube-bench run --benchmark $BENCHMARK --targets $TARGETS"
t0=$(date +%s)
TMO=600 in_bench env PATH="$CBIN:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
  KUBECONFIG=/etc/k8s/admin.kubeconfig \
  "$KB" run --config-dir "$RESULTS/cfg" --benchmark "$BENCHMARK" --targets "$TARGETS" \
  --json --outputfile "$RESULTS/kube-bench.json" >"$RESULTS/kube-bench.log" 2>&1
rc=$?
BENCH_DONE=1
[ "$rc" = 0 ] || { fail "kube-bench exited with $rc"; tail -n 30 "$RESULTS/kube-bench.log" | indent; exit 1; }
jq -e '.Controls | length > 0' "$RESULTS/kube-bench.json" >/dev/null 2>&1 ||
  { fail "kube-bench wrote no results"; tail -n 30 "$RESULTS/kube-bench.log" | indent; exit 1; }
ok "kube-bench done in $(($(date +%s) - t0)) s: $RESULTS/kube-bench.json"

# ========================================================================================== 4
step "4. results (${PROFILE:-standard} profile)"
na_json=$(for k in "${!NOT_APPLICABLE[@]}"; do jq -n --arg k "$k" --arg v "${NOT_APPLICABLE[$k]}" '{($k): $v}'; done | jq -s 'add // {}')
jq -r --argjson na "$na_json" '
  def cut(n): tostring | gsub("\n"; " ") | if length > n then .[0:n] + "…" else . end;
  def num(w): tostring | " " * (w - length) + .;
  # what the check found: for command-line checks the flags it looks for (from a `ps -ef` line), for
  # config-file checks the lines naming the keys it looks for; else the output itself
  def found:
    .actual_value as $a | .expected_result as $e |
    [$e | scan("\u0027(--[A-Za-z0-9-]+)\u0027") | .[0]] as $flags |
    [$e | scan("\\{(?:range )?\\.([A-Za-z0-9.]+)") | .[0] | split(".") | last] as $keys |
    if ($flags | length) > 0 and ($a | test("(^|\n)\\S+ +[0-9]+ +[0-9]+ ")) then
      [$flags | unique[] as $f | ([$a | scan("(?:^|\\s)(" + $f + "(?:=\\S*)?)(?=\\s|$)") | .[0]] | unique |
        if length > 0 then join(" ") else "\($f) not set" end)] | join(", ") + "   (process command line)"
    elif ($keys | length) > 0 then
      [$keys | unique[] as $k | ([$a | split("\n")[] | select(test($k)) | gsub("^ +"; "")] |
        if length > 0 then join("; ") else "\($k): not set" end)] | join(", ") + "   (config file)"
    else $a | cut(300) end;
  "section                                         PASS  FAIL  WARN  INFO",
  (.Controls[] | "\(.id) \(.node_type): \(.text)" as $name |
     "\($name | .[0:45] | . + " " * (45 - length))  \(.total_pass | num(4))  \(.total_fail | num(4))  \(.total_warn | num(4))  \(.total_info | num(4))"),
  "total                                          \(.Totals.total_pass | num(4))  \(.Totals.total_fail | num(4))  \(.Totals.total_warn | num(4))  \(.Totals.total_info | num(4))",
  "",
  (.Controls[].tests[].results[] | select(.status == "FAIL" or .status == "WARN") |
     "\(.status) \(.test_number) \(.test_desc)" +
     (if $na[.test_number] then "\n       not applicable: \($na[.test_number])" else "" end) +
     (if .reason == "Test marked as a manual test" then "\n       manual: kube-bench has no test for it"
      elif (.reason // "") != "" then "\n       error:    \(.reason | cut(200))"
      else "\n       expected: \(.expected_result | cut(200))\n       found:    \(found)" end))
' "$RESULTS/kube-bench.json" >"$RESULTS/summary.txt"
cat "$RESULTS/summary.txt" | indent
failing=$(jq -r --argjson na "$na_json" '.Controls[] | select(.node_type != "etcd") | .tests[].results[] |
  select(.status == "FAIL" and ($na[.test_number] | not)) | .test_number' "$RESULTS/kube-bench.json" | tr '\n' ' ')
na=$(jq -r --argjson na "$na_json" '.Controls[].tests[].results[] | select(.status == "FAIL" and $na[.test_number]) | .test_number' \
  "$RESULTS/kube-bench.json" | tr '\n' ' ')
[ -n "$na" ] && say "FAIL but not applicable to a single server (not counted): $na"
if [ -z "$failing" ]; then
  ok "no FAIL in $TARGETS"
else
  fail "kube-bench FAILs in $TARGETS: $failing"
fi
step "done"
exit 0
