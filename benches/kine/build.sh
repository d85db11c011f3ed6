#!/usr/bin/env bash
# benches/kine/build.sh: build kine (k3s's etcd-API shim over SQL), the third
# server of `make bench`, from its Go module at a pinned version into
#   ${K8S_CACHE_DIR:-~/.cache/k8s}/bench/kine-$KINE_VERSION/kine
# An existing binary is reused at once. The last line of stdout is the
# binary's path; logs go to stderr.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
KINE_VERSION=v0.17.5
# The same Go environment (module and build caches) as the payload build.
# shellcheck source=../../bootstrap/lib/go-env.sh
source "$here/../../bootstrap/lib/go-env.sh"

out="$K8S_CACHE_DIR/bench/kine-$KINE_VERSION/kine"
if [[ -x $out ]]; then echo "$out"; exit 0; fi

command -v go >/dev/null || { echo "kine/build.sh: go not found on PATH" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
echo "[kine] building github.com/k3s-io/kine@$KINE_VERSION with $(go env GOVERSION)" >&2
go mod init kine-bench >&2
go get "github.com/k3s-io/kine@$KINE_VERSION" >&2
mkdir -p "$(dirname "$out")"
# As kine's scripts/build does, minus the static link and the nats tag: cgo
# for mattn/go-sqlite3 (the SQLite backend) and SQLITE_USE_ALLOCA.
CGO_ENABLED=1 CGO_CFLAGS="-DSQLITE_USE_ALLOCA=1" go build -mod=mod -o "$out.tmp" \
	-ldflags "-X github.com/k3s-io/kine/pkg/version.Version=$KINE_VERSION" \
	github.com/k3s-io/kine >&2
mv "$out.tmp" "$out" # atomic: an interrupted build leaves no binary to reuse
echo "$out"
