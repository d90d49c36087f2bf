#!/usr/bin/env bash
# Builds bench_train and measures training images/s of yolo26n at imgsz 320 and 640, batch 16, on a generated
# synthetic set (real loop with the augmenting loader, and the compute-only ceiling on one pre-loaded batch).
# Extra arguments go to every bench_train run (--iterations N, --device 0, --workers N, --data data.yaml, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build-core -DYOLO26_BUILD_BENCH=ON >/dev/null
cmake --build build-core -j"$(nproc)" --target bench_train >/dev/null
for size in 320 640; do
  ./build-core/bench_train --imgsz "$size" --batch 16 --json "$@"
done
