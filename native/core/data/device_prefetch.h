// Keeps the next batch on the device while the current one trains: the loader's pinned uint8 batch is copied with
// non_blocking on a side stream (the loader is called with that stream current) and normalised there (/255 to
// float32, or fp16), so the copy and the conversion overlap the training step; the consumer's stream waits for it
// on the GPU, never the CPU. On the CPU the same steps run inline.
#pragma once
#include <torch/types.h>

#include <functional>
#include <memory>
#include <optional>

#include "data/loader.h"
#include "util/cuda_util.h"

namespace y26 {

struct DeviceBatch {
  Batch host;          // the loader's batch (labels, file names, the uint8 image for plots; on the device when
                       // the loader was built for it)
  torch::Tensor img;   // (B,3,H,W) on the device, normalised to [0,1] in `dtype`
  torch::Tensor cls, bboxes, batch_idx;  // label tensors on the device
};

class DevicePrefetcher {
 public:
  using Source = std::function<bool(Batch&)>;
  // source: the loader's next(); false at the end of an epoch (the prefetcher then reports the end once, after
  // handing out the batches already in flight, and starts the next epoch on the following call).
  DevicePrefetcher(Source source, torch::Device device, torch::Dtype dtype = torch::kFloat32);
  // The next batch, ready to use on the current stream; false at the end of the epoch.
  bool next(DeviceBatch& out);
  // Drops the batch in flight (before the loader is rebuilt or restarted).
  void reset() {
    pending_.reset();
    primed_ = false;
  }

 private:
  std::optional<DeviceBatch> fetch();
  Source source_;
  torch::Device device_;
  torch::Dtype dtype_;
  SideStream stream_;
  std::optional<DeviceBatch> pending_;
  bool primed_ = false;
};

}  // namespace y26
