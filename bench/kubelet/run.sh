#!/bin/sh
# Kubelet benchmark: pod startup latency (100 pods at 5 pods/s, then 100 at once, create →
# Running through a watch) and the memory of the kubelet, containerd and its shims at 0 and 100
# pods, on a real `krust server` with its agent in a network namespace of its own (source:
# crates/krust/examples/kubelet_bench.rs; figures: BENCHMARKS.md). Needs root.
# Usage: bench/kubelet/run.sh [--pods N] [--rate R] [--keep-log FILE] [--no-reference]
set -e
cd "$(dirname "$0")/../.."
images="${KRUST_IMAGES_DIR:-/var/cache/krust-images}"
if [ ! -f "$images/busybox.tar" ] || [ ! -f "$images/pause.tar" ]; then
    scripts/build-images.sh "$images"
fi
cargo build --release -p krust
exec cargo run --release -p krust --example kubelet_bench -- --images "$images" "$@"
