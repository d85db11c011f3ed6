#!/usr/bin/env bash
# scripts/toolchains.sh: the compilers the build needs, installed only where the machine lacks them.
#   Go 1.26 (>= GO_MIN): bootstrap/ builds the payload with it. When `go` is missing or older, the Go
#     toolchain is fetched from the Go module proxy (golang.org/toolchain, the form `go` itself fetches;
#     Debian's Go is too old to do it), checked against the sha256 pinned below, and unpacked into
#     ~/.cache/k8s/toolchains/go<version>; the Makefile puts its bin/ first on PATH.
#   Rust >= RUST_MIN (with cargo): when missing or older, rustup-init from static.rust-lang.org
#     (checked against its published sha256) installs RUST_VERSION into ~/.cargo and ~/.rustup, minimal
#     profile, without touching shell profiles; the Makefile puts ~/.cargo/bin on PATH.
# Prints what it found or installed, one line per toolchain. Idempotent; about 2 minutes and 1.5 GB
# when both are installed (the payload's build cache is another ~8 GB, see README.md).
set -euo pipefail

GO_VERSION=1.26.8
GO_MIN=1.26.6 # bootstrap/lib/go-env.sh: GO_LANG_VERSION, the highest any pinned module needs
declare -A GO_SHA256=(
  [amd64]=30c2b1bf7dcc88d3eb0a1364e47ddd9128edb3110a30e8a0ef61cd5856b31de7
  [arm64]=02b36b6787b3ac767668f630e2998df45a3b1f9ffee08d1bf3ef6487cd658d99
)
RUST_VERSION=1.95.0
RUST_MIN=1.95.0

CACHE=$(realpath -m "${K8S_CACHE_DIR:-$HOME/.cache/k8s}")
die() { echo "toolchains: $*" >&2; exit 1; }
# version_ge A B: A >= B, both dotted numbers.
version_ge() { [[ $(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n1) == "$2" ]]; }

case $(uname -m) in
x86_64) arch=amd64 triple=x86_64-unknown-linux-gnu ;;
aarch64) arch=arm64 triple=aarch64-unknown-linux-gnu ;;
*) die "this machine is $(uname -m); k8s builds on amd64 and arm64" ;;
esac
command -v curl >/dev/null || die "curl is needed to fetch toolchains (apt-get install curl)"

go_version() { "$1" env GOVERSION 2>/dev/null | sed 's/^go//'; }

install_go() {
  local dir=$CACHE/toolchains/go$GO_VERSION proxy zip have
  if [[ -x $dir/bin/go ]]; then echo "go $GO_VERSION: $dir/bin/go"; return; fi
  have=$(command -v go || true)
  if [[ -n $have ]] && version_ge "$(go_version "$have")" "$GO_MIN"; then
    echo "go $(go_version "$have"): $have"
    return
  fi
  proxy=$(go env GOPROXY 2>/dev/null | cut -d, -f1 || true)
  [[ -z $proxy || $proxy == direct || $proxy == off ]] && proxy=https://proxy.golang.org
  echo "go: ${have:+$have is $(go_version "$have"), older than $GO_MIN; }installing go $GO_VERSION from $proxy (golang.org/toolchain)"
  mkdir -p "$CACHE/toolchains"
  zip=$CACHE/toolchains/go$GO_VERSION.linux-$arch.zip
  curl -fsSL --retry 3 -o "$zip.part" "$proxy/golang.org/toolchain/@v/v0.0.1-go$GO_VERSION.linux-$arch.zip" ||
    die "cannot download the Go toolchain from $proxy; install Go >= $GO_MIN yourself (https://go.dev/dl)"
  echo "${GO_SHA256[$arch]}  $zip.part" | sha256sum -c --quiet - || { rm -f "$zip.part"; die "the Go toolchain from $proxy does not match its pinned sha256"; }
  rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
  # The module zip holds golang.org/toolchain@v0.0.1-go<version>.linux-<arch>/{bin,pkg,src,...}.
  python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$zip.part" "$dir.tmp" 2>/dev/null ||
    (cd "$dir.tmp" && unzip -q "$zip.part") || die "cannot unpack the Go toolchain (needs python3 or unzip)"
  mv "$dir.tmp"/golang.org/toolchain@*/ "$dir" && rm -rf "$dir.tmp" "$zip.part"
  chmod +x "$dir"/bin/* "$dir"/pkg/tool/*/* # zip files keep no modes
  echo "go $GO_VERSION: $dir/bin/go"
}

install_rust() {
  local bin=${CARGO_HOME:-$HOME/.cargo}/bin have v init
  have=$(PATH=$PATH:$bin command -v rustc || true)
  v=$([[ -n $have ]] && "$have" --version | awk '{print $2}' || true)
  if [[ -n $v ]] && version_ge "$v" "$RUST_MIN" && PATH=$PATH:$bin command -v cargo >/dev/null; then
    echo "rust $v: $have"
    return
  fi
  if command -v rustup >/dev/null; then
    echo "rust: ${v:+$v is older than $RUST_MIN; }rustup toolchain install $RUST_VERSION"
    rustup toolchain install "$RUST_VERSION" --profile minimal && rustup default "$RUST_VERSION"
    return
  fi
  echo "rust: ${v:+$v is older than $RUST_MIN; }installing $RUST_VERSION with rustup-init from static.rust-lang.org"
  # rustup-init acts on the name it is run under: keep its name.
  init=$(mktemp -d)/rustup-init
  local url=https://static.rust-lang.org/rustup/dist/$triple/rustup-init
  curl -fsSL --retry 3 -o "$init" "$url" && echo "$(curl -fsSL "$url.sha256" | awk '{print $1}')  $init" | sha256sum -c --quiet - ||
    { rm -rf "$(dirname "$init")"; die "cannot fetch rustup-init from static.rust-lang.org; install Rust >= $RUST_MIN yourself (https://rustup.rs)"; }
  chmod +x "$init"
  "$init" -y -q --profile minimal --default-toolchain "$RUST_VERSION" --no-modify-path
  rm -rf "$(dirname "$init")"
  echo "rust $RUST_VERSION: $bin"
}

install_go
install_rust
