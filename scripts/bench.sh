#!/usr/bin/env bash
# Builds one C++ benchmark program over the core (no Node in the loop) and runs it:
#   bash scripts/bench.sh loader|predict|train|loss|optim|model|checkpoint|export|demo|track [program flags...]
# Each program takes --json (last line one JSON object); see its --help for the rest.
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1:?usage: scripts/bench.sh NAME [flags]}
shift
cmake -S . -B build-core -DYOLO26_BUILD_BENCH=ON >/dev/null
cmake --build build-core -j"$(nproc)" --target "bench_$name" >/dev/null
# As the Node package does (ts/native.ts): OpenMP workers spin briefly, then sleep (faster on 2 busy cores).
if [ -z "${OMP_WAIT_POLICY:-}" ]; then export GOMP_SPINCOUNT=${GOMP_SPINCOUNT:-1000}; fi
exec "./build-core/bench_$name" "$@"
