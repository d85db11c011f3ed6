#!/usr/bin/env bash
# e2e/agent.sh [K8S_BIN]: a server and an agent in two test hosts on one
# bridge: the agent joins with the server's agent token, both nodes turn
# Ready, a pod on the agent reaches a pod on the server directly (which sees
# the pod's own address), through a Service, and by DNS; a wrong token and a token for another cluster are
# refused with a clear message. Exit 0 only if every check passes.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
T=$here/lib/testhost.sh
BIN_SRC=${1:-${K8S_BIN:-$here/../dist/k8s}}
EXTRA=${K8S_SERVER_ARGS:-}
shared=/var/tmp/k8s-e2e-agent
SERVER=ag-s1 AGENT=ag-a1

fail() { echo "FAIL: $*"; exit 1; }
ok() { echo "ok   $*"; }
cleanup() {
  local rc=$?
  if ((rc != 0)); then
    for h in $SERVER $AGENT; do
      echo "--- $h: last lines of its logs"
      tail -n 15 "$shared/$h.log" 2>/dev/null || true
      for f in "$($T dir "$h" 2>/dev/null)"/fs/var-lib-k8s/logs/{kubelet,containerd}.log; do
        [[ -f $f ]] && { echo "--- $f"; tail -n 10 "$f"; }
      done
    done
  fi
  $T down "$AGENT" >/dev/null 2>&1 || true
  $T down "$SERVER" >/dev/null 2>&1 || true
  rm -rf "$shared"
  exit "$rc"
}
trap cleanup EXIT

[[ -x $BIN_SRC ]] || fail "no k8s binary at $BIN_SRC (make dist)"
mkdir -p "$shared"
cp "$BIN_SRC" "$shared/k8s"
K8S=$shared/k8s
$T up "$SERVER" >/dev/null
$T up "$AGENT" >/dev/null
server_ip=$($T ip "$SERVER")

# wait_log FILE PATTERN SECONDS
wait_log() {
  local i
  for ((i = 0; i < $3; i++)); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    grep -q '^error:' "$1" 2>/dev/null && return 1
    sleep 1
  done
  return 1
}

# shellcheck disable=SC2086
setsid "$T" exec "$SERVER" "$K8S" server $EXTRA </dev/null >"$shared/$SERVER.log" 2>&1 &
wait_log "$shared/$SERVER.log" "k8s server ready" 300 || fail "the server did not become ready"
ok "server ready"
kubectl() { "$T" exec "$SERVER" "$K8S" kubectl "$@"; }

token_file=$($T dir "$SERVER")/fs/var-lib-k8s/server/agent-token
[[ -s $token_file ]] || fail "the server wrote no agent token"
cp "$token_file" "$shared/agent-token"

# A token with a wrong secret, and one naming another CA: refused before anything starts.
sed -E 's/\.[a-z0-9]{16}$/.0000000000000000/' "$shared/agent-token" >"$shared/bad-secret"
sed -E 's/^K10[0-9a-f]{4}/K10ffff/' "$shared/agent-token" >"$shared/bad-ca"
# shellcheck disable=SC2086
if out=$("$T" exec "$AGENT" "$K8S" agent --server "https://$server_ip:9345" --token-file "$shared/bad-secret" $EXTRA 2>&1); then
  fail "an agent with a wrong secret started"
fi
grep -q "refused the token" <<<"$out" || fail "wrong secret: unclear message: $out"
ok "a wrong secret is refused: $(grep error: <<<"$out")"
# shellcheck disable=SC2086
if out=$("$T" exec "$AGENT" "$K8S" agent --server "https://$server_ip:9345" --token-file "$shared/bad-ca" $EXTRA 2>&1); then
  fail "an agent with another cluster's token started"
fi
grep -q "different cluster CA" <<<"$out" || fail "wrong CA: unclear message: $out"
ok "another cluster's token is refused before the secret is sent"

# shellcheck disable=SC2086
setsid "$T" exec "$AGENT" "$K8S" agent --server "https://$server_ip:9345" --token-file "$shared/agent-token" $EXTRA \
  </dev/null >"$shared/$AGENT.log" 2>&1 &
wait_log "$shared/$AGENT.log" "k8s agent ready" 300 || fail "the agent did not become ready"
ok "agent joined and ready"
kubectl wait --for=condition=Ready "node/$SERVER" "node/$AGENT" --timeout=120s >/dev/null || fail "nodes not Ready"
ok "both nodes Ready"

for n in $SERVER $AGENT; do
  kubectl run "web-$n" --image=k8s.local/busybox:latest --image-pull-policy=IfNotPresent --labels="app=web-$n" \
    --overrides="{\"spec\":{\"nodeName\":\"$n\"}}" --command -- \
    sh -c "mkdir -p /www && echo hello-from-$n >/www/index.html && exec httpd -f -v -p 8080 -h /www" >/dev/null
done
kubectl expose pod "web-$SERVER" --name=web --port=80 --target-port=8080 --selector="app=web-$SERVER" >/dev/null
kubectl wait --for=condition=Ready "pod/web-$SERVER" "pod/web-$AGENT" --timeout=120s >/dev/null || fail "test pods not Ready"
server_pod=$(kubectl get pod "web-$SERVER" -o jsonpath='{.status.podIP}')
svc=$(kubectl get svc web -o jsonpath='{.spec.clusterIP}')

# busybox wget's -T segfaults in Debian's busybox-static; bound with timeout instead.
fetch() { kubectl exec "web-$AGENT" -- timeout 10 wget -qO- "$1" 2>&1; }
[[ $(fetch "http://$server_pod:8080/") == "hello-from-$SERVER" ]] || fail "pod on $AGENT cannot reach pod $server_pod on $SERVER"
ok "pod on the agent reaches a pod on the server ($server_pod)"
# No NAT between pods: the server pod saw the agent pod's own address (httpd -v logs the peer).
agent_pod=$(kubectl get pod "web-$AGENT" -o jsonpath='{.status.podIP}')
kubectl logs "web-$SERVER" | grep -qF "ffff:$agent_pod]:" || fail "the server pod did not see $agent_pod as the source: $(kubectl logs "web-$SERVER" | tail -3)"
ok "the server pod saw the agent pod's own address ($agent_pod): no NAT between pods"
[[ $(fetch "http://$svc/") == "hello-from-$SERVER" ]] || fail "pod on $AGENT cannot reach Service $svc"
ok "pod on the agent reaches the Service by ClusterIP ($svc)"
[[ $(fetch "http://web.default.svc.cluster.local/") == "hello-from-$SERVER" ]] || fail "Service DNS name does not answer from $AGENT"
ok "pod on the agent reaches the Service by DNS"
echo "PASS e2e/agent.sh"
