#!/usr/bin/env bash
# e2e/systemd.sh [K8S_BIN]: the unit k8s up installs, on a host booted with
# systemd (nspawn): `systemctl enable --now k8s-server` returns once the
# server is ready (Type=notify), the node is Ready, a restart comes back,
# the journal has the lifecycle lines, and `k8s reset --yes` removes the
# unit and the data. Exit 0 only if every check passes.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
N=$here/lib/nspawn.sh
BIN=${1:-${K8S_BIN:-$here/../dist/k8s}}
CL=k8s-unit

fail() { echo "FAIL: $*"; exit 1; }
ok() { echo "ok   $*"; }
on() { timeout 300 "$N" ssh "$CL" 1 "$@"; }
trap '"$N" down "$CL" >/dev/null 2>&1 || true' EXIT

[[ -x $BIN ]] || fail "no k8s binary at $BIN (make dist)"
"$N" up "$CL" 1 >/dev/null
"$N" push "$CL" "$BIN" /usr/local/bin/k8s >/dev/null
"$N" push "$CL" "$here/../systemd/k8s-server.service" /etc/systemd/system/k8s-server.service >/dev/null

t0=$SECONDS
on 'systemctl daemon-reload && systemctl enable --now k8s-server' >/dev/null 2>&1 || fail "systemctl enable --now failed"
[[ $(on systemctl is-active k8s-server) == active ]] || fail "the unit is not active"
ok "systemctl enable --now returned after $((SECONDS - t0)) s with the unit active (Type=notify)"
on 'k8s kubectl get node "$(hostname)" -o jsonpath="{.status.conditions[?(@.type==\"Ready\")].status}"' | grep -q True ||
  fail "the node is not Ready when the unit reports ready"
ok "the node is Ready"

t0=$SECONDS
on systemctl restart k8s-server || fail "systemctl restart failed"
[[ $(on systemctl is-active k8s-server) == active ]] || fail "the unit is not active after a restart"
on 'k8s kubectl get --raw /readyz' | grep -q ok || fail "the API does not answer after a restart"
ok "systemctl restart returned after $((SECONDS - t0)) s; the API answers"
[[ $(on 'journalctl -u k8s-server --no-pager | grep -c "k8s server ready"') -ge 2 ]] ||
  fail "the journal lacks the lifecycle lines"
ok "the journal has one 'k8s server ready' per start"

on k8s reset --yes >/dev/null || fail "k8s reset failed"
[[ $(on 'systemctl list-unit-files k8s-server.service | grep -c k8s-server' || true) == 0 ]] || fail "the unit is still installed"
on 'test ! -e /var/lib/k8s/server && test ! -e /etc/k8s/admin.kubeconfig && ! pgrep -x kubelet' || fail "reset left data or processes"
ok "k8s reset removed the unit, the data and the processes"
echo "PASS e2e/systemd.sh"
