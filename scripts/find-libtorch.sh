#!/bin/sh
# Finds the libtorch to build against and to load, in one order used everywhere (setup.sh, CMake,
# prebuild.sh and the package's run-time resolver):
#   1. LIBTORCH (a libtorch folder: an unzipped archive, a pip torch folder or an extracted prefix)
#   2. Torch_DIR (the folder holding TorchConfig.cmake)
#   3. python3's torch (torch.utils.cmake_prefix_path; found without importing torch, which is slow)
#   4. the system's (Debian/Ubuntu libtorch-dev)
# Prints KEY=value lines (sourceable by sh): TORCH_RULE, TORCH_WHY, TORCH_CMAKE_DIR, TORCH_LIB_DIR,
# TORCH_INCLUDE_DIR, TORCH_VERSION, TORCH_CUDA (a version, or "cpu"), TORCH_CUDNN, TORCH_NCCL.
# Exit 1 with install advice on stderr when none is found; exit 2 when LIBTORCH/Torch_DIR name a folder
# without a libtorch (a wrong setting is never silently replaced by another libtorch).
set -u

# The TorchConfig.cmake folder under a libtorch root, for every layout we know.
config_under() {
  for c in "$1" "$1/share/cmake/Torch" "$1/lib/cmake/Torch" "$1"/lib/*/cmake/Torch "$1/usr/share/cmake/Torch" \
      "$1"/usr/lib/*/cmake/Torch "$1/usr/lib/cmake/Torch" "$1/torch/share/cmake/Torch"; do
    [ -f "$c/TorchConfig.cmake" ] && { (cd "$c" && pwd -P); return 0; }
  done
  return 1
}

rule="" why="" cmake_dir=""
if [ -n "${LIBTORCH:-}" ]; then
  rule=LIBTORCH why="LIBTORCH is set to $LIBTORCH"
  cmake_dir=$(config_under "$LIBTORCH") || {
    echo "yolo26-native: LIBTORCH=$LIBTORCH holds no libtorch: no TorchConfig.cmake under it (looked in share/cmake/Torch, lib/cmake/Torch, lib/*/cmake/Torch, usr/lib/*/cmake/Torch). Point LIBTORCH at the folder of an unzipped libtorch archive (the one holding lib/ and share/), or unset it to use python3's torch or the system's libtorch." >&2
    exit 2
  }
elif [ -n "${Torch_DIR:-}" ]; then
  rule=Torch_DIR why="Torch_DIR is set to $Torch_DIR"
  cmake_dir=$(config_under "$Torch_DIR") || {
    echo "yolo26-native: Torch_DIR=$Torch_DIR holds no TorchConfig.cmake. Point it at libtorch's share/cmake/Torch folder, or unset it." >&2
    exit 2
  }
else
  py=${PYTHON:-python3}
  torch_pkg=$("$py" -c 'import importlib.util as u; s = u.find_spec("torch"); print(s.submodule_search_locations[0] if s and s.submodule_search_locations else "")' 2>/dev/null || true)
  if [ -n "$torch_pkg" ] && cmake_dir=$(config_under "$torch_pkg/share/cmake/Torch"); then
    rule=python3 why="$py has torch at $torch_pkg (torch.utils.cmake_prefix_path)"
  else
    arch=$(uname -m)-linux-gnu
    for root in /usr/lib/$arch/cmake/Torch /usr/share/cmake/Torch /usr/lib/cmake/Torch /usr/local/share/cmake/Torch \
        /usr/local/lib/cmake/Torch /usr/local/libtorch/share/cmake/Torch /opt/libtorch/share/cmake/Torch; do
      if cmake_dir=$(config_under "$root"); then rule=system why="no LIBTORCH, Torch_DIR or python3 torch, so the system libtorch at $root"; break; fi
    done
  fi
fi

if [ -z "$rule" ]; then
  cat >&2 <<'ADVICE'
yolo26-native: no libtorch found (looked at LIBTORCH, Torch_DIR, python3's torch and the system's libtorch-dev).
  CPU (Debian 12+/Ubuntu 22.04+):  sudo apt-get install libtorch-dev libopenblas0-pthread
  GPU (NVIDIA):  pip install torch   (a CUDA build; python3 must see it), then reinstall this package,
                 or unzip a libtorch archive from pytorch.org (cxx11 ABI) and set LIBTORCH=/path/to/libtorch
ADVICE
  exit 1
fi

# The libraries: beside the config (Debian: lib/<arch>/cmake/Torch) or in <root>/lib (pip, archives).
lib_dir=""
for c in "$cmake_dir/../.." "$cmake_dir/../../../lib" "$cmake_dir/../../../../lib"; do
  if ls "$c"/libc10.so* >/dev/null 2>&1; then lib_dir=$(cd "$c" && pwd -P); break; fi
done
inc_dir=""
for c in "$cmake_dir/../../../include" "$cmake_dir/../../../../include"; do
  if [ -f "$c/torch/csrc/api/include/torch/version.h" ]; then inc_dir=$(cd "$c" && pwd -P); break; fi
done
version=unknown
if [ -n "$inc_dir" ]; then
  version=$(awk '/define TORCH_VERSION_(MAJOR|MINOR|PATCH)/ { v = v (v == "" ? "" : ".") $3 } END { print v }' \
    "$inc_dir/torch/csrc/api/include/torch/version.h")
fi

# NEEDED entries of a library (readelf when binutils is there; a byte scan otherwise).
needed() {
  if command -v readelf >/dev/null 2>&1; then
    readelf -d "$1" 2>/dev/null | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p'
  else
    grep -aoE "lib(cudart|cudnn|nccl)\.so\.[0-9]+" "$1" 2>/dev/null | sort -u
  fi
}
cuda=cpu cudnn="" nccl=""
cuda_lib=$(ls "$lib_dir"/libtorch_cuda.so* 2>/dev/null | head -n1)
if [ -n "$cuda_lib" ]; then
  deps=$(needed "$cuda_lib")
  cuda=$(printf '%s\n' "$deps" | sed -n 's/^libcudart\.so\.\([0-9.]*\)$/\1/p' | head -n1)
  cudnn=$(printf '%s\n' "$deps" | sed -n 's/^libcudnn\.so\.\([0-9.]*\)$/\1/p' | head -n1)
  nccl=$(printf '%s\n' "$deps" | sed -n 's/^libnccl\.so\.\([0-9.]*\)$/\1/p' | head -n1)
  # A fuller CUDA version where the distribution records it (pip: torch/version.py; archives: build-version).
  full=$(sed -n "s/^cuda[^=]*= *'\([0-9.]*\)'.*/\1/p" "$lib_dir/../version.py" 2>/dev/null | head -n1)
  [ -z "$full" ] && full=$(sed -n 's/.*+cu\([0-9]*\)\([0-9]\)$/\1.\2/p' "$lib_dir/../build-version" 2>/dev/null | head -n1)
  [ -n "$full" ] && cuda=$full
  [ -z "$cuda" ] && cuda=unknown
fi

q() { printf "%s='%s'\n" "$1" "$(printf '%s' "$2" | sed "s/'/'\\\\''/g")"; }
q TORCH_RULE "$rule"
q TORCH_WHY "$why"
q TORCH_CMAKE_DIR "$cmake_dir"
q TORCH_LIB_DIR "$lib_dir"
q TORCH_INCLUDE_DIR "$inc_dir"
q TORCH_VERSION "$version"
q TORCH_CUDA "$cuda"
q TORCH_CUDNN "$cudnn"
q TORCH_NCCL "$nccl"
