#!/usr/bin/env bash
# e2e/ha.sh [K8S_BIN]: an HA control plane of three servers (control plane
# only, to keep it light) in three test hosts: the first starts a new etcd
# cluster (cluster-init), the others join through its join endpoint with the
# server token, as learners promoted to voting members. Checks: an agent token
# cannot join a server; 3 voting members; a write through one server is read
# through another; with one server killed (kill -9) the others still read and
# write; a key rotation with one server down is refused, naming it; restarted,
# it catches up; `k8s secrets-encrypt rotate-keys` moves all three servers to one
# new key in step (every Secret readable through each, stored under the new
# key); `k8s reset` on a server removes its member; `k8s backup` on a server (an
# etcd snapshot), every server reset, `k8s restore` on the first: it starts a
# one-member etcd from the snapshot and the others join it again, every object
# back, later ones gone, revisions past a billion.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
T=$here/lib/testhost.sh
BIN_SRC=${1:-${K8S_BIN:-$here/../dist/k8s}}
shared=/var/tmp/k8s-e2e-ha
HOSTS=(ha-s1 ha-s2 ha-s3)

fail() { echo "FAIL: $*"; exit 1; }
ok() { echo "ok   $*"; }
cleanup() {
  local rc=$?
  if ((rc != 0)); then
    for h in "${HOSTS[@]}"; do
      echo "--- $h: last lines of its logs"
      tail -n 15 "$shared/$h.log" 2>/dev/null || true
      f=$($T dir "$h" 2>/dev/null)/fs/var-lib-k8s/logs/etcd.log
      [[ -f $f ]] && { echo "--- $f"; tail -n 10 "$f"; }
    done
  fi
  for h in "${HOSTS[@]}"; do $T down "$h" >/dev/null 2>&1 || true; done
  rm -rf "$shared"
  exit "$rc"
}
trap cleanup EXIT

[[ -x $BIN_SRC ]] || fail "no k8s binary at $BIN_SRC (make dist)"
mkdir -p "$shared"
cp "$BIN_SRC" "$shared/k8s"
K8S=$shared/k8s
for h in "${HOSTS[@]}"; do $T up "$h" >/dev/null; done
s1_ip=$($T ip ha-s1)

wait_log() { # FILE PATTERN SECONDS [FROM_LINE]
  local i
  for ((i = 0; i < $3; i++)); do
    tail -n +"${4:-1}" "$1" 2>/dev/null | grep -q "$2" && return 0
    tail -n +"${4:-1}" "$1" 2>/dev/null | grep -q '^error:' && return 1
    sleep 1
  done
  return 1
}
start() { # HOST ARGS...: runs k8s server in HOST, log appended to $shared/HOST.log
  local h=$1; shift
  setsid "$T" exec "$h" "$K8S" server --disable-agent "$@" </dev/null >>"$shared/$h.log" 2>&1 &
  echo $! >"$shared/$h.pid"
  disown
}
kubectl() { local h=$1; shift; "$T" exec "$h" "$K8S" kubectl "$@"; }
members() { "$T" exec "$1" "$K8S" etcd members; }
voters() { members "$1" | awk 'NR > 1 && ($3 == "leader" || $3 == "voter")' | wc -l; }

t0=$EPOCHREALTIME
start ha-s1 --cluster-init
wait_log "$shared/ha-s1.log" "k8s server ready" 240 || fail "the first server did not become ready"
ok "first server ready (cluster-init)"
token=$($T dir ha-s1)/fs/var-lib-k8s/server/token
agent_token=$($T dir ha-s1)/fs/var-lib-k8s/server/agent-token
cp "$token" "$shared/token"
cp "$agent_token" "$shared/agent-token"

if out=$("$T" exec ha-s2 "$K8S" server --disable-agent --server "https://$s1_ip:9345" --token-file "$shared/agent-token" 2>&1); then
  fail "a server joined with an agent token"
fi
grep -q "refused the token" <<<"$out" || fail "agent token for a server: unclear message: $out"
ok "an agent token cannot join a server: $(grep error: <<<"$out" | head -1)"
"$T" exec ha-s2 test ! -e /var/lib/k8s/pki || fail "the refused server wrote a PKI"

for h in ha-s2 ha-s3; do
  start "$h" --server "https://$s1_ip:9345" --token-file "$shared/token"
  wait_log "$shared/$h.log" "k8s server ready" 240 || fail "$h did not join"
  ok "$h joined"
done
awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "BENCH ha: three servers ready in %.1f s\n", b - a }'
[[ $(voters ha-s1) == 3 ]] || fail "expected 3 voting members: $(members ha-s1)"
ok "etcd has 3 voting members"
members ha-s1 | sed 's/^/     /'

kubectl ha-s1 create configmap written-on-s1 --from-literal=k=v1 >/dev/null
[[ $(kubectl ha-s3 get configmap written-on-s1 -o jsonpath='{.data.k}') == v1 ]] || fail "a write on s1 is not read on s3"
ok "a write through s1 is read through s3"

# Pull the plug on s3: kill -9 of k8s; etcd and the apiserver follow (PDEATHSIG).
kill -9 "$(cat "$shared/ha-s3.pid")"
sleep 2
kubectl ha-s1 create configmap while-s3-down --from-literal=k=v2 >/dev/null || fail "no writes with one server down"
[[ $(kubectl ha-s2 get configmap while-s3-down -o jsonpath='{.data.k}') == v2 ]] || fail "no reads with one server down"
ok "with s3 killed, s1 and s2 still write and read"
if out=$("$T" exec ha-s1 "$K8S" secrets-encrypt rotate-keys 2>&1); then fail "a key rotation ran with s3 down"; fi
grep -q "ha-s3" <<<"$out" && grep -q "needs every server up" <<<"$out" || fail "a rotation with s3 down: unclear message: $out"
ok "a key rotation with s3 down is refused: $(grep -o 'etcd member ha-s3 [^:]*' <<<"$out" | head -1)"

from=$(($(wc -l <"$shared/ha-s3.log") + 1))
start ha-s3 --server "https://$s1_ip:9345" --token-file "$shared/token"
wait_log "$shared/ha-s3.log" "k8s server ready" 240 "$from" || fail "s3 did not come back"
[[ $(kubectl ha-s3 get configmap while-s3-down -o jsonpath='{.data.k}') == v2 ]] || fail "s3 did not catch up"
[[ $(voters ha-s1) == 3 ]] || fail "s3 is not a voting member again: $(members ha-s1)"
ok "s3 restarted from its data, caught up, and votes again"

key() { "$T" exec "$1" "$K8S" secrets-encrypt status 2>&1 | sed -n 's/^keys: \(.*\) (new writes.*/\1/p'; }
old_key=$(key ha-s1)
kubectl ha-s1 create secret generic before-rotation --from-literal=k=v4 >/dev/null
t=$EPOCHREALTIME
out=$("$T" exec ha-s2 "$K8S" secrets-encrypt rotate-keys 2>&1) || fail "rotate-keys on s2: $out"
awk -v a="$t" -v b="$EPOCHREALTIME" 'BEGIN { printf "BENCH ha: a key rotation on three servers in %.0f s\n", b - a }'
grep -q "step 3/3 loaded by" <<<"$out" || fail "rotate-keys did not finish its three steps: $out"
for h in "${HOSTS[@]}"; do
  k=$(key "$h")
  [[ $k != *,* && -n $k && $k != "$old_key" ]] || fail "$h has keys '$k' after the rotation (before: $old_key)"
  [[ $k == "$(key ha-s1)" ]] || fail "$h has key $k, s1 has $(key ha-s1)"
  [[ $(kubectl "$h" get secret before-rotation -o jsonpath='{.data.k}' | base64 -d) == v4 ]] || fail "the Secret does not read through $h after the rotation"
done
stored=$("$T" exec ha-s3 "$K8S" secrets-encrypt status 2>&1 | grep '^stored Secrets')
grep -q ", 0 not" <<<"$stored" || fail "after the rotation: $stored"
ok "rotate-keys: every server on one new key ($(key ha-s1), was $old_key), the Secret reads through each; $stored"

"$T" exec ha-s3 "$K8S" reset --yes >"$shared/reset.log" 2>&1 || fail "reset failed: $(cat "$shared/reset.log")"
grep -q "left the etcd cluster" "$shared/reset.log" || fail "reset did not leave etcd: $(cat "$shared/reset.log")"
[[ $(members ha-s1 | tail -n +2 | wc -l) == 2 ]] || fail "s3's member is still listed: $(members ha-s1)"
kubectl ha-s2 create configmap after-reset --from-literal=k=v3 >/dev/null || fail "no writes after s3 left"
ok "k8s reset on s3 removed its member; s1 and s2 (2 of 2) still write"

out=$("$T" exec ha-s1 "$K8S" backup -o "$shared/ha.tar.zst" 2>&1) || fail "k8s backup on s1: $out"
grep -q "Etcd datastore" <<<"$out" || fail "the HA backup is not an etcd snapshot: $out"
kubectl ha-s1 create configmap after-backup --from-literal=k=later >/dev/null
for h in ha-s1 ha-s2; do kill -TERM "$(cat "$shared/$h.pid")"; done
sleep 5
for h in ha-s1 ha-s2 ha-s3; do
  "$T" exec "$h" "$K8S" reset --yes >"$shared/reset-$h.log" 2>&1 || fail "reset $h: $(cat "$shared/reset-$h.log")"
done
out=$("$T" exec ha-s1 "$K8S" restore "$shared/ha.tar.zst" 2>&1) || fail "k8s restore on s1: $out"
from=$(($(wc -l <"$shared/ha-s1.log") + 1))
start ha-s1 --cluster-init
wait_log "$shared/ha-s1.log" "k8s server ready" 240 "$from" || fail "s1 did not start from the restored snapshot"
for h in ha-s2 ha-s3; do
  from=$(($(wc -l <"$shared/$h.log") + 1))
  start "$h" --server "https://$s1_ip:9345" --token-file "$shared/token"
  wait_log "$shared/$h.log" "k8s server ready" 240 "$from" || fail "$h did not join the restored cluster"
done
[[ $(voters ha-s1) == 3 ]] || fail "the restored cluster has not 3 voters: $(members ha-s1)"
[[ $(kubectl ha-s3 get configmap written-on-s1 -o jsonpath='{.data.k}') == v1 ]] || fail "a ConfigMap is not back after the restore"
[[ $(kubectl ha-s2 get secret before-rotation -o jsonpath='{.data.k}' | base64 -d) == v4 ]] || fail "the Secret is not back after the restore"
if kubectl ha-s1 get configmap after-backup >/dev/null 2>&1; then fail "a ConfigMap made after the backup is there"; fi
rv=$(kubectl ha-s2 create configmap after-restore --from-literal=k=v -o jsonpath='{.metadata.resourceVersion}')
((rv > 1000000000)) || fail "a write after the restore got resourceVersion $rv, not past a billion"
ok "HA restore: $(grep -m1 revision <<<"$out"); s2 and s3 joined again, 3 voters, objects back, writes at $rv"
echo "PASS e2e/ha.sh"
