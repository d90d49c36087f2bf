#include "util/cuda_util.h"

#ifdef YOLO26_CUDA
#include <c10/core/Event.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <optional>
#endif

namespace y26 {

#ifdef YOLO26_CUDA
bool built_with_cuda() { return true; }

void cuda_empty_cache() {
  if (torch::cuda::is_available()) c10::cuda::CUDACachingAllocator::emptyCache();
}

struct SideStream::Impl {
  bool cuda = false;
  std::optional<c10::cuda::CUDAStream> side;
  std::optional<c10::cuda::CUDAStreamGuard> guard;
  std::optional<c10::Event> ready;
};

SideStream::SideStream(const torch::Device& device) : impl_(std::make_unique<Impl>()) {
  impl_->cuda = device.is_cuda();
  if (!impl_->cuda) return;
  impl_->side = c10::cuda::getStreamFromPool(false, device.has_index() ? device.index() : 0);
  impl_->ready.emplace(c10::DeviceType::CUDA);
}
SideStream::~SideStream() = default;
void SideStream::enter() {
  if (impl_->cuda) impl_->guard.emplace(*impl_->side);
}
void SideStream::leave() {
  if (!impl_->cuda) return;
  impl_->ready->record(impl_->side->unwrap());
  impl_->guard.reset();
}
void SideStream::wait() {
  if (!impl_->cuda) return;
  impl_->ready->block(c10::cuda::getCurrentCUDAStream(impl_->side->device_index()).unwrap());
}
void SideStream::hand_over(const torch::Tensor& t) {
  if (impl_->cuda && t.defined() && t.is_cuda())
    t.record_stream(c10::cuda::getCurrentCUDAStream(impl_->side->device_index()).unwrap());
}
#else
bool built_with_cuda() { return false; }
void cuda_empty_cache() {}
struct SideStream::Impl {};
SideStream::SideStream(const torch::Device&) {}
SideStream::~SideStream() = default;
void SideStream::enter() {}
void SideStream::leave() {}
void SideStream::wait() {}
void SideStream::hand_over(const torch::Tensor&) {}
#endif

}  // namespace y26
