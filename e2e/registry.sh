#!/usr/bin/env bash
# e2e/registry.sh [K8S_BIN]: private registries through /etc/k8s/registries.yaml (k3s's format), in two test hosts.
#   1. rgreg runs Debian's docker-registry with TLS (a CA made here) and htpasswd basic auth; an image with a
#      layer no other source has (the carried busybox plus /registry-e2e) is pushed to it as library/e2e-busybox:1
#   2. rg1 starts `k8s server` with a registries.yaml that mirrors docker.io to that registry, with the CA and
#      the credentials: the hosts dir is rendered (0700, hosts.toml 0600), and a pod with image
#      docker.io/library/e2e-busybox:1 and imagePullPolicy Always runs it: the new layer was not on the node
#      before, it is after, and the pod prints the layer's file
#   3. while it runs: a wrong password in the file makes the next pod fail with ErrImagePull (authorization);
#      the right one again, within the watch interval, and the next pod runs (no restart)
#   4. an invalid file while running (a rewrite): the log names the file, line and setting, and the settings
#      applied before stay; the file removed: the rendered dirs are gone. The password is in no log.
#   5. the invalid file at start: `k8s server` exits non-zero naming the file, line and setting
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
shared=/var/tmp/k8s-e2e-registry
HOSTS=(rg1 rgreg)
t0=$EPOCHREALTIME
# shellcheck source=lib/servers.sh
. "$here/lib/servers.sh"

REG_IP=$($T ip rgreg)
REG=$REG_IP:5000
REG_USER=e2e
PW=$(openssl rand -hex 12)
CA=/etc/k8s/registry-ca.pem                     # on rg1
FILE=/etc/k8s/registries.yaml                   # on rg1
HOSTS_DIR=/var/lib/k8s/agent/etc/certs.d        # on rg1
IMAGE=docker.io/library/e2e-busybox:1
MARKER="pulled through the mirror $RANDOM"

registries_yaml() { # PASSWORD: the file that mirrors docker.io to the test registry
  cat <<YAML
mirrors:
  docker.io:
    endpoint:
      - "https://$REG"
configs:
  "$REG":
    auth:
      username: $REG_USER
      password: "$1"
    tls:
      ca_file: $CA
YAML
}
invalid_yaml() { # a rewrite (refused): its mapping starts at line 5, column 7
  cat <<YAML
mirrors:
  docker.io:
    endpoint: ["https://$REG"]
    rewrite:
      "^library/(.*)": "mirror/\$1"
YAML
}
write_file() { on rg1 sh -c "cat >$FILE.tmp && mv $FILE.tmp $FILE"; }
hosts_toml_sum() { on rg1 sha256sum "$HOSTS_DIR/docker.io/hosts.toml" 2>/dev/null | cut -d' ' -f1 || true; }
wait_for() { # SECONDS DESCRIPTION CMD...: CMD succeeds within SECONDS
  local end=$((SECONDS + $1)) limit=$1 what=$2; shift 2
  until "$@" >/dev/null 2>&1; do ((SECONDS < end)) || fail "timed out after ${limit}s waiting for: $what"; sleep 1; done
}
changed_from() { [[ $(hosts_toml_sum) != "$1" ]]; }
pod() { # NAME: a pod of the mirrored image, pulled whatever the node has
  kc rg1 apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {name: $1}
spec:
  restartPolicy: Never
  containers:
    - {name: c, image: $IMAGE, imagePullPolicy: Always, command: [sh, -c, "cat /registry-e2e; echo; sleep 3600"]}
YAML
}
running() { [[ $(kc rg1 get pod "$1" -o jsonpath='{.status.phase}') == Running ]]; }
events_of() { kc rg1 get events --field-selector "involvedObject.name=$1" -o jsonpath='{range .items[*]}{.reason}: {.message}{"\n"}{end}'; }
pull_failed() { events_of "$1" | grep ErrImagePull; }
logged_after() { # LINE PATTERN: the server log has PATTERN after line LINE
  tail -n +"$1" "$shared/rg1.log" | grep -F -- "$2"
}

# 1. The registry: TLS from a CA made here, htpasswd (bcrypt) basic auth.
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$shared/ca.key" -out "$shared/ca.pem" -days 1 -subj /CN=e2e-registry-ca 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout "$shared/reg.key" -out "$shared/reg.csr" -subj /CN=rgreg 2>/dev/null
openssl x509 -req -in "$shared/reg.csr" -CA "$shared/ca.pem" -CAkey "$shared/ca.key" -CAcreateserial -days 1 \
  -extfile <(echo "subjectAltName=IP:$REG_IP") -out "$shared/reg.pem" 2>/dev/null
htpasswd -Bbn "$REG_USER" "$PW" >"$shared/htpasswd" 2>/dev/null
cat >"$shared/registry.yml" <<YAML
version: 0.1
log: {level: info}
storage: {filesystem: {rootdirectory: /tmp/registry}}
http:
  addr: $REG
  tls: {certificate: $shared/reg.pem, key: $shared/reg.key}
auth:
  htpasswd: {realm: e2e, path: $shared/htpasswd}
YAML
setsid "$T" exec rgreg docker-registry serve "$shared/registry.yml" </dev/null >"$shared/registry.log" 2>&1 &
disown
challenge() { on rg1 curl -s -o /dev/null -w '%{http_code}' --cacert "$shared/ca.pem" "https://$REG/v2/" | grep -x 401; }
wait_for 30 "the registry at $REG (401 without credentials)" challenge
ok "registry $REG (docker-registry $(dpkg-query -W -f '${Version}' docker-registry)): TLS from our CA, basic auth"

# 2. A server started with the file: docker.io mirrored, with TLS and credentials.
on rg1 cp "$shared/ca.pem" "$CA"
registries_yaml "$PW" | write_file
start rg1
grep -F 'registry settings applied' "$shared/rg1.log" | grep -F docker.io >/dev/null || fail "the start did not log the registry settings"
on rg1 grep -F "config_path = \"$HOSTS_DIR\"" /var/lib/k8s/agent/etc/containerd.toml >/dev/null || fail "containerd.toml lacks config_path"
modes=$(on rg1 stat -c '%a %n' "$HOSTS_DIR" "$HOSTS_DIR/docker.io/hosts.toml" "$HOSTS_DIR/$REG/hosts.toml")
[[ $(awk '{print $1}' <<<"$modes" | tr '\n' ' ') == "700 600 600 " ]] || fail "modes of the hosts dir and files: $modes"
toml=$(on rg1 cat "$HOSTS_DIR/docker.io/hosts.toml")
grep -F "[host.\"https://$REG\"]" <<<"$toml" >/dev/null && grep -F "ca = [\"$CA\"]" <<<"$toml" >/dev/null &&
  grep -F 'Authorization = "Basic ' <<<"$toml" >/dev/null || fail "docker.io/hosts.toml: $toml"
ok "rg1: server ready with the file; $HOSTS_DIR/docker.io/hosts.toml (0600) mirrors to https://$REG with the CA and a Basic header"

busybox=$(ls "$($T dir rg1)"/fs/var-lib-k8s/bin/*/images/busybox.tar | head -n 1)
layer=$(printf '%s\n' "$PW" | on rg1 python3 "$here/lib/registry-push.py" "$busybox" "$REG" library/e2e-busybox:1 \
  "$REG_USER" "$shared/ca.pem" "$MARKER") || fail "pushing the image to $REG"
if on rg1 "$K8S" ctr content ls -q | grep -x "$layer" >/dev/null; then fail "the new layer $layer is on rg1 before any pull"; fi
ok "pushed library/e2e-busybox:1 to $REG: busybox plus a layer ($layer) that rg1 does not have"

pod good
wait_for 120 "pod good Running" running good
[[ $(kc rg1 logs good) == "$MARKER" ]] || fail "pod good prints '$(kc rg1 logs good)', not the layer's '$MARKER'"
on rg1 "$K8S" ctr content ls -q | grep -x "$layer" >/dev/null || fail "the layer $layer is not on rg1 after the pull"
ok "pod good ($IMAGE, imagePullPolicy Always) runs the image pulled through the mirror (TLS, basic auth): it prints the new layer's file"

# 3. Changes while the server runs: a wrong password, then the right one again.
before=$(hosts_toml_sum)
registries_yaml "wrong-$PW" | write_file
wait_for 30 "hosts.toml rewritten for the wrong password" changed_from "$before"
pod wrong
wait_for 90 "ErrImagePull for pod wrong" pull_failed wrong
events=$(events_of wrong)
grep -i 'authoriz' <<<"$events" >/dev/null || fail "pod wrong failed, but not on authorization: $events"
ok "a wrong password written while the server runs: pod wrong fails with ErrImagePull ($(grep -m1 -io 'authorization failed[^"]*' <<<"$events" || true))"
before=$(hosts_toml_sum)
registries_yaml "$PW" | write_file
wait_for 30 "hosts.toml rewritten for the right password" changed_from "$before"
pod good2
wait_for 90 "pod good2 Running" running good2
ok "the right password again: pod good2 pulls and runs, no restart"

# 4. An invalid file while running: logged, the last good settings stay; then the file removed.
before=$(hosts_toml_sum)
from=$(($(wc -l <"$shared/rg1.log") + 1))
invalid_yaml | write_file
wait_for 30 "the server logs the invalid file" logged_after "$from" "$FILE:5:7"
line=$(logged_after "$from" "$FILE:5:7" | head -n 1)
grep -F 'rewrite is not supported' <<<"$line" >/dev/null || fail "the log line names the file but not the setting: $line"
sleep 11                                          # one more watch interval: nothing may change
[[ $(hosts_toml_sum) == "$before" ]] || fail "an invalid file changed the rendered hosts.toml"
ok "an invalid file while running is logged ($(grep -o "$FILE:5:7: [^(]*" <<<"$line" | head -c 160)...); the settings applied before stay"
on rg1 rm "$FILE"
gone() { [[ -z $(on rg1 ls -A "$HOSTS_DIR") ]]; }
wait_for 30 "the rendered dirs removed" gone
logged_after "$from" "registries file removed" >/dev/null || fail "the removal is not logged"
ok "registries.yaml removed: $HOSTS_DIR is empty"
for log in "$shared/rg1.log" "$($T dir rg1)"/fs/var-lib-k8s/logs/*.log; do
  if grep -aF -e "$PW" -e "$(printf '%s:%s' "$REG_USER" "$PW" | base64)" "$log" >/dev/null; then fail "the password is in $log"; fi
done
ok "the password is in no log (k8s, containerd, kubelet, ...)"

# 5. The invalid file at start.
stop rg1
invalid_yaml | write_file
if out=$(on rg1 timeout 60 "$K8S" server 2>&1 </dev/null); then fail "k8s server started with an invalid $FILE"; fi
grep -F "$FILE:5:7" <<<"$out" | grep -F 'rewrite is not supported' >/dev/null || fail "k8s server's message: $out"
ok "with the invalid file k8s server does not start: $(grep -m1 -o "$FILE:5:7: [^(]*" <<<"$out" | head -c 120)..."

awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "BENCH registry: the whole test in %.0f s\n", b - a }'
echo "PASS e2e/registry.sh"
