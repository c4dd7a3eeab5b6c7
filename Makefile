# krust: `make up` starts a single-node cluster, `make test` runs the whole suite.
SHELL := /bin/bash
export CARGO_TARGET_DIR ?= /var/cache/krust-target
DATA_DIR ?= /var/lib/krust
LOG ?= $(DATA_DIR)/krust.log
PID ?= $(DATA_DIR)/server.pid
KRUST := $(CARGO_TARGET_DIR)/release/krust

.PHONY: up down test deps build build-release lint bench

deps:
	@mkdir -p $(CARGO_TARGET_DIR)
	@scripts/install-deps.sh

build-release: deps
	cargo build --release -p krust

## Installs what is missing, builds, starts a server in the background and waits until it is ready.
up: build-release
	@scripts/up.sh "$(KRUST)" "$(DATA_DIR)" "$(LOG)"

## Stops what `make up` started.
down:
	@scripts/down.sh "$(PID)"

lint: deps
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

## The whole suite: formatting, lints, unit and end-to-end tests.
test: lint
	@if cargo nextest --version >/dev/null 2>&1; then \
	  cargo nextest run --workspace --no-fail-fast; \
	else \
	  cargo test --workspace --no-fail-fast; \
	fi

bench: deps
	cargo run --release -p store --example bench
