#include "util/cpu_alloc_cache.h"

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/util/Exception.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace y26 {
namespace {

constexpr std::size_t kAlign = 64;              // c10's CPU tensor alignment
constexpr std::size_t kHeader = 64;             // size class before the user pointer; keeps it 64-aligned
constexpr std::size_t kMinCached = 64 << 10;    // smaller blocks stay in glibc's arenas, which reuse them well

struct Header {
  std::size_t cls;  // 0: not cacheable
};

// Quarter-power-of-two classes: at most 25 % slack, and the slightly varying sizes of one tensor (target counts
// change between batches) share a class.
std::size_t size_class(std::size_t n) {
  if (n < kMinCached) return 0;
  const int k = 63 - __builtin_clzll((unsigned long long)n);
  const std::size_t base = std::size_t(1) << k, step = base >> 2;
  return base + (n - base + step - 1) / step * step;
}

struct State {
  std::mutex mu;
  std::unordered_map<std::size_t, std::vector<void*>> free_blocks;  // class -> bases
  std::size_t cached = 0;
  std::size_t limit = 0;
  uint64_t hits = 0, misses = 0;
  int depth = 0;
  c10::Allocator* previous = nullptr;
  std::atomic<bool> enabled{false};
};

State& state() {
  static State* s = new State();  // never destroyed: tensors may be freed during static destruction
  return *s;
}

void release_base(void* base) { std::free(base); }

void flush_locked(State& s) {
  for (auto& [cls, v] : s.free_blocks)
    for (void* b : v) release_base(b);
  s.free_blocks.clear();
  s.cached = 0;
}

void release(void* p) {
  if (!p) return;
  void* base = static_cast<char*>(p) - kHeader;
  auto* h = static_cast<Header*>(base);
  State& s = state();
  if (h->cls && s.enabled.load(std::memory_order_relaxed)) {
    std::lock_guard<std::mutex> lk(s.mu);
    if (s.enabled.load(std::memory_order_relaxed) && s.cached + h->cls <= s.limit) {
      s.free_blocks[h->cls].push_back(base);
      s.cached += h->cls;
      return;
    }
  }
  release_base(base);
}

void* fresh(std::size_t bytes) {
  void* base = nullptr;
  if (posix_memalign(&base, kAlign, kHeader + bytes) == 0) return base;
  State& s = state();
  {
    std::lock_guard<std::mutex> lk(s.mu);  // memory is short: give the cache back and try once more
    flush_locked(s);
  }
  if (posix_memalign(&base, kAlign, kHeader + bytes) == 0) return base;
  TORCH_CHECK(false, "not enough memory: tried to allocate ", bytes, " bytes on the CPU");
  return nullptr;
}

c10::DataPtr allocate_block(std::size_t n) {
  const c10::Device cpu(c10::DeviceType::CPU);
  if (n == 0) return {nullptr, nullptr, &release, cpu};
  const std::size_t cls = size_class(n);
  void* base = nullptr;
  State& s = state();
  if (cls && s.enabled.load(std::memory_order_relaxed)) {
    std::lock_guard<std::mutex> lk(s.mu);
    auto it = s.free_blocks.find(cls);
    if (it != s.free_blocks.end() && !it->second.empty()) {
      base = it->second.back();
      it->second.pop_back();
      s.cached -= cls;
      ++s.hits;
    } else {
      ++s.misses;
    }
  }
  if (!base) base = fresh(cls ? cls : n);
  auto* h = static_cast<Header*>(base);
  h->cls = cls;
  void* p = static_cast<char*>(base) + kHeader;
  return {p, p, &release, cpu};
}

// libtorch 1.13 declares allocate() const and 2.x non-const with a pure copy_data(): defining both overloads and
// copy_data without `override` lets whichever the base declares be the override, so one source builds on both.
struct CachingAllocator final : c10::Allocator {
  c10::DataPtr allocate(std::size_t n) const { return allocate_block(n); }
  c10::DataPtr allocate(std::size_t n) { return allocate_block(n); }
  void copy_data(void* dest, const void* src, std::size_t count) const { std::memcpy(dest, src, count); }
  c10::DeleterFnPtr raw_deleter() const override { return &release; }
};

CachingAllocator& instance() {
  static CachingAllocator* a = new CachingAllocator();  // storages keep a pointer to it: it must outlive them
  return *a;
}

std::size_t quarter_of_memory() {
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? (std::size_t)pages * (std::size_t)page / 4 : (std::size_t)4 << 30;
}

bool switched_off_by_env() {
  const char* v = std::getenv("YOLO26_CPU_ALLOC_CACHE");
  return v && (std::strcmp(v, "0") == 0 || std::strcmp(v, "off") == 0 || std::strcmp(v, "false") == 0);
}

}  // namespace

CpuAllocCache::CpuAllocCache() {
  State& s = state();
  std::lock_guard<std::mutex> lk(s.mu);
  if (s.depth++ > 0) return;
  if (switched_off_by_env()) return;
  s.limit = quarter_of_memory();
  s.previous = c10::GetCPUAllocator();
  c10::SetCPUAllocator(&instance(), 0);
  // Another library may have claimed the CPU allocator with a higher priority: then nothing is cached.
  s.enabled.store(c10::GetCPUAllocator() == &instance());
}

CpuAllocCache::~CpuAllocCache() {
  State& s = state();
  std::lock_guard<std::mutex> lk(s.mu);
  if (--s.depth > 0) return;
  if (s.enabled.load()) c10::SetCPUAllocator(s.previous, 0);
  s.enabled.store(false);
  flush_locked(s);
}

CpuAllocCacheStats cpu_alloc_cache_stats() {
  State& s = state();
  std::lock_guard<std::mutex> lk(s.mu);
  CpuAllocCacheStats r;
  r.active = s.enabled.load();
  r.hits = s.hits;
  r.misses = s.misses;
  r.cached_bytes = s.cached;
  r.limit_bytes = s.limit;
  return r;
}

}  // namespace y26
