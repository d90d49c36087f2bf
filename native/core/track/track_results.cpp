#include "track/track_results.h"

#include <torch/torch.h>

namespace y26 {

std::vector<TrackInput> track_inputs(const Result& r) {
  std::vector<TrackInput> in(r.size());
  if (in.empty()) return in;
  const bool rotated = r.obb.defined();
  torch::Tensor b = (rotated ? r.obb : r.boxes).to(torch::kCPU, torch::kFloat32).contiguous();
  torch::Tensor conf = r.conf.to(torch::kCPU, torch::kFloat32).contiguous();
  torch::Tensor cls = r.cls.to(torch::kCPU, torch::kInt64).contiguous();
  auto ba = b.accessor<float, 2>();
  for (size_t i = 0; i < in.size(); ++i) {
    TrackInput& t = in[i];
    if (rotated) {
      t.cx = ba[i][0], t.cy = ba[i][1], t.w = ba[i][2], t.h = ba[i][3], t.angle = ba[i][4];
      t.rotated = true;
    } else {
      t.cx = (ba[i][0] + ba[i][2]) / 2.0, t.cy = (ba[i][1] + ba[i][3]) / 2.0;
      t.w = ba[i][2] - ba[i][0], t.h = ba[i][3] - ba[i][1];
    }
    t.score = conf.data_ptr<float>()[i];
    t.cls = cls.data_ptr<int64_t>()[i];
    t.idx = static_cast<int>(i);
  }
  return in;
}

void track_result(Tracker& tracker, Result& r, const cv::Mat& image) {
  const std::vector<TrackOutput> out = tracker.update(track_inputs(r), image);
  if (out.empty()) return;
  const int64_t n = static_cast<int64_t>(out.size());
  const bool rotated = r.obb.defined();
  torch::Tensor box = torch::empty({n, rotated ? 5 : 4}, torch::kFloat32);
  torch::Tensor ids = torch::empty({n}, torch::kInt64), conf = torch::empty({n}, torch::kFloat32);
  torch::Tensor cls = torch::empty({n}, torch::kInt64), idx = torch::empty({n}, torch::kInt64);
  auto ba = box.accessor<float, 2>();
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t k = 0; k < box.size(1); ++k) ba[i][k] = static_cast<float>(out[i].box[k]);
    ids[i] = out[i].id;
    conf[i] = static_cast<float>(out[i].score);
    cls[i] = out[i].cls;
    idx[i] = out[i].idx;
  }
  if (rotated) {
    r.obb = box;
    r.boxes = obb_enclosing_xyxy(box, r.orig_h, r.orig_w);
  } else {
    clip_boxes_(box, r.orig_h, r.orig_w);
    r.boxes = box;
  }
  r.ids = ids;
  r.conf = conf;
  r.cls = cls;
  if (r.keypoints.defined()) r.keypoints = r.keypoints.index_select(0, idx.to(r.keypoints.device()));
  if (r.masks.defined()) r.masks = r.masks.index_select(0, idx.to(r.masks.device()));
}

std::function<void(Result&, const cv::Mat&)> tracking_step(std::shared_ptr<SharedTracker> shared, bool persist) {
  auto last_path = std::make_shared<std::string>();
  auto first = std::make_shared<bool>(true);
  return [shared, persist, last_path, first](Result& r, const cv::Mat& image) {
    std::lock_guard<std::mutex> lock(shared->mu);
    if (!persist && (*first || r.path != *last_path)) shared->tracker.reset();
    *first = false;
    *last_path = r.path;
    track_result(shared->tracker, r, image);
  };
}

}  // namespace y26
