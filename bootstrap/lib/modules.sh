# shellcheck shell=bash disable=SC2154 # $here $root $work $stage: set by build.sh
# Sourced by build.sh: vendor each Go module, apply patches/, build binaries.
# Needs: $here (bootstrap/), $root (repo), $work (scratch), $stage (payload tree).

# vendor_modules: copy bootstrap/modules/* to $work/src and `go mod vendor`
# each, so patches/ applies to exactly the sources that get compiled.
vendor_modules() {
	rm -rf "$work/src"
	mkdir -p "$work/src"
	cp -a "$here/modules/." "$work/src/"
	local m
	for m in "$work"/src/*/; do
		log "vendor: $(basename "$m")"
		(cd "$m" && go mod vendor)
	done
}

# apply_patches: patches/*.patch in name order, paths relative to $work/src
# (e.g. a/kube/vendor/k8s.io/kubernetes/pkg/...). A patch that does not apply
# stops the build and names itself.
apply_patches() {
	local p
	shopt -s nullglob
	for p in "$root"/patches/*.patch; do
		log "patch: $(basename "$p")"
		if ! patch -d "$work/src" -p1 --forward --batch --silent --fuzz=0 \
			--no-backup-if-mismatch --reject-file=- <"$p"; then
			die "patch $(basename "$p") does not apply to the vendored tree of versions.env; rebase it (see bootstrap/README.md)"
		fi
	done
	shopt -u nullglob
}

# gobuild MODULE OUT PKG [go build args...]: build one binary from the vendored
# module for $ARCH, stripped and with no local paths in it.
gobuild() {
	local mod=$1 out=$2 pkg=$3; shift 3
	log "build: $(basename "$out") ($pkg, $ARCH)"
	(cd "$work/src/$mod" && env GOARCH="$ARCH" CC="$TARGET_CC" ${TARGET_PKG_CONFIG_LIBDIR:+PKG_CONFIG_LIBDIR="$TARGET_PKG_CONFIG_LIBDIR"} go build -mod=vendor -trimpath -o "$out" "$@" "$pkg")
}
