# shellcheck shell=bash
# e2e/lib/up.sh: what e2e/up.sh and e2e/up-ha.sh share. Sourced, after the caller set CL (the nspawn cluster
# name, also the k8s cluster's name) and NHOSTS. Everything that talks to the hosts runs in the cluster's
# workstation netns (nspawn.sh ws), as `k8s up` would on a real workstation.
#
# Environment:
#   K8S_BIN=dist/k8s       the binary under test (copied first, so a `make dist` meanwhile does not change it)
#   E2E_TIMEOUT=600        hard limit for the whole run, in seconds
#   NSPAWN_KEEP=1          keep the hosts' disks and logs after the run (nspawn.sh)
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
N=$ROOT/e2e/lib/nspawn.sh
K8S_BIN=${K8S_BIN:-$ROOT/dist/k8s}
TOTAL_TIMEOUT=${E2E_TIMEOUT:-600}
WORK=/var/tmp/k8s-e2e-up.$CL          # the workstation's files: binary, inventories, kubeconfig, logs of `up`
BIN=$WORK/k8s
KC=$WORK/$CL.kubeconfig
T0=$(date +%s)
FAILS=0
FAILED_CHECKS=()
HOST=() IP=()                         # HOST[i], IP[i]: host i (1-based) of the cluster
STATE="" NET=""

# ------------------------------------------------------------------------------------------ output
. "$ROOT/e2e/lib/report.sh"           # ts say step ok fail die noansi indent
ms() { date +%s%3N; }
secs() { local d=$(($(ms) - $1)); printf '%d.%d' $((d / 1000)) $((d % 1000 / 100)); }   # since T (ms) as 12.3

# ------------------------------------------------------------------------------------------ running things
# ws CMD...: in the workstation netns, with a home of its own (no ~/.ssh of the machine is read or written, no
# ssh agent) and a data dir of its own for the carried kubectl. Bounded by TMO seconds (default 120).
ws() {
  timeout -k 5 "${TMO:-120}" "$N" ws "$CL" env -u SSH_AUTH_SOCK HOME="$WORK/home" K8S_DATA_DIR="$WORK/ws-data" "$@"
}
# hx I CMD...: run CMD inside host I (nsenter, no ssh: checks must not show up as logins)
hx() { local i=$1; shift; timeout -k 5 "${TMO:-60}" "$N" exec "$CL" "$i" "$@"; }
# kc ARGS...: the carried kubectl, on the workstation, with the kubeconfig `up` wrote
kc() { ws "$BIN" kubectl --kubeconfig "$KC" "$@"; }
host_index() { local i; for ((i = 1; i <= NHOSTS; i++)); do [[ ${HOST[i]} == "$1" ]] && { echo "$i"; return 0; }; done; return 1; }

# ------------------------------------------------------------------------------------------ setup, cleanup
# Every host's systemd, kube-apiserver, kubelet and containerd hold inotify instances, and all hosts are uid 0 of the
# machine's one user namespace: the machine-wide default of 128 runs out with three servers (containerd then starts
# without its CRI plugin, "too many open files", and kubelet fails forever). Raised for the run; the last test that
# leaves (no nspawn cluster left) puts the old value back.
INOTIFY=/proc/sys/fs/inotify/max_user_instances
INOTIFY_WANT=1024
INOTIFY_ORIG=/var/tmp/k8s-e2e-nspawn/inotify-max-user-instances.orig
raise_inotify() {
  local cur; cur=$(cat "$INOTIFY")
  ((cur >= INOTIFY_WANT)) && return 0
  mkdir -p "${INOTIFY_ORIG%/*}"
  [[ -f $INOTIFY_ORIG ]] || echo "$cur" >"$INOTIFY_ORIG"
  echo "$INOTIFY_WANT" >"$INOTIFY" || die "cannot raise fs.inotify.max_user_instances ($cur) to $INOTIFY_WANT"
  say "note: fs.inotify.max_user_instances raised from $cur to $INOTIFY_WANT for the run (4 k8s hosts need ~200)"
}
restore_inotify() {
  [[ -f $INOTIFY_ORIG ]] || return 0
  ls /var/tmp/k8s-e2e-nspawn/clusters/*/env >/dev/null 2>&1 && return 0
  [[ $(cat "$INOTIFY") == "$INOTIFY_WANT" ]] && cat "$INOTIFY_ORIG" >"$INOTIFY"
  rm -f "$INOTIFY_ORIG"
}

up_cleanup() {
  local rc=$? i
  trap - EXIT INT TERM
  [[ -n ${WATCHDOG:-} ]] && kill "$WATCHDOG" 2>/dev/null
  ((rc != 0 && FAILS == 0)) && fail "aborted (exit code $rc)"
  if ((FAILS != 0)) && [[ -n $STATE ]]; then
    echo; say "==== diagnostics"
    [[ -s $KC ]] && TMO=20 kc get nodes -o wide 2>&1 | indent
    for ((i = 1; i <= NHOSTS; i++)); do
      "$N" pid "$CL" "$i" >/dev/null 2>&1 || continue
      echo "--- ${HOST[i]}: journal of k8s-server / k8s-agent (last 30 lines)"
      TMO=20 hx "$i" journalctl -u k8s-server -u k8s-agent --no-pager -n 30 -o short-precise 2>&1 | noansi | indent
      # a component's own complaint is only in its log
      TMO=20 hx "$i" sh -c 'for f in /var/lib/k8s/logs/*.log; do [ -f "$f" ] || continue
        grep -E "^[EF][0-9]{4} |level=(error|fatal)|level=warning msg=\"failed to load plugin" "$f" | tail -n 3 | sed "s|^|${f##*/}: |"; done' 2>&1 |
        cut -c1-300 | indent
    done
  fi
  say "downing the test hosts"
  "$N" down "$CL" 2>&1 | indent
  restore_inotify
  rm -rf "$WORK/ws-data" "$BIN"
  echo
  if ((FAILS == 0)); then
    rm -rf "$WORK"
    say "$SCRIPT: PASS ($(($(date +%s) - T0)) s)"
    exit 0
  fi
  say "$SCRIPT: FAIL: $FAILS check(s) failed ($(($(date +%s) - T0)) s); inventories and logs of up kept in $WORK"
  for i in "${FAILED_CHECKS[@]}"; do echo "  - $i"; done
  exit 1
}

# up_init: preconditions, traps and watchdog, the binary, the hosts (NHOSTS of them), the workstation's kubectl
up_init() {
  local i name ip t kpid
  [[ $(id -u) == 0 ]] || { echo "$SCRIPT: SKIP: must run as root (test hosts need namespaces)"; exit 77; }
  [[ -x $K8S_BIN ]] || { echo "$SCRIPT: SKIP: no binary at $K8S_BIN; run \`make dist\` (up uploads the one-file binary)"; exit 77; }
  command -v jq >/dev/null || { echo "$SCRIPT: SKIP: no jq (make deps)"; exit 77; }
  trap up_cleanup EXIT
  trap 'echo "[$(ts)] interrupted"; exit 130' INT
  trap 'fail "global timeout: the run took more than ${TOTAL_TIMEOUT}s"; exit 124' TERM
  ( sleep "$TOTAL_TIMEOUT"; kill -TERM $$ 2>/dev/null ) </dev/null >/dev/null 2>&1 &
  WATCHDOG=$!

  step "setup: $NHOSTS hosts, binary $K8S_BIN"
  raise_inotify
  rm -rf "$WORK"; mkdir -p "$WORK/home" "$WORK/ws-data"
  cp "$K8S_BIN" "$BIN.tmp" && mv "$BIN.tmp" "$BIN" || die "cannot copy $K8S_BIN to $BIN"
  "$BIN" version 2>&1 | head -1 | indent
  # the carried kubectl is extracted once into the workstation's own data dir, while the hosts boot
  K8S_DATA_DIR=$WORK/ws-data timeout 120 "$BIN" kubectl version --client >"$WORK/kubectl-extract.log" 2>&1 &
  kpid=$!
  t=$(ms)
  TMO=300 "$N" up "$CL" "$NHOSTS" >"$WORK/nspawn-up.log" 2>&1 || { indent <"$WORK/nspawn-up.log"; die "nspawn.sh up $CL $NHOSTS failed"; }
  STATE=$("$N" dir "$CL")
  i=0
  while read -r name ip; do
    i=$((i + 1)); HOST[i]=$name; IP[i]=$ip
  done <"$STATE/hosts.txt"
  ((i == NHOSTS)) || die "hosts.txt of $CL lists $i hosts, not $NHOSTS"
  NET=${IP[1]%.*}
  ok "$NHOSTS hosts answer ssh ($(secs "$t") s): $(tr '\n' ' ' <"$STATE/hosts.txt")"
  wait "$kpid" || { indent <"$WORK/kubectl-extract.log"; die "the carried kubectl does not run on the workstation"; }
  # the workstation's known_hosts: a copy, so `up` may record into it without touching the harness's
  cp "$STATE/known_hosts" "$WORK/known_hosts"
}

# ------------------------------------------------------------------------------------------ inventories
# inventory FILE [-k KNOWN_HOSTS] [-c strict|accept-new] [-x EXTRA_YAML] [-i IMAGE_ARCHIVE] [-r REGISTRIES_YAML] SPEC...
# SPEC is "HOST ROLE [USER]": HOST a host index or an address; USER overrides the default user root.
# Lines of the file are stable, so tests can name them (hosts[i] is on line INV_FIRST_HOST + i*INV_LINES_PER_HOST).
inventory() {
  local out=$1 known=$WORK/known_hosts check=strict extra="" images="" registries="" spec h role user addr; shift
  while (($#)); do
    case $1 in
      -k) known=$2; shift 2 ;;
      -c) check=$2; shift 2 ;;
      -x) extra=$2; shift 2 ;;
      -i) images=$2; shift 2 ;;
      -r) registries=$2; shift 2 ;;
      *) break ;;
    esac
  done
  {
    echo "# generated by e2e/lib/up.sh from $STATE/hosts.txt"
    echo "cluster:"
    echo "  name: $CL"
    [[ -n $images ]] && echo "  images: [$images]"
    [[ -n $registries ]] && echo "  registries: $registries"
    echo "ssh:"
    echo "  user: root"
    echo "  identity-file: $STATE/id_ed25519"
    echo "  known-hosts: $known"
    echo "  host-key-checking: $check"
    echo "  timeout: 5s"
    [[ -n $extra ]] && printf '%s\n' "$extra"
    echo "hosts:"
    for spec in "$@"; do
      read -r h role user <<<"$spec"
      if [[ $h =~ ^[0-9]+$ ]]; then addr=${IP[h]}; else addr=$h; fi
      echo "  - address: $addr"
      echo "    role: $role"
      [[ -n $user ]] && echo "    ssh: {user: $user}"
    done
  } >"$out"
}

# ------------------------------------------------------------------------------------------ k8s up
# run_up LABEL ARGS...: `k8s up ARGS` on the workstation; stdout in $WORK/up-LABEL.out, stderr in .err; sets UP_RC,
# UP_SECS
run_up() { run_up_with "$BIN" "$@"; }
# run_up_with BIN LABEL ARGS...: run_up with another k8s binary (one the workstation netns can run)
run_up_with() {
  local bin=$1 label=$2 t; shift 2
  t=$(ms)
  TMO=${UP_TIMEOUT:-420} ws "$bin" up "$@" </dev/null >"$WORK/up-$label.out" 2>"$WORK/up-$label.err"
  UP_RC=$?
  UP_SECS=$(secs "$t")
  ((UP_RC == 124)) && say "k8s up $label: killed after ${UP_TIMEOUT:-420} s"
  return 0
}
up_log() { cat "$WORK/up-$1.err" "$WORK/up-$1.out" | noansi; }
# show_up LABEL [N]: the last N (default 25) lines of that run's output, indented
show_up() { up_log "$1" | tail -n "${2:-25}" | indent; }

# expect_refused LABEL WHAT INVENTORY REGEX...: `up` must fail within 60 s with output matching every REGEX
# (extended, case-insensitive)
expect_refused() {
  local label=$1 what=$2 inv=$3 re missing=""; shift 3
  UP_TIMEOUT=60 run_up "$label" -i "$inv" -y
  if ((UP_RC == 0)); then fail "$what: up succeeded"; show_up "$label"; return 1; fi
  for re in "$@"; do up_log "$label" | grep -qiE -- "$re" || missing="$missing '$re'"; done
  if [[ -n $missing ]]; then
    fail "$what: the message lacks$missing (exit $UP_RC)"; show_up "$label"; return 1
  fi
  # the message, not a progress line ("[  0.1s] HOST  connecting")
  ok "$what: refused in $UP_SECS s: $(up_log "$label" | grep -v '^\[ *[0-9.]*s\]' | grep -iE -- "${!#}" | head -1 | sed 's/^ *//' | cut -c1-240)"
}

# json_no_change LABEL ADDRESS...: that run's `--output json` document says ok, and for every ADDRESS a host that
# converged with nothing changed
json_no_change() {
  local label=$1 a doc bad=""; shift
  doc=$WORK/up-$label.out
  if ! jq -e . "$doc" >/dev/null 2>&1; then
    fail "--output json: stdout is not one JSON document"; head -c 600 "$doc" | indent; return 1
  fi
  jq -e '.ok == true' "$doc" >/dev/null || bad="$bad ok=$(jq -c .ok "$doc")"
  for a in "$@"; do
    jq -e --arg a "$a" '[.hosts[] | select(.address == $a and .status == "ok" and .changed == false and .changes == [])] | length == 1' \
      "$doc" >/dev/null || bad="$bad $a:$(jq -c --arg a "$a" '[.hosts[] | select(.address == $a) | {status, changed, changes}]' "$doc")"
  done
  [[ -z $bad ]] && ok "--output json: ok, and no change on $(jq -r '[.hosts[].name] | join(" ")' "$doc")" ||
    fail "--output json reports changes or failures:$bad"
}

# ------------------------------------------------------------------------------------------ hosts untouched
# mark_hosts I...: remember "now" in each host, to find what changed since
mark_hosts() { local i; for i in "$@"; do hx "$i" touch /run/k8s-e2e-mark || die "cannot mark ${HOST[i]}"; done; }
ssh_logins() { hx "$1" sh -c 'journalctl -u ssh --no-pager -o cat | grep -c "Accepted publickey"' 2>/dev/null || echo 0; }
# changed_since_mark I: files written since mark_hosts outside the logs (a login writes only the journal), and
# any big file (the binary) anywhere, /tmp included; plus our paths
changed_since_mark() {
  hx "$1" sh -c '
    find / -xdev \( -path /var/log -o -path /tmp -o -path /var/tmp -o -path /run \) -prune -o -newer /run/k8s-e2e-mark -print 2>/dev/null
    find / /tmp /var/lib/k8s /var/lib/kubelet /var/lib/containerd /var/lib/etcd -xdev -path /var/log -prune -o \
      -type f -newer /run/k8s-e2e-mark -size +1M -print 2>/dev/null
    for p in /usr/local/bin/k8s /etc/k8s /etc/systemd/system/k8s-server.service /etc/systemd/system/k8s-agent.service; do
      [ -e "$p" ] && echo "$p"
    done
    for d in /var/lib/k8s /var/lib/kubelet /var/lib/containerd /var/lib/etcd; do
      [ -z "$(ls -A "$d" 2>/dev/null)" ] || echo "$d is not empty"
    done' | sort -u
}
# untouched WHAT I...: nothing of k8s on these hosts, nothing written since the mark
untouched() {
  local what=$1 i c bad="" names=""; shift
  for i in "$@"; do
    names="$names ${HOST[i]}"
    c=$(changed_since_mark "$i")
    [[ -z $c ]] && continue
    bad="$bad ${HOST[i]}"
    { echo "${HOST[i]}:"; head -n 20 <<<"$c"; } | indent
  done
  [[ -z $bad ]] && ok "$what: nothing written on$names" || fail "$what: files written on$bad"
}

# ------------------------------------------------------------------------------------------ cluster checks
# nodes_ready SECONDS NODE...: every node Ready within SECONDS
nodes_ready() {
  local t=$1; shift
  TMO=$((t + 20)) kc wait --for=condition=Ready "${@/#/node/}" --timeout="${t}s" >/dev/null 2>&1
}
# node_back NODE SINCE SECONDS: within SECONDS, the node is Ready and its kubelet renewed its Lease after SINCE
# (epoch seconds): a Ready condition alone may be the one posted before a power-off, not yet timed out
node_back() {
  local node=$1 since=$2 end=$((SECONDS + $3)) ready renew
  while ((SECONDS < end)); do
    ready=$(TMO=20 kc get node "$node" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)
    renew=$(TMO=20 kc -n kube-node-lease get lease "$node" -o jsonpath='{.spec.renewTime}' 2>/dev/null)
    [[ $ready == True && -n $renew ]] && (($(date -d "$renew" +%s 2>/dev/null || echo 0) >= since)) && return 0
    sleep 2
  done
  return 1
}
node_names() { TMO=30 kc get nodes -o jsonpath='{range .items[*]}{.metadata.name}{" "}{end}' 2>/dev/null; }

# pod_traffic SERVER_NODE AGENT_NODE: a pod on the agent reaches a pod on the server by its address (which sees the
# client pod's own address), through a ClusterIP Service and by the Service's DNS name (as e2e/agent.sh)
pod_traffic() {
  local s=$1 a=$2 n server_pod agent_pod svc
  TMO=30 kc create namespace e2e-up >/dev/null || { fail "cannot create namespace e2e-up"; return 1; }
  for n in "$s" "$a"; do
    TMO=30 kc -n e2e-up run "web-$n" --image=k8s.local/busybox:latest --image-pull-policy=IfNotPresent --labels="app=web-$n" \
      --overrides="{\"spec\":{\"nodeName\":\"$n\"}}" --command -- \
      sh -c "mkdir -p /www && echo hello-from-$n >/www/index.html && exec httpd -f -v -p 8080 -h /www" >/dev/null ||
      { fail "cannot create pod web-$n"; return 1; }
  done
  TMO=30 kc -n e2e-up expose pod "web-$s" --name=web --port=80 --target-port=8080 --selector="app=web-$s" >/dev/null ||
    { fail "cannot create Service web"; return 1; }
  if ! TMO=200 kc -n e2e-up wait --for=condition=Ready "pod/web-$s" "pod/web-$a" --timeout=180s >/dev/null; then
    fail "test pods not Ready in 180 s"; TMO=30 kc -n e2e-up get pods -o wide 2>&1 | indent
    TMO=30 kc -n e2e-up get events --sort-by=.lastTimestamp 2>&1 | tail -n 10 | indent
    return 1
  fi
  ok "pods web-$s and web-$a Running on their nodes"
  server_pod=$(TMO=30 kc -n e2e-up get pod "web-$s" -o jsonpath='{.status.podIP}')
  agent_pod=$(TMO=30 kc -n e2e-up get pod "web-$a" -o jsonpath='{.status.podIP}')
  svc=$(TMO=30 kc -n e2e-up get svc web -o jsonpath='{.spec.clusterIP}')
  # busybox wget's -T segfaults in Debian's busybox-static; bound with timeout instead
  fetch() { TMO=40 kc -n e2e-up exec "web-$a" -- timeout 10 wget -qO- "$1" 2>&1; }
  local out
  out=$(fetch "http://$server_pod:8080/")
  [[ $out == "hello-from-$s" ]] && ok "pod on $a reaches the pod on $s ($server_pod)" ||
    fail "pod on $a cannot reach pod $server_pod on $s: $out"
  TMO=30 kc -n e2e-up logs "web-$s" 2>/dev/null | grep -qF "ffff:$agent_pod]:" &&
    ok "the server's pod saw the client pod's own address ($agent_pod): no NAT between pods" ||
    fail "the pod on $s did not see $agent_pod as the source: $(TMO=30 kc -n e2e-up logs "web-$s" 2>&1 | tail -n 2)"
  # A new Service reaches each node's kube-proxy a moment after it exists (as in upstream's e2e, poll):
  # a connection tried before the rules keeps its un-NATed conntrack entry, so each try is a new one.
  local try
  for try in 1 2 3 4 5 6; do
    out=$(fetch "http://$svc/")
    [[ $out == "hello-from-$s" ]] && break
    sleep 2
  done
  [[ $out == "hello-from-$s" ]] && ok "pod on $a reaches the Service by its ClusterIP ($svc; try $try)" ||
    fail "pod on $a cannot reach Service $svc in 6 tries: $out"
  out=$(fetch "http://web.e2e-up.svc.cluster.local/")
  [[ $out == "hello-from-$s" ]] && ok "pod on $a reaches the Service by DNS (web.e2e-up.svc.cluster.local)" ||
    fail "pod on $a cannot reach the Service by DNS: $out"
}

# ------------------------------------------------------------------------------------------ re-runs
# host_state I: what must not change when up runs again: the binary (sha256, mtime), the config, and each k8s
# unit's start time and main PID
host_state() {
  hx "$1" sh -c '
    stat -c "binary mtime %Y size %s" /usr/local/bin/k8s 2>&1
    sha256sum /usr/local/bin/k8s /etc/k8s/config.yaml 2>&1
    for u in k8s-server k8s-agent; do
      systemctl is-enabled -q $u 2>/dev/null || continue
      echo "$u $(systemctl show -p ActiveEnterTimestamp -p MainPID -p NRestarts $u | tr "\n" " ")"
    done'
}

# remember_hosts I...: each host's host_state, for hosts_unchanged
declare -A REMEMBERED
remember_hosts() { local i; for i in "$@"; do REMEMBERED[$i]=$(host_state "$i"); done; }
# hosts_unchanged I...: a check per host: its host_state is what remember_hosts saw (else the difference)
hosts_unchanged() {
  local i now
  for i in "$@"; do
    now=$(host_state "$i")
    if [[ $now == "${REMEMBERED[$i]}" ]]; then
      ok "${HOST[i]}: binary mtime, sha256, config and unit start time unchanged"
    else
      fail "${HOST[i]} changed:"; diff <(echo "${REMEMBERED[$i]}") <(echo "$now") | indent
    fi
  done
}

# ------------------------------------------------------------------------------------------ workloads
# web_deployment REPLICAS: the manifest of `web`, busybox httpd answering "ok" on 8080 (the upgrade tests' workload)
web_deployment() {
  cat <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: $1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: k8s.local/busybox:latest
        imagePullPolicy: IfNotPresent
        command: [sh, -c, 'mkdir -p /www && echo ok >/www/index.html && exec httpd -f -p 8080 -h /www']
EOF
}
# web_client N: a shell loop for a client pod: calls http://web/ every 0.2 s, N times, one line ok|fail per call
web_client() {
  # shellcheck disable=SC2016 # the loop runs in the pod's shell
  printf 'i=0; while [ $i -lt %d ]; do i=$((i + 1)); if timeout 2 wget -qO- http://web/ >/dev/null 2>&1; then echo ok; else echo fail; fi; sleep 0.2; done' "$1"
}

# ------------------------------------------------------------------------------------------ etcd (HA)
# etcdctl_ws ARGS...: Debian's etcdctl (package etcd-client) on the workstation, against every server's client URL,
# with the API server's client certificate (etcd has its own CA), copied once from server ETCD_FROM (default 1)
ETCD_PKI=/var/lib/k8s/pki
etcdctl_ws() {
  local i eps="" src dst
  if [[ ! -s $WORK/etcd/client.key ]]; then
    mkdir -p "$WORK/etcd"; chmod 700 "$WORK/etcd"
    for src in etcd/ca.crt:ca.crt apiserver-etcd-client.crt:client.crt apiserver-etcd-client.key:client.key; do
      dst=${src#*:}; src=${src%:*}
      hx "${ETCD_FROM:-1}" cat "$ETCD_PKI/$src" >"$WORK/etcd/$dst" 2>/dev/null || { rm -f "$WORK/etcd/client.key"; return 1; }
    done
  fi
  for i in "${ETCD_SERVERS[@]}"; do eps="$eps${eps:+,}https://${IP[i]}:2379"; done
  TMO=${TMO:-20} ws env ETCDCTL_API=3 etcdctl --endpoints="$eps" --dial-timeout=3s --command-timeout=5s \
    --cacert="$WORK/etcd/ca.crt" --cert="$WORK/etcd/client.crt" --key="$WORK/etcd/client.key" "$@"
}
# etcd_voters_healthy COUNT SECONDS WHAT: within SECONDS, `member list` shows COUNT started voting members (no
# learner) and every endpoint answers `endpoint health`
etcd_voters_healthy() {
  local want=$1 secs=$2 what=$3 end members health voters healthy
  command -v etcdctl >/dev/null || { fail "etcd $what: no etcdctl on the machine (apt-get install etcd-client)"; return 1; }
  end=$((SECONDS + secs))
  while :; do
    members=$(etcdctl_ws member list -w simple 2>&1)
    health=$(etcdctl_ws endpoint health 2>&1)
    voters=$(grep -c ', started, .*, false$' <<<"$members")
    healthy=$(grep -c 'is healthy' <<<"$health")
    ((voters == want && healthy == want)) && break
    ((SECONDS < end)) || {
      fail "etcd $what: $voters started voting members and $healthy healthy endpoints after $secs s, want $want"
      { echo "$members"; echo "$health"; } | indent; return 1
    }
    sleep 3
  done
  ok "etcd $what: $want started voting members, all healthy: $(cut -d, -f3 <<<"$members" | tr -d ' ' | tr '\n' ' ')"
}
