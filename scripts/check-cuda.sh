#!/usr/bin/env bash
# npm run check:cuda [-- cpu] : compiles and links the core, the C++ tests, the benchmarks and the addon against
# Debian 13's libtorch 2.6 with CUDA 12 (libtorch-cuda-dev, contrib), on a machine that has no CUDA libtorch and
# no GPU. With "cpu" it also builds against Debian 13's CPU libtorch 2.6 (libtorch-dev, main).
# The packages are fetched with apt-get download through a private apt configuration and state (never installed:
# trixie's glibc is newer than bookworm's) and unpacked with dpkg -x into a cache folder outside the repository
# (YOLO26_CHECK_CACHE, default ~/.cache/yolo26-native/trixie), reused by later runs. CUDA headers and libcudart
# come from CUDA_HOME (default /usr/local/cuda); the programs link with --unresolved-symbols=ignore-in-shared-libs
# because the CUDA 12 libraries libtorch needs at run time are not there. Exits non-zero on any error.
# Only building is checked: nothing built here can run here.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
cache=${YOLO26_CHECK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/yolo26-native/trixie}
cuda_home=${CUDA_HOME:-/usr/local/cuda}
jobs=${JOBS:-2}
flavours=(cuda)
for a in "$@"; do
  case "$a" in
    cpu) flavours+=(cpu) ;;
    *) echo "check:cuda: unknown argument '$a' (use: cpu)" >&2; exit 2 ;;
  esac
done
start=$(date +%s)
say() { echo "check:cuda [$(( $(date +%s) - start )) s] $*"; }

[ -f "$cuda_home/include/cuda_runtime_api.h" ] || { echo "check:cuda: no CUDA headers in $cuda_home/include (set CUDA_HOME)" >&2; exit 1; }
[ -f node_modules/node-addon-api/package.json ] || { echo "check:cuda: run npm ci (or scripts/setup.sh) first" >&2; exit 1; }

# ---- packages: a private apt for trixie main+contrib, downloads kept in the cache ----------------------------
apt_dir=$cache/apt
mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial" "$cache/debs"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main contrib" \
  > "$apt_dir/sources.list"
touch "$apt_dir/status"
apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
  -o "Dir::State=$apt_dir" -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::State::status=$apt_dir/status"
  -o "Dir::Cache=$apt_dir" -o "Dir::Cache::Archives=$apt_dir/archives" -o Debug::NoLocking=1
  -o APT::Sandbox::User=root -o Acquire::Languages=none)
declare -A packages=([cuda]="libtorch-cuda-dev libtorch-cuda-2.6" [cpu]="libtorch-dev libtorch2.6")
for f in "${flavours[@]}"; do
  for p in ${packages[$f]}; do
    if ! ls "$cache/debs/${p}_"*.deb >/dev/null 2>&1; then
      if [ ! -f "$apt_dir/updated" ]; then
        say "apt-get update (trixie, private state in $apt_dir)"
        apt-get "${apt_opts[@]}" update -qq
        touch "$apt_dir/updated"
      fi
      say "downloading $p"
      (cd "$cache/debs" && apt-get "${apt_opts[@]}" download -qq "$p")
    fi
  done
  if [ ! -f "$cache/$f/.unpacked" ]; then
    say "unpacking ${packages[$f]} into $cache/$f"
    rm -rf "${cache:?}/$f"
    mkdir -p "$cache/$f"
    for p in ${packages[$f]}; do dpkg -x "$(ls "$cache/debs/${p}_"*.deb | head -n1)" "$cache/$f"; done
    touch "$cache/$f/.unpacked"
  fi
done

# ---- build: core, C++ tests, benchmarks and the addon (scripts/prebuild.sh), one build folder per flavour ------
# The addon lands in prebuilds/ as that flavour's variant (linux-x64 libtorch 2.6 cpu / cu12); it cannot be
# loaded on this machine (trixie's libtorch needs a newer glibc), only on a Debian 13 one.
status=0
for f in "${flavours[@]}"; do
  extra="-DCMAKE_EXE_LINKER_FLAGS=-Wl,--unresolved-symbols=ignore-in-shared-libs"
  [ "$f" = cuda ] && extra="$extra -DCMAKE_PROJECT_INCLUDE=$repo/scripts/cmake/cuda-runtime-only.cmake"
  # -a: reopening stderr must not truncate it when it is a file (a log)
  if log=$(LIBTORCH=$cache/$f CUDA_HOME=$cuda_home BUILD_DIR=build-check-$f JOBS=$jobs YOLO26_CMAKE_ARGS=$extra \
      bash scripts/prebuild.sh --tests 2>&1 | tee -a /dev/stderr); then
    say "$f: built $(ls build-check-$f/test_* build-check-$f/bench_* 2>/dev/null | wc -l) programs and the addon"
    addon=$(printf '%s\n' "$log" | sed -n 's/^prebuild: wrote \(.*\) (.*/\1/p')
    # A CUDA libtorch must give a CUDA build: the addon has to need libtorch_cuda.
    if [ "$f" = cuda ] && ! readelf -d "$addon" | grep -q 'libtorch_cuda'; then
      echo "check:cuda: the addon built against the CUDA libtorch does not link libtorch_cuda" >&2
      status=1
    fi
  else
    echo "check:cuda: the $f build failed (see above)" >&2
    status=1
  fi
done
say "done, exit $status"
exit $status
