#!/usr/bin/env bash
# Builds the core with the benchmarks and runs the data-loader benchmark; extra arguments go to bench_loader
# (--data data.yaml, --imgsz N, --batch N, --workers N, --images N, --json).
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build-core -DYOLO26_BUILD_BENCH=ON >/dev/null
cmake --build build-core -j"$(nproc)" --target bench_loader >/dev/null
exec ./build-core/bench_loader "$@"
