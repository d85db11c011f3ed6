# k8s — the two entry points are `make run` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo

# The compilers (Go for bootstrap/, Rust for k8s): installed where the machine lacks them or has
# older ones (scripts/toolchains.sh: Go from the Go module proxy, Rust through rustup), first on PATH.
K8S_CACHE := $(or $(K8S_CACHE_DIR),$(HOME)/.cache/k8s)
GO_TOOLCHAIN := $(shell sed -n 's/^GO_VERSION=//p' scripts/toolchains.sh)
export PATH := $(K8S_CACHE)/toolchains/go$(GO_TOOLCHAIN)/bin:$(or $(CARGO_HOME),$(HOME)/.cargo)/bin:$(PATH)

# ARCH: the machines dist/k8s runs on, in Go's names (amd64, arm64); this host's by default.
# `make dist ARCH=arm64` on an amd64 host cross-builds dist/k8s-arm64 (Debian's cross gcc, the
# rustup target; bootstrap/README.md). The Rust binary is static (glibc's libc.a, `+crt-static`:
# it runs on any Linux kernel of its arch, whatever its libc, or none); the payload's parts are too.
HOST_ARCH := $(shell uname -m | sed 's/x86_64/amd64/;s/aarch64/arm64/')
ARCH ?= $(HOST_ARCH)
rust_target = $(if $(filter arm64,$(1)),aarch64,x86_64)-unknown-linux-gnu
RUST_TARGET := $(call rust_target,$(ARCH))
CARGO_STATIC := RUSTFLAGS="-C target-feature=+crt-static" $(CARGO)
# The plain binary (no payload) of ARCH (the tests run the host's: ARCH unset).
BIN := $(CURDIR)/target/$(RUST_TARGET)/release/k8s
K8S := $(CURDIR)/dist/k8s$(if $(filter-out $(HOST_ARCH),$(ARCH)),-$(ARCH))
# Runs a binary of ARCH here (attaching the payload): qemu's user mode when cross-building.
RUN_ARCH := $(if $(filter-out $(HOST_ARCH),$(ARCH)),qemu-$(firstword $(subst -, ,$(RUST_TARGET)))-static)

.PHONY: all toolchains build deps deps-test payload dist dist-next run test test-unit test-etcdctl test-e2e test-arm64 test-chaos test-chaos-ha test-upgrade-k8s test-cis conformance conformance-ha conformance-netpol conformance-kit bench bench-api bench-node clean

all: dist

# Debian packages: `deps` what building and running a node need (iptables for kube-proxy, zstd
# for the payload, ...); `deps-test` those plus what only the tests use (etcd for the differential
# tests, sshd, jq, ...). Neither stops or disables a service the host had (scripts/deps.sh).
deps:
	./scripts/deps.sh build$(if $(filter-out $(HOST_ARCH),$(ARCH)),-$(ARCH))

deps-test:
	./scripts/deps.sh test

toolchains:
	./scripts/toolchains.sh

build: toolchains
	@rustup target list --installed 2>/dev/null | grep -qx $(RUST_TARGET) || rustup target add $(RUST_TARGET)
	$(CARGO_STATIC) build --release --target $(RUST_TARGET)

# The upstream parts, built from pinned Go modules and cached outside the
# repository in ~/.cache/k8s (bootstrap/README.md); prints the payload directory.
payload: deps toolchains
	ARCH=$(ARCH) ./bootstrap/build.sh

# dist/k8s: the release binary with the payload attached — the one file users install.
dist: deps build
	@mkdir -p dist
	payload_dir=$$(ARCH=$(ARCH) ./bootstrap/build.sh | tail -n 1) && \
	$(RUN_ARCH) $(BIN) attach-payload --exe $(BIN) \
		--payload "$$payload_dir/payload.tar.zst" --out $(K8S)
	@ls -l $(K8S) && file $(K8S)

# The same code under the next patch version, for the upgrade tests
# (e2e/upgrade.sh): dist/k8s-next. The plain binary is rebuilt as it was after.
NEXT_VERSION := $(shell awk -F'"' '/^version/ { split($$2, v, "."); print v[1] "." v[2] "." v[3] + 1; exit }' Cargo.toml)
dist-next: dist
	K8S_VERSION=$(NEXT_VERSION) $(CARGO_STATIC) build --release --target $(RUST_TARGET)
	payload_dir=$$(./bootstrap/build.sh | tail -n 1) && \
	$(BIN) attach-payload --exe $(BIN) --payload "$$payload_dir/payload.tar.zst" --out dist/k8s-next
	$(CARGO_STATIC) build --release --target $(RUST_TARGET)
	@dist/k8s-next version | sed -n 1p

# A single-node cluster on this machine (SQLite datastore), in the foreground.
run: dist
	@echo "starting k8s server; in another shell, as root:"
	@echo "  $(K8S) kubectl get nodes          # uses /etc/k8s/admin.kubeconfig"
	@echo "  $(K8S) status"
	@echo "stop with Ctrl-C; remove everything with: $(K8S) reset"
	$(K8S) server

test: deps-test dist dist-next test-unit test-etcdctl test-e2e

# Unit tests and the datastore's integration tests (real binary, etcd-client), built as dist's
# binary is (static), so they share its compiled crates.
test-unit:
	$(CARGO_STATIC) test --release --target $(RUST_TARGET)

# The same etcdctl script against real etcd and against us; outputs must match.
test-etcdctl:
	tests/etcdctl/run.sh $(BIN)

# End to end in test hosts (network + mount + cgroup namespaces; systemd.sh
# boots a Debian host with systemd in nspawn, building its rootfs once).
test-e2e:
	e2e/dist.sh $(K8S) $(BIN)
	e2e/static.sh $(K8S)
	e2e/lib/selftest.sh "$$(./bootstrap/build.sh | tail -n 1)"
	K8S_BIN=$(K8S) e2e/single-node.sh
	K8S_BIN=$(K8S) e2e/registry.sh
	K8S_BIN=$(K8S) CHAOS_KILLS=10 e2e/chaos.sh
	K8S_BIN=$(K8S) CHAOS_KILLS=3 e2e/chaos-ha.sh
	K8S_BIN=$(K8S) e2e/cis.sh
	K8S_BIN=$(K8S) e2e/agent.sh
	K8S_BIN=$(K8S) e2e/ha.sh
	K8S_BIN=$(K8S) e2e/backup.sh
	K8S_BIN=$(K8S) e2e/grow.sh
	K8S_BIN=$(K8S) POD_NETWORK=vxlan e2e/agent.sh
	K8S_BIN=$(K8S) e2e/systemd.sh
	e2e/deps.sh
	K8S_BIN=$(K8S) e2e/up.sh
	K8S_BIN=$(K8S) e2e/up-ha.sh
	K8S_BIN=$(K8S) e2e/up-grow.sh
	K8S_BIN=$(K8S) K8S_NEXT_BIN=$(CURDIR)/dist/k8s-next e2e/upgrade.sh
	K8S_BIN=$(K8S) K8S_NEXT_BIN=$(CURDIR)/dist/k8s-next e2e/upgrade-ha.sh

# The arm64 file (dist/k8s-arm64: the Rust binary cross-built, the payload built for arm64, ~30 min
# cold) checked here under qemu's user mode: every part a static aarch64 executable answering with its
# pinned version (e2e/arm64.sh). Run it for every change to the build; not in `make test`.
test-arm64: build
	$(MAKE) dist ARCH=arm64
	e2e/arm64.sh dist/k8s-arm64 $(BIN)

# A real Kubernetes patch upgrade (the previous patch's payload is built first, ~15 min once, cached):
# 3 servers + 1 agent on it, upgraded through `k8s up` to dist/k8s-next. Not in `make test`.
test-upgrade-k8s: dist dist-next
	PLAIN_BIN=$(BIN) e2e/upgrade-k8s.sh

# Upstream's conformance suite (e2e.test of the pinned Kubernetes, and the images it pulls, built once
# by bootstrap/conformance/build.sh, ~20 min cold) against a server + agent in test hosts; reports in
# /var/tmp/k8s-conformance (summary.txt, JUnit). `make conformance` runs every [Conformance] test (hours);
# CONFORMANCE_FOCUS narrows it (e.g. '\[sig-apps\].*\[Conformance\]'). Not in `make test`.
conformance-kit: toolchains
	./bootstrap/conformance/build.sh

conformance: dist conformance-kit
	K8S_BIN=$(K8S) e2e/conformance.sh

# The same on 3 HA servers (the carried etcd) + 1 agent.
conformance-ha: dist conformance-kit
	K8S_BIN=$(K8S) CONFORMANCE_CLUSTER=ha e2e/conformance.sh

# Upstream's NetworkPolicy tests ([sig-network] Netpol, not part of [Conformance]) against our
# enforcement, on the same server + agent; the SCTP ones need SCTP in the kernel, which this VM lacks.
conformance-netpol: dist conformance-kit
	K8S_BIN=$(K8S) CONFORMANCE_FOCUS='\[sig-network\] Netpol' CONFORMANCE_SKIP='SCTPConnectivity' \
	  RESULTS=/var/tmp/k8s-netpol e2e/conformance.sh

# kill -9 of `k8s server` 100 times under API load (e2e/chaos.sh, ~20 min): no acknowledged write lost, no
# watch going backwards, the pod running through. `make test-e2e` runs the same with 10 kills (~2 min).
# test-chaos-ha: the same against 3 HA servers (etcd), 20 kills of one server at a time (e2e/chaos-ha.sh, ~5 min).
test-chaos: dist
	K8S_BIN=$(K8S) CHAOS_KILLS=100 e2e/chaos.sh

test-chaos-ha: dist
	K8S_BIN=$(K8S) CHAOS_KILLS=20 e2e/chaos-ha.sh

# The CIS Kubernetes Benchmark: kube-bench (built once from its Go module, cached in ~/.cache/k8s) against
# `k8s server --profile cis` on a test host (e2e/README.md); fails on a FAIL in master, node or policies.
# `make test-e2e` runs it too (~1 min, plus ~1 min once to build kube-bench).
test-cis:
	./e2e/cis/build.sh
	K8S_BIN=$(K8S) e2e/cis.sh

# Figures, not tests: the datastore against real etcd and kine (built from its pinned Go
# module, cached in ~/.cache/k8s/bench), and a node's start time and memory.
bench: deps-test toolchains
	kine=$$(benches/kine/build.sh | tail -n 1) && KINE_BIN=$$kine $(CARGO) bench --bench datastore

# The layer above: the payload's kube-apiserver on each of the three stores in turn, under one
# kube-rs load generator (benches/api.rs; the payload comes from bootstrap/build.sh's cache).
bench-api: deps-test toolchains
	kine=$$(benches/kine/build.sh | tail -n 1) && payload=$$(./bootstrap/build.sh | tail -n 1) && \
	KINE_BIN=$$kine K8S_PAYLOAD_DIR=$$payload $(CARGO) bench --bench api

bench-node: dist
	K8S_BIN=$(K8S) e2e/bench-single-node.sh

clean:
	$(CARGO) clean
	rm -rf dist
