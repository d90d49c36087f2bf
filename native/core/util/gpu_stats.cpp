#include "util/gpu_stats.h"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>
#include <sstream>
#include <vector>

namespace y26 {
namespace {

// The few NVML entry points used, with the ABI of nvml.h (stable since CUDA 4).
using nvmlDevice_t = void*;
struct NvmlMemory { unsigned long long total, free, used; };
struct NvmlUtilization { unsigned int gpu, memory; };
using InitFn = int (*)();
using HandleFn = int (*)(unsigned int, nvmlDevice_t*);
using MemFn = int (*)(nvmlDevice_t, NvmlMemory*);
using UtilFn = int (*)(nvmlDevice_t, NvmlUtilization*);
using NameFn = int (*)(nvmlDevice_t, char*, unsigned int);

struct Nvml {
  bool ok = false;
  HandleFn handle = nullptr;
  MemFn memory = nullptr;
  UtilFn utilization = nullptr;
  NameFn name = nullptr;  // optional
};

const Nvml& nvml() {
  static Nvml n;
  static std::once_flag once;
  std::call_once(once, [] {
    void* lib = dlopen("libnvidia-ml.so.1", RTLD_LAZY | RTLD_LOCAL);
    if (!lib) return;
    auto init = reinterpret_cast<InitFn>(dlsym(lib, "nvmlInit_v2"));
    n.handle = reinterpret_cast<HandleFn>(dlsym(lib, "nvmlDeviceGetHandleByIndex_v2"));
    n.memory = reinterpret_cast<MemFn>(dlsym(lib, "nvmlDeviceGetMemoryInfo"));
    n.utilization = reinterpret_cast<UtilFn>(dlsym(lib, "nvmlDeviceGetUtilizationRates"));
    n.name = reinterpret_cast<NameFn>(dlsym(lib, "nvmlDeviceGetName"));
    n.ok = init && n.handle && n.memory && n.utilization && init() == 0;
  });
  return n;
}

// NVML counts physical devices; CUDA_VISIBLE_DEVICES="2,3" makes torch's cuda:0 the physical device 2.
int physical_index(int cuda_index) {
  const char* env = std::getenv("CUDA_VISIBLE_DEVICES");
  if (!env || !*env) return cuda_index;
  std::vector<int> ids;
  std::stringstream ss(env);
  std::string item;
  while (std::getline(ss, item, ',')) {
    char* end = nullptr;
    long v = std::strtol(item.c_str(), &end, 10);
    if (end == item.c_str() || *end) return -1;  // UUID or MIG names: no index mapping to offer
    ids.push_back((int)v);
  }
  return cuda_index >= 0 && cuda_index < (int)ids.size() ? ids[cuda_index] : -1;
}

nvmlDevice_t device_handle(const Nvml& n, int cuda_index) {
  if (!n.ok) return nullptr;
  const int phys = physical_index(cuda_index);
  nvmlDevice_t dev = nullptr;
  if (phys < 0 || n.handle((unsigned)phys, &dev) != 0) return nullptr;
  return dev;
}

}  // namespace

std::string gpu_name(int cuda_index) {
  const Nvml& n = nvml();
  char buf[96] = {0};
  nvmlDevice_t dev = device_handle(n, cuda_index);
  if (dev && n.name && n.name(dev, buf, sizeof(buf)) == 0) return buf;
  return "CUDA device " + std::to_string(cuda_index);
}

std::optional<GpuStats> gpu_stats(int cuda_index) {
  const Nvml& n = nvml();
  nvmlDevice_t dev = device_handle(n, cuda_index);
  if (!dev) return std::nullopt;
  NvmlMemory mem{};
  NvmlUtilization util{};
  if (n.memory(dev, &mem) != 0) return std::nullopt;
  GpuStats s;
  s.mem_used_gb = (double)mem.used / 1e9;
  s.mem_total_gb = (double)mem.total / 1e9;
  if (n.utilization(dev, &util) == 0) s.util_percent = util.gpu;
  return s;
}

}  // namespace y26
