#!/usr/bin/env bash
# e2e/up.sh: `k8s up` from a workstation over SSH to two Debian hosts booted with systemd (e2e/lib/nspawn.sh).
#
#   e2e/up.sh            exit 0 = every check passed, 1 = a check failed, 77 = skipped
#
# 1. Refused before anything changes, with a message naming the cause: a typo'd role and an even server count
#    (file:line; no host even logged into), an unreachable host (names it), a wrong host key with strict checking
#    (names the host and the known_hosts file), a user whose sudo wants a password (names the host), an invalid
#    cluster.registries file (names the file and line:column; no host logged into), an arm64 host (its uname says so)
#    with no arm64 binary given (names the host and `make dist ARCH=arm64`). After each, nothing was written
#    on the real hosts. --dry-run prints the plan (with registries.yaml to write) and writes nothing either.
# 2. One server (as root) and one agent (as user debian, through sudo): both nodes Ready; a pod on the agent reaches
#    a pod on the server (which sees the pod's own address), a ClusterIP Service and its DNS name; the image archive
#    of cluster.images (the carried busybox renamed) runs on the agent with imagePullPolicy Never; the registries.yaml
#    of cluster.registries (a mirror with a password; never pulled from) is on both hosts, mode 0600, owner root, and
#    each node rendered it into containerd's hosts dir.
#    Prints "BENCH up single+agent: S s".
# 3. The same inventory again: --output json reports no change on any host; the binary's mtime, the config and the
#    units' start times are the same. Prints "BENCH up again (no change): S s".
# 4. A wrong join token, by hand on the agent host (`up` always takes the tokens from the first server): refused
#    with a clear message; the running agent is undisturbed.
# 5. `k8s backup` on the server, then `k8s reset -i` with the same inventory: no binary, unit, config, data or
#    process left on either host; `up --restore` then brings the same cluster back on them (a ConfigMap made before
#    the backup is there, the agent joins again under its old name).
# Environment: see e2e/lib/up.sh (K8S_BIN, E2E_TIMEOUT, NSPAWN_KEEP).
CL=${E2E_CLUSTER:-e2e-up}
NHOSTS=2
SCRIPT=e2e/up.sh
# shellcheck source=lib/up.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/up.sh"

up_init
S=1 A=2                                   # host indexes: the server, the agent
# An image archive under a name no registry has, for cluster.images: up copies it to every host before the nodes
# start (checked in 2: a pod with imagePullPolicy Never runs it on the agent).
payload=$("$(dirname "${BASH_SOURCE[0]}")/../bootstrap/build.sh" 2>/dev/null | tail -n 1)
rm -rf "$WORK/dropped" && mkdir -p "$WORK/dropped" && tar -C "$WORK/dropped" -xf "$payload/images/busybox.tar" ||
  die "no images/busybox.tar in the payload dir '$payload'"
sed -i 's|k8s.local/busybox:latest|k8s.local/up-dropped:e2e|; s|"org.opencontainers.image.ref.name":"latest"|"org.opencontainers.image.ref.name":"e2e"|' \
  "$WORK/dropped/index.json" "$WORK/dropped/manifest.json"
tar -C "$WORK/dropped" -cf - . | zstd -q -o "$WORK/up-dropped.tar.zst"
# A registries.yaml for cluster.registries: a mirror of a registry that does not exist (nothing pulls from it), with a
# password, so the file must land 0600. And one the nodes would refuse (line 3: a misspelt key).
cat >"$WORK/registries.yaml" <<'EOF_REG'
mirrors:
  registry.e2e.invalid:
    endpoint: ["https://mirror.e2e.invalid:5000"]
configs:
  mirror.e2e.invalid:5000:
    auth: {username: puller, password: e2e-secret}
EOF_REG
printf 'mirrors:\n  registry.e2e.invalid:\n    endpoints: ["https://mirror.e2e.invalid:5000"]\n' >"$WORK/bad-registries.yaml"
inventory "$WORK/hosts.yaml" -i "$WORK/up-dropped.tar.zst" -r "$WORK/registries.yaml" "$S server" "$A agent debian"

# ------------------------------------------------------------------------------------------ 1. refused
step "bad inventories: refused with file:line, before any host is contacted"
logins_before="$(ssh_logins $S) $(ssh_logins $A)"
mark_hosts $S $A
inventory "$WORK/typo-role.yaml" "$S sever" "$A agent debian"
line=$(grep -n 'role: sever' "$WORK/typo-role.yaml" | cut -d: -f1)
expect_refused typo-role "a typo'd role (sever)" "$WORK/typo-role.yaml" "typo-role\.yaml:$line:[0-9]+" '"?sever"?' 'server'
inventory "$WORK/even.yaml" "$S server" "$A server debian"
expect_refused even "two servers" "$WORK/even.yaml" 'even\.yaml:[0-9]+:[0-9]+' 'even' 'force-even-servers'
inventory "$WORK/bad-reg.yaml" -r "$WORK/bad-registries.yaml" "$S server" "$A agent debian"
expect_refused bad-reg "an invalid cluster.registries file" "$WORK/bad-reg.yaml" 'cluster\.registries' \
  'bad-registries\.yaml:3:5' 'unknown field `endpoints`'
logins_after="$(ssh_logins $S) $(ssh_logins $A)"
[[ $logins_after == "$logins_before" ]] && ok "no host was logged into for a bad inventory (sshd logins: $logins_after)" ||
  fail "sshd logins went from $logins_before to $logins_after for an inventory that was refused"

step "--dry-run: the plan, and nothing written"
run_up dry-run -i "$WORK/hosts.yaml" --dry-run
if ((UP_RC == 0)) && up_log dry-run | grep -qF "${IP[S]}" && up_log dry-run | grep -qF "${IP[A]}" &&
  up_log dry-run | grep -F REGISTRIES >/dev/null && up_log dry-run | grep -F "$WORK/registries.yaml" >/dev/null; then
  ok "--dry-run exits 0 in $UP_SECS s with a plan naming both hosts and the registries.yaml to write"; show_up dry-run 12
else
  fail "--dry-run: exit $UP_RC, or the plan does not name ${IP[S]}, ${IP[A]} and registries.yaml"; show_up dry-run
fi
untouched "--dry-run" $S $A

step "an unreachable host, a wrong host key, sudo that wants a password: refused, and no host half-installed"
inventory "$WORK/unreachable.yaml" "$S server" "$A agent debian" "$NET.99 agent"
expect_refused unreachable "an unreachable host ($NET.99)" "$WORK/unreachable.yaml" "${NET//./\\.}\\.99"
untouched "unreachable host" $S $A
# the agent's entries replaced by a key it does not have
ssh-keygen -q -t ed25519 -N '' -C wrong -f "$WORK/wrong-key"
{ grep -v "^${HOST[A]}," "$WORK/known_hosts"; echo "${HOST[A]},${IP[A]} $(cut -d' ' -f1,2 "$WORK/wrong-key.pub")"; } >"$WORK/known_hosts-wrong"
inventory "$WORK/wrong-key.yaml" -k "$WORK/known_hosts-wrong" -c strict "$S server" "$A agent debian"
expect_refused wrong-key "a wrong host key (strict)" "$WORK/wrong-key.yaml" "${IP[A]//./\\.}|${HOST[A]}" 'known_hosts-wrong'
untouched "wrong host key" $S $A
inventory "$WORK/pwsudo.yaml" "$S server" "$A agent pwsudo"
expect_refused pwsudo "sudo that wants a password (user pwsudo)" "$WORK/pwsudo.yaml" "${IP[A]//./\\.}|${HOST[A]}" 'password'
untouched "sudo wants a password" $S $A
# An arm64 host and only this amd64 binary: ${HOST[A]}'s `uname -m` says aarch64 (a wrapper first on PATH, for
# the facts script), and up refuses before any change, naming the host and the binary to build.
hx $A sh -c 'printf "#!/bin/sh\n[ \"\$1\" = -m ] && { echo aarch64; exit 0; }\nexec /usr/bin/uname \"\$@\"\n" >/usr/local/bin/uname &&
  chmod 755 /usr/local/bin/uname' || die "cannot make ${HOST[A]} look like arm64"
mark_hosts $S $A
expect_refused arm64 "an arm64 host and no arm64 binary" "$WORK/hosts.yaml" "(${IP[A]//./\\.}|${HOST[A]}).*aarch64" \
  'no k8s binary for arm64 is given; build one \(make dist ARCH=arm64\)'
untouched "an arm64 host with no arm64 binary" $S $A
hx $A rm -f /usr/local/bin/uname

# ------------------------------------------------------------------------------------------ 2. the cluster
step "up: ${HOST[S]} server (root), ${HOST[A]} agent (debian + sudo)"
run_up first -i "$WORK/hosts.yaml" --kubeconfig-out "$KC" -y
echo "BENCH up single+agent: $UP_SECS s"
((UP_RC == 0)) || { show_up first 40; die "k8s up failed (exit $UP_RC)"; }
ok "k8s up exited 0 in $UP_SECS s"; show_up first 8
[[ -s $KC ]] && ok "kubeconfig written to $KC" || die "no kubeconfig at $KC"
nodes_ready 120 "${HOST[S]}" "${HOST[A]}" && ok "nodes ${HOST[S]} and ${HOST[A]} Ready (kubectl on the workstation)" ||
  { TMO=30 kc get nodes -o wide 2>&1 | indent; die "nodes not Ready"; }
[[ $(hx $A systemctl is-active k8s-agent) == active && $(hx $S systemctl is-active k8s-server) == active ]] &&
  ok "k8s-server active on ${HOST[S]}, k8s-agent active on ${HOST[A]}" || fail "the units are not active"
pod_traffic "${HOST[S]}" "${HOST[A]}"
TMO=30 kc -n e2e-up run dropped --image=k8s.local/up-dropped:e2e --image-pull-policy=Never --restart=Never \
  --overrides="{\"spec\":{\"nodeName\":\"${HOST[A]}\"}}" --command -- sleep 3600 >/dev/null || fail "cannot create the pod dropped"
TMO=90 kc -n e2e-up wait --for=condition=Ready pod/dropped --timeout=60s >/dev/null &&
  ok "cluster.images: the archive up copied to the hosts runs on ${HOST[A]} (k8s.local/up-dropped:e2e, imagePullPolicy Never)" ||
  fail "the image archive of cluster.images did not reach ${HOST[A]}: $(TMO=30 kc -n e2e-up get pod dropped -o jsonpath='{.status.containerStatuses[0].state}' 2>&1)"
want_sum=$(sha256sum <"$WORK/registries.yaml" | cut -d ' ' -f 1)
for i in $S $A; do
  got=$(hx "$i" sh -c 'stat -c "%a %U" /etc/k8s/registries.yaml && sha256sum </etc/k8s/registries.yaml | cut -d " " -f 1 &&
    grep -F -x -c "[host.\"https://mirror.e2e.invalid:5000\"]" /var/lib/k8s/agent/etc/certs.d/registry.e2e.invalid/hosts.toml' 2>&1 | tr '\n' ' ')
  [[ $got == "600 root $want_sum 1 " ]] &&
    ok "cluster.registries: ${HOST[i]} has /etc/k8s/registries.yaml (0600, root, same sha256) rendered as certs.d/registry.e2e.invalid/hosts.toml" ||
    fail "cluster.registries on ${HOST[i]}: want '600 root $want_sum 1 ' (mode, owner, sha256, the mirror in hosts.toml), got '$got'"
done

# ------------------------------------------------------------------------------------------ 3. again
step "up again with the same inventory: nothing changes"
remember_hosts "$S" "$A"
run_up again -i "$WORK/hosts.yaml" --kubeconfig-out "$KC" --output json -y
echo "BENCH up again (no change): $UP_SECS s"
if ((UP_RC == 0)); then ok "k8s up exited 0 in $UP_SECS s"; else fail "the second up failed (exit $UP_RC)"; show_up again; fi
json_no_change again "${IP[S]}" "${IP[A]}"
hosts_unchanged "$S" "$A"
nodes_ready 60 "${HOST[S]}" "${HOST[A]}" && ok "both nodes still Ready" || fail "nodes not Ready after the second up"

# ------------------------------------------------------------------------------------------ 4. a wrong token
step "a wrong join token (by hand on ${HOST[A]}: up takes the tokens from the first server)"
token=$(hx $A cat /etc/k8s/token 2>/dev/null)
if [[ $token =~ ^K10[0-9a-f]+::[a-z0-9]+\.[a-z0-9]{16}$ ]]; then
  # the same token with a wrong secret, in a data dir of its own so the running agent's state is not touched
  bad=$(sed -E 's/\.[a-z0-9]{16}$/.0000000000000000/' <<<"$token")
  out=$(hx $A sh -c 'umask 077; echo "$1" >/root/bad-token; timeout 60 k8s agent --server "https://$2:9345" --token-file /root/bad-token --data-dir /root/bad-token-data 2>&1; echo "exit $?"; rm -rf /root/bad-token /root/bad-token-data' \
    sh "$bad" "${IP[S]}")
  if [[ $out == *"exit 0" || $out == *"exit 124" ]]; then
    fail "an agent with a wrong token did not fail: $(tail -n 3 <<<"$out")"
  elif grep -q "refused the token" <<<"$out"; then
    ok "a wrong token is refused: $(grep -m1 'error' <<<"$out" | cut -c1-200)"
  else
    fail "a wrong token: unclear message: $(tail -n 3 <<<"$out")"
  fi
  nodes_ready 30 "${HOST[A]}" && ok "the running agent is undisturbed (Ready)" || fail "${HOST[A]} not Ready after the bad join"
else
  fail "/etc/k8s/token on ${HOST[A]} is not a join token (K10<hash>::<id>.<secret>): '${token:0:12}...'"
fi

# ------------------------------------------------------------------------------------------ 5. reset -i, up again
step "k8s backup; k8s reset -i: every host uninstalled; then up --restore brings the cluster back"
TMO=30 kc create configmap e2e-backed-up --from-literal=k=v1 >/dev/null || fail "cannot create a ConfigMap"
TMO=60 hx $S k8s backup -o /var/tmp/e2e-backup.tar.zst >/dev/null 2>&1 || fail "k8s backup on ${HOST[S]} failed"
hx $S cat /var/tmp/e2e-backup.tar.zst >"$WORK/backup.tar.zst" && hx $S rm -f /var/tmp/e2e-backup.tar.zst
[[ -s $WORK/backup.tar.zst ]] && ok "k8s backup on ${HOST[S]}: $(stat -c %s "$WORK/backup.tar.zst") bytes" || fail "no backup archive"
TMO=300 ws "$BIN" reset -i "$WORK/hosts.yaml" --yes </dev/null >"$WORK/reset.log" 2>&1
rc=$?
((rc == 0)) && ok "k8s reset -i exited 0" || { fail "k8s reset -i failed (exit $rc)"; tail -n 15 "$WORK/reset.log" | indent; }
for i in $S $A; do
  left=$(hx "$i" sh -c '
    for p in /usr/local/bin/k8s /etc/k8s /etc/systemd/system/k8s-server.service /etc/systemd/system/k8s-agent.service; do
      [ -e "$p" ] && echo "$p"
    done
    for d in /var/lib/k8s /var/lib/kubelet; do
      [ -z "$(ls -A $d 2>/dev/null)" ] || echo "$d: $(ls -A $d | tr "\n" " ")"
    done
    for c in k8s kube-control-pl kubelet containerd kube-proxy etcd; do pgrep -x "$c" >/dev/null && echo "process $c"; done
    true' 2>&1)
  [[ -z $left ]] && ok "${HOST[i]}: no binary, unit, config, data or process left" || { fail "${HOST[i]}: reset left:"; indent <<<"$left"; }
done
run_up after-reset -i "$WORK/hosts.yaml" --kubeconfig-out "$KC" --restore "$WORK/backup.tar.zst" -y
((UP_RC == 0)) && ok "k8s up --restore after the reset exited 0 in $UP_SECS s" || { fail "k8s up --restore after the reset failed (exit $UP_RC)"; show_up after-reset; }
nodes_ready 120 "${HOST[S]}" "${HOST[A]}" && ok "both nodes Ready again" || fail "nodes not Ready after reset + up --restore"
[[ $(TMO=30 kc get configmap e2e-backed-up -o jsonpath='{.data.k}' 2>&1) == v1 ]] && ok "the ConfigMap made before the backup is back" ||
  fail "the ConfigMap made before the backup is not back"
