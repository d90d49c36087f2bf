// What the engine runs on: libtorch build, devices, BLAS and threads. Used by doctor() and logs.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace y26 {

struct SystemInfo {
  std::string torch_version;
  std::string opencv_version;
  bool cuda_built = false;       // libtorch compiled with CUDA
  bool cuda_available = false;   // and a GPU is visible now
  int cuda_device_count = 0;
  std::string cuda_version;      // CUDA runtime libtorch was built with, "" when none
  std::string cudnn_version;
  bool cudnn_available = false;
  std::string blas;              // library actually mapped into this process
  std::string parallel_backend;  // libtorch's intra-op backend
  int intra_op_threads = 0;
  int inter_op_threads = 0;
  int hardware_threads = 0;      // logical CPUs
  int physical_cores = 0;
  bool cpu_bf16 = false;         // native bf16 arithmetic (AVX512-BF16 or AMX): `cpu_amp` training can use it
  std::string build_config;      // at::show_config()
};

SystemInfo system_info();

// Whether the CPU has native bf16 arithmetic (avx512_bf16 or amx_bf16 in /proc/cpuinfo), where oneDNN's bf16
// convolutions run about twice as fast as fp32 (what `cpu_amp` training needs).
bool cpu_has_native_bf16();

// Physical cores as the kernel reports them (falls back to logical CPUs).
int physical_core_count();

// This process's private resident memory (RssAnon: heap and anonymous pages, not shared or file mappings), in
// bytes; 0 where /proc/self/status has no such line.
uint64_t private_memory_bytes();

// Sets libtorch's intra-op threads. threads <= 0 picks the default: OMP_NUM_THREADS when set,
// else the physical cores minus the data-loading workers (at least 1).
int configure_threads(int threads, int loader_workers = 0);

// Parses a device string ("cpu", "0", "cuda:0", "0,1") into a torch device string; fails clearly
// when CUDA is asked for but not available.
std::string resolve_device(const std::string& device);

// Shape of zeros(a) @ zeros(b); a mismatch raises libtorch's own error. Lets tests prove that
// native errors reach JavaScript as Error objects.
std::vector<int64_t> debug_matmul_shape(const std::vector<int64_t>& a, const std::vector<int64_t>& b);

}  // namespace y26
