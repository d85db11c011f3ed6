#!/usr/bin/env bash
# e2e/agent.sh [K8S_BIN]: a server and an agent in two test hosts on one
# bridge: the agent joins with the server's agent token, both nodes turn
# Ready, a pod on the agent reaches a pod on the server directly (which sees
# the pod's own address), through a Service, and by DNS; NetworkPolicies refuse and admit traffic between
# namespaces (ingress and egress, on the same node and across); LoadBalancer Services answer on both nodes' addresses
# from the workstation, minus a node listening on the port (Events say why); a wrong token (repeated: the address is then held off
# by the join endpoint) and a token for another cluster are
# refused with a clear message, and so is another host asking for a node name already bound (the server's or the
# agent's); the agent's own credentials read only the Secrets of its node's pods and change only its own Node
# (Node authorizer, NodeRestriction). The traffic between the nodes takes the pod
# network POD_NETWORK (host-gw, the default, or vxlan: then it must cross the
# VXLAN device, whose MAC each node publishes); a removed node's entries go,
# and reset removes the device. The join settings also come from the environment
# (K8S_URL, K8S_TOKEN; with --token-file too: refused, naming both), and the server
# writes its admin kubeconfig with --write-kubeconfig-mode. Exit 0 only if every check passes.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
T=$here/lib/testhost.sh
BIN_SRC=${1:-${K8S_BIN:-$here/../dist/k8s}}
EXTRA=${K8S_SERVER_ARGS:-}
POD_NETWORK=${POD_NETWORK:-host-gw}
shared=/var/tmp/k8s-e2e-agent
SERVER=ag-s1 AGENT=ag-a1

fail() { echo "FAIL: $*"; exit 1; }
ok() { echo "ok   $*"; }
# One run at a time: the hosts' names and $shared are fixed, and a second
# run's cleanup would take down the first one's hosts.
exec 7>/var/tmp/k8s-e2e-agent.lock
flock -w 900 7 || fail "another e2e/agent.sh is still running after 15 minutes"
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
[[ $POD_NETWORK == host-gw || $POD_NETWORK == vxlan ]] || fail "POD_NETWORK must be host-gw or vxlan, not $POD_NETWORK"
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
setsid "$T" exec "$SERVER" "$K8S" server --pod-network "$POD_NETWORK" --write-kubeconfig-mode 0644 $EXTRA \
  </dev/null >"$shared/$SERVER.log" 2>&1 &
wait_log "$shared/$SERVER.log" "k8s server ready" 300 || fail "the server did not become ready"
ok "server ready (pod network $POD_NETWORK)"
mode=$(stat -c %a "$($T dir "$SERVER")/fs/etc-k8s/admin.kubeconfig")
[[ $mode == 644 ]] || fail "--write-kubeconfig-mode 0644: the admin kubeconfig is $mode"
ok "--write-kubeconfig-mode 0644: the admin kubeconfig is 644"
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
# This one comes as k3s' K3S_URL and K3S_TOKEN would: in the environment.
# shellcheck disable=SC2086
if out=$("$T" exec "$AGENT" env K8S_URL="https://$server_ip:9345" K8S_TOKEN="$(cat "$shared/bad-ca")" "$K8S" agent $EXTRA 2>&1); then
  fail "an agent with another cluster's token started"
fi
grep -q "different cluster CA" <<<"$out" || fail "wrong CA: unclear message: $out"
ok "another cluster's token (K8S_URL, K8S_TOKEN) is refused before the secret is sent"
# shellcheck disable=SC2086
if out=$("$T" exec "$AGENT" env K8S_TOKEN="$(cat "$shared/agent-token")" "$K8S" agent --server "https://$server_ip:9345" \
  --token-file "$shared/agent-token" $EXTRA 2>&1); then
  fail "an agent given both K8S_TOKEN and --token-file started"
fi
grep -q "both token and token-file" <<<"$out" || fail "token and token-file: unclear message: $out"
! grep -qF "$(cat "$shared/agent-token")" <<<"$out" || fail "the error printed the token: $out"
ok "token and token-file together are refused: $(grep error: <<<"$out")"
# Wrong tokens again and again from one address: after a few, the endpoint holds the address off without a check.
held=""
for ((i = 0; i < 8; i++)); do
  # shellcheck disable=SC2086
  out=$("$T" exec "$AGENT" "$K8S" agent --server "https://$server_ip:9345" --token-file "$shared/bad-secret" $EXTRA 2>&1) &&
    fail "an agent with a wrong secret started"
  if grep -q "too many failed joins" <<<"$out"; then held=$out; break; fi
done
if [[ -n $held ]]; then
  ok "after $((i + 1)) more wrong tokens the address is held off: $(grep -o 'too many failed joins.*' <<<"$held" | head -n 1)"
  wait_s=$(grep -o 'try again in [0-9]* s' <<<"$held" | grep -o '[0-9]*' | head -n 1)
  sleep $((${wait_s:-8} + 1))   # the held-off address is this agent's: let the wait pass before its real join
else
  fail "9 wrong tokens in a row from one address, and it is never held off"
fi
# A valid token asking for a name that is no node name (a wildcard, to be used as a serving cert): refused.
# shellcheck disable=SC2086
if out=$("$T" exec "$AGENT" "$K8S" agent --server "https://$server_ip:9345" --token-file "$shared/agent-token" \
  --node-name '*.default.svc' $EXTRA 2>&1); then
  fail "an agent named '*.default.svc' started"
fi
grep -q "not a valid node name" <<<"$out" || fail "wildcard node name: unclear message: $out"
ok "a wildcard node name is refused: $(grep error: <<<"$out")"

start_agent() {
  # shellcheck disable=SC2086
  setsid "$T" exec "$AGENT" "$K8S" agent --server "https://$server_ip:9345" --token-file "$shared/agent-token" $EXTRA \
    </dev/null >"$shared/$AGENT.log" 2>&1 &
  agent_pid=$!   # setsid and `testhost exec` replace themselves: this is the agent
}
stop_agent() {
  local i
  kill -TERM "$agent_pid"
  for ((i = 0; i < 60; i++)); do kill -0 "$agent_pid" 2>/dev/null || return 0; sleep 1; done
  fail "the agent did not stop on SIGTERM"
}
agent_ip=$($T ip "$AGENT")
# Route latency, measured on the server's clock: when the agent's Node first
# carries what the server's route needs (its pod CIDR; with vxlan also its
# device's MAC), seen by a watch, and when the route appears (polled every
# 20 ms inside the host). The route follower watches Nodes: a figure near 0,
# not the 5 s of a polling loop.
stamp() { while IFS= read -r l; do printf '%s %s\n' "$(date +%s.%N)" "$l"; done; }
timeout 600 "$T" exec "$SERVER" "$K8S" kubectl get nodes -w \
  -o jsonpath='{.metadata.name} cidr={.spec.podCIDR} mac={.metadata.annotations.k8s\.io/vxlan-mac}{"\n"}' 2>/dev/null |
  stamp >"$shared/node-events" &
route_pattern="via $agent_ip "
[[ $POD_NETWORK == vxlan ]] && route_pattern="dev k8s.vxlan"
timeout 600 "$T" exec "$SERVER" bash -c "until ip route show | grep -q '$route_pattern'; do sleep 0.02; done; date +%s.%N" \
  >"$shared/route-at" 2>/dev/null &
route_poller=$!
start_agent
wait_log "$shared/$AGENT.log" "k8s agent ready" 300 || fail "the agent did not become ready"
ok "agent joined and ready"
wait "$route_poller" || fail "the server never got a route to $AGENT ($route_pattern)"
# The agent's kubelet serving cert comes from the kubelet CA: the cluster CA (which kubeconfigs and
# joining servers trust) does not vouch for it, so an agent token yields no usable API server cert.
server_pki=$($T dir "$SERVER")/fs/var-lib-k8s/pki
agent_cert=$($T dir "$AGENT")/fs/var-lib-k8s/agent/pki/kubelet.crt
openssl verify -CAfile "$server_pki/kubelet-ca.crt" "$agent_cert" >/dev/null 2>&1 ||
  fail "the agent's kubelet serving cert does not chain to the kubelet CA"
openssl verify -CAfile "$server_pki/ca.crt" "$agent_cert" >/dev/null 2>&1 &&
  fail "the agent's kubelet serving cert chains to the cluster CA"
ok "the agent's kubelet serving cert is signed by the kubelet CA, not the cluster CA"
needs='cidr=[0-9]'
[[ $POD_NETWORK == vxlan ]] && needs='cidr=[0-9].* mac=[0-9a-f]'
event_at=$(awk -v n="$AGENT" -v re="$needs" '$2 == n && $0 ~ re { print $1; exit }' "$shared/node-events")
[[ -n $event_at ]] || fail "the node watch never saw $AGENT with ${needs}: $(cat "$shared/node-events")"
latency=$(awk -v a="$event_at" -v b="$(cat "$shared/route-at")" 'BEGIN { printf "%.2f", b - a }')
ok "route latency: the server routed to $AGENT ${latency} s after its Node got its pod CIDR$([[ $POD_NETWORK == vxlan ]] && echo " and VXLAN MAC") (goal: under 2 s)"
kubectl wait --for=condition=Ready "node/$SERVER" "node/$AGENT" --timeout=120s >/dev/null || fail "nodes not Ready"
ok "both nodes Ready"
# A node name belongs to the host that joined with it first: the agent's host, with the agent token but a password
# of its own (another data dir), cannot take the server's name, nor the agent's.
for name in "$SERVER" "$AGENT"; do
  # shellcheck disable=SC2086
  if out=$("$T" exec "$AGENT" "$K8S" agent --server "https://$server_ip:9345" --token-file "$shared/agent-token" \
    --node-name "$name" --data-dir /tmp/e2e-other-host $EXTRA 2>&1); then
    fail "another host joined as $name"
  elif grep -q "is bound to another host" <<<"$out"; then
    ok "another host cannot join as $name: $(grep -o 'node name .* bound to another host' <<<"$out" | head -n 1)"
  else
    fail "joining as $name from another host: unclear message: $(tail -n 2 <<<"$out")"
  fi
done
"$T" exec "$AGENT" rm -rf /tmp/e2e-other-host

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
# The Service was created a moment ago: the agent's kube-proxy programs it once the EndpointSlice reaches it
# (a watch plus its one-second minimum sync), so give that a bounded wait and say how long it took.
svc_start=$SECONDS
until [[ $(fetch "http://$svc/") == "hello-from-$SERVER" ]]; do
  ((SECONDS - svc_start < 30)) || fail "pod on $AGENT cannot reach Service $svc after 30 s: $(fetch "http://$svc/")"
  sleep 1
done
ok "pod on the agent reaches the Service by ClusterIP ($svc, after $((SECONDS - svc_start)) s)"
[[ $(fetch "http://web.default.svc.cluster.local/") == "hello-from-$SERVER" ]] || fail "Service DNS name does not answer from $AGENT"
ok "pod on the agent reaches the Service by DNS"

# NetworkPolicy, enforced by each node on its own pods: web pods in np-web on both nodes (a readiness probe each,
# which the kubelet sends from the node and no policy may stop), a client in np-client on the server. A default
# deny in np-web blocks the client, same node and across; allowing np-client on 8080 admits it and still blocks
# the default namespace's pod; an egress policy in np-client admits np-web only, so the client no longer reaches
# the default namespace; deleting the policies opens everything again.
kubectl create namespace np-web >/dev/null
kubectl create namespace np-client >/dev/null
for n in $SERVER $AGENT; do
  kubectl -n np-web run "w-$n" --image=k8s.local/busybox:latest --image-pull-policy=IfNotPresent --labels=app=w \
    --overrides="{\"spec\":{\"nodeName\":\"$n\",\"containers\":[{\"name\":\"w\",\"image\":\"k8s.local/busybox:latest\",\"imagePullPolicy\":\"IfNotPresent\",\"command\":[\"sh\",\"-c\",\"mkdir -p /www && echo np-$n >/www/index.html && exec httpd -f -p 8080 -h /www\"],\"readinessProbe\":{\"httpGet\":{\"port\":8080},\"periodSeconds\":2}}]}}" >/dev/null
done
kubectl -n np-client run client --image=k8s.local/busybox:latest --image-pull-policy=IfNotPresent \
  --overrides="{\"spec\":{\"nodeName\":\"$SERVER\"}}" --command -- sleep 3600 >/dev/null
kubectl -n np-web wait --for=condition=Ready "pod/w-$SERVER" "pod/w-$AGENT" --timeout=120s >/dev/null || fail "np-web pods not Ready"
kubectl -n np-client wait --for=condition=Ready pod/client --timeout=120s >/dev/null || fail "np-client pod not Ready"
w_ip() { kubectl -n np-web get pod "w-$1" -o jsonpath='{.status.podIP}'; }
probe() {   # probe NS POD URL: the page, or "refused"/"timeout"
  local out
  out=$(kubectl -n "$1" exec "$2" -- timeout 5 wget -qO- "$3" 2>&1) && { echo "$out"; return; }
  grep -qi refused <<<"$out" && echo refused || echo "timeout"
}
# expect WHAT NS POD URL: waits up to 20 s for WHAT ("np-<node>" or "refused"); prints the seconds it took
expect() {
  local start=$SECONDS got
  until got=$(probe "$2" "$3" "$4"); [[ $got == "$1" ]]; do
    ((SECONDS - start < 20)) || fail "$2/$3 -> $4: got '$got', want '$1'"
    sleep 0.5
  done
  echo $((SECONDS - start))
}
for n in $SERVER $AGENT; do expect "np-$n" np-client client "http://$(w_ip "$n"):8080/" >/dev/null; done
expect "np-$AGENT" default "web-$AGENT" "http://$(w_ip "$AGENT"):8080/" >/dev/null
ok "without policies the client reaches np-web on both nodes"
policy() { "$T" exec "$SERVER" "$K8S" kubectl apply -f - >/dev/null <<<"$1" || fail "applying a NetworkPolicy failed"; }
policy '{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"deny","namespace":"np-web"},"spec":{"podSelector":{},"policyTypes":["Ingress"]}}'
took=$(expect refused np-client client "http://$(w_ip "$AGENT"):8080/")
expect refused np-client client "http://$(w_ip "$SERVER"):8080/" >/dev/null
ok "a default-deny policy in np-web refuses the client, across nodes (enforced after ${took} s) and on its own node"
sleep 5   # a few probe periods under the deny
kubectl -n np-web wait --for=condition=Ready "pod/w-$SERVER" "pod/w-$AGENT" --timeout=5s >/dev/null ||
  fail "np-web pods lost readiness under a default deny: the kubelet's probes come from the node and must pass"
ok "the kubelet's readiness probes (from the node) still pass under the deny"
policy '{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"from-client","namespace":"np-web"},"spec":{"podSelector":{"matchLabels":{"app":"w"}},"ingress":[{"from":[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"np-client"}}}],"ports":[{"port":8080}]}]}}'
for n in $SERVER $AGENT; do expect "np-$n" np-client client "http://$(w_ip "$n"):8080/" >/dev/null; done
expect refused default "web-$AGENT" "http://$(w_ip "$AGENT"):8080/" >/dev/null
ok "allowing np-client on 8080 admits the client to both nodes' pods; a pod of the default namespace stays refused"
policy '{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"only-web","namespace":"np-client"},"spec":{"podSelector":{},"policyTypes":["Egress"],"egress":[{"to":[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"np-web"}}}]}]}}'
expect refused np-client client "http://$server_pod:8080/" >/dev/null
expect "np-$AGENT" np-client client "http://$(w_ip "$AGENT"):8080/" >/dev/null
rules=$("$T" exec "$SERVER" iptables -S KUBE-K8S-NP)
grep -q -- "-s $(kubectl -n np-client get pod client -o jsonpath='{.status.podIP}')/32 .*-j KUBE-K8S-NP-E-" <<<"$rules" ||
  fail "the server's KUBE-K8S-NP chain has no egress jump for the client pod: $rules"
ok "an egress policy in np-client admits np-web only: the default namespace's pod is refused to the client"
kubectl -n np-web delete networkpolicy deny from-client >/dev/null
kubectl -n np-client delete networkpolicy only-web >/dev/null
expect "hello-from-$SERVER" np-client client "http://$server_pod:8080/" >/dev/null
expect "np-$AGENT" default "web-$AGENT" "http://$(w_ip "$AGENT"):8080/" >/dev/null
[[ -z $("$T" exec "$AGENT" iptables -S | grep -- '-j KUBE-K8S-NP-') ]] || fail "the agent kept pod chains after the policies went"
ok "with the policies deleted, traffic flows again and no pod chain is left"
kubectl delete namespace np-web np-client --wait=false >/dev/null

# LoadBalancer Services (servicelb): both nodes' addresses in the status, and <node IP>:<port> answers from the
# workstation namespace on each; a port a node listens on (the server's 6443) leaves that node out with a
# PortInUse Event; one every node listens on (the kubelets' 10250) leaves the Service pending (NoNodeAvailable).
agent_ip=$($T ip "$AGENT")
lb_ips() { kubectl get svc "$1" -o jsonpath='{range .status.loadBalancer.ingress[*]}{.ip}{" "}{end}'; }
lb_events() { kubectl get events --field-selector "involvedObject.name=$1,reason=$2" -o jsonpath='{.items[*].message}'; }
wait_lb() {   # wait_lb SERVICE WANT: the status lists exactly WANT ("ip ip ", sorted) within 30 s
  local start=$SECONDS
  until [[ $(lb_ips "$1") == "$2" ]]; do
    ((SECONDS - start < 30)) || fail "Service $1 has LoadBalancer addresses '$(lb_ips "$1")', want '$2'"
    sleep 1
  done
}
for port in 8081 6443 10250; do
  kubectl expose pod "web-$SERVER" --name="lb-$port" --type=LoadBalancer --port="$port" --target-port=8080 --selector="app=web-$SERVER" >/dev/null
done
lb_start=$SECONDS
wait_lb lb-8081 "$(printf '%s\n' "$server_ip" "$agent_ip" | sort | tr '\n' ' ')"
for ip in "$server_ip" "$agent_ip"; do
  until [[ $($T ws curl -s --max-time 5 "http://$ip:8081/" 2>&1) == "hello-from-$SERVER" ]]; do
    ((SECONDS - lb_start < 60)) || fail "LoadBalancer Service lb-8081 does not answer on $ip:8081 from the workstation"
    sleep 1
  done
done
ok "a LoadBalancer Service gets both nodes' addresses and answers on $server_ip:8081 and $agent_ip:8081 from the workstation (after $((SECONDS - lb_start)) s)"
wait_lb lb-6443 "$agent_ip "
[[ $(lb_events lb-6443 PortInUse) == *"node $SERVER listens on TCP/6443"* ]] ||
  fail "no PortInUse Event names $SERVER for lb-6443: $(lb_events lb-6443 PortInUse)"
ok "a LoadBalancer Service on 6443 leaves the server out (its API server listens there): $(lb_events lb-6443 PortInUse | cut -c1-120)"
nna_start=$SECONDS
until [[ -n $(lb_events lb-10250 NoNodeAvailable) ]]; do
  ((SECONDS - nna_start < 30)) || fail "no NoNodeAvailable Event for lb-10250 (addresses: '$(lb_ips lb-10250)')"
  sleep 1
done
[[ -z $(lb_ips lb-10250) ]] || fail "lb-10250 got addresses though every kubelet listens on 10250: $(lb_ips lb-10250)"
ok "a LoadBalancer Service on 10250 stays pending (every node's kubelet listens there): NoNodeAvailable"
kubectl delete svc lb-8081 lb-6443 lb-10250 >/dev/null

# The agent's own credentials (its kubelet's) reach only what its node needs: the Node authorizer lets it read a
# Secret that a pod on its node uses, not one that only the server's pods use, nor list Secrets; NodeRestriction
# lets it label its own Node, not the server's, nor its own with a node-restriction label.
as_agent() { "$T" exec "$AGENT" "$K8S" kubectl --kubeconfig /var/lib/k8s/agent/pki/kubelet.kubeconfig "$@" 2>&1; }
for n in $SERVER $AGENT; do
  kubectl create secret generic "only-$n" --from-literal=v="$n" >/dev/null
  kubectl run "uses-secret-$n" --image=k8s.local/busybox:latest --image-pull-policy=IfNotPresent \
    --overrides="{\"spec\":{\"nodeName\":\"$n\",\"containers\":[{\"name\":\"c\",\"image\":\"k8s.local/busybox:latest\",\"imagePullPolicy\":\"IfNotPresent\",\"command\":[\"sleep\",\"3600\"],\"env\":[{\"name\":\"V\",\"valueFrom\":{\"secretKeyRef\":{\"name\":\"only-$n\",\"key\":\"v\"}}}]}]}}" \
    >/dev/null
done
kubectl wait --for=condition=Ready "pod/uses-secret-$SERVER" "pod/uses-secret-$AGENT" --timeout=120s >/dev/null ||
  fail "the pods using the test Secrets are not Ready"
out=$(as_agent get secret "only-$AGENT" -o 'jsonpath={.data.v}') && [[ $(base64 -d <<<"$out") == "$AGENT" ]] ||
  fail "the agent cannot read the Secret its own pod uses (so the refusals below prove nothing): $out"
if out=$(as_agent get secret "only-$SERVER" -o name); then fail "the agent's credentials read a Secret of the server's pod: $out"; fi
grep -q Forbidden <<<"$out" || fail "reading the server pod's Secret as the agent: unclear refusal: $out"
if out=$(as_agent get secrets -A -o name); then fail "the agent's credentials list every Secret: $out"; fi
grep -q Forbidden <<<"$out" || fail "listing Secrets as the agent: unclear refusal: $out"
ok "the agent's credentials read its own pod's Secret, not the server pod's, and cannot list Secrets (Node authorizer)"
out=$(as_agent label node "$AGENT" e2e-own-label=yes) || fail "the agent cannot label its own Node: $out"
if out=$(as_agent label node "$SERVER" e2e-evil=yes); then fail "the agent's credentials labelled the server's Node: $out"; fi
grep -q Forbidden <<<"$out" || fail "labelling the server's Node as the agent: unclear refusal: $out"
if out=$(as_agent label node "$AGENT" node-restriction.kubernetes.io/e2e=yes); then
  fail "the agent set a node-restriction.kubernetes.io label on its own Node: $out"
fi
grep -q Forbidden <<<"$out" || fail "a node-restriction label as the agent: unclear refusal: $out"
ok "the agent's credentials label its own Node, not the server's, and no node-restriction.kubernetes.io label (NodeRestriction)"
kubectl delete pod "uses-secret-$SERVER" "uses-secret-$AGENT" --wait=false >/dev/null

# Tokens: a created one expires (24 h unless told), `rotate` replaces the default agent token and revokes the old.
"$T" exec "$SERVER" "$K8S" token create --description e2e-day >/dev/null || fail "k8s token create failed"
listed=$("$T" exec "$SERVER" "$K8S" token list)
grep -E ' agent +[0-9]+ \(unix\) +e2e-day$' <<<"$listed" >/dev/null || fail "a created token does not expire: $listed"
old_id=$(sed -E 's/^.*::([a-z0-9]+)\..*$/\1/' "$shared/agent-token")
"$T" exec "$SERVER" "$K8S" token rotate --role agent >/dev/null 2>&1 || fail "k8s token rotate failed"
cmp -s "$token_file" "$shared/agent-token" && fail "k8s token rotate left the agent token file as it was"
grep -q "^$old_id " <<<"$("$T" exec "$SERVER" "$K8S" token list)" && fail "the rotated token $old_id is still listed"
# shellcheck disable=SC2086
if out=$("$T" exec "$AGENT" "$K8S" agent --server "https://$server_ip:9345" --token-file "$shared/agent-token" \
  --node-name e2e-rotated --data-dir /tmp/e2e-rotated $EXTRA 2>&1); then
  fail "the rotated agent token still joins"
fi
grep -q "unknown, revoked or expired token" <<<"$out" || fail "joining with the rotated token: unclear message: $(tail -n 2 <<<"$out")"
"$T" exec "$AGENT" rm -rf /tmp/e2e-rotated
cp "$token_file" "$shared/agent-token"
ok "a created token expires in a day; the default agent token rotated: the old one ($old_id) is refused, the file holds the new"

on() { local h=$1; shift; "$T" exec "$h" "$@"; }

# The kubelet renews its client certificate through the CSR API. The agent's store gets a pair signed by the cluster
# CA that is nearly over (from two hours ago to ten minutes ahead: past the kubelet's 70-90 % renewal point); the
# kubelet, restarted, asks for a new one at once, the controller-manager approves it (nodes may renew their own
# name only) and signs it for a year, the store's link moves to it, and the node stays Ready.
store=/var/lib/k8s/agent/kubelet-client
current=$store/kubelet-client-current.pem
on "$AGENT" test -L "$current" || fail "the agent's kubelet has no certificate store ($current is no link)"
grep "client-certificate: $current" <(on "$AGENT" cat /var/lib/k8s/agent/etc/kubelet.kubeconfig) >/dev/null ||
  fail "the agent's kubelet kubeconfig does not read its pair from $current"
ca=$($T dir "$SERVER")/fs/var-lib-k8s/pki
mkdir -p "$shared/ca" && : >"$shared/ca/index" && echo 1000 >"$shared/ca/serial"
printf '%s\n' '[ca]' 'default_ca = e2e' '[e2e]' "database = $shared/ca/index" "new_certs_dir = $shared/ca" \
  "serial = $shared/ca/serial" 'default_md = sha256' 'policy = any' 'x509_extensions = client' \
  '[any]' 'organizationName = supplied' 'commonName = supplied' \
  '[client]' 'basicConstraints = critical,CA:FALSE' 'keyUsage = critical,digitalSignature' \
  'extendedKeyUsage = clientAuth' 'authorityKeyIdentifier = keyid' >"$shared/ca/ca.cnf"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$shared/ca/short.key" \
  -subj "/O=system:nodes/CN=system:node:$AGENT" -out "$shared/ca/short.csr" 2>"$shared/ca/log" ||
  fail "openssl req failed: $(cat "$shared/ca/log")"
openssl ca -batch -config "$shared/ca/ca.cnf" -cert "$ca/ca.crt" -keyfile "$ca/ca.key" -in "$shared/ca/short.csr" \
  -out "$shared/ca/short.crt" -notext -startdate "$(date -u -d '-2 hours' +%y%m%d%H%M%SZ)" \
  -enddate "$(date -u -d '+10 minutes' +%y%m%d%H%M%SZ)" 2>"$shared/ca/log" || fail "openssl ca failed: $(cat "$shared/ca/log")"
on "$AGENT" sh -c "cat $shared/ca/short.crt $shared/ca/short.key >$store/kubelet-client-e2e-short.pem &&
  chmod 600 $store/kubelet-client-e2e-short.pem && ln -sfn $store/kubelet-client-e2e-short.pem $current"
csrs_before=$(kubectl get csr -o name | wc -l)
kubelet_pid=$(pgrep -f -- "kubelet .*--hostname-override=$AGENT( |$)") || fail "no kubelet of $AGENT found"
kill "$kubelet_pid"
for ((i = 0; i < 90; i++)); do
  target=$(on "$AGENT" readlink "$current")
  [[ $target != */kubelet-client-e2e-short.pem ]] && break
  sleep 1
done
[[ $target != */kubelet-client-e2e-short.pem ]] || fail "the kubelet did not renew its nearly expired client certificate in 90 s"
renewed=$(on "$AGENT" openssl x509 -in "$current" -noout -subject -issuer -enddate)
grep "CN *= *system:node:$AGENT" <<<"$renewed" >/dev/null && grep "issuer=CN *= *k8s-ca" <<<"$renewed" >/dev/null ||
  fail "the renewed kubelet certificate is not for system:node:$AGENT from the cluster CA: $renewed"
on "$AGENT" openssl x509 -in "$current" -noout -checkend $((300 * 86400)) >/dev/null ||
  fail "the renewed kubelet certificate does not last a year: $renewed"
csrs=$(kubectl get csr -o jsonpath='{range .items[*]}{.spec.signerName} {.spec.username} {.status.conditions[0].reason}{"\n"}{end}')
grep "^kubernetes.io/kube-apiserver-client-kubelet system:node:$AGENT AutoApproved$" <<<"$csrs" >/dev/null ||
  fail "no auto-approved renewal CSR from system:node:$AGENT: $csrs"
(( $(kubectl get csr -o name | wc -l) > csrs_before )) || fail "no new CertificateSigningRequest was made"
kubectl wait --for=condition=Ready "node/$AGENT" --timeout=60s >/dev/null || fail "$AGENT is not Ready after the renewal"
out=$(on "$AGENT" "$K8S" kubectl --kubeconfig /var/lib/k8s/agent/etc/kubelet.kubeconfig get node "$AGENT" -o name 2>&1) ||
  fail "the node's kubeconfig does not work with the renewed pair: $out"
ok "the agent's kubelet renewed its nearly expired client certificate through an auto-approved CSR ($(sed -n 's/^notAfter=//p' <<<"$renewed")); Ready"

# The way between the nodes.
server_cidr=$(kubectl get node "$SERVER" -o jsonpath='{.spec.podCIDR}')
agent_cidr=$(kubectl get node "$AGENT" -o jsonpath='{.spec.podCIDR}')
way=$(on "$AGENT" ip route get "$server_pod")
pod_mtu=$(kubectl exec "web-$AGENT" -- cat /sys/class/net/eth0/mtu)
if [[ $POD_NETWORK == host-gw ]]; then
  grep -q "via $server_ip dev eth0" <<<"$way" || fail "host-gw: $server_pod is not routed via $server_ip: $way"
  on "$AGENT" ip link show k8s.vxlan >/dev/null 2>&1 && fail "host-gw: the agent has a VXLAN device"
  [[ $pod_mtu == 1500 ]] || fail "host-gw: pod MTU is $pod_mtu, not 1500"
  ok "host-gw: $server_cidr via $server_ip, no VXLAN device, pod MTU 1500"
else
  for h in $SERVER $AGENT; do
    link=$(on "$h" ip -d link show k8s.vxlan) || fail "$h has no k8s.vxlan device"
    grep -q "vxlan id 1 local $($T ip "$h") dev eth0 .*dstport 8472 .*nolearning" <<<"$link" ||
      fail "$h: k8s.vxlan is not VNI 1 on eth0, port 8472, no learning: $link"
    mac=$(on "$h" cat /sys/class/net/k8s.vxlan/address)
    published=$(kubectl get node "$h" -o jsonpath='{.metadata.annotations.k8s\.io/vxlan-mac}')
    [[ $mac == "$published" ]] || fail "$h: node annotation k8s.io/vxlan-mac is '$published', the device's MAC is $mac"
  done
  ok "vxlan: both nodes have k8s.vxlan (VNI 1, eth0, port 8472) and published its MAC on their Node"
  grep -q "via ${server_cidr%/*} dev k8s.vxlan" <<<"$way" || fail "vxlan: $server_pod is not routed through k8s.vxlan: $way"
  on "$AGENT" ip route show | grep -q "via $server_ip " && fail "vxlan: the agent has a host-gw route: $(on "$AGENT" ip route show)"
  fdb=$(on "$AGENT" bridge fdb show dev k8s.vxlan)
  grep -q "$(on "$SERVER" cat /sys/class/net/k8s.vxlan/address) dst $server_ip self permanent" <<<"$fdb" ||
    fail "vxlan: the agent's FDB does not send the server's MAC to $server_ip: $fdb"
  device_mtu=$(on "$AGENT" cat /sys/class/net/k8s.vxlan/mtu)
  [[ $device_mtu == 1450 && $pod_mtu == 1450 ]] || fail "vxlan: device MTU $device_mtu, pod MTU $pod_mtu; want 1450 (1500 - 50)"
  ok "vxlan: $server_cidr via ${server_cidr%/*} dev k8s.vxlan, FDB to $server_ip, no host-gw route, MTU 1450 on device and pods"
  counter() { on "$1" cat "/sys/class/net/k8s.vxlan/statistics/$2"; }
  tx0=$(counter "$AGENT" tx_packets) rx0=$(counter "$SERVER" rx_packets)
  for _ in 1 2 3; do [[ $(fetch "http://$server_pod:8080/") == "hello-from-$SERVER" ]] || fail "vxlan: pod-to-pod fetch failed"; done
  tx1=$(counter "$AGENT" tx_packets) rx1=$(counter "$SERVER" rx_packets)
  ((tx1 - tx0 >= 9 && rx1 - rx0 >= 9)) || fail "vxlan: 3 fetches moved $((tx1 - tx0)) packets out of the agent's k8s.vxlan, $((rx1 - rx0)) into the server's"
  ok "vxlan: 3 fetches crossed the tunnel: agent tx +$((tx1 - tx0)), server rx +$((rx1 - rx0)) packets"

  # A restart keeps the device (running pods keep their peers) and the setting.
  mac=$(on "$AGENT" cat /sys/class/net/k8s.vxlan/address)
  stop_agent
  mv "$shared/$AGENT.log" "$shared/$AGENT.1.log"
  start_agent
  wait_log "$shared/$AGENT.log" "k8s agent ready" 300 || fail "the agent did not become ready again"
  [[ $(on "$AGENT" cat /sys/class/net/k8s.vxlan/address) == "$mac" ]] || fail "vxlan: the agent's restart recreated k8s.vxlan"
  # kubectl exec needs the restarted kubelet serving again: retry a while.
  for ((i = 0; i < 30; i++)); do
    out=$(fetch "http://$server_pod:8080/") && [[ $out == "hello-from-$SERVER" ]] && break
    sleep 1
  done
  [[ $out == "hello-from-$SERVER" ]] || fail "vxlan: pod-to-pod fails after the agent restarted: $out"
  ok "vxlan: the agent restarted with the same device ($mac); pods reach each other again (after ${i}s of retries)"
fi

# A node that leaves: stop the agent, delete its Node; the server drops its routes (and VXLAN entries).
stop_agent
entries="ip route show $agent_cidr"
[[ $POD_NETWORK == vxlan ]] && entries+="; ip neigh show dev k8s.vxlan nud permanent; bridge fdb show dev k8s.vxlan"
deleted_at=$(date +%s.%N)
kubectl delete node "$AGENT" >/dev/null
# Polled every 20 ms inside the server, for at most 30 s.
gone_at=$(on "$SERVER" timeout 30 bash -c "until [ -z \"\$( { $entries; } 2>&1)\" ]; do sleep 0.02; done; date +%s.%N") ||
  fail "the server kept entries for the removed node $AGENT: $(on "$SERVER" bash -c "$entries")"
removal=$(awk -v a="$deleted_at" -v b="$gone_at" 'BEGIN { printf "%.2f", b - a }')
if [[ $POD_NETWORK == vxlan ]]; then
  ok "the removed node's route, ARP and FDB entries on the server's k8s.vxlan are gone ${removal} s after kubectl delete node"
else
  ok "the removed node's route ($agent_cidr via $agent_ip) is gone from the server ${removal} s after kubectl delete node"
fi
kubectl -n kube-system get secret "node-password.$AGENT" >/dev/null 2>&1 ||
  fail "the binding of the name $AGENT is gone before the agent's reset"
out=$(on "$AGENT" "$K8S" reset --yes 2>&1) || fail "k8s reset on $AGENT failed"
grep -q "left the cluster" <<<"$out" || fail "k8s reset on $AGENT did not tell the server: $out"
if kubectl -n kube-system get secret "node-password.$AGENT" >/dev/null 2>&1; then
  fail "the name $AGENT is still bound after the agent's reset"
else
  ok "k8s reset on the agent released its node name (the host may join again as new)"
fi
if on "$AGENT" ip link show k8s.vxlan >/dev/null 2>&1 || on "$AGENT" ip link show cni0 >/dev/null 2>&1; then
  fail "k8s reset left k8s.vxlan or cni0 on $AGENT"
fi
ok "k8s reset on the agent removed its pod network devices"
echo "PASS e2e/agent.sh (pod network $POD_NETWORK)"
