#!/bin/bash
# Device check for the model branch: build model+io against the device's libtorch 2.x, run test_model and bench.
# Usage (on a device machine, from a checkout that has the model and io sources): bash scripts/device_check_model.sh
# Builds only model + io against the python wheel's libtorch 2.x (no OpenCV needed) and runs test_model + bench_model.
R=$(pwd)
echo "repo: $R"; ls native/core/model/yolo.cpp >/dev/null 2>&1 || { echo "model sources not in this checkout"; ls native/core; exit 3; }
nvidia-smi -L; nproc
TP=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)' 2>&1) || { echo "no python torch: $TP"; exit 4; }
python3 -c 'import torch;print("torch", torch.__version__, torch.version.cuda)'
ls -d /usr/include/yaml-cpp /usr/include/opencv4 2>&1; which cmake g++ nvcc
B=/tmp/b; mkdir -p $B/shim
SRCS="$R/native/core/model/*.cpp $R/native/core/io/*.cpp $R/native/core/util/npy.cpp"
if [ -d /usr/include/opencv4 ]; then SRCS="$SRCS $R/native/core/util/error.cpp"; else
cat > $B/shim/error_shim.cpp <<'X'
#include "util/error.h"
#include <c10/util/Exception.h>
namespace y26 { std::string describe_exception(std::exception_ptr e) {
  try { std::rethrow_exception(e); } catch (const c10::Error& x) { return x.what_without_backtrace(); }
  catch (const std::exception& x) { return x.what(); } catch (...) { return "unknown error"; } } }
X
SRCS="$SRCS $B/shim/error_shim.cpp"; fi
cat > $B/CMakeLists.txt <<X
cmake_minimum_required(VERSION 3.18)
project(y26check CXX)
set(CMAKE_CXX_STANDARD 17)
set(CMAKE_BUILD_TYPE Release)
find_package(Torch REQUIRED)
find_package(yaml-cpp REQUIRED)
find_package(ZLIB REQUIRED)
find_package(OpenCV QUIET COMPONENTS core)
file(GLOB CORE $SRCS)
add_library(core STATIC \${CORE})
target_include_directories(core PUBLIC $R/native/core $R/native/tests \${OpenCV_INCLUDE_DIRS})
target_compile_definitions(core PUBLIC YOLO26_SOURCE_DIR="$R")
target_link_libraries(core PUBLIC \${TORCH_LIBRARIES} yaml-cpp ZLIB::ZLIB \${OpenCV_LIBS})
add_executable(test_model $R/native/tests/test_model.cpp)
target_link_libraries(test_model core)
add_executable(bench_model $R/native/bench/bench_model.cpp)
target_link_libraries(bench_model core)
X
cd $B && cmake -S . -B build -DCMAKE_PREFIX_PATH="$TP" > cmake.log 2>&1 || { tail -30 cmake.log; exit 5; }
time cmake --build build -j16 2>&1 | grep -E "error|Error" -A4 | head -60
cd $R
[ -x $B/build/test_model ] || exit 6
timeout 200 $B/build/test_model 2>&1 | tail -25
timeout 120 $B/build/bench_model yolo26n.yaml 640 2 20 2>&1 | tail -10
CUDA_VISIBLE_DEVICES= timeout 120 $B/build/bench_model yolo26n.yaml 640 2 10 2>&1 | tail -10
