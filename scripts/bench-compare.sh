#!/usr/bin/env bash
# Ours against the official implementation (Ultralytics 8.4.117, run from its source on python3's torch), each pair
# in the same run on this machine, and the ratios:
#   loader   imgsz 640, mosaic, batch 16, 2 workers, 1000 generated 640x640 JPEGs, one epoch (first 2 batches untimed)
#   predict  yolo26n (.pt), imgsz 640, batch 1, a folder of 20 generated JPEGs, after a 2-image warm-up; also our
#            pipeline against ONNX Runtime's bare forward of the same model in the same process, from Node
#            (scripts/compare/ours_predict.mjs) and from C++ (bench_ort_predict: the pipeline with no Node)
#   train    one epoch, yolo26n.yaml, imgsz 320, batch 16, 256 generated images, CPU
# Usage: bash scripts/bench-compare.sh [loader] [predict] [train]   (none = all three)
# Environment:
#   ULTRALYTICS_SRC  where to get the official source the first time: a checkout, a git directory holding commit
#                    a343ddd8, or a .tar.gz of the tree; without it, git clone from GitHub is tried
#   OFFICIAL_PYTHON  the Python that runs it (default /usr/bin/python3 when present: Debian's python3-torch)
#   COMPARE_MODEL    the .pt for predict (default test/fixtures/det/yolo26n-coco-random.pt: yolo26n, nc 80)
#   BUILD_DIR        our build folder (default build/), YOLO26_CACHE (default ~/.cache/yolo26-native)
# The official tree, two import stubs and the generated data sets are kept in $YOLO26_CACHE (prepared once).
# The last line is one JSON object with every figure and ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CACHE=${YOLO26_CACHE:-$HOME/.cache/yolo26-native}
COMMIT=a343ddd8
OFFICIAL=$CACHE/official/ultralytics-$COMMIT
DATA=$CACHE/compare-data
WORK=$CACHE/compare-runs
BUILD=${BUILD_DIR:-$ROOT/build}
MODEL=${COMPARE_MODEL:-$ROOT/test/fixtures/det/yolo26n-coco-random.pt}
PY=${OFFICIAL_PYTHON:-$([ -x /usr/bin/python3 ] && echo /usr/bin/python3 || command -v python3)}
PHASES=("$@")
[ ${#PHASES[@]} -eq 0 ] && PHASES=(loader predict train)
for p in "${PHASES[@]}"; do
  case $p in loader | predict | train) ;; *) echo "bench-compare: unknown phase '$p' (use loader, predict, train)" >&2; exit 2 ;; esac
done
die() { echo "bench-compare: $*" >&2; exit 1; }
if [ -z "${OMP_WAIT_POLICY:-}" ]; then export GOMP_SPINCOUNT=${GOMP_SPINCOUNT:-1000}; fi  # as scripts/bench.sh
export YOLO_OFFLINE=1 YOLO_VERBOSE=False

# ---- the official side: Python packages, the source tree at $COMMIT, stubs ------------------------------------
py_missing() {
  "$PY" - <<'EOF' 2>/dev/null || echo python3
import importlib.util as u
mods = {"torch": "python3-torch", "torchvision": "python3-torchvision", "cv2": "python3-opencv",
        "numpy": "python3-numpy", "yaml": "python3-yaml", "PIL": "python3-pil", "matplotlib": "python3-matplotlib",
        "scipy": "python3-scipy", "psutil": "python3-psutil", "requests": "python3-requests"}
print(" ".join(p for m, p in mods.items() if u.find_spec(m) is None))
EOF
}
[ -n "$PY" ] || die "no python3 found; install Debian's python3 and python3-torch (or set OFFICIAL_PYTHON)"
missing=$(py_missing)
if [ -n "$missing" ]; then
  echo "bench-compare: installing $missing for $PY"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO=sudo
  { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing; } ||
    die "could not install $missing; install them (Debian 12: apt install $missing) or point OFFICIAL_PYTHON at a Python that has them"
  missing=$(py_missing)
  [ -z "$missing" ] || die "$PY still lacks $missing; point OFFICIAL_PYTHON at a Python with torch, torchvision, opencv, numpy, yaml, PIL, matplotlib, scipy, psutil, requests"
fi

prepare_official() {
  [ -f "$OFFICIAL/.ready" ] && return
  local tmp=$OFFICIAL.tmp
  rm -rf "$tmp" && mkdir -p "$tmp"
  # a failed or interrupted unpack leaves nothing half-made in the cache
  trap 'rm -rf "$OFFICIAL.tmp"' EXIT
  local src=${ULTRALYTICS_SRC:-}
  if [ -n "$src" ] && [ -f "$src/ultralytics/__init__.py" ]; then
    (cd "$src" && tar -cf - --exclude=__pycache__ ultralytics) | tar -xf - -C "$tmp"
  elif [ -n "$src" ] && git --git-dir="$src" rev-parse -q --verify "$COMMIT^{commit}" >/dev/null 2>&1; then
    git --git-dir="$src" archive "$COMMIT" ultralytics | tar -xf - -C "$tmp"
  elif [ -n "$src" ] && git -C "$src" rev-parse -q --verify "$COMMIT^{commit}" >/dev/null 2>&1; then
    git -C "$src" archive "$COMMIT" ultralytics | tar -xf - -C "$tmp"
  elif [ -n "$src" ] && [ -f "$src" ]; then
    tar -xzf "$src" -C "$tmp" --strip-components=1 --wildcards '*/ultralytics/*' ||
      die "ULTRALYTICS_SRC=$src is not a .tar.gz of the Ultralytics tree"
  elif [ -n "$src" ]; then
    die "ULTRALYTICS_SRC=$src is neither a checkout (ultralytics/__init__.py), nor a git directory with commit $COMMIT, nor a .tar.gz"
  else
    echo "bench-compare: ULTRALYTICS_SRC unset: cloning github.com/ratry-ai/ultralytics for commit $COMMIT"
    git clone -q --filter=blob:none --no-checkout https://github.com/ratry-ai/ultralytics "$tmp/git" 2>/dev/null &&
      git -C "$tmp/git" archive "$COMMIT" ultralytics | tar -xf - -C "$tmp" ||
      die "cannot get the official source (no network?): set ULTRALYTICS_SRC to a checkout or git directory of ratry-ai/ultralytics at $COMMIT (Ultralytics 8.4.117), or to a .tar.gz of it"
    rm -rf "$tmp/git"
  fi
  grep -q '__version__ = "8.4.117"' "$tmp/ultralytics/__init__.py" ||
    echo "bench-compare: warning: the official source is not version 8.4.117" >&2
  # Stubs for the two modules it imports at start-up but the benchmarks never use (Debian has no polars, and its
  # filelock lacks AsyncFileLock); put on the path only when the real module is missing or too old.
  mkdir -p "$tmp/stubs/polars" "$tmp/stubs/filelock"
  cp scripts/device/polars_stub.py "$tmp/stubs/polars/polars.py"
  cp scripts/device/filelock_stub.py "$tmp/stubs/filelock/filelock.py"
  rm -rf "$OFFICIAL" && mv "$tmp" "$OFFICIAL"
  touch "$OFFICIAL/.ready"
  trap - EXIT
}
mkdir -p "$CACHE/official"
prepare_official
STUBS=""
"$PY" -c 'import polars' 2>/dev/null || STUBS=$OFFICIAL/stubs/polars
"$PY" -c 'from filelock import AsyncFileLock' 2>/dev/null || STUBS=${STUBS:+$STUBS:}$OFFICIAL/stubs/filelock
export PYTHONPATH=${STUBS}${PYTHONPATH:+:$PYTHONPATH}
(cd /tmp && "$PY" -c "import sys; sys.path.insert(0, '$OFFICIAL'); import ultralytics; from ultralytics import YOLO") >/dev/null 2>"$CACHE/official/import.log" ||
  { tail -5 "$CACHE/official/import.log" >&2; die "the official package does not import with $PY (log: $CACHE/official/import.log)"; }

# ---- our side ----------------------------------------------------------------------------------------------------
targets=()
for p in "${PHASES[@]}"; do
  case $p in loader) targets+=(bench_loader) ;; train) targets+=(bench_trainer) ;; esac
done
if [ ${#targets[@]} -gt 0 ]; then
  [ -f "$BUILD/CMakeCache.txt" ] || die "no build in $BUILD: run npm run setup first (or set BUILD_DIR)"
  nice cmake --build "$BUILD" -j"${JOBS:-2}" --target "${targets[@]}" >/dev/null || die "building ${targets[*]} in $BUILD failed"
fi
if [[ " ${PHASES[*]} " == *" predict "* ]]; then
  [ -f dist/index.js ] || die "dist/ is missing: run npx tsc -p tsconfig.json (or npm run setup)"
  [ -f "$MODEL" ] || die "no model $MODEL: set COMPARE_MODEL to a yolo26n .pt"
fi

# ---- data (generated once) --------------------------------------------------------------------------------------
dataset() {  # dataset NAME IMAGES: a generated set of 640x640 JPEGs (NAME/data.yaml)
  local dir=$DATA/$1
  if [ ! -f "$dir/.done" ]; then
    rm -rf "$dir"
    nice "$PY" scripts/device/make_dataset.py "$dir" --images "$2" --size 640 --procs 2 >/dev/null ||
      die "generating $dir failed"
    touch "$dir/.done"
  fi
}
mkdir -p "$WORK"
last_json() { grep '^{' "$1" | tail -1; }
ratio() { "$PY" -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); print(f'{a / b:.2f}')" "$1" "$2"; }
field() {  # field JSON a.0.b: a value by its path (list indices as numbers)
  "$PY" -c "import json, sys
v = json.loads(sys.argv[1])
for k in sys.argv[2].split('.'): v = v[int(k)] if isinstance(v, list) else v[k]
print(v)" "$1" "$2"
}
SUMMARY="{\"date\": \"$(date -u +%FT%TZ)\", \"cpus\": $(nproc), \"loadavg\": \"$(cut -d' ' -f1-3 /proc/loadavg)\""

for phase in "${PHASES[@]}"; do
  case $phase in
    loader)
      dataset loader-1000 1000
      echo "== loader: imgsz 640, mosaic, batch 16, 2 workers, 1000 640x640 JPEGs, one epoch"
      "$BUILD/bench_loader" --data "$DATA/loader-1000/data.yaml" --imgsz 640 --batch 16 --workers 2 --json \
        >"$WORK/ours_loader.log" 2>&1 || { tail "$WORK/ours_loader.log" >&2; die "our loader benchmark failed"; }
      ours=$(last_json "$WORK/ours_loader.log")
      (cd /tmp && "$PY" "$ROOT/scripts/compare/official_loader.py" --src "$OFFICIAL" --data "$DATA/loader-1000/data.yaml" \
        --imgsz 640 --batch 16 --workers 2) >"$WORK/official_loader.log" 2>&1 ||
        { tail "$WORK/official_loader.log" >&2; die "the official loader run failed (log: $WORK/official_loader.log)"; }
      off=$(last_json "$WORK/official_loader.log")
      a=$(field "$ours" imagesPerSecond); b=$(field "$off" images_per_second); r=$(ratio "$a" "$b")
      ca=$(field "$ours" results.0.cpuMsPerImage); cb=$(field "$off" cpu_ms_per_image); rc=$(ratio "$cb" "$ca")
      printf 'loader   ours %.1f img/s, official %.1f img/s: %sx (CPU ms per image, all threads and processes: ours %.2f, official %.2f: %sx)\n' \
        "$a" "$b" "$r" "$ca" "$cb" "$rc"
      SUMMARY+=", \"loader\": {\"ours\": $ours, \"official\": $off, \"ratio\": $r, \"cpu_ratio\": $rc}"
      ;;
    predict)
      dataset predict-20 20
      src=$DATA/predict-20/images/train
      echo "== predict: $(basename "$MODEL"), imgsz 640, batch 1, $(ls "$src" | wc -l) JPEGs"
      node scripts/compare/ours_predict.mjs "$MODEL" "$src" 640 >"$WORK/ours_predict.log" 2>&1 ||
        { tail "$WORK/ours_predict.log" >&2; die "our predict benchmark failed"; }
      ours=$(last_json "$WORK/ours_predict.log")
      (cd /tmp && "$PY" "$ROOT/scripts/compare/official_predict.py" --src "$OFFICIAL" --model "$MODEL" --source "$src" \
        --imgsz 640) >"$WORK/official_predict.log" 2>&1 ||
        { tail "$WORK/official_predict.log" >&2; die "the official predict run failed (log: $WORK/official_predict.log)"; }
      off=$(last_json "$WORK/official_predict.log")
      "$BUILD/bench_ort_predict" --model "$MODEL" --source "$src" --imgsz 640 --json >"$WORK/ours_ort_predict.log" 2>&1 ||
        { tail "$WORK/ours_ort_predict.log" >&2; die "our C++ predict benchmark failed"; }
      cpp=$(last_json "$WORK/ours_ort_predict.log")
      a=$(field "$ours" ms_per_image); b=$(field "$off" ms_per_image); f=$(field "$ours" bare_forward_ms)
      r=$(ratio "$b" "$a"); rb=$(ratio "$a" "$f")
      printf 'predict  ours %.1f ms/img, official %.1f ms/img: %sx faster; ours / bare ONNX Runtime forward (%.1f ms): %sx\n' \
        "$a" "$b" "$r" "$f" "$rb"
      printf 'predict  C++ pipeline %.1f ms/img / bare forward %.1f ms (same process): %sx\n' \
        "$(field "$cpp" pipeline_ms_per_image)" "$(field "$cpp" bare_forward_ms)" "$(field "$cpp" ratio)"
      SUMMARY+=", \"predict\": {\"ours\": $ours, \"official\": $off, \"ratio\": $r, \"ours_over_bare_forward\": $rb, \"cpp_pipeline\": $cpp}"
      ;;
    train)
      dataset train-256 256
      echo "== train: one epoch, yolo26n.yaml, imgsz 320, batch 16, 256 640x640 JPEGs, CPU"
      "$BUILD/bench_trainer" data="$DATA/train-256/data.yaml" model=yolo26n.yaml imgsz=320 batch=16 epochs=1 \
        device=cpu project="$WORK/runs" name=ours exist_ok=true >"$WORK/ours_train.log" 2>&1 ||
        { tail "$WORK/ours_train.log" >&2; die "our trainer benchmark failed"; }
      ours=$(last_json "$WORK/ours_train.log")
      "$PY" scripts/device/official_train.py --src "$OFFICIAL" --data "$DATA/train-256/data.yaml" --model yolo26n.yaml \
        --imgsz 320 --batch 16 --epochs 1 --workers 2 --device cpu --project "$WORK/official-runs" \
        >"$WORK/official_train.log" 2>&1 ||
        { tail "$WORK/official_train.log" >&2; die "the official trainer run failed (log: $WORK/official_train.log)"; }
      off=$(last_json "$WORK/official_train.log")
      a=$(field "$ours" images_per_second); b=$(field "$off" images_per_second); r=$(ratio "$a" "$b")
      printf 'train    ours %.1f img/s, official %.1f img/s: %sx\n' "$a" "$b" "$r"
      SUMMARY+=", \"train\": {\"ours\": $ours, \"official\": $off, \"ratio\": $r}"
      ;;
  esac
done
echo "$SUMMARY}"
