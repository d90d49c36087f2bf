#include "util/system.h"

#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <torch/cuda.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <dlfcn.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "util/error.h"
#include "util/cuda_util.h"
#include "util/gpu_stats.h"

#ifndef YOLO26_OPENCV_VERSION
#define YOLO26_OPENCV_VERSION "unknown"
#endif

namespace y26 {

static std::string version_string(long v, bool cudnn) {
  if (v <= 0) return "";
  if (cudnn) {  // cuDNN 8: 8xyz -> 8.x.yz; cuDNN 9: 9xyzz
    long major = v >= 10000 ? v / 10000 : v / 1000;
    long rest = v >= 10000 ? v % 10000 : v % 1000;
    long minor = v >= 10000 ? rest / 100 : rest / 100;
    return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(rest % 100);
  }
  return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
}

static std::string mapped_blas() {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  std::set<std::string> libs;
  while (std::getline(maps, line)) {
    auto pos = line.find('/');
    if (pos == std::string::npos) continue;
    std::string path = line.substr(pos);
    if (path.find("openblas") != std::string::npos || path.find("libmkl") != std::string::npos ||
        path.find("blis") != std::string::npos || path.find("libblas") != std::string::npos ||
        path.find("atlas") != std::string::npos)
      libs.insert(path);
  }
  for (auto& p : libs)
    if (p.find("openblas") != std::string::npos) return "OpenBLAS (" + p + ")";
  for (auto& p : libs)
    if (p.find("mkl") != std::string::npos) return "MKL (" + p + ")";
  for (auto& p : libs)
    if (p.find("blis") != std::string::npos) return "BLIS (" + p + ")";
  for (auto& p : libs)
    if (p.find("atlas") != std::string::npos) return "ATLAS (" + p + ")";
  for (auto& p : libs)
    if (p.find("/blas/") != std::string::npos) return "reference BLAS (" + p + ")";
  if (!libs.empty()) return *libs.begin();
  return "none mapped";
}

bool cpu_has_native_bf16() {
  static const bool has = [] {
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line))
      if (line.rfind("flags", 0) == 0)
        return line.find(" avx512_bf16") != std::string::npos || line.find(" amx_bf16") != std::string::npos;
    return false;
  }();
  return has;
}

int physical_core_count() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  std::set<std::pair<std::string, std::string>> cores;
  std::string phys = "0", core;
  while (std::getline(f, line)) {
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string key = line.substr(0, line.find_last_not_of(" \t", colon - 1) + 1);
    std::string val = colon + 2 <= line.size() ? line.substr(colon + 2) : "";
    if (key == "physical id") phys = val;
    if (key == "core id") cores.insert({phys, val});
  }
  int logical = (int)std::thread::hardware_concurrency();
  if (cores.empty()) return logical > 0 ? logical : 1;
  return (int)cores.size();
}

uint64_t private_memory_bytes() {
  std::ifstream f("/proc/self/status");
  std::string key;
  while (f >> key) {
    if (key == "RssAnon:") {
      uint64_t kb = 0;
      f >> kb;
      return kb << 10;
    }
    f.ignore(1 << 12, '\n');
  }
  return 0;
}

SystemInfo system_info() {
  SystemInfo s;
  s.torch_version = TORCH_VERSION;
  s.opencv_version = YOLO26_OPENCV_VERSION;
  s.cuda_built = at::hasCUDA();
  s.cuda_available = torch::cuda::is_available();
  s.cuda_device_count = s.cuda_available ? (int)torch::cuda::device_count() : 0;
  if (s.cuda_built) {
    try {
      s.cuda_version = version_string(at::detail::getCUDAHooks().versionCUDART(), false);
      s.cudnn_version = version_string(at::detail::getCUDAHooks().versionCuDNN(), true);
    } catch (...) {
      // The CUDA hooks throw when libtorch_cuda is not loaded; leave the versions empty.
    }
  }
  s.cudnn_available = s.cuda_available && torch::cuda::cudnn_is_available();
  s.blas = mapped_blas();
  s.parallel_backend = at::get_parallel_info();
  auto nl = s.parallel_backend.find("ATen parallel backend:");
  if (nl != std::string::npos) {
    auto end = s.parallel_backend.find('\n', nl);
    s.parallel_backend = s.parallel_backend.substr(nl + 23, end - nl - 23);
  }
  s.intra_op_threads = at::get_num_threads();
  s.inter_op_threads = at::get_num_interop_threads();
  s.hardware_threads = (int)std::thread::hardware_concurrency();
  s.physical_cores = physical_core_count();
  s.cpu_bf16 = cpu_has_native_bf16();
  s.build_config = at::show_config();
  return s;
}

int configure_threads(int threads, int loader_workers) {
  int n = threads;
  if (n <= 0) {
    const char* omp = std::getenv("OMP_NUM_THREADS");
    if (omp && std::atoi(omp) > 0) n = std::atoi(omp);
  }
  if (n <= 0) n = std::max(1, physical_core_count() - std::max(0, loader_workers));
  at::set_num_threads(n);
  return at::get_num_threads();
}

// Where the loaded libtorch lives (the shared object holding its CPU kernels), for error messages.
static std::string libtorch_location() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&at::get_num_threads), &info) && info.dli_fname) return info.dli_fname;
  return "(linked statically)";
}

std::string resolve_device(const std::string& device_in) {
  std::string d = device_in;
  for (auto& c : d) c = (char)std::tolower(c);
  d.erase(std::remove_if(d.begin(), d.end(), [](char c) { return std::isspace((unsigned char)c); }), d.end());
  if (d.empty() || d == "cpu") return "cpu";
  if (d == "mps") fail("device 'mps' is not supported by this engine; use 'cpu' or a CUDA index such as '0'");
  std::string idx = d;
  if (idx.rfind("cuda", 0) == 0) idx = idx.size() > 5 ? idx.substr(5) : "0";
  if (idx.empty() || idx.find_first_not_of("0123456789,") != std::string::npos || idx.front() == ',' ||
      idx.back() == ',' || idx.find(",,") != std::string::npos)
    fail("device '" + device_in + "' is not valid: use 'cpu', '0', '0,1' or 'cuda:0'");
  if (idx.find(',') != std::string::npos)
    fail("device '" + device_in + "' asks for several GPUs, but multi-GPU training runs one process per GPU: the Node "
         "package's train() starts one process per GPU; elsewhere start one rank per GPU with the torchrun variables "
         "(RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), or pass one GPU (device='0') or 'cpu'");
  if (!torch::cuda::is_available()) {
    const std::string lib = "libtorch " TORCH_VERSION " (" + libtorch_location() + ")";
    if (!at::hasCUDA() && !built_with_cuda())
      fail("device '" + device_in + "' asks for CUDA, but the " + lib +
           " this addon was built against is a CPU-only build. Build against a CUDA libtorch: install a CUDA "
           "PyTorch for python3 (pip install torch) or point LIBTORCH at an unpacked CUDA libtorch, then rebuild "
           "(npm rebuild yolo26-native); or use device='cpu'");
    fail("device '" + device_in + "' asks for CUDA, but " + lib +
         " sees no CUDA GPU (no NVIDIA driver loaded, or CUDA_VISIBLE_DEVICES hides them): check nvidia-smi, "
         "or use device='cpu'");
  }
  const int count = (int)torch::cuda::device_count();
  const int i = std::stoi(idx);
  if (i >= count) {
    std::string list;
    for (int k = 0; k < count; ++k) list += (k ? ", " : "") + std::to_string(k) + ": " + gpu_name(k);
    fail("device '" + device_in + "': CUDA device " + idx + " does not exist; the visible GPUs are " + list);
  }
  return "cuda:" + idx;
}

std::vector<int64_t> debug_matmul_shape(const std::vector<int64_t>& a, const std::vector<int64_t>& b) {
  auto r = torch::matmul(torch::zeros(a), torch::zeros(b));
  return std::vector<int64_t>(r.sizes().begin(), r.sizes().end());
}

}  // namespace y26
