#!/usr/bin/env bash
# npm run prebuildify: builds the addon variant for the libtorch at hand (scripts/find-libtorch.sh: LIBTORCH,
# Torch_DIR, python3's torch, the system's) and puts it in prebuilds/<platform>-<arch>/ as
#   yolo26_native.<libc>.torch<major>.<minor>.<cpu|cuN>.node
# the key the run-time resolver (ts/native.ts) matches; the resolver loads the libtorch it found before the addon,
# so the addon binds to it by soname wherever it lives. Needs cmake, a C++ compiler and node_modules (npm ci; without
# Node, only node_modules/node-api-headers and node_modules/node-addon-api, copied over: docs/install.md).
# With Node it builds through cmake-js in build/ (the folder setup.sh uses: nothing recompiles after a setup);
# without Node (a GPU machine) through plain cmake (the addon does not link libnode).
#   scripts/prebuild.sh [--out DIR] [--tests]      (--tests also builds the C++ tests and benchmarks)
# Environment: BUILD_DIR (default build, or build-prebuild without Node), JOBS (default 2),
# YOLO26_CMAKE_ARGS (more -D options, space-separated).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
out=$repo/prebuilds/linux-$(uname -m | sed 's/x86_64/x64/; s/aarch64/arm64/')
tests=OFF
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --tests) tests=ON; shift ;;
    *) echo "prebuild: unknown argument '$1' (use --out DIR, --tests)" >&2; exit 2 ;;
  esac
done

found=$(sh scripts/find-libtorch.sh) || exit 1
eval "$found"
libc=glibc
if ! getconf GNU_LIBC_VERSION >/dev/null 2>&1; then libc=musl; fi
cuda_tag=cpu
[ "$TORCH_CUDA" != cpu ] && cuda_tag=cu${TORCH_CUDA%%.*}
tag=$libc.torch$(echo "$TORCH_VERSION" | cut -d. -f1,2).$cuda_tag
echo "prebuild: variant $tag for libtorch $TORCH_VERSION at $TORCH_LIB_DIR ($TORCH_WHY)"

napi_inc=$repo/node_modules/node-api-headers/include
addon_inc=$repo/node_modules/node-addon-api
[ -f "$napi_inc/node_api.h" ] && [ -f "$addon_inc/napi.h" ] || {
  echo "prebuild: $napi_inc/node_api.h or $addon_inc/napi.h is missing: run npm ci first, or, on a machine without Node, copy node_modules/node-api-headers and node_modules/node-addon-api (headers only) from one that ran it" >&2
  exit 1
}
defines=()
[ "$tests" = ON ] && defines=(-DYOLO26_BUILD_TESTS=ON -DYOLO26_BUILD_BENCH=ON)
# shellcheck disable=SC2206
defines+=(${YOLO26_CMAKE_ARGS:-})
if command -v node >/dev/null 2>&1; then
  build=${BUILD_DIR:-build}
  # configure every time: it reruns the libtorch discovery, so the build matches the tag above
  npx cmake-js configure --out "$build" "${defines[@]/#-D/--CD}" >/dev/null
  npx cmake-js build --out "$build" --parallel "${JOBS:-2}"
  addon=$build/Release/yolo26_native.node
else
  build=${BUILD_DIR:-build-prebuild}
  generator=()
  command -v ninja >/dev/null 2>&1 && [ ! -f "$build/CMakeCache.txt" ] && generator=(-G Ninja)
  cmake -S . -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DYOLO26_BUILD_ADDON=ON \
    "-DCMAKE_JS_INC=$napi_inc" "-DNODE_ADDON_API_DIR=$addon_inc" "${defines[@]}" >/dev/null
  cmake --build "$build" --parallel "${JOBS:-2}"
  addon=$build/yolo26_native.node
fi
mkdir -p "$out"
dest=$out/yolo26_native.$tag.node
cp "$addon" "$dest.tmp"
strip --strip-unneeded "$dest.tmp"
mv "$dest.tmp" "$dest"
echo "prebuild: wrote $dest ($(du -h "$dest" | cut -f1))"
