#!/usr/bin/env bash
# ID switches and MOTA-style counts of our ByteTrack / BoT-SORT beside upstream's, on the same generated detection
# sequences (crossing, occluded, late and spurious objects, a panning camera).
#   scripts/track-compare.sh <dir holding the ultralytics package, at the reference commit> [work dir]
# Needs build/bench_track_compare (cmake -DYOLO26_BUILD_BENCH=ON) and a python3 with numpy, scipy, opencv, yaml and
# what upstream's tracker modules import (PYTHON picks the interpreter).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: scripts/track-compare.sh <ultralytics source dir> [work dir]" >&2; exit 2; }
upstream=$1
work=${2:-$(mktemp -d -t y26-track-compare-XXXXXX)}
bin=build/bench_track_compare
[ -x "$bin" ] || { echo "track-compare: $bin is missing; build it with: cmake --build build --target bench_track_compare" >&2; exit 1; }
"$bin" --write "$work"
"${PYTHON:-python3}" scripts/track-compare.py --upstream "$upstream" "$work"
"$bin" --score "$work"
