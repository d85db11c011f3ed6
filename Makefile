# k8s — the two entry points are `make run` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo
DATA_DIR ?= /tmp/k8s-datastore
LISTEN ?= http://127.0.0.1:2379

.PHONY: all build deps run test unit test-etcdctl bench clean

all: build

deps:
	./scripts/deps.sh

build:
	$(CARGO) build --release

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
