#!/usr/bin/env bash
# Installs the Debian packages the build and the tests use, once.
# Idempotent: only missing packages are installed. protobuf-compiler: the
# etcd-client crate (tests, benches) compiles its protos with protoc; python3:
# the e2e scripts check their logs with it.
set -euo pipefail
want=(protobuf-compiler etcd-server etcd-client sqlite3 zstd iproute2 util-linux iptables openssl jq python3 openssh-server openssh-client sudo)
missing=()
for p in "${want[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# Debian starts etcd as a service on install; our tests run their own.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet etcd 2>/dev/null; then
  systemctl disable --now etcd >/dev/null 2>&1 || true
fi
# Debian starts sshd as a service on install; the tests run their own on
# loopback ports, and nothing here should listen on port 22.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet ssh 2>/dev/null; then
  systemctl disable --now ssh >/dev/null 2>&1 || true
elif [ -x /etc/init.d/ssh ] && [ -f /run/sshd.pid ]; then
  /etc/init.d/ssh stop >/dev/null 2>&1 || true
fi
