#!/usr/bin/env bash
# e2e/upgrade-ha.sh: an HA cluster upgrades itself, handed over by `k8s up`. Three servers (etcd) and an agent on
# four Debian hosts booted with systemd (e2e/lib/nspawn.sh), installed by `k8s up` with the old binary; then the
# next binary's `k8s up` from the workstation, and `k8s upgrade apply` on the first server:
#
#   e2e/upgrade-ha.sh         exit 0 = every check passed, 1 = a check failed, 77 = skipped
#
# 0. Setup: `k8s up` of 3 servers + 1 agent on k8s OLD: all 4 nodes Ready. A 3-replica Deployment `web` with a
#    PodDisruptionBudget (minAvailable 2) behind a Service, a client DaemonSet calling the Service every 0.2 s from
#    every node, and a ConfigMap `before-upgrade` that must survive.
# 1. `k8s up --dry-run` with the next binary: exit 0, "preflight: ok", the 4 nodes listed in rollout order (the
#    servers by name, then the agent); nothing changed: every node publishes OLD, binaries, configs and units as
#    they were, no UpgradePlan.
# 2. Refusals of `k8s upgrade apply` on the first server, before any plan: a binary that skips a Kubernetes minor
#    ("skipped Kubernetes minor"); with the agent stopped and its Node NotReady, the next binary even with
#    --dry-run ("is not Ready"). The agent started again: all 4 nodes Ready; no UpgradePlan exists.
# 3. `k8s up --ready-timeout 120 --soak 5 --drain always` with the next binary hands over to the UpgradePlan k8s-NEW
#    (each node drained through the Eviction API, so the PodDisruptionBudget holds) and exits 0;
#    every node runs and publishes NEW and is schedulable; the plan is Complete 4/4; its Events show the servers
#    started in name order, one at a time (each after the previous one committed), and the agent after every
#    server committed; every Node has an UpgradeCommitted Event; `web` has 3 available replicas, the ConfigMap is
#    there, etcd has 3 members; the client's requests during the rollout are printed (failures not asserted).
#    Prints "BENCH upgrade 3+1 via up: S s". `up` again with the next binary: no change on any host.
# 4. A broken binary (says it is the version after NEW, exits 3 at once otherwise) applied on the first server:
#    apply exits non-zero; the first server of the plan (by name) is back on NEW by itself (its guard), the plan is
#    Halted with the reason, every other node still publishes NEW, all 4 nodes Ready, 3 etcd members, the cluster
#    takes writes. Prints "BENCH rollback HA: S s".
# Environment: see e2e/lib/up.sh (K8S_BIN, E2E_TIMEOUT, NSPAWN_KEEP); E2E_TIMEOUT defaults to 1200 s here;
# K8S_NEXT_BIN (default: k8s-next next to K8S_BIN, i.e. dist/k8s-next).
CL=${E2E_CLUSTER:-e2e-upgha}
NHOSTS=4
SCRIPT=e2e/upgrade-ha.sh
E2E_TIMEOUT=${E2E_TIMEOUT:-1200}      # 4 hosts, two rollouts and a guard's deadline: more than lib/up.sh's 600 s
# shellcheck source=lib/up.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/up.sh"
NEXT_SRC=${K8S_NEXT_BIN:-$(dirname "$K8S_BIN")/k8s-next}
[[ -x $NEXT_SRC ]] || { echo "$SCRIPT: SKIP: no next binary at $NEXT_SRC (make dist-next)"; exit 77; }
NEXT=$WORK/k8s-next                   # the workstation's copy, run in the ws netns like $BIN

up_init
S1=1 S2=2 S3=3 A=4
SERVERS=("$S1" "$S2" "$S3")
inventory "$WORK/hosts.yaml" "$S1 server" "$S2 server" "$S3 server" "$A agent"
if ! { cp "$NEXT_SRC" "$NEXT.tmp" && chmod 755 "$NEXT.tmp" && mv "$NEXT.tmp" "$NEXT"; }; then die "cannot copy $NEXT_SRC to $NEXT"; fi
OLD=$("$BIN" version | awk '/^k8s /{v = $2} END {print v}')
NEW=$("$NEXT" version | awk '/^k8s /{v = $2} END {print v}')
KUBE=$("$BIN" version | awk '/^kubernetes: /{v = $2} END {print v}')
NEW_KUBE=$("$NEXT" version | awk '/^kubernetes: /{v = $2} END {print v}')   # differs from KUBE in make test-upgrade-k8s
[[ -n $OLD && -n $NEW && -n $KUBE && $OLD != "$NEW" ]] ||
  die "versions: old '$OLD', next '$NEW', kubernetes '$KUBE' (the next binary must carry another k8s version)"
# The rollout order: the servers by name (as the controller sorts them: bytes), then the agent.
WANT_ORDER="$(for i in "${SERVERS[@]}"; do echo "${HOST[i]}"; done | LC_ALL=C sort | paste -sd' ') ${HOST[A]}"
FIRST_SERVER=${WANT_ORDER%% *}

# push SRC DEST I: a file onto host I's disk (same mode as SRC)
push() { "$N" push "$CL" "$1" "$2" "$3" >/dev/null; }
on_s1() { hx "$S1" /usr/local/bin/k8s "$@"; }
published() { TMO=20 kc get node "$1" -o jsonpath='{.metadata.annotations.upgrade\.k8s\.local/version}' 2>/dev/null; }
runs() { hx "$1" /usr/local/bin/k8s version 2>/dev/null | awk '/^k8s /{v = $2} END {print v}'; }
ready_of() { TMO=20 kc get node "$1" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null; }
plans() { TMO=20 kc get upgradeplans -o name 2>&1; }
no_plan() {
  local p; p=$(plans)
  if [[ -z $p ]]; then ok "$1: no UpgradePlan"; else fail "$1: there is an UpgradePlan: $p"; fi
}
# client_counts: "SENT FAILED" so far in the client pod's log
client_counts() {
  local log; log=$(TMO=30 kc logs -l app=client --tail=-1 --max-log-requests=10 2>/dev/null)
  echo "$(grep -c . <<<"$log") $(grep -c '^fail' <<<"$log")"
}
# api_back SECONDS: the API server the kubeconfig names answers /readyz within SECONDS
api_back() {
  local end=$((SECONDS + $1))
  until TMO=20 kc get --raw /readyz >/dev/null 2>&1; do ((SECONDS < end)) || return 1; sleep 3; done
}
# etcd_members WHAT: `k8s etcd members` on the first server lists 3 members after its header (retried for 60 s:
# a server may just have restarted)
etcd_members() {
  local out n=0 k
  for ((k = 0; k < 20; k++)); do
    out=$(TMO=30 on_s1 etcd members 2>&1)
    if head -n 1 <<<"$out" | grep -q '^NAME'; then n=$(tail -n +2 <<<"$out" | grep -c .); ((n == 3)) && break; fi
    sleep 3
  done
  if ((n == 3)); then
    ok "etcd $1: 3 members ($(tail -n +2 <<<"$out" | awk '{printf "%s%s %s", sep, $1, $3; sep = ", "}'))"
  else
    fail "etcd $1: \`k8s etcd members\` lists $n members, want 3"; indent <<<"$out"
  fi
}
# mentions: the node names in stdin, each once, in the order of their first mention
NAMES_RE=$(printf '%s\n' "${HOST[@]:1}" | paste -sd'|')
mentions() { grep -owE "$NAMES_RE" | awk '!seen[$0]++' | paste -sd' '; }
# node_in TEXT: the node TEXT names
node_in() {
  local i
  for ((i = 1; i <= NHOSTS; i++)); do
    [[ $1 =~ (^|[^[:alnum:]-])${HOST[i]}([^[:alnum:]-]|$) ]] && { echo "${HOST[i]}"; return 0; }
  done
  return 1
}
is_server() { [[ $(host_index "$1") != "$A" ]]; }

# ------------------------------------------------------------------------------------------ 0. setup
step "up: servers ${HOST[S1]} ${HOST[S2]} ${HOST[S3]}, agent ${HOST[A]} on k8s $OLD (next: $NEW, kubernetes $KUBE)"
run_up first -i "$WORK/hosts.yaml" --kubeconfig-out "$KC" -y
((UP_RC == 0)) || { show_up first 40; die "k8s up failed (exit $UP_RC)"; }
ok "k8s up exited 0 in $UP_SECS s"
[[ -s $KC ]] || die "no kubeconfig at $KC"
if nodes_ready 120 "${HOST[@]:1}"; then ok "all 4 nodes Ready"; else TMO=30 kc get nodes -o wide 2>&1 | indent; die "nodes not Ready"; fi
{
  web_deployment 3
  cat <<'EOF'
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web}
spec:
  minAvailable: 2
  selector: {matchLabels: {app: web}}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: before-upgrade}
data: {k: v}
EOF
} | TMO=60 kc apply -f - >/dev/null 2>"$WORK/workload.err"
rc=$?
((rc == 0)) || { fail "cannot create the workload (exit $rc)"; indent <"$WORK/workload.err"; }
if TMO=200 kc rollout status deployment/web --timeout=180s >/dev/null 2>&1; then
  ok "a 3-replica web Deployment (PodDisruptionBudget minAvailable 2) behind a Service"
else
  fail "the web Deployment is not ready"; TMO=30 kc get pods -o wide 2>&1 | indent
fi
# A client on every node (a DaemonSet: drains leave its pods alone, so their logs last through the rollout) calls
# the Service every 0.2 s (at most 6000 times) and logs each answer; pods outlive k8s restarts.
TMO=60 kc apply -f - >/dev/null 2>"$WORK/client.err" <<EOF
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: client}
spec:
  selector: {matchLabels: {app: client}}
  template:
    metadata: {labels: {app: client}}
    spec:
      tolerations: [{operator: Exists}]
      containers:
      - name: client
        image: k8s.local/busybox:latest
        imagePullPolicy: IfNotPresent
        command: [sh, -c, '$(web_client 6000); sleep 86400']
EOF
rc=$?
((rc == 0)) || { fail "cannot create the client DaemonSet (exit $rc)"; indent <"$WORK/client.err"; }
if TMO=150 kc rollout status daemonset/client --timeout=120s >/dev/null 2>&1; then ok "a client pod on every node calls the Service"
else fail "the client DaemonSet is not ready"; fi

# ------------------------------------------------------------------------------------------ 1. dry run
step "k8s up --dry-run with the next binary (k8s $NEW)"
remember_hosts "${SERVERS[@]}" "$A"
UP_TIMEOUT=120 run_up_with "$NEXT" dry -i "$WORK/hosts.yaml" --dry-run
if ((UP_RC == 0)); then ok "k8s up --dry-run exited 0 in $UP_SECS s"; else fail "k8s up --dry-run failed (exit $UP_RC)"; fi
show_up dry 20
if up_log dry | grep -q "preflight: ok"; then ok "it says \"preflight: ok\""; else fail "the dry run does not say \"preflight: ok\""; fi
# The plan's rows name the target version; without such rows, any line but the progress lines
order=$(up_log dry | grep -F -- "$NEW" | mentions)
[[ $order == *" "*" "*" "* ]] || order=$(up_log dry | grep -v '^\[ *[0-9.]*s\]' | mentions)
if [[ $order == "$WANT_ORDER" ]]; then ok "it lists the nodes in rollout order: $order"; else fail "the dry run lists '$order', want '$WANT_ORDER'"; fi
for i in "${SERVERS[@]}" "$A"; do
  v=$(published "${HOST[i]}")
  if [[ $v == "$OLD" ]]; then ok "${HOST[i]}: still publishes k8s $OLD"; else fail "${HOST[i]} changed by a dry run: publishes '$v'"; fi
done
hosts_unchanged "${SERVERS[@]}" "$A"
no_plan "after the dry run"

# ------------------------------------------------------------------------------------------ 2. refusals
step "refusals on ${HOST[S1]}: a skipped Kubernetes minor, a NotReady node"
SKIP_K8S=$(awk -F. '{ print $1 "." $2 "." $3 + 5 }' <<<"$NEW")
SKIP_KUBE=$(awk -F. '{ sub(/^v/, "", $1); print "v" $1 "." $2 + 2 ".0" }' <<<"$KUBE")
# shellcheck disable=SC2016 # $1 belongs to the fake binary's shell
printf '#!/bin/sh\n[ "$1" = version ] && { echo "k8s %s"; echo "kubernetes: %s"; exit 0; }\nexit 1\n' \
  "$SKIP_K8S" "$SKIP_KUBE" >"$WORK/skip"
chmod 755 "$WORK/skip"
push "$WORK/skip" /root/k8s-skip "$S1" || die "cannot copy to ${HOST[S1]}"
if out=$(TMO=60 on_s1 upgrade apply --binary /root/k8s-skip 2>&1); then
  fail "k8s $SKIP_K8S (kubernetes $SKIP_KUBE, from $KUBE) was applied"; indent <<<"$out"
elif grep -q "skipped Kubernetes minor" <<<"$out"; then
  ok "kubernetes $KUBE → $SKIP_KUBE is refused: $(grep -m1 'skipped Kubernetes minor' <<<"$out" | sed 's/^ *//')"
else
  fail "the refusal of a skipped Kubernetes minor does not say why"; indent <<<"$out"
fi
push "$NEXT" /root/k8s-next "$S1" || die "cannot copy the next binary to ${HOST[S1]}"
t=$(ms)
TMO=90 hx "$A" systemctl stop k8s-agent || fail "systemctl stop k8s-agent on ${HOST[A]}"
end=$((SECONDS + 120))
while [[ $(ready_of "${HOST[A]}") == True ]] && ((SECONDS < end)); do sleep 3; done
state=$(ready_of "${HOST[A]}")
if [[ $state != True ]]; then
  ok "the agent stopped: node ${HOST[A]} NotReady (Ready '$state') after $(secs "$t") s"
  if out=$(TMO=90 on_s1 upgrade apply --binary /root/k8s-next --dry-run 2>&1); then
    fail "--dry-run passed preflight with ${HOST[A]} NotReady"; indent <<<"$out"
  elif grep -q "is not Ready" <<<"$out"; then
    ok "a NotReady node is refused: $(grep -m1 'is not Ready' <<<"$out" | sed 's/^ *//')"
  else
    fail "the refusal with ${HOST[A]} NotReady does not say why"; indent <<<"$out"
  fi
else
  fail "node ${HOST[A]} still Ready 120 s after its agent stopped (refusal not tried)"
fi
TMO=150 hx "$A" systemctl start k8s-agent || fail "systemctl start k8s-agent on ${HOST[A]}"
if nodes_ready 120 "${HOST[@]:1}"; then
  ok "agent started again: all 4 nodes Ready"
else
  fail "not all nodes Ready after the agent's start"; TMO=30 kc get nodes 2>&1 | indent
fi
no_plan "after the refusals"

# ------------------------------------------------------------------------------------------ 3. the upgrade
step "k8s up with the next binary: $OLD → $NEW through the UpgradePlan k8s-$NEW"
read -r sent0 failed0 < <(client_counts)
UP_TIMEOUT=600 run_up_with "$NEXT" upgrade -i "$WORK/hosts.yaml" --kubeconfig-out "$KC" -y --ready-timeout 120 --soak 5 --drain always
echo "BENCH upgrade 3+1 via up: $UP_SECS s"
if ((UP_RC == 0)); then ok "k8s up exited 0 in $UP_SECS s"; show_up upgrade 12; else fail "k8s up failed (exit $UP_RC)"; show_up upgrade 40; fi
api_back 60 || fail "the API server does not answer /readyz"
for i in "${SERVERS[@]}" "$A"; do
  v=$(published "${HOST[i]}"); r=$(runs "$i")
  if [[ $v == "$NEW" && $r == "$NEW" ]]; then ok "${HOST[i]} runs and publishes k8s $NEW"; else fail "${HOST[i]}: publishes '$v', binary '$r', want $NEW"; fi
  unsched=$(TMO=20 kc get node "${HOST[i]}" -o jsonpath='{.spec.unschedulable}')
  if [[ -z $unsched || $unsched == false ]]; then ok "${HOST[i]} is schedulable"; else fail "${HOST[i]} is still cordoned"; fi
done
phase=$(TMO=20 kc get upgradeplan "k8s-$NEW" -o jsonpath='{.status.phase} {.status.done}' 2>&1)
if [[ $phase == "Complete 4/4" ]]; then ok "plan k8s-$NEW: $phase"; else fail "plan k8s-$NEW is '$phase'"; fi
if TMO=30 kc wait --for=condition=Complete "upgradeplan/k8s-$NEW" --timeout=20s >/dev/null 2>&1; then ok "its Complete condition is True"
else fail "the plan's Complete condition is not True"; fi
kubelets=$(TMO=20 kc get nodes -o jsonpath='{range .items[*]}{.status.nodeInfo.kubeletVersion}{"\n"}{end}' 2>&1 | sort -u | paste -sd' ')
apiserver=$(TMO=20 kc get --raw /version 2>/dev/null | jq -r .gitVersion 2>/dev/null)
if [[ $kubelets == "$NEW_KUBE" && $apiserver == "$NEW_KUBE" ]]; then ok "every kubelet and the API server report Kubernetes $NEW_KUBE"
else fail "Kubernetes versions after the upgrade: kubelets '$kubelets', API server '$apiserver', want $NEW_KUBE"; fi

# The plan's Events (reason Node<Phase>, the message names the node), oldest first: "TIME<tab>REASON<tab>MESSAGE".
# TIME is whichever of eventTime (µs), firstTimestamp, lastTimestamp is set, padded to µs so that they sort; at
# the same instant a commit sorts before a start.
plan_events() {
  TMO=30 kc get events -A --field-selector "involvedObject.kind=UpgradePlan,involvedObject.name=$1" -o json 2>/dev/null |
    jq -r '
      def when: (.eventTime // .firstTimestamp // .lastTimestamp // .metadata.creationTimestamp // "")
        | capture("^(?<s>[^.Z+]*)(\\.(?<f>[0-9]+))?") | .s + "." + ((.f // "") + "000000")[0:6];
      .items[] | select(.reason == "NodeStarted" or .reason == "NodeCommitted")
      | [when, .reason, ((.message // "") | gsub("[\t\n]"; " "))] | @tsv' 2>/dev/null | LC_ALL=C sort
}
evs=""
for ((k = 0; k < 15; k++)); do
  evs=$(plan_events "k8s-$NEW")
  (($(grep -c $'\tNodeCommitted\t' <<<"$evs") >= NHOSTS)) && break
  sleep 2
done
declare -A started_at committed_at
started=() bad=""
while IFS=$'\t' read -r when reason msg; do
  [[ -n $reason ]] || continue
  node=$(node_in "$msg") || continue
  case $reason in
    NodeStarted)
      [[ -n ${started_at[$node]:-} ]] && continue          # a later attempt: the first start counts
      started_at[$node]=$when; started+=("$node")
      for other in "${started[@]}"; do                     # a server still in progress when another node starts
        [[ $other != "$node" && -z ${committed_at[$other]:-} ]] && is_server "$other" &&
          bad="$bad; $node started at $when while server $other (started ${started_at[$other]}) had not committed"
      done
      if ! is_server "$node"; then                          # the agent: after every server committed
        for i in "${SERVERS[@]}"; do
          [[ -n ${committed_at[${HOST[i]}]:-} ]] || bad="$bad; the agent $node started at $when before server ${HOST[i]} committed"
        done
      fi
      ;;
    NodeCommitted) [[ -n ${committed_at[$node]:-} ]] || committed_at[$node]=$when ;;
  esac
done <<<"$evs"
if ((${#started[@]} < NHOSTS)); then
  fail "the plan's Events: NodeStarted for ${#started[@]} of $NHOSTS nodes (${started[*]:-none}), cannot check the order"
  TMO=30 kc get events -A --field-selector "involvedObject.kind=UpgradePlan,involvedObject.name=k8s-$NEW" 2>&1 | tail -n 20 | indent
else
  if [[ ${started[*]} == "$WANT_ORDER" ]]; then ok "the plan's Events: nodes started in the order ${started[*]}"
  else fail "the plan's Events: nodes started in the order '${started[*]}', want '$WANT_ORDER'"; fi
  if [[ -z $bad ]]; then ok "one server at a time, each after the previous one committed, and the agent after every server"
  else fail "the plan's Events: not one server at a time${bad}"; indent <<<"$evs"; fi
fi
got=$(TMO=30 kc get events -A --field-selector involvedObject.kind=Node,reason=UpgradeCommitted -o json 2>/dev/null |
  jq -r '[.items[].involvedObject.name] | unique | join(" ")' 2>/dev/null)
missing=""
for i in "${SERVERS[@]}" "$A"; do [[ " $got " == *" ${HOST[i]} "* ]] || missing="$missing ${HOST[i]}"; done
if [[ -z $missing ]]; then ok "every Node has an UpgradeCommitted Event"; else fail "no UpgradeCommitted Event on:$missing (got: '$got')"; fi

avail=""
for ((k = 0; k < 30; k++)); do
  avail=$(TMO=20 kc get deployment web -o jsonpath='{.status.availableReplicas}' 2>/dev/null)
  [[ $avail == 3 ]] && break
  sleep 2
done
if [[ $avail == 3 ]]; then ok "deployment web: 3 available replicas"; else fail "deployment web has '$avail' available replicas, want 3"; fi
if [[ $(TMO=20 kc get configmap before-upgrade -o jsonpath='{.data.k}' 2>&1) == v ]]; then ok "ConfigMap before-upgrade survived"
else fail "ConfigMap before-upgrade is gone or changed"; fi
read -r sent1 failed1 < <(client_counts)
sent=$((sent1 - sent0)) failed=$((failed1 - failed0))
say "requests through the Service during the rollout: $sent sent, $failed failed"
if ((sent > 0)); then ok "the client pods ran through the rollout ($sent requests, $failed failed)"; else fail "the client pod sent nothing during the rollout"; fi
etcd_members "after the upgrade"

step "k8s up again with the next binary: nothing changes"
remember_hosts "${SERVERS[@]}" "$A"
UP_TIMEOUT=180 run_up_with "$NEXT" again -i "$WORK/hosts.yaml" -y --kubeconfig-out "$KC" --output json
if ((UP_RC == 0)); then ok "k8s up exited 0 in $UP_SECS s"; else fail "the second up failed (exit $UP_RC)"; show_up again; fi
json_no_change again "${IP[@]:1}"
hosts_unchanged "${SERVERS[@]}" "$A"

# ------------------------------------------------------------------------------------------ 4. a rollback
step "a broken binary on HA: the first server rolls back by itself, the others are not touched"
BROKEN=$(awk -F. '{ print $1 "." $2 "." $3 + 1 }' <<<"$NEW")
# shellcheck disable=SC2016 # $1 belongs to the fake binary's shell
printf '#!/bin/sh\n[ "$1" = version ] && { echo "k8s %s"; echo "kubernetes: %s"; exit 0; }\necho "broken on purpose" >&2\nexit 3\n' \
  "$BROKEN" "$KUBE" >"$WORK/broken"
chmod 755 "$WORK/broken"
push "$WORK/broken" /root/k8s-broken "$S1" || die "cannot copy to ${HOST[S1]}"
t=$(ms)
TMO=400 on_s1 upgrade apply --binary /root/k8s-broken --ready-timeout 30 --soak 5 >"$WORK/broken.out" 2>&1
rc=$?
secs_back=$(secs "$t")
echo "BENCH rollback HA: $secs_back s"
indent <"$WORK/broken.out" | tail -n 10
if ((rc != 0)); then ok "k8s upgrade apply of the broken binary exits non-zero ($rc) after $secs_back s"; else fail "the broken upgrade reported success"; fi
if grep -q "RolledBack\|did not upgrade" "$WORK/broken.out"; then ok "it says a node rolled back"; else fail "the broken upgrade's output does not say a node rolled back"; fi
api_back 120 || fail "the API server does not answer /readyz 120 s after the rollback"
first=$(TMO=20 kc get upgradeplan "k8s-$BROKEN" -o jsonpath='{.status.nodes[0].name}' 2>/dev/null)
if [[ $first == "$FIRST_SERVER" ]]; then ok "plan k8s-$BROKEN starts with the first server by name, $first"
else fail "plan k8s-$BROKEN starts with '$first', want $FIRST_SERVER"; first=$FIRST_SERVER; fi
r=$(runs "$(host_index "$first")")
if [[ $r == "$NEW" ]]; then ok "$first is back on k8s $NEW"; else fail "$first runs '$r', not $NEW"; fi
phase=$(TMO=20 kc get upgradeplan "k8s-$BROKEN" -o jsonpath='{.status.phase}' 2>&1)
why=$(TMO=20 kc get upgradeplan "k8s-$BROKEN" -o jsonpath='{.status.message}' 2>&1)
if [[ $phase == Halted && -n $why ]]; then ok "plan k8s-$BROKEN halted: $why"; else fail "plan k8s-$BROKEN is '$phase': '$why'"; fi
TMO=20 kc get upgradeplan "k8s-$BROKEN" -o jsonpath='{range .status.nodes[*]}{.name} {.phase} {.message}{"\n"}{end}' 2>&1 | indent
for i in "${SERVERS[@]}" "$A"; do
  [[ ${HOST[i]} == "$first" ]] && continue
  v=$(published "${HOST[i]}")
  if [[ $v == "$NEW" ]]; then ok "${HOST[i]} was not touched (publishes $NEW)"; else fail "${HOST[i]} changed: publishes '$v', want $NEW"; fi
done
if nodes_ready 180 "${HOST[@]:1}"; then ok "all 4 nodes Ready after the rollback"
else fail "not all nodes Ready 180 s after the rollback"; TMO=30 kc get nodes 2>&1 | indent; fi
etcd_members "after the rollback"
written=""
for ((k = 0; k < 10; k++)); do
  TMO=20 kc create configmap after-rollback --from-literal=k=v >/dev/null 2>&1 && { written=1; break; }
  sleep 2
done
if [[ -n $written ]]; then ok "the cluster takes writes after the rollback"; else fail "the cluster does not take writes after the rollback (20 s)"; fi
