# k8s — the two entry points are `make run` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo
DATA_DIR ?= /tmp/k8s-datastore
LISTEN ?= http://127.0.0.1:2379

.PHONY: all build deps payload dist run test unit test-etcdctl bench clean

all: build

deps:
	./scripts/deps.sh

build:
	$(CARGO) build --release

# The upstream parts, built from pinned Go modules and cached outside the
# repository (bootstrap/README.md); prints the payload directory.
payload:
	./bootstrap/build.sh

# dist/k8s: the release binary with the payload attached — the one file users install.
dist: build
	@mkdir -p dist
	payload_dir=$$(./bootstrap/build.sh | tail -n 1) && \
	./target/release/k8s attach-payload --exe target/release/k8s \
		--payload "$$payload_dir/payload.tar.zst" --out dist/k8s
	@ls -l dist/k8s

# Until the cluster exists, `make run` serves the datastore in the foreground.
run: deps build
	@echo "datastore: $(LISTEN) (data in $(DATA_DIR)); try in another shell:"
	@echo "  ETCDCTL_API=3 etcdctl --endpoints=$(LISTEN) put hello world"
	@echo "  ETCDCTL_API=3 etcdctl --endpoints=$(LISTEN) get hello"
	./target/release/k8s datastore --data-dir $(DATA_DIR) --listen $(LISTEN)

test: deps build unit

unit:
	$(CARGO) test --release

clean:
	$(CARGO) clean
