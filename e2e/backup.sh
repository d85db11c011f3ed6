#!/usr/bin/env bash
# e2e/backup.sh [K8S_BIN]: backups of a single server (SQLite) and their restore, in two test hosts.
#   1. bk1 runs `k8s server` with a fast backup schedule (every 3 s, keep 2) and 30-day leaf
#      certificates (K8S_CERT_LEAF_DAYS, a test setting; `k8s certs check` shows them; the running server
#      warns of them with CertificateExpiring Events on its Node): exactly 2 scheduled
#      archives are kept; objects made: a Deployment (pods Running), a Secret, a ConfigMap, a CRD and
#      one of its objects; `k8s backup -o FILE` writes a 0600 archive; `k8s backup list` shows it
#   2. bad input, nothing changed: a restore over the running server, a truncated archive and a
#      foreign file on the fresh host bk2 (no data dir left behind)
#   3. a ConfigMap made after the backup; stop, `k8s reset`, `k8s restore FILE`, start: every object
#      is back, the later ConfigMap is not, new writes get revisions past a billion (older ones are
#      compacted), the Deployment's pods run, the admin kubeconfig saved before the reset still works;
#      started without the test setting, the server renewed every leaf inside the 120-day window (a
#      year left now, `k8s certs check`)
#   4. the same archive restored on the fresh host bk2: the objects are there, the old kubeconfig
#      works against bk2's address (same CA; the serving certificate re-issued for the new address),
#      and after the old Node is deleted the Deployment's pods run on bk2
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
shared=/var/tmp/k8s-e2e-backup
HOSTS=(bk1 bk2)
t0=$EPOCHREALTIME
# shellcheck source=lib/servers.sh
. "$here/lib/servers.sh"
bk2_ip=$($T ip bk2)

pods_running() { # HOST: the Deployment's 2 pods Running within 180 s
  local i
  for ((i = 0; i < 90; i++)); do
    [[ $(kc "$1" -n bk get pods -l app=web --field-selector=status.phase=Running -o name 2>/dev/null | wc -l) == 2 ]] && return 0
    sleep 2
  done
  return 1
}
days_left() { # HOST FILE: days left of a certificate, from `k8s certs check`
  on "$1" "$K8S" certs check --output json | python3 -c "import json,sys; print([r['days_left'] for r in json.load(sys.stdin) if r['file'].endswith('$2')][0])"
}
objects_back() { # HOST: the objects made before the backup, read back
  local h=$1
  [[ $(kc "$h" -n bk get secret s -o jsonpath='{.data.password}' | base64 -d) == hunter2 ]] || fail "$h: the Secret is not back"
  [[ $(kc "$h" -n bk get configmap c -o jsonpath='{.data.k}') == v1 ]] || fail "$h: the ConfigMap is not back"
  [[ $(kc "$h" -n bk get widget w1 -o jsonpath='{.spec.size}') == 3 ]] || fail "$h: the CRD object is not back"
  kc "$h" -n bk get deployment web >/dev/null || fail "$h: the Deployment is not back"
  if kc "$h" -n bk get configmap after-backup >/dev/null 2>&1; then fail "$h: a ConfigMap made after the backup is there"; fi
}

# 1. A server with a fast schedule, objects, an on-demand backup.
START_ENV=K8S_CERT_LEAF_DAYS=30 start bk1 --backup-schedule '*/3 * * * * *' --backup-retention 2
d=$(days_left bk1 pki/apiserver.crt)
((d >= 28 && d <= 30)) || fail "with K8S_CERT_LEAF_DAYS=30 the API server certificate has $d days left"
events=$(kc bk1 get events -A --field-selector reason=CertificateExpiring -o name | wc -l)
((events > 0)) || fail "no CertificateExpiring Event with certificates ending in $d days"
ok "bk1: server ready (backups every 3 s, keep 2; 30-day leaf certificates: $d days left, $events CertificateExpiring Events)"
kc bk1 create namespace bk >/dev/null
kc bk1 apply -f - >/dev/null <<'EOF'
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.e2e.example.com}
spec:
  group: e2e.example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec: {type: object, properties: {size: {type: integer}}}
EOF
kc bk1 wait --for=condition=Established crd/widgets.e2e.example.com --timeout=60s >/dev/null
kc bk1 -n bk apply -f - >/dev/null <<'EOF'
apiVersion: e2e.example.com/v1
kind: Widget
metadata: {name: w1}
spec: {size: 3}
EOF
sleepers 2 | kc bk1 -n bk apply -f - >/dev/null
kc bk1 -n bk create secret generic s --from-literal=password=hunter2 >/dev/null
kc bk1 -n bk create configmap c --from-literal=k=v1 >/dev/null
pods_running bk1 || fail "bk1: the Deployment's pods do not run"
ok "bk1: a Deployment (2 pods Running), a Secret, a ConfigMap, a CRD and a Widget"

sleep 10
scheduled=$(on bk1 sh -c 'ls /var/lib/k8s/backups/scheduled-*.tar.zst 2>/dev/null' | wc -l)
[[ $scheduled == 2 ]] || fail "the schedule kept $scheduled archives, not 2: $(on bk1 ls -l /var/lib/k8s/backups)"
grep -q "scheduled backup made" "$shared/bk1.log" || fail "no scheduled backup in the log"
ok "schedule: every 3 s, exactly 2 scheduled archives kept"

out=$(on bk1 "$K8S" backup -o "$shared/b.tar.zst" 2>&1) || fail "k8s backup: $out"
[[ $(stat -c %a "$shared/b.tar.zst") == 600 ]] || fail "the archive is mode $(stat -c %a "$shared/b.tar.zst"), not 600"
on bk1 "$K8S" backup >/dev/null
list=$(on bk1 "$K8S" backup list 2>&1)
[[ $(grep -c '^on-demand-' <<<"$list") == 1 && $(grep -c '^scheduled-' <<<"$list") -ge 1 ]] || fail "k8s backup list: $list"
ok "k8s backup: $(head -1 <<<"$out")"
on bk1 cat /etc/k8s/admin.kubeconfig >"$shared/old.kubeconfig"

# 2. Bad input: nothing changes.
out=$(on bk1 "$K8S" restore "$shared/b.tar.zst" 2>&1) && fail "a restore over the running server succeeded"
grep -q "Nothing changed" <<<"$out" || fail "restore over a running server: unclear message: $out"
ok "a restore over the running server is refused: $(head -c 120 <<<"$out")…"
head -c $(($(stat -c %s "$shared/b.tar.zst") / 2)) "$shared/b.tar.zst" >"$shared/cut.tar.zst"
out=$(on bk2 "$K8S" restore "$shared/cut.tar.zst" 2>&1) && fail "a truncated archive was restored"
grep -q "truncated" <<<"$out" || fail "a truncated archive: unclear message: $out"
echo "not a backup" >"$shared/foreign.tar.zst"
out2=$(on bk2 "$K8S" restore "$shared/foreign.tar.zst" 2>&1) && fail "a foreign file was restored"
grep -q "not a k8s backup archive" <<<"$out2" || fail "a foreign file: unclear message: $out2"
on bk2 test ! -e /var/lib/k8s/pki -a ! -e /var/lib/k8s/datastore || fail "a refused restore left data on bk2"
ok "a truncated archive and a foreign file are refused, bk2 untouched: $(head -c 100 <<<"$out")…"

# 3. Reset and restore on the same host.
kc bk1 -n bk create configmap after-backup --from-literal=k=later >/dev/null
stop bk1
on bk1 "$K8S" reset --yes >"$shared/reset.log" 2>&1 || fail "reset: $(cat "$shared/reset.log")"
out=$(on bk1 "$K8S" restore "$shared/b.tar.zst" 2>&1) || fail "restore on bk1: $out"
ok "restore: $(grep -m1 'revision' <<<"$out")"
start bk1
objects_back bk1
rv=$(kc bk1 -n bk create configmap after-restore --from-literal=k=v -o jsonpath='{.metadata.resourceVersion}')
((rv > 1000000000)) || fail "a write after the restore got resourceVersion $rv, not past a billion"
pods_running bk1 || fail "bk1: the Deployment's pods do not run after the restore"
on bk1 "$K8S" kubectl --kubeconfig "$shared/old.kubeconfig" -n bk get secret s >/dev/null || fail "the old admin kubeconfig no longer works"
for f in pki/apiserver.crt pki/kubelet.crt kubeconfigs/admin.kubeconfig; do
  d=$(days_left bk1 "$f")
  ((d >= 360)) || fail "$f has $d days left after a start without the test setting: not renewed"
done
ok "bk1 restored: every object back (not the later one), writes at revision $rv, pods Running, the old kubeconfig works; 30-day leaves renewed at start ($d days left)"
stop bk1

# 4. The same archive on a fresh host.
out=$(on bk2 "$K8S" restore "$shared/b.tar.zst" 2>&1) || fail "restore on bk2: $out"
start bk2
objects_back bk2
on bk2 "$K8S" kubectl --kubeconfig "$shared/old.kubeconfig" --server "https://$bk2_ip:6443" -n bk get configmap c >/dev/null ||
  fail "the old kubeconfig does not work against bk2"
kc bk2 delete node bk1 --wait=false >/dev/null || fail "deleting the old Node"
pods_running bk2 || fail "bk2: the Deployment's pods do not run after the old Node was deleted"
ok "bk2 (fresh host): every object back, the old kubeconfig works against $bk2_ip, the pods run on bk2"
awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "BENCH backup: the whole test in %.0f s\n", b - a }'
echo "PASS e2e/backup.sh"
