// The few CUDA runtime services the engine needs beyond libtorch's CPU headers: a side stream for host-to-device
// copies, events between streams, and the caching allocator's cache. Compiled in only when CMake found a CUDA
// libtorch (YOLO26_CUDA); in CPU builds they are no-ops, so callers need no #if.
#pragma once
#include <torch/cuda.h>
#include <torch/types.h>

#include <memory>
#include <string>

namespace y26 {

// True when this build was compiled against a CUDA libtorch (whether or not a GPU is visible now).
bool built_with_cuda();

// Frees the CUDA caching allocator's unused blocks (after an out-of-memory error, between memory probes).
void cuda_empty_cache();

// A copy stream with an event: work queued inside `on_side()` runs on the side stream; `wait()` makes the current
// stream wait for it. Without CUDA everything runs inline.
class SideStream {
 public:
  explicit SideStream(const torch::Device& device);
  ~SideStream();
  SideStream(const SideStream&) = delete;
  SideStream& operator=(const SideStream&) = delete;
  // Runs f with the side stream current, then records the event.
  template <class F> void on_side(F&& f) {
    enter();
    try { f(); } catch (...) { leave(); throw; }
    leave();
  }
  // The current stream waits (on the GPU, not the CPU) for the work queued by the last on_side().
  void wait();
  // Tells the caching allocator that t, made on the side stream, is now used on the current stream.
  void hand_over(const torch::Tensor& t);

 private:
  void enter();
  void leave();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace y26
