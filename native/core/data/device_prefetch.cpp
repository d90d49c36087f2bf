#include "data/device_prefetch.h"

namespace y26 {

DevicePrefetcher::DevicePrefetcher(Source source, torch::Device device, torch::Dtype dtype)
    : source_(std::move(source)), device_(device), dtype_(dtype), stream_(device) {}

std::optional<DeviceBatch> DevicePrefetcher::fetch() {
  DeviceBatch d;
  bool got = false;
  const bool cuda = device_.is_cuda();
  // The source runs with the side stream current: a loader built for a CUDA device copies its pinned batch with
  // non_blocking there, so the copy overlaps the training step on the main stream.
  stream_.on_side([&] {
    got = source_(d.host);
    if (!got) return;
    auto to_dev = [&](const torch::Tensor& t) { return t.defined() ? t.to(device_, /*non_blocking=*/cuda) : t; };
    d.img = to_dev(d.host.img).to(dtype_).div_(255.0);
    d.cls = to_dev(d.host.cls);
    d.bboxes = to_dev(d.host.bboxes);
    d.batch_idx = to_dev(d.host.batch_idx);
  });
  if (!got) return std::nullopt;
  return d;
}

bool DevicePrefetcher::next(DeviceBatch& out) {
  if (!primed_) {
    pending_ = fetch();
    primed_ = true;
  }
  if (!pending_) {  // end of epoch: the next call starts the following one
    primed_ = false;
    return false;
  }
  stream_.wait();
  out = std::move(*pending_);
  for (const auto* t : {&out.img, &out.cls, &out.bboxes, &out.batch_idx, &out.host.img, &out.host.cls,
                        &out.host.bboxes, &out.host.batch_idx, &out.host.keypoints})
    stream_.hand_over(*t);
  pending_ = fetch();  // the following batch's copy overlaps the step the caller is about to run
  return true;
}

}  // namespace y26
