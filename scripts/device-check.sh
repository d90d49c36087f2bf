#!/usr/bin/env bash
# The GPU device check, in one run of under 9 minutes (each phase has its own time limit and the whole a deadline,
# so a failing phase cannot eat the others' time):
#   1. build the core, the C++ tests and the benchmarks against python3's torch (CUDA), with the static OpenCV,
#      yaml-cpp and libturbojpeg that scripts/device-prep.sh put in .device/prefix
#   2. run the C++ tests (on CUDA where a GPU is visible: raw outputs, loss and gradients against the fixtures,
#      an AMP training step, fp16 predict against fp32, the prefetcher and loss scaler)
#   3. the side by side on a generated set of 2000 640-px JPEGs: our trainer (defaults) and the official one
#      (from .device/official; defaults = workers 8, then tuned = workers 16 + cache ram), yolo26n, imgsz 640,
#      batch 128, AMP, the second epoch timed; then yolo26s at batch 64 (ours, then official if time is left)
# Writes OUTDIR/summary.json (every figure) and OUTDIR/logs.tar.gz (every log), plus OUTDIR/device-check.log.
# Usage: bash scripts/device-check.sh OUTDIR [--dry-run]
#   --dry-run: the same steps on a CPU machine at toy sizes (16 images, imgsz 128, batch 4, device cpu), against
#   an existing build folder (BUILD_DIR, default build/) unless DRY_BUILD=1; checks the script itself.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUTDIR=${1:?usage: scripts/device-check.sh OUTDIR [--dry-run]}
DRY=0
[ "${2:-}" = "--dry-run" ] && DRY=1
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
WORK=${DEVICE_CHECK_WORK:-/tmp/y26-device-check}
LOGS=$WORK/logs
rm -rf "$LOGS" && mkdir -p "$LOGS" "$WORK/results"
exec > >(tee "$OUTDIR/device-check.log") 2>&1

T0=$(date +%s)
BUDGET=${DEVICE_CHECK_BUDGET:-530}  # seconds for everything (the device's command limit is 600)
left() { echo $((BUDGET - ($(date +%s) - T0))); }
# phase NAME CAP CMD...: runs CMD with min(CAP, time left - 10 s) as its limit; records rc and seconds.
phase() {
  local name=$1 cap=$2
  shift 2
  local lim=$(($(left) - 10))
  [ "$lim" -gt "$cap" ] && lim=$cap
  if [ "$lim" -lt 15 ]; then
    echo "== $name: skipped (no time left)"
    echo "{\"rc\": null, \"seconds\": 0, \"skipped\": \"no time left\"}" >"$WORK/results/phase_$name.json"
    return 1
  fi
  echo "== $name (limit ${lim}s) $(date -u +%T)"
  local t=$(date +%s)
  timeout -k 5 "$lim" "$@" >"$LOGS/$name.log" 2>&1
  local rc=$?
  local s=$(($(date +%s) - t))
  tail -n 5 "$LOGS/$name.log" | sed 's/^/   /'
  echo "   -> rc=$rc in ${s}s$([ $rc = 124 ] && echo ' (TIMED OUT)')"
  echo "{\"rc\": $rc, \"seconds\": $s, \"limit\": $lim}" >"$WORK/results/phase_$name.json"
  return $rc
}

if [ $DRY = 1 ]; then
  IMAGES=16 IMGSZ=128 BATCH_N=4 BATCH_S=4 DEVICE=cpu EPOCHS=2 JOBS=2
  MODELS_S=""  # the yolo26s run is for the GPU
else
  IMAGES=2000 IMGSZ=640 BATCH_N=128 BATCH_S=64 DEVICE=0 EPOCHS=2 JOBS=$(nproc)
  MODELS_S=yolo26s
fi

# ---- 0. what this machine has --------------------------------------------------------------------------------
{
  date -u
  uname -a
  nproc
  free -g | head -2
  nvidia-smi 2>&1 | head -15
  python3 -c 'import torch,sys;print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available(), "cudnn", torch.backends.cudnn.version())' 2>&1
  which cmake ninja nvcc g++ 2>&1
  g++ --version | head -1
  du -sh .device 2>&1
} >"$LOGS/env.log" 2>&1
cat "$LOGS/env.log"

# ---- 1. build -----------------------------------------------------------------------------------------------
TORCH_PREFIX=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)' 2>/dev/null || true)
BUILD=${BUILD_DIR:-$ROOT/build}
if [ $DRY = 0 ] || [ "${DRY_BUILD:-0}" = 1 ]; then
  BUILD=$WORK/build
  # The data set does not need the build: made meanwhile, on a few cores.
  (python3 scripts/device/make_dataset.py "$WORK/data" --images $IMAGES --procs 4 >"$LOGS/dataset.log" 2>&1) &
  DATA_PID=$!
  [ -n "$TORCH_PREFIX" ] && export Torch_DIR=$TORCH_PREFIX/Torch
  export ROOT BUILD TORCH_PREFIX JOBS
  phase build 300 bash -c 'cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_PREFIX_PATH="$TORCH_PREFIX;$ROOT/.device/prefix" -DYOLO26_BUILD_TESTS=ON -DYOLO26_BUILD_BENCH=ON \
      -DTORCH_CUDA_ARCH_LIST=9.0 && cmake --build "$BUILD" -j"$JOBS" -- -k 0'
else
  (python3 scripts/device/make_dataset.py "$WORK/data" --images $IMAGES --size 256 --procs 2 >"$LOGS/dataset.log" 2>&1) &
  DATA_PID=$!
  echo "== build: dry run, using $BUILD"
  echo "{\"rc\": 0, \"seconds\": 0, \"reused\": \"$BUILD\"}" >"$WORK/results/phase_build.json"
fi
wait $DATA_PID
echo "dataset rc=$? $(tail -n 1 "$LOGS/dataset.log")"
DATA=$WORK/data/data.yaml

# ---- 2. C++ tests -------------------------------------------------------------------------------------------
if [ -x "$BUILD/test_system" ]; then
  if [ $DRY = 1 ]; then TESTS_RE='test_system|test_cuda'; else TESTS_RE='.'; fi
  phase tests 150 ctest --test-dir "$BUILD" -R "$TESTS_RE" -j"$JOBS" --timeout 140 --output-on-failure
  # the CUDA test program's own lines (what ran on the GPU)
  [ -x "$BUILD/test_cuda" ] && grep -E "^(ok|not ok|  )" "$LOGS/tests.log" | grep -iE "cuda|amp|fp16|prefetch" | head -40
fi

# ---- 3. side by side ---------------------------------------------------------------------------------------
ours() {  # ours NAME MODEL BATCH
  phase "$1" 120 "$BUILD/bench_trainer" --json-out "$WORK/results/$1.json" data="$DATA" model="$2.yaml" \
    imgsz=$IMGSZ batch="$3" epochs=$EPOCHS device=$DEVICE project="$WORK/runs" name="$1" exist_ok=true
}
official() {  # official NAME MODEL BATCH WORKERS [CACHE]
  if [ ! -f .device/official/ultralytics/__init__.py ]; then
    echo "== $1: skipped (no .device/official: run scripts/device-prep.sh with ULTRALYTICS_SRC set)"
    echo '{"rc": null, "seconds": 0, "skipped": "official source not carried"}' >"$WORK/results/phase_$1.json"
    return
  fi
  phase "$1" 150 env PYTHONUNBUFFERED=1 YOLO_CONFIG_DIR="$WORK/ultra_cfg" python3 scripts/device/official_train.py \
    --src .device/official --json-out "$WORK/results/$1.json" --data "$DATA" --model "$2.yaml" --imgsz $IMGSZ \
    --batch "$3" --epochs $EPOCHS --workers "$4" ${5:+--cache "$5"} --device $DEVICE --project "$WORK/official_runs" \
    --amp-weights "$ROOT/test/fixtures/det/yolo26n-shapes.pt"
}
if [ -x "$BUILD/bench_trainer" ]; then
  ours ours_n yolo26n $BATCH_N
fi
official official_default_n yolo26n $BATCH_N 8
official official_tuned_n yolo26n $BATCH_N 16 ram
for m in $MODELS_S; do
  ours ours_s $m $BATCH_S
  [ "$(left)" -gt 120 ] && official official_default_s $m $BATCH_S 8
done

# ---- summary ------------------------------------------------------------------------------------------------
python3 scripts/device/summarize.py "$WORK/results" "$LOGS/env.log" "$LOGS/tests.log" >"$OUTDIR/summary.json"
cp "$OUTDIR/summary.json" "$LOGS/" 2>/dev/null
tar -czf "$OUTDIR/logs.tar.gz" -C "$WORK" logs results
echo "device-check: $(($(date +%s) - T0)) s; summary in $OUTDIR/summary.json"
cat "$OUTDIR/summary.json"
