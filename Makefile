# krust: `make up` starts a single-node cluster, `make test` runs the whole suite.
SHELL := /bin/bash
export CARGO_TARGET_DIR ?= /var/cache/krust-target
DATA_DIR ?= /var/lib/krust
LOG ?= $(DATA_DIR)/krust.log
PID ?= $(DATA_DIR)/server.pid
KRUST := $(CARGO_TARGET_DIR)/release/krust
# The pause and busybox images, built locally by scripts/build-images.sh (no registry, no docker);
# the tests find them through KRUST_IMAGES_DIR.
IMAGES_DIR ?= /var/cache/krust-images
export KRUST_IMAGES_DIR := $(IMAGES_DIR)

.PHONY: up down test deps build build-release lint bench images

deps:
	@mkdir -p $(CARGO_TARGET_DIR)
	@scripts/install-deps.sh

## Builds the image tarballs when they are missing or their recipe changed.
images: $(IMAGES_DIR)/pause.tar $(IMAGES_DIR)/busybox.tar

$(IMAGES_DIR)/pause.tar $(IMAGES_DIR)/busybox.tar &: scripts/build-images.sh crates/kubelet/pause/src/main.rs crates/kubelet/pause/Cargo.toml | deps
	@scripts/build-images.sh "$(IMAGES_DIR)"

build-release: deps
	cargo build --release -p krust

## Installs what is missing, builds, starts a server in the background and waits until it is ready.
up: build-release images
	@scripts/up.sh "$(KRUST)" "$(DATA_DIR)" "$(LOG)"

## Stops what `make up` started.
down:
	@scripts/down.sh "$(PID)"

lint: deps
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

## The whole suite: formatting, lints, unit and end-to-end tests.
test: lint images
	@if cargo nextest --version >/dev/null 2>&1; then \
	  cargo nextest run --workspace --no-fail-fast; \
	else \
	  cargo test --workspace --no-fail-fast; \
	fi

bench: deps
	cargo run --release -p store --example bench
