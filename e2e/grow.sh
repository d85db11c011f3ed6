#!/usr/bin/env bash
# e2e/grow.sh [K8S_BIN]: a single server (SQLite) grows into an HA cluster of three.
#   1. g1 runs `k8s server` (with its node): a Deployment (2 pods Running), a ConfigMap, a Secret;
#      `k8s ctr images ls` lists the carried images (this node's containerd, namespace k8s.io)
#   2. g1 restarts with `--cluster-init` (k3s's way from SQLite to HA): its data moves into a new etcd
#      member: every object is there (the sorted list of namespaces, nodes, ConfigMaps, Secrets,
#      service accounts, Services, Deployments is the same before and after), the pods kept running
#      (same UIDs, no container restart), new writes get revisions above every one SQLite handed
#      out, Secrets stay encrypted, the SQLite files are kept as server/db.migrated
#   3. g2 and g3 join it as servers: 3 voting members, a write through g1 reads through g3; `kubectl top nodes`
#      answers through g2 and g3 (disable-agent: metrics-server, on g1's node, reached at g1's address)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
shared=/var/tmp/k8s-e2e-grow
HOSTS=(g1 g2 g3)
t0=$EPOCHREALTIME

# shellcheck source=lib/servers.sh
. "$here/lib/servers.sh"
g1_ip=$($T ip g1)

objects() { kc g1 get namespaces,nodes,configmaps,secrets,serviceaccounts,services,deployments -A -o name | sort; }
pods() { kc g1 -n grow get pods -o jsonpath='{range .items[*]}{.metadata.uid} {.status.phase} {.status.containerStatuses[0].restartCount}{"\n"}{end}' | sort; }
voters() { on "$1" "$K8S" etcd members | awk 'NR > 1 && ($3 == "leader" || $3 == "voter")' | wc -l; }

# 1. One server, SQLite.
start g1
kc g1 create namespace grow >/dev/null
sleepers 2 | kc g1 -n grow apply -f - >/dev/null
kc g1 -n grow create configmap c --from-literal=k=v1 >/dev/null
kc g1 -n grow create secret generic s --from-literal=password=hunter2 >/dev/null
for ((i = 0; i < 90; i++)); do [[ $(pods | grep -c ' Running 0') == 2 ]] && break; sleep 2; done
[[ $(pods | grep -c ' Running 0') == 2 ]] || fail "the Deployment's pods do not run: $(pods)"
on g1 "$K8S" ctr images ls -q | grep -x "k8s.local/busybox:latest" >/dev/null || fail "k8s ctr does not list the carried images"
pods_before=$(pods)
old_rv=$(kc g1 -n grow create configmap last-on-sqlite --from-literal=k=v -o jsonpath='{.metadata.resourceVersion}')
before=$(objects)
ok "g1: one server on SQLite, $(wc -l <<<"$before") objects, 2 pods Running, revision $old_rv"

# 2. Restart with cluster-init: the data moves into etcd.
stop g1
t=$EPOCHREALTIME
start g1 --cluster-init
awk -v a="$t" -v b="$EPOCHREALTIME" 'BEGIN { printf "BENCH grow: SQLite to etcd and ready again in %.1f s\n", b - a }'
grep -q "SQLite datastore moved into etcd" "$shared/g1.log" || fail "the log does not say the data moved"
on g1 test -f /var/lib/k8s/server/db.migrated/datastore.db || fail "the SQLite files are not kept as server/db.migrated"
[[ $(voters g1) == 1 ]] || fail "g1 is not an etcd voter"
after=$(objects)
[[ $before == "$after" ]] || fail "the objects differ after the move: $(diff <(echo "$before") <(echo "$after"))"
[[ $(pods) == "$pods_before" ]] || fail "the pods changed (uid phase restarts): before $pods_before, after $(pods)"
[[ $(kc g1 -n grow get secret s -o jsonpath='{.data.password}' | base64 -d) == hunter2 ]] || fail "the Secret does not read back"
stored=$(on g1 "$K8S" secrets-encrypt status 2>&1 | grep '^stored Secrets')
grep -q ", 0 not" <<<"$stored" || fail "Secrets in etcd: $stored"
rv=$(kc g1 -n grow create configmap first-on-etcd --from-literal=k=v -o jsonpath='{.metadata.resourceVersion}')
((rv > old_rv)) || fail "a write on etcd got resourceVersion $rv, not above SQLite's $old_rv"
ok "g1 on etcd: the same $(wc -l <<<"$after") objects, the same pods Running without a restart, writes at $rv > $old_rv; $stored"

# 3. Two more servers join.
cp "$($T dir g1)/fs/var-lib-k8s/server/token" "$shared/token"
for h in g2 g3; do start "$h" --disable-agent --server "https://$g1_ip:9345" --token-file "$shared/token"; done
[[ $(voters g1) == 3 ]] || fail "expected 3 voting members: $(on g1 "$K8S" etcd members)"
kc g1 -n grow create configmap three --from-literal=k=v3 >/dev/null
[[ $(kc g3 -n grow get configmap three -o jsonpath='{.data.k}') == v3 ]] || fail "a write through g1 is not read through g3"
[[ $(kc g3 -n grow get configmap c -o jsonpath='{.data.k}') == v1 ]] || fail "g3 does not read the data moved from SQLite"
ok "g2 and g3 joined: 3 voting members, writes through g1 read through g3"
# metrics-server runs on g1's node, in its host network; g2 and g3 have no node (disable-agent: no kube-proxy rules,
# no pod routes), and their API servers reach it at g1's address (--enable-aggregator-routing).
top_re='^[a-z0-9.-]+ +[0-9]+m +[0-9]+% +[0-9]+Mi +[0-9]+%'
for h in g2 g3; do
  for ((i = 0; i < 90; i++)); do top=$(kc "$h" top nodes --no-headers 2>&1) && [[ $top =~ $top_re ]] && break; sleep 2; done
  [[ $top =~ $top_re ]] || fail "kubectl top nodes through $h (disable-agent): $top"
done
ok "kubectl top nodes through g2 and g3 (disable-agent, no node): $(tr -s ' ' <<<"${top% }")"
awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "BENCH grow: the whole test in %.0f s\n", b - a }'
echo "PASS e2e/grow.sh"
