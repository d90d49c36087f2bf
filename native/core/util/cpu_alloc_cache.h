// A caching CPU allocator for libtorch, switched on while training on the CPU.
//
// Every training iteration frees and re-allocates the same large activation and gradient buffers. glibc hands big
// blocks back to the kernel (mmap / heap trimming), so each iteration page-faults and zero-fills them again: about
// 1.4 million minor faults and 12 % of the process CPU time at imgsz 320, batch 16 on 2 cores. While a
// CpuAllocCache scope is alive, freed blocks of 64 KiB and more are kept by size class and handed out again.
#pragma once
#include <cstddef>
#include <cstdint>

namespace y26 {

// RAII: the first live scope installs the caching allocator as libtorch's CPU allocator; the last one frees every
// cached block and restores the previous allocator. Tensors allocated meanwhile stay valid after that.
// YOLO26_CPU_ALLOC_CACHE=0 in the environment leaves libtorch's allocator alone.
class CpuAllocCache {
 public:
  CpuAllocCache();
  ~CpuAllocCache();
  CpuAllocCache(const CpuAllocCache&) = delete;
  CpuAllocCache& operator=(const CpuAllocCache&) = delete;
};

struct CpuAllocCacheStats {
  bool active = false;          // a scope is alive and libtorch uses the caching allocator
  uint64_t hits = 0;            // allocations served from the cache (since the process started)
  uint64_t misses = 0;          // cacheable allocations that needed new memory
  std::size_t cached_bytes = 0; // free blocks held right now
  std::size_t limit_bytes = 0;  // most free bytes it holds (a quarter of physical memory)
};

CpuAllocCacheStats cpu_alloc_cache_stats();

}  // namespace y26
