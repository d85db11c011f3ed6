#!/usr/bin/env bash
# e2e/deps.sh: scripts/deps.sh leaves the host's services alone. On a Debian host booted with systemd
# (e2e/lib/nspawn.sh) whose ssh service is enabled and running (how the test reaches it), deps.sh with
# openssh-server in its list (DEPS_PACKAGES: the host has no package mirror, so only packages it has)
# exits 0, and ssh is still enabled and running, still answering; an earlier deps.sh disabled and
# stopped it, cutting off whoever was logged in.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
N=$here/lib/nspawn.sh
CL=e2e-deps
fail() { echo "FAIL: $*"; exit 1; }
ok() { echo "ok   $*"; }
trap '"$N" down "$CL" >/dev/null 2>&1 || true' EXIT

"$N" up "$CL" 1 >/dev/null 2>&1 || fail "nspawn.sh up $CL 1 failed"
state() { "$N" exec "$CL" 1 sh -c 'echo "$(systemctl is-enabled ssh) $(systemctl is-active ssh)"'; }
[[ $(state) == "enabled active" ]] || fail "the host's ssh is not enabled and running to begin with: $(state)"
"$N" push "$CL" "$here/../scripts/deps.sh" /root/deps.sh 1
for profile in build test; do
  out=$("$N" exec "$CL" 1 env DEPS_PACKAGES="openssh-server iproute2 sudo" bash /root/deps.sh "$profile" 2>&1) ||
    fail "deps.sh $profile: $out"
  [[ $(state) == "enabled active" ]] || fail "after deps.sh $profile the host's ssh is '$(state)', not 'enabled active'"
done
"$N" ssh "$CL" 1 true || fail "ssh to the host no longer works"
ok "deps.sh build and test leave the host's ssh enabled, running and answering"
echo "PASS e2e/deps.sh"
