#!/usr/bin/env bash
# e2e/up-ha.sh: `k8s up` of an HA cluster: three servers (etcd) and one agent, on four Debian hosts booted with
# systemd (e2e/lib/nspawn.sh), from a workstation over SSH.
#
#   e2e/up-ha.sh         exit 0 = every check passed, 1 = a check failed, 77 = skipped
#
# 1. up: 3 servers (the second as user debian, through sudo) + 1 agent: every node Ready; etcd has 3 voting
#    members, all healthy; a pod on the agent reaches a pod on the third server and a Service; the agent's API
#    load balancer lists the 3 servers.
#    Prints "BENCH up ha3+agent: S s".
# 2. The second server powered off (the kubeconfig points at the first): the API still serves reads and writes
#    (a ConfigMap created and read back). Powered on again: its node is Ready, etcd has 3 healthy voting members
#    again, and its own API server sees the ConfigMap written while it was down.
# 3. The same inventory again: --output json reports no change on any host, binaries, configs and units as they
#    were. Prints "BENCH up ha again (no change): S s".
# Environment: see e2e/lib/up.sh (K8S_BIN, E2E_TIMEOUT, NSPAWN_KEEP).
CL=${E2E_CLUSTER:-e2e-upha}
NHOSTS=4
SCRIPT=e2e/up-ha.sh
# shellcheck source=lib/up.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/up.sh"

up_init
S1=1 S2=2 S3=3 A=4
ETCD_SERVERS=("$S1" "$S2" "$S3")
inventory "$WORK/hosts.yaml" "$S1 server" "$S2 server debian" "$S3 server" "$A agent"

# ------------------------------------------------------------------------------------------ 1. the cluster
step "up: servers ${HOST[S1]} ${HOST[S2]} (debian + sudo) ${HOST[S3]}, agent ${HOST[A]}"
run_up first -i "$WORK/hosts.yaml" --kubeconfig-out "$KC" -y
echo "BENCH up ha3+agent: $UP_SECS s"
((UP_RC == 0)) || { show_up first 40; die "k8s up failed (exit $UP_RC)"; }
ok "k8s up exited 0 in $UP_SECS s"; show_up first 8
[[ -s $KC ]] || die "no kubeconfig at $KC"
nodes_ready 120 "${HOST[@]:1}" && ok "all 4 nodes Ready (kubectl on the workstation)" ||
  { TMO=30 kc get nodes -o wide 2>&1 | indent; die "nodes not Ready"; }
etcd_voters_healthy 3 60 "after up"
pod_traffic "${HOST[S3]}" "${HOST[A]}"
# The agent's API load balancer follows the kubernetes EndpointSlices (a watch): it knows every server.
want=$(printf '"%s:6443"\n' "${IP[S1]}" "${IP[S2]}" "${IP[S3]}" | sort | paste -sd,)
for ((i = 0; i < 30; i++)); do
  got=$(hx "$A" cat /var/lib/k8s/agent/api-servers.json 2>/dev/null | tr -d '[]' | tr ',' '\n' | sort | paste -sd,)
  [[ $got == "$want" ]] && break
  sleep 1
done
[[ $got == "$want" ]] && ok "the agent's API load balancer lists the 3 servers ($got)" ||
  fail "the agent's API load balancer lists '$got', not the 3 servers ($want)"

# ------------------------------------------------------------------------------------------ 2. a server down
step "${HOST[S2]} powered off: the API still reads and writes"
t=$(ms)
"$N" stop "$CL" $S2 2>&1 | indent
say "${HOST[S2]} stopped ($(secs "$t") s)"
# etcd may have to elect a leader first (when the stopped server led): retry for a bounded time
t=$(ms) written=""
for ((k = 0; k < 30; k++)); do
  TMO=20 kc create configmap e2e-ha --from-literal=written="while-${HOST[S2]}-down" >/dev/null 2>&1 && { written=1; break; }
  sleep 2
done
[[ -n $written ]] && ok "a ConfigMap created $(secs "$t") s after the power-off" || fail "no write succeeded in 60 s with ${HOST[S2]} down"
[[ $(TMO=20 kc get configmap e2e-ha -o jsonpath='{.data.written}' 2>&1) == "while-${HOST[S2]}-down" ]] &&
  ok "and read back" || fail "the ConfigMap cannot be read back with ${HOST[S2]} down"
TMO=20 kc get nodes >/dev/null 2>&1 && ok "nodes listed with ${HOST[S2]} down" || fail "cannot list nodes with ${HOST[S2]} down"

step "${HOST[S2]} powered on again: it rejoins"
t=$(ms) on=$(date +%s)
"$N" start "$CL" $S2 2>&1 | indent
node_back "${HOST[S2]}" "$on" 180 && ok "node ${HOST[S2]} Ready again, its kubelet renewing its Lease, $(secs "$t") s after power-on" ||
  { fail "node ${HOST[S2]} not back 180 s after power-on"; TMO=30 kc get nodes 2>&1 | indent; }
etcd_voters_healthy 3 90 "after ${HOST[S2]} came back"
v=$(TMO=30 hx $S2 k8s kubectl get configmap e2e-ha -o jsonpath='{.data.written}' 2>&1)
[[ $v == "while-${HOST[S2]}-down" ]] && ok "${HOST[S2]}'s own API server sees the ConfigMap written while it was down" ||
  fail "${HOST[S2]}'s API server: $v"

# ------------------------------------------------------------------------------------------ 3. again
step "up again with the same inventory: nothing changes"
remember_hosts "$S1" "$S2" "$S3" "$A"
run_up again -i "$WORK/hosts.yaml" --kubeconfig-out "$KC" --output json -y
echo "BENCH up ha again (no change): $UP_SECS s"
if ((UP_RC == 0)); then ok "k8s up exited 0 in $UP_SECS s"; else fail "the second up failed (exit $UP_RC)"; show_up again; fi
json_no_change again "${IP[@]:1}"
hosts_unchanged "$S1" "$S2" "$S3" "$A"
