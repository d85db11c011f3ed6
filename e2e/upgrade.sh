#!/usr/bin/env bash
# e2e/upgrade.sh: the cluster upgrades itself. A server and an agent on two Debian hosts booted with systemd
# (e2e/lib/nspawn.sh), installed by `k8s up`; then, on the server:
#
#   e2e/upgrade.sh         exit 0 = every check passed, 1 = a check failed, 77 = skipped
#
# 1. Refusals: `k8s upgrade apply` of the binary the cluster already runs under an older version string is
#    refused at preflight (a downgrade), with the reason, and creates no plan.
# 2. `k8s upgrade apply --binary dist/k8s-next` (the same code, the next patch version), paused at once and
#    resumed: while paused no new node starts; then the server, then the agent, swap to it under systemd, soak,
#    commit; the plan completes; both nodes publish the new version, run it (`k8s version` on the host) and are
#    schedulable again; a client pod calling a Service counts failed requests during the rollout (printed).
#    Prints "BENCH upgrade 1+1: S s" (the time paused left out). The server is a single SQLite server upgraded in
#    place: a ConfigMap made before is still there, and the datastore was snapshotted before the swap.
# 3. A broken binary (says it is the version after, exits at once when run as a server), with --drain always:
#    the server's pods are evicted first, then the server rolls back to the previous binary by itself (the
#    guard), the plan halts with the reason, the agent is untouched and the cluster serves. Prints
#    "BENCH rollback: S s".
# 4. A binary that starts and never becomes ready (never signals systemd): rolled back by the guard all the same;
#    `k8s upgrade status --output json` shows the plan Halted with its Degraded condition. Prints
#    "BENCH rollback of a hanging binary: S s".
# Environment: see e2e/lib/up.sh (K8S_BIN, E2E_TIMEOUT, NSPAWN_KEEP); K8S_NEXT_BIN (default dist/k8s-next).
CL=${E2E_CLUSTER:-e2e-upg}
NHOSTS=2
SCRIPT=e2e/upgrade.sh
# shellcheck source=lib/up.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/up.sh"
NEXT_SRC=${K8S_NEXT_BIN:-$(dirname "$K8S_BIN")/k8s-next}
[[ -x $NEXT_SRC ]] || { echo "$SCRIPT: SKIP: no next binary at $NEXT_SRC (make dist-next)"; exit 77; }

up_init
S=1 A=2
inventory "$WORK/hosts.yaml" "$S server" "$A agent"
OLD=$("$BIN" version | awk '/^k8s /{v = $2} END {print v}')
NEW=$("$NEXT_SRC" version | awk '/^k8s /{v = $2} END {print v}')
KUBE=$("$BIN" version | awk '/^kubernetes: /{v = $2} END {print v}')

step "up: server ${HOST[S]}, agent ${HOST[A]} on k8s $OLD"
run_up first -i "$WORK/hosts.yaml" --kubeconfig-out "$KC" -y
((UP_RC == 0)) || { show_up first 40; die "k8s up failed (exit $UP_RC)"; }
nodes_ready 120 "${HOST[S]}" "${HOST[A]}" && ok "both nodes Ready" || die "nodes not Ready"
# The binaries go to the server's disk, where `k8s upgrade apply` reads them.
scp_to_server() { chmod 755 "$1"; "$N" push "$CL" "$1" "$2" "$S" >/dev/null; }
scp_to_server "$NEXT_SRC" /root/k8s-next || die "cannot copy the next binary to ${HOST[S]}"
on_server() { hx "$S" /usr/local/bin/k8s "$@"; }
published() { TMO=20 kc get node "$1" -o jsonpath='{.metadata.annotations.upgrade\.k8s\.local/version}' 2>/dev/null; }

# ------------------------------------------------------------------------------------------ 1. refusals
step "refusals"
printf '#!/bin/sh\n[ "$1" = version ] && { echo "k8s 0.0.1"; echo "kubernetes: %s"; exit 0; }\nexit 1\n' "$KUBE" >"$WORK/old"
scp_to_server "$WORK/old" /root/k8s-old || die "cannot copy to ${HOST[S]}"
out=$(TMO=60 on_server upgrade apply --binary /root/k8s-old 2>&1) && fail "a downgrade to 0.0.1 was applied"
grep -q "a downgrade" <<<"$out" && ok "a downgrade is refused at preflight: $(grep -m1 downgrade <<<"$out" | sed 's/^ *//')" ||
  { fail "the downgrade's refusal does not say why"; indent <<<"$out"; }
[[ -z $(TMO=20 kc get upgradeplans -o name 2>/dev/null) ]] && ok "no plan was created" || fail "a refused apply created a plan"
out=$(TMO=60 on_server upgrade apply --binary /root/k8s-next --dry-run 2>&1) && grep -q "preflight: ok" <<<"$out" &&
  ok "--dry-run prints the order and passes preflight" || { fail "--dry-run of the next binary"; indent <<<"$out"; }
indent <<<"$out"

# ------------------------------------------------------------------------------------------ 2. the upgrade
step "k8s upgrade apply: $OLD → $NEW"
web_deployment 2 | TMO=60 kc apply -f - >/dev/null 2>&1
TMO=60 kc expose deployment web --port=80 --target-port=8080 >/dev/null 2>&1
TMO=120 kc rollout status deployment/web --timeout=100s >/dev/null 2>&1 && ok "a 2-replica web Deployment behind a Service" ||
  fail "the web Deployment is not ready"
# A client pod calls the Service every 0.2 s (at most 2000 times) and logs each answer; pods outlive k8s restarts.
TMO=60 kc run client --image=k8s.local/busybox:latest --image-pull-policy=IfNotPresent --restart=Never --command -- \
  sh -c "$(web_client 2000)" >/dev/null 2>&1
TMO=120 kc wait --for=condition=Ready pod/client --timeout=100s >/dev/null 2>&1 || fail "the client pod is not Ready"
TMO=30 kc create configmap before-upgrade --from-literal=k=v >/dev/null 2>&1 || fail "cannot create the ConfigMap before-upgrade"
t=$(ms)
TMO=400 on_server upgrade apply --binary /root/k8s-next --ready-timeout 120 --soak 5 >"$WORK/apply.out" 2>&1 &
apply_pid=$!
# Paused at once: what is in progress finishes, no new node starts until resumed.
for ((i = 0; i < 60; i++)); do TMO=20 kc get upgradeplan "k8s-$NEW" >/dev/null 2>&1 && break; sleep 0.5; done
TMO=30 on_server upgrade pause 2>&1 | indent
# The server's own swap, in progress when paused, finishes while paused: its API server restarts, so a read
# that finds no API is asked again (for up to 60 s) rather than taken for an empty field.
plan_field() {
  local v
  for ((j = 0; j < 60; j++)); do
    v=$(TMO=20 kc get upgradeplan "k8s-$NEW" -o jsonpath="$1" 2>/dev/null) && [[ -n $v ]] && break
    sleep 1
  done
  echo "$v"
}
agent_field="{.status.nodes[?(@.name==\"${HOST[A]}\")].phase}"
for ((i = 0; i < 120; i++)); do plan_phase=$(plan_field '{.status.phase}'); [[ $plan_phase == Paused ]] && break; sleep 1; done
paused_at=$(ms)
agent_phase=$(plan_field "$agent_field")
[[ $plan_phase == Paused && $agent_phase == Waiting ]] && ok "paused: the plan starts no new node (the agent waits)" ||
  fail "pause: the plan is '$plan_phase', the agent '$agent_phase'"
sleep 5
agent_phase=$(plan_field "$agent_field")
[[ $agent_phase == Waiting ]] && ok "5 s later the agent still waits" || fail "a paused plan started the agent (it is '$agent_phase')"
for ((i = 0; i < 10; i++)); do out=$(TMO=30 on_server upgrade resume 2>&1) && break; sleep 2; done
indent <<<"$out"
paused_for=$(($(ms) - paused_at))
wait "$apply_pid"
rc=$?
UP_SECS=$(secs $((t + paused_for)))
echo "BENCH upgrade 1+1: $UP_SECS s"
indent <"$WORK/apply.out" | tail -n 12
((rc == 0)) && ok "k8s upgrade apply exited 0 in $UP_SECS s" || fail "k8s upgrade apply failed (exit $rc)"
for i in "$S" "$A"; do
  v=$(published "${HOST[i]}"); runs=$(hx "$i" /usr/local/bin/k8s version | awk '/^k8s /{v = $2} END {print v}')
  [[ $v == "$NEW" && $runs == "$NEW" ]] && ok "${HOST[i]} runs and publishes k8s $NEW" || fail "${HOST[i]}: publishes '$v', binary '$runs', want $NEW"
  unsched=$(TMO=20 kc get node "${HOST[i]}" -o jsonpath='{.spec.unschedulable}')
  [[ -z $unsched || $unsched == false ]] && ok "${HOST[i]} is schedulable again" || fail "${HOST[i]} is still cordoned"
done
phase=$(TMO=20 kc get upgradeplan "k8s-$NEW" -o jsonpath='{.status.phase} {.status.done}')
[[ $phase == "Complete 2/2" ]] && ok "plan k8s-$NEW: $phase" || fail "plan k8s-$NEW is '$phase'"
[[ $(TMO=20 kc get configmap before-upgrade -o jsonpath='{.data.k}' 2>&1) == v ]] &&
  ok "the single SQLite server was upgraded in place: the ConfigMap before-upgrade is still there" || fail "ConfigMap before-upgrade lost"
snap=$(hx "$S" stat -c '%a %s' "/var/lib/k8s/upgrade/datastore-$OLD.db" 2>&1)
[[ $snap =~ ^600\ [1-9][0-9]*$ ]] && ok "the datastore was snapshotted before the swap (datastore-$OLD.db, mode 0600, $(cut -d' ' -f2 <<<"$snap") bytes)" ||
  fail "no datastore snapshot before the swap: $snap"
answers=$(TMO=30 kc logs client 2>/dev/null)
sent=$(grep -c . <<<"$answers"); failed=$(grep -c '^fail' <<<"$answers")
say "requests through the Service during the rollout: $sent sent, $failed failed"
((sent > 0)) && ok "the client pod ran through the rollout ($sent requests, $failed failed)" || fail "the client pod sent nothing"

# ------------------------------------------------------------------------------------------ 3. a rollback
step "a broken binary: the server rolls back by itself"
BROKEN=$(awk -F. '{ print $1 "." $2 "." $3 + 1 }' <<<"$NEW")
printf '#!/bin/sh\n[ "$1" = version ] && { echo "k8s %s"; echo "kubernetes: %s"; exit 0; }\necho "broken on purpose" >&2\nexit 3\n' \
  "$BROKEN" "$KUBE" >"$WORK/broken"
scp_to_server "$WORK/broken" /root/k8s-broken || die "cannot copy to ${HOST[S]}"
# Drained first this time: every pod not of a DaemonSet leaves the server (CoreDNS at least runs there).
pods_on() {
  TMO=20 kc get pods -A --field-selector "spec.nodeName=$1,status.phase!=Succeeded,status.phase!=Failed" \
    -o jsonpath='{range .items[*]}{.metadata.ownerReferences[0].kind}/{.metadata.namespace}/{.metadata.name}{"\n"}{end}' 2>/dev/null |
    grep -v '^DaemonSet/'
}
on_host() { pods_on "$1" | grep -c .; }
before=$(on_host "${HOST[S]}")
t=$(ms)
TMO=400 on_server upgrade apply --binary /root/k8s-broken --drain always --ready-timeout 30 --soak 5 >"$WORK/broken.out" 2>&1
rc=$?
secs_back=$(secs "$t")
echo "BENCH rollback: $secs_back s"
indent <"$WORK/broken.out" | tail -n 8
((rc != 0)) && ok "k8s upgrade apply of the broken binary exits non-zero ($rc) after $secs_back s" || fail "the broken upgrade reported success"
grep -q "RolledBack\|did not upgrade" "$WORK/broken.out" && ok "it says the server rolled back" || fail "the broken upgrade's output does not say it rolled back"
runs=$(hx "$S" /usr/local/bin/k8s version | awk '/^k8s /{v = $2} END {print v}')
[[ $runs == "$NEW" ]] && ok "${HOST[S]} is back on k8s $NEW" || fail "${HOST[S]} runs '$runs', not $NEW"
nodes_ready 120 "${HOST[S]}" "${HOST[A]}" && ok "both nodes Ready after the rollback" || fail "nodes not Ready after the rollback"
[[ $(published "${HOST[A]}") == "$NEW" ]] && ok "the agent was not touched" || fail "the agent changed: $(published "${HOST[A]}")"
phase=$(TMO=20 kc get upgradeplan "k8s-$BROKEN" -o jsonpath='{.status.phase}')
why=$(TMO=20 kc get upgradeplan "k8s-$BROKEN" -o jsonpath='{.status.message}')
[[ $phase == Halted ]] && ok "plan k8s-$BROKEN halted: $why" || fail "plan k8s-$BROKEN is '$phase': $why"
after=$(on_host "${HOST[S]}")
((before > 0 && after == 0)) && ok "drain: the server's $before pods were evicted before its swap (none back after the rollback)" ||
  { fail "drain: $before pods on the server before, $after after"; pods_on "${HOST[S]}" | indent; }
TMO=20 kc create configmap after-rollback --from-literal=k=v >/dev/null 2>&1 && ok "the cluster takes writes after the rollback" ||
  fail "the cluster does not take writes after the rollback"

# ------------------------------------------------------------------------------------------ 4. a binary that hangs
step "a binary that starts and never becomes ready: the guard rolls it back all the same"
HANG=$(awk -F. '{ print $1 "." $2 "." $3 + 2 }' <<<"$NEW")
# shellcheck disable=SC2016 # $1 belongs to the fake binary's shell
printf '#!/bin/sh\n[ "$1" = version ] && { echo "k8s %s"; echo "kubernetes: %s"; exit 0; }\nexec sleep 100000\n' \
  "$HANG" "$KUBE" >"$WORK/hang"
scp_to_server "$WORK/hang" /root/k8s-hang || die "cannot copy to ${HOST[S]}"
t=$(ms)
TMO=400 on_server upgrade apply --binary /root/k8s-hang --ready-timeout 20 --soak 5 >"$WORK/hang.out" 2>&1
rc=$?
echo "BENCH rollback of a hanging binary: $(secs "$t") s"
((rc != 0)) && ok "k8s upgrade apply of the hanging binary exits non-zero ($rc)" || fail "the hanging upgrade reported success"
runs=$(hx "$S" /usr/local/bin/k8s version | awk '/^k8s /{v = $2} END {print v}')
[[ $runs == "$NEW" ]] && ok "${HOST[S]} is back on k8s $NEW" || fail "${HOST[S]} runs '$runs', not $NEW"
nodes_ready 120 "${HOST[S]}" "${HOST[A]}" && ok "both nodes Ready after the rollback" || fail "nodes not Ready after the rollback"
status=$(TMO=30 on_server upgrade status --output json 2>/dev/null)
phase=$(jq -r --arg p "k8s-$HANG" '.plans[] | select(.metadata.name == $p) | .status.phase' <<<"$status" 2>/dev/null)
degraded=$(jq -r --arg p "k8s-$HANG" '.plans[] | select(.metadata.name == $p) | .status.conditions[] | select(.type == "Degraded") | .status' <<<"$status" 2>/dev/null)
[[ $phase == Halted && $degraded == True ]] && ok "k8s upgrade status --output json: plan k8s-$HANG Halted, condition Degraded True" ||
  fail "k8s upgrade status --output json: plan k8s-$HANG is '$phase', Degraded '$degraded'"
[[ $(published "${HOST[A]}") == "$NEW" ]] && ok "the agent was not touched" || fail "the agent changed: $(published "${HOST[A]}")"

