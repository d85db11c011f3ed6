# shellcheck shell=bash
# Sourced by build.sh and pin.sh: one Go environment for every step.
# Go's caches live in the k8s cache dir, so a rebuild after a version bump
# reuses every compiled package that did not change.
K8S_CACHE_DIR=$(realpath -m "${K8S_CACHE_DIR:-$HOME/.cache/k8s}") # Go wants absolute paths
export GOCACHE="$K8S_CACHE_DIR/go-build"
export GOMODCACHE="$K8S_CACHE_DIR/go-mod"
# Use the installed Go (1.26.x); never fetch another toolchain behind our back.
export GOTOOLCHAIN=local
export GOFLAGS=-buildvcs=false
# go.mod "go" line of our modules: the highest any pinned upstream needs.
export GO_LANG_VERSION=1.26.6
