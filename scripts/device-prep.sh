#!/usr/bin/env bash
# Prepares .device/, the folder that travels to a GPU machine for scripts/device-check.sh. That machine has a CUDA
# torch in python3, CMake, ninja and nvcc, but no OpenCV, libjpeg-turbo or yaml-cpp development files and no
# network, so this step (run on a Debian 12 machine with network) packs them, under 64 MiB in all:
#   .device/prefix/     static OpenCV 4.6 (the modules CMakeLists.txt asks for; videoio without backends) built from Debian's
#                       source package, yaml-cpp, libturbojpeg, libjpeg, libpng and zlib as static libraries
#   .device/official/   the official trainer's source (from ULTRALYTICS_SRC, a checkout of Ultralytics 8.4.117) with
#                       thop (THOP_SRC) and a stub for polars, for the side-by-side run; skipped when ULTRALYTICS_SRC
#                       is unset (the check then reports the official runs as skipped)
# The slow OpenCV build is cached in ~/.cache/yolo26-native (about 15-25 minutes on 2 cores, once).
# Usage: bash scripts/device-prep.sh [--opencv-only]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CACHE=${YOLO26_CACHE:-$HOME/.cache/yolo26-native}
DEV=$ROOT/.device
PREFIX=$DEV/prefix
JOBS=${JOBS:-2}
ARCH_LIB=/usr/lib/x86_64-linux-gnu
mkdir -p "$CACHE"

# Debian apt without touching the system's configuration: our own source list, lists and cache.
APT_DIR=$CACHE/bookworm-apt
apt_own() {
  mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/cache/archives/partial"
  printf 'deb http://deb.debian.org/debian bookworm main\ndeb-src http://deb.debian.org/debian bookworm main\n' \
    >"$APT_DIR/sources.list"
  apt-get -q -o Dir::Etc::SourceList="$APT_DIR/sources.list" -o Dir::Etc::SourceParts=/dev/null \
    -o Dir::State::Lists="$APT_DIR/lists" -o Dir::Cache="$APT_DIR/cache" "$@"
}
apt_ready() { [ -n "$(ls "$APT_DIR/lists" 2>/dev/null | grep -m1 Sources)" ] || apt_own update >/dev/null; }

# ---- OpenCV: static, minimal, against the static libjpeg/libpng/zlib of the .debs below --------------------
DEPS=$CACHE/device-deps     # extracted .debs (headers and static libraries)
OCV_SRC=$CACHE/opencv-src
OCV_BUILD=$CACHE/opencv-min-build
OCV_INSTALL=$CACHE/opencv-min
OCV_MODULES=core,imgproc,imgcodecs,videoio,video,calib3d  # CMakeLists.txt's find_package(OpenCV ...) components
deps_debs() {
  [ -f "$DEPS/.done" ] && return
  apt_ready
  rm -rf "$DEPS" && mkdir -p "$DEPS/debs"
  (cd "$DEPS/debs" && apt_own download libjpeg62-turbo-dev libpng-dev zlib1g-dev libturbojpeg0-dev libyaml-cpp-dev >/dev/null)
  for d in "$DEPS"/debs/*.deb; do dpkg -x "$d" "$DEPS/root"; done
  touch "$DEPS/.done"
}
opencv_build() {
  [ "$(cat "$OCV_INSTALL/.done" 2>/dev/null)" = "$OCV_MODULES" ] && return  # built with this module list
  deps_debs
  if [ ! -d "$OCV_SRC/modules" ]; then
    apt_ready
    mkdir -p "$CACHE/opencv-dl" && (cd "$CACHE/opencv-dl" && apt_own source --download-only opencv >/dev/null)
    rm -rf "$OCV_SRC" && mkdir -p "$OCV_SRC"
    tar -xJf "$CACHE"/opencv-dl/opencv_*.orig.tar.xz -C "$OCV_SRC" --strip-components=1
  fi
  local D=$DEPS/root/usr
  local L=$D/lib/x86_64-linux-gnu
  # Debian's source has no 3rdparty folder: the codecs link the static libraries of the .debs above.
  cmake -S "$OCV_SRC" -B "$OCV_BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$OCV_INSTALL" \
    -DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_POSITION_INDEPENDENT_CODE=ON \
    -DBUILD_SHARED_LIBS=OFF -DBUILD_LIST="$OCV_MODULES" \
    -DBUILD_TESTS=OFF -DBUILD_PERF_TESTS=OFF -DBUILD_EXAMPLES=OFF -DBUILD_DOCS=OFF -DBUILD_opencv_apps=OFF \
    -DBUILD_JAVA=OFF -DBUILD_opencv_python3=OFF -DBUILD_opencv_python2=OFF -DOPENCV_GENERATE_PKGCONFIG=OFF \
    -DCPU_DISPATCH=AVX2 \
    -DWITH_FFMPEG=OFF -DWITH_GSTREAMER=OFF -DWITH_V4L=OFF -DWITH_1394=OFF -DWITH_GTK=OFF -DWITH_QT=OFF \
    -DWITH_TIFF=OFF -DWITH_WEBP=OFF -DWITH_OPENEXR=OFF -DWITH_JASPER=OFF -DWITH_OPENJPEG=OFF -DWITH_GDAL=OFF \
    -DWITH_GDCM=OFF -DWITH_IPP=OFF -DWITH_ITT=OFF -DWITH_OPENCL=OFF -DWITH_LAPACK=OFF -DWITH_EIGEN=OFF \
    -DWITH_PROTOBUF=OFF -DWITH_QUIRC=OFF -DWITH_ADE=OFF -DWITH_TBB=OFF -DWITH_OPENMP=OFF -DWITH_VA=OFF \
    -DWITH_VA_INTEL=OFF -DWITH_CUDA=OFF -DWITH_AVIF=OFF -DWITH_IMGCODEC_HDR=OFF -DWITH_IMGCODEC_SUNRASTER=OFF \
    -DWITH_IMGCODEC_PXM=OFF -DWITH_IMGCODEC_PFM=OFF -DVIDEOIO_ENABLE_PLUGINS=OFF \
    -DBUILD_JPEG=OFF -DBUILD_PNG=OFF -DBUILD_ZLIB=OFF \
    -DJPEG_INCLUDE_DIR="$D/include" -DJPEG_LIBRARY="$L/libjpeg.a" \
    -DPNG_PNG_INCLUDE_DIR="$D/include/libpng16" -DPNG_LIBRARY="$L/libpng16.a" \
    -DZLIB_INCLUDE_DIR="$D/include" -DZLIB_LIBRARY="$L/libz.a" >"$CACHE/opencv-configure.log"
  nice cmake --build "$OCV_BUILD" -j"$JOBS" >"$CACHE/opencv-build.log"
  cmake --install "$OCV_BUILD" >/dev/null
  echo "$OCV_MODULES" >"$OCV_INSTALL/.done"
}

# The carried prefix: OpenCV with its configuration pointed at the carried static codecs, plus yaml-cpp and
# libturbojpeg as static libraries behind a small yaml-cpp CMake configuration.
assemble_prefix() {
  local D=$DEPS/root/usr
  local L=$D/lib/x86_64-linux-gnu
  rm -rf "$PREFIX" && mkdir -p "$PREFIX/lib/cmake/yaml-cpp" "$PREFIX/include"
  cp -a "$OCV_INSTALL"/include "$OCV_INSTALL"/lib "$PREFIX"/
  cp "$L"/libjpeg.a "$L"/libpng16.a "$L"/libz.a "$L"/libturbojpeg.a "$L"/libyaml-cpp.a "$PREFIX/lib/"
  cp -a "$D"/include/yaml-cpp "$D"/include/turbojpeg.h "$PREFIX/include/"
  # OpenCV's exported link lines name the codec archives by their path here; make them prefix-relative.
  grep -rl "$L" "$PREFIX/lib/cmake" | while read -r f; do
    sed -i "s#$L/#\${OpenCV_INSTALL_PATH}/lib/#g" "$f"
  done
  grep -rl 'OpenCV_INSTALL_PATH' "$PREFIX/lib/cmake/opencv4/OpenCVModules.cmake" >/dev/null 2>&1 ||
    sed -i '1i get_filename_component(OpenCV_INSTALL_PATH "${CMAKE_CURRENT_LIST_DIR}/../../.." REALPATH)' \
      "$PREFIX/lib/cmake/opencv4/OpenCVModules.cmake"
  cat >"$PREFIX/lib/cmake/yaml-cpp/yaml-cpp-config.cmake" <<'EOF'
# yaml-cpp 0.7 as a static library (carried for the device check).
get_filename_component(_y26_prefix "${CMAKE_CURRENT_LIST_DIR}/../../.." REALPATH)
if(NOT TARGET yaml-cpp)
  add_library(yaml-cpp STATIC IMPORTED)
  set_target_properties(yaml-cpp PROPERTIES IMPORTED_LOCATION "${_y26_prefix}/lib/libyaml-cpp.a"
    INTERFACE_INCLUDE_DIRECTORIES "${_y26_prefix}/include")
endif()
set(YAML_CPP_LIBRARIES yaml-cpp)
EOF
}

# The official trainer's source for the side-by-side (never committed: .device/ is ignored).
pack_official() {
  rm -rf "$DEV/official" && mkdir -p "$DEV/official"
  if [ -z "${ULTRALYTICS_SRC:-}" ]; then
    echo "device-prep: ULTRALYTICS_SRC not set: the device check will skip the official trainer runs" >&2
    return
  fi
  [ -f "$ULTRALYTICS_SRC/ultralytics/__init__.py" ] ||
    { echo "device-prep: ULTRALYTICS_SRC=$ULTRALYTICS_SRC has no ultralytics/__init__.py; point it at a checkout of Ultralytics 8.4.117" >&2; exit 1; }
  grep -q "__version__ = \"8.4.117\"" "$ULTRALYTICS_SRC/ultralytics/__init__.py" ||
    echo "device-prep: warning: ULTRALYTICS_SRC is not version 8.4.117" >&2
  (cd "$ULTRALYTICS_SRC" && tar -cf - --exclude='__pycache__' --exclude='*.pyc' ultralytics) |
    tar -xf - -C "$DEV/official"
  if [ -n "${THOP_SRC:-}" ] && [ -d "$THOP_SRC/thop" ]; then
    cp -a "$THOP_SRC/thop" "$DEV/official/"
  else
    echo "device-prep: THOP_SRC not set: the official trainer runs without thop (it then reports no GFLOPs)" >&2
  fi
  cp "$ROOT/scripts/device/polars_stub.py" "$DEV/official/polars.py"
}

# Proves the prefix links as the core's CMakeLists finds it (only the prefix on the search path).
smoke_prefix() {
  local b=$CACHE/prefix-smoke-build
  rm -rf "$b"
  cmake -S "$ROOT/scripts/device/prefix-smoke" -B "$b" -G Ninja -DCMAKE_PREFIX_PATH="$PREFIX" \
    -DCMAKE_MAKE_PROGRAM="$(command -v ninja)" -DCMAKE_CXX_COMPILER="$(command -v g++)" \
    -DCMAKE_FIND_USE_SYSTEM_ENVIRONMENT_PATH=OFF -DCMAKE_SYSTEM_PREFIX_PATH=/nonexistent >"$b.log" 2>&1 &&
    cmake --build "$b" >>"$b.log" 2>&1 && "$b/prefix_smoke" ||
    { tail -20 "$b.log" >&2; echo "device-prep: the carried prefix does not link (log: $b.log)" >&2; exit 1; }
}

opencv_build
[ "${1:-}" = "--opencv-only" ] && exit 0
assemble_prefix
smoke_prefix
pack_official
du -sh "$DEV"
size=$(du -sm "$DEV" | cut -f1)
if [ "$size" -ge 56 ]; then
  echo "device-prep: .device is ${size} MiB; with the checkout it must stay under 64 MiB" >&2
  exit 1
fi
echo "device-prep: .device ready (${size} MiB); run on the GPU machine: bash scripts/device-check.sh OUTDIR"
