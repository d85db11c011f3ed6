#!/usr/bin/env bash
# e2e/up-grow.sh: a single-server cluster grows into HA through `k8s up`, on three Debian hosts booted with
# systemd (e2e/lib/nspawn.sh), from a workstation over SSH.
#
#   e2e/up-grow.sh       exit 0 = every check passed, 1 = a check failed, 77 = skipped
#
# 1. up: one server (SQLite): its node Ready; two busybox httpd pods, a ConfigMap and a Secret.
# 2. The inventory lists three servers: up restarts the first with cluster-init (its SQLite data moves into a new
#    etcd member) and joins the other two: 3 nodes Ready, etcd has 3 healthy voting members; every object of the
#    full list (namespaces, nodes, ConfigMaps, Secrets, service accounts, Services, Deployments) is still there
#    and nothing new but the new servers' join tokens; the pods are the same ones (UIDs), never restarted, and still serve; the Secret reads back.
#    Prints "BENCH up grow 1→3 servers: S s".
# Environment: see e2e/lib/up.sh (K8S_BIN, E2E_TIMEOUT, NSPAWN_KEEP).
CL=${E2E_CLUSTER:-e2e-upgrow}
NHOSTS=3
SCRIPT=e2e/up-grow.sh
# shellcheck source=lib/up.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/up.sh"

up_init
S1=1 S2=2 S3=3
ETCD_SERVERS=("$S1" "$S2" "$S3")
inventory "$WORK/one.yaml" "$S1 server"
inventory "$WORK/three.yaml" "$S1 server" "$S2 server" "$S3 server"

# What the new servers add (their Nodes, their node-password Secrets) is left out of the comparison.
objects() {
  TMO=30 kc get namespaces,nodes,configmaps,secrets,serviceaccounts,services,deployments -A -o name |
    grep -v -e "${HOST[S2]}" -e "${HOST[S3]}" | sort
}
pods() { TMO=30 kc -n grow get pods -o jsonpath='{range .items[*]}{.metadata.uid} {.status.phase} {.status.containerStatuses[0].restartCount}{"\n"}{end}' | sort; }
serves() { # through the Service's ClusterIP, from one of the pods
  local ip
  ip=$(TMO=30 kc -n grow get svc web -o jsonpath='{.spec.clusterIP}')
  TMO=40 kc -n grow exec deploy/web -- timeout 10 wget -qO- "http://$ip/" 2>&1
}
# serves_within SECS: "ok" once the Service answers, else its last answer. A rollout is done when the pods are
# Ready; kube-proxy programs their endpoints a moment later (at most one sync period, 1 s, after the EndpointSlice).
serves_within() {
  local end=$((SECONDS + $1)) got
  while :; do
    got=$(serves)
    [[ $got == ok ]] || ((SECONDS >= end)) && { echo "$got"; return; }
    sleep 1
  done
}

# ------------------------------------------------------------------------------------------ 1. one server
step "up: one server ${HOST[S1]} (SQLite)"
run_up one -i "$WORK/one.yaml" --kubeconfig-out "$KC" -y
((UP_RC == 0)) || { show_up one 40; die "k8s up failed (exit $UP_RC)"; }
nodes_ready 120 "${HOST[S1]}" || die "node ${HOST[S1]} not Ready"
[[ $(hx $S1 sh -c 'test -f /var/lib/k8s/server/db/datastore.db && echo sqlite') == sqlite ]] || die "${HOST[S1]} does not run SQLite"
TMO=30 kc create namespace grow >/dev/null
web_deployment 2 | TMO=30 kc -n grow apply -f - >/dev/null
TMO=30 kc -n grow expose deployment web --port=80 --target-port=8080 >/dev/null
TMO=30 kc -n grow create configmap c --from-literal=k=v1 >/dev/null
TMO=30 kc -n grow create secret generic s --from-literal=password=hunter2 >/dev/null
TMO=200 kc -n grow rollout status deployment/web --timeout=180s >/dev/null || die "the Deployment did not roll out"
answer=$(serves_within 30)
[[ $answer == ok ]] || die "the Service does not answer within 30 s of the rollout: $answer"
before=$(objects) pods_before=$(pods)
ok "one server on SQLite: $(wc -l <<<"$before") objects, 2 pods serving through a Service"

# ------------------------------------------------------------------------------------------ 2. three servers
step "up: three servers (the first moves its data into etcd)"
run_up three -i "$WORK/three.yaml" --kubeconfig-out "$KC" -y
echo "BENCH up grow 1→3 servers: $UP_SECS s"
((UP_RC == 0)) || { show_up three 40; die "k8s up failed (exit $UP_RC)"; }
ok "k8s up exited 0 in $UP_SECS s"; show_up three 10
nodes_ready 120 "${HOST[S1]}" "${HOST[S2]}" "${HOST[S3]}" && ok "3 nodes Ready" || fail "nodes not Ready"
etcd_voters_healthy 3 60 "after growing"
hx $S1 test -f /var/lib/k8s/server/db.migrated/datastore.db && ok "the SQLite files are kept as server/db.migrated" ||
  fail "no server/db.migrated on ${HOST[S1]}"
after=$(objects)
lost=$(comm -23 <(echo "$before") <(echo "$after"))
# Each new server writes its own default join tokens: the only objects that may be new.
added=$(comm -13 <(echo "$before") <(echo "$after") | grep -v '^secret/k8s-join-token-')
[[ -z $lost && -z $added ]] && ok "every one of the $(wc -l <<<"$before") objects is there, nothing else but the new servers' join tokens" ||
  fail "objects lost: ${lost:-none}; unexpected new ones: ${added:-none}"
[[ $(pods) == "$pods_before" ]] && ok "the same 2 pods, never restarted" || fail "the pods changed: before $pods_before, after $(pods)"
answer=$(serves_within 30)
[[ $answer == ok ]] && ok "and they still serve through the Service" || fail "the Service does not answer within 30 s: $answer"
[[ $(TMO=30 kc -n grow get secret s -o jsonpath='{.data.password}' | base64 -d) == hunter2 ]] && ok "the Secret reads back" ||
  fail "the Secret does not read back"
