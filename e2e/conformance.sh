#!/usr/bin/env bash
# e2e/conformance.sh [K8S_BIN]: upstream's conformance suite (e2e.test of the pinned Kubernetes, from
# bootstrap/conformance/build.sh) against a cluster of test hosts: one server and one agent (or, with
# CONFORMANCE_CLUSTER=ha, three servers on the carried etcd and one agent), the
# suite's images imported on every node from the kit (dropped in /var/lib/k8s/images before the
# nodes start: nothing is pulled). The suite runs from the workstation netns, as from a laptop:
# the tests not marked [Serial] in parallel (ginkgo, CONFORMANCE_PROCS processes), then the
# [Serial] ones alone. Writes under RESULTS: junit_*.xml, the ginkgo output, summary.txt (passed,
# failed, skipped; each failure's name and first error line), and the node logs when a test failed.
# Exit 0 only if no test failed.
#
# Environment:
#   CONFORMANCE_FOCUS='\[Conformance\]'   the tests to run (a ginkgo regex; make test's subset narrows it)
#   CONFORMANCE_SKIP=''                   tests to leave out (regex), besides those of e2e/conformance-skip.txt
#   CONFORMANCE_PROCS=2                   parallel ginkgo processes for the non-serial tests
#   RESULTS=/var/tmp/k8s-conformance      where the reports go (emptied first)
#   CONFORMANCE_CLUSTER=single            single (1 server + 1 agent) or ha (3 servers + 1 agent)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
FOCUS=${CONFORMANCE_FOCUS:-'\[Conformance\]'}
PROCS=${CONFORMANCE_PROCS:-2}
RESULTS=${RESULTS:-/var/tmp/k8s-conformance}
CLUSTER=${CONFORMANCE_CLUSTER:-single}
shared=/var/tmp/k8s-e2e-conformance
SERVER=cf-s1 AGENT=cf-a1
case $CLUSTER in
  single) HOSTS=("$SERVER" "$AGENT") ;;
  ha) HOSTS=("$SERVER" cf-s2 cf-s3 "$AGENT") ;;
  *) echo "CONFORMANCE_CLUSTER must be single or ha, not $CLUSTER" >&2; exit 2 ;;
esac
# shellcheck source=e2e/lib/servers.sh
source "$here/lib/servers.sh"
exec 7>/var/tmp/k8s-e2e-conformance.lock
flock -w 60 7 || fail "another e2e/conformance.sh is running"
t0=$SECONDS

kit=$("$here/../bootstrap/conformance/build.sh") || fail "the conformance kit did not build (bootstrap/conformance/build.sh)"
ok "kit: $kit ($(grep -vc '^missing' "$kit/images.txt") images, $(grep -c '^missing' "$kit/images.txt") not built)"
rm -rf "$RESULTS" && mkdir -p "$RESULTS"

# The suite's images on both nodes before they start: imported with the carried ones.
for h in "${HOSTS[@]}"; do
  mkdir -p "$($T dir "$h")/fs/var-lib-k8s/images"
  cp "$kit"/images/*.tar "$($T dir "$h")/fs/var-lib-k8s/images/"
done

if [[ $CLUSTER == ha ]]; then
  # The carried etcd on three servers: the first starts it, the others join as learners, promoted.
  start "$SERVER" --cluster-init
  cp "$($T dir "$SERVER")/fs/var-lib-k8s/server/token" "$shared/server-token"
  for h in cf-s2 cf-s3; do start "$h" --server "https://$($T ip "$SERVER"):9345" --token-file "$shared/server-token"; done
  ok "3 HA servers ready"
else
  start "$SERVER"
  ok "server ready"
fi
token=$($T dir "$SERVER")/fs/var-lib-k8s/server/agent-token
setsid "$T" exec "$AGENT" "$K8S" agent --server "https://$($T ip "$SERVER"):9345" --token-file "$token" \
  </dev/null >"$shared/$AGENT.log" 2>&1 &
wait_log "$shared/$AGENT.log" "k8s agent ready" 300 1 || fail "the agent did not become ready"
kc "$SERVER" wait --for=condition=Ready node --all --timeout=120s >/dev/null || fail "the nodes are not Ready"
ok "${#HOSTS[@]} nodes Ready ($CLUSTER: $((SECONDS - t0)) s since the start)"

# The admin kubeconfig names 127.0.0.1: from the workstation the API server is at the server's address.
kubeconfig=$shared/admin.kubeconfig
sed "s#https://127.0.0.1:6443#https://$($T ip "$SERVER"):6443#" "$($T dir "$SERVER")/fs/etc-k8s/admin.kubeconfig" >"$kubeconfig"
kubectl=$(ls "$($T dir "$SERVER")"/fs/var-lib-k8s/bin/*/bin/kubectl | head -n 1)
skip=$(grep -v '^#' "$here/conformance-skip.txt" | grep -v '^$' | cut -f1 | paste -sd'|' || true)
skip=${skip}${CONFORMANCE_SKIP:+${skip:+|}$CONFORMANCE_SKIP}
suite_args=(--kubeconfig="$kubeconfig" --kubectl-path="$kubectl" --provider=skeleton --report-dir="$RESULTS"
  --e2e-output-dir="$RESULTS/output" --dump-logs-on-failure=false)

# run_pass PART GINKGO-ARGS...: one pass of the suite (its JUnit report junit_PART_01.xml, its output PART.log).
# Several --skip regexes exclude what any matches; --label-filter narrows the focus further.
run_pass() {
  local part=$1 rc=0; shift
  echo "---- $part: focus $FOCUS${skip:+, skip $skip} $*"
  "$T" ws "$kit/bin/ginkgo" --timeout=24h --no-color --focus="$FOCUS" ${skip:+--skip="$skip"} "$@" \
    "$kit/bin/e2e.test" -- "${suite_args[@]}" --report-prefix="${part}_" >"$RESULTS/$part.log" 2>&1 || rc=$?
  grep -E '^(Ran [0-9]+ of|SUCCESS!|FAIL!)' "$RESULTS/$part.log" | tail -n 2 || true
  return "$rc"
}
rc=0
run_pass parallel --procs="$PROCS" --skip='\[Serial\]' || rc=1
run_pass serial --label-filter=Serial || rc=1

python3 "$here/lib/junit-summary.py" "$RESULTS"/junit_*.xml | tee "$RESULTS/summary.txt"
echo "time: $((SECONDS - t0)) s (cluster up to summary), results in $RESULTS"
if ((rc != 0)); then
  for h in "${HOSTS[@]}"; do cp -r "$($T dir "$h")/fs/var-lib-k8s/logs" "$RESULTS/logs-$h" 2>/dev/null || true; done
  cp "$shared"/*.log "$RESULTS/" 2>/dev/null || true
  fail "conformance: some tests failed (see $RESULTS/summary.txt)"
fi
ok "conformance: every test passed"
