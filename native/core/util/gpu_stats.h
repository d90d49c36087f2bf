// GPU memory and utilisation for progress events, read through NVML (libnvidia-ml, loaded at run time so that
// CPU-only builds and machines without the driver need nothing). libtorch's own allocator counters are not in its
// CPU headers, so this reports the device's view: memory in use by every process and the busy fraction.
#pragma once
#include <optional>
#include <string>

namespace y26 {

struct GpuStats {
  double mem_used_gb = 0;   // device memory in use (all processes), GB (1e9 bytes, as the official GPU_mem column)
  double mem_total_gb = 0;
  double util_percent = 0;  // share of the last sample period in which a kernel ran (NVML utilisation.gpu)
};

// Stats of the CUDA device with this torch index ("cuda:N" -> N), honouring CUDA_VISIBLE_DEVICES; nullopt when NVML
// or the device is unavailable. Cheap enough to call once per batch (NVML calls take microseconds).
std::optional<GpuStats> gpu_stats(int cuda_index);

// The device's name ("NVIDIA H200"), or "CUDA device N" when NVML is unavailable.
std::string gpu_name(int cuda_index);

}  // namespace y26
