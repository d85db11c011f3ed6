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
#   CONFORMANCE_MIRROR=                   1: a registry in its own test host (cf-reg: Debian's docker-registry,
#                                         TLS from a CA made here) holds the kit's images, and every node's
#                                         /etc/k8s/registries.yaml mirrors registry.k8s.io to it; the tests
#                                         e2e/conformance-skip.txt marks "[mirror]" (they pull with Always) run
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
MIRROR=${CONFORMANCE_MIRROR:-}
[[ -n $MIRROR ]] && HOSTS+=(cf-reg)
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
  [[ $h == cf-reg ]] && continue
  mkdir -p "$($T dir "$h")/fs/var-lib-k8s/images"
  cp "$kit"/images/*.tar "$($T dir "$h")/fs/var-lib-k8s/images/"
done

# mirror_up: the kit's images in a registry of their own, and every node's registries.yaml pointing
# registry.k8s.io at it (with its CA), before the nodes start.
mirror_up() {
  local ip reg f h
  ip=$($T ip cf-reg) && reg=$ip:5000
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$shared/ca.key" -out "$shared/ca.pem" -days 1 -subj /CN=e2e-mirror-ca 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -keyout "$shared/reg.key" -out "$shared/reg.csr" -subj /CN=cf-reg 2>/dev/null
  openssl x509 -req -in "$shared/reg.csr" -CA "$shared/ca.pem" -CAkey "$shared/ca.key" -CAcreateserial -days 1 \
    -extfile <(echo "subjectAltName=IP:$ip") -out "$shared/reg.pem" 2>/dev/null
  printf 'version: 0.1\nlog: {level: warn}\nstorage: {filesystem: {rootdirectory: /tmp/registry}}\nhttp:\n  addr: %s\n  tls: {certificate: %s, key: %s}\n' \
    "$reg" "$shared/reg.pem" "$shared/reg.key" >"$shared/registry.yml"
  setsid "$T" exec cf-reg docker-registry serve "$shared/registry.yml" </dev/null >"$shared/registry.log" 2>&1 &
  disown
  for _ in $(seq 30); do on cf-reg curl -sf --cacert "$shared/ca.pem" "https://$reg/v2/" >/dev/null && break; sleep 1; done
  for f in "$kit"/images/*.tar; do
    on cf-reg python3 "$here/lib/registry-push.py" "$f" "$reg" - - "$shared/ca.pem" - >/dev/null ||
      fail "pushing $(basename "$f") to the mirror $reg"
  done
  for h in "${HOSTS[@]}"; do
    [[ $h == cf-reg ]] && continue
    mkdir -p "$($T dir "$h")/fs/etc-k8s"
    cp "$shared/ca.pem" "$($T dir "$h")/fs/etc-k8s/mirror-ca.pem"
    printf 'mirrors:\n  registry.k8s.io:\n    endpoint: ["https://%s"]\nconfigs:\n  "%s":\n    tls: {ca_file: /etc/k8s/mirror-ca.pem}\n' \
      "$reg" "$reg" >"$($T dir "$h")/fs/etc-k8s/registries.yaml"
  done
  ok "mirror: registry.k8s.io served by https://$reg ($(ls "$kit"/images/*.tar | wc -l) kit images pushed)"
}
[[ -n $MIRROR ]] && mirror_up

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
# Lines of the skip file whose reason starts "[mirror]" are the tests a registry mirror lets run.
skip=$(grep -v '^#' "$here/conformance-skip.txt" | grep -v '^$' | { if [[ -n $MIRROR ]]; then grep -vF $'\t[mirror]'; else cat; fi; } |
  cut -f1 | paste -sd'|' || true)
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
  [[ -z $MIRROR ]] || cp "$shared/registry.log" "$RESULTS/" 2>/dev/null || true
  cp "$shared"/*.log "$RESULTS/" 2>/dev/null || true
  fail "conformance: some tests failed (see $RESULTS/summary.txt)"
fi
ok "conformance: every test passed"
