#!/bin/sh
# Datastore benchmark: krust's etcd endpoint over the durable engine vs a real etcd 3.4, same
# client code, both fsyncing (source: crates/store/examples/bench.rs; figures: BENCHMARKS.md).
# Usage: bench/store/run.sh [--seconds N] [--reps N]
set -e
cd "$(dirname "$0")/../.."
exec cargo run --release -p store --example bench -- "$@"
