#include "track/track_results.h"

#include <torch/torch.h>

#include <deque>
#include <future>
#include <optional>
#include <utility>

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

namespace {

// Rewrites r to the tracker's output for its frame.
void apply_tracks(const std::vector<TrackOutput>& out, Result& r) {
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

// One stream's tracking: the state its on_batch and on_result hooks share (both run on the pipeline's consumer
// thread, one batch at a time).
class StreamTracking {
 public:
  StreamTracking(std::shared_ptr<SharedTracker> shared, bool persist, bool overlap)
      : shared_(std::move(shared)), persist_(persist), overlap_(overlap) {}

  void on_batch(const std::vector<Frame>& frames) {
    forget_pending();  // left by a batch whose forward pass failed without on_batch_failed
    saved_.reset();    // the last batch went through: nothing of it to take back
    save();
    std::vector<std::pair<cv::Mat, bool>> jobs;
    for (const Frame& f : frames) {
      const bool fresh = starts_over(f.path);
      fresh_.push_back(fresh);
      jobs.emplace_back(f.image, fresh);
    }
    if (!overlap_ || !shared_->tracker.uses_motion()) return;
    own_changes_ += jobs.size();
    // The frames of a batch go through the estimator in order on one thread: each estimate needs the one before.
    motion_ = std::async(std::launch::async, [shared = shared_, jobs = std::move(jobs)] {
      std::lock_guard<std::mutex> lock(shared->motion_mu);
      std::vector<cv::Mat> warps;
      for (const auto& [image, fresh] : jobs) {
        if (fresh) shared->tracker.reset_motion();
        warps.push_back(shared->tracker.estimate_motion(image));
        ++shared->changes;
      }
      return warps;
    });
  }

  // The batch's results are lost: put back what its on_batch and on_result calls changed.
  void on_batch_failed() {
    forget_pending();
    if (!saved_) return;
    first_ = saved_->first;
    last_path_ = saved_->last_path;
    std::scoped_lock lock(shared_->mu, shared_->motion_mu);
    if (shared_->changes.load() == saved_->changes + own_changes_) {
      shared_->tracker.restore_tracks(std::move(saved_->tracks));
      shared_->tracker.restore_motion(std::move(saved_->motion));
    }
    saved_.reset();
  }

  void on_result(Result& r, const cv::Mat& image) {
    bool fresh;
    if (fresh_.empty()) {  // no on_batch for this frame
      fresh = starts_over(r.path);
    } else {
      fresh = fresh_.front();
      fresh_.pop_front();
    }
    if (motion_.valid())
      for (cv::Mat& w : motion_.get()) warps_.push_back(std::move(w));
    const std::vector<TrackInput> in = track_inputs(r);
    std::vector<TrackOutput> out;
    if (!warps_.empty()) {  // estimated during the forward pass
      const cv::Mat warp = std::move(warps_.front());
      warps_.pop_front();
      std::lock_guard<std::mutex> lock(shared_->mu);
      ++shared_->changes, ++own_changes_;  // before the update: one that throws half-way counts too
      if (fresh) shared_->tracker.reset_tracks();
      out = shared_->tracker.update_warped(in, warp);
    } else {
      std::scoped_lock lock(shared_->mu, shared_->motion_mu);
      ++shared_->changes, ++own_changes_;
      if (fresh) shared_->tracker.reset();
      out = shared_->tracker.update(in, image);
    }
    apply_tracks(out, r);
  }

 private:
  // Upstream's rule: without persist, a new path (or the first frame of the stream) starts the tracker over.
  bool starts_over(const std::string& path) {
    const bool fresh = !persist_ && (first_ || path != last_path_);
    first_ = false;
    last_path_ = path;
    return fresh;
  }
  // The state a batch may change, taken before it changes any (on_batch_failed puts it back).
  void save() {
    std::scoped_lock lock(shared_->mu, shared_->motion_mu);
    saved_.emplace(Saved{shared_->tracker.save_tracks(), shared_->tracker.save_motion(), first_, last_path_,
                         shared_->changes.load()});
    own_changes_ = 0;
  }
  void forget_pending() {
    if (motion_.valid()) motion_.wait();
    motion_ = {};
    fresh_.clear();
    warps_.clear();
  }

  std::shared_ptr<SharedTracker> shared_;
  bool persist_, overlap_;
  bool first_ = true;
  std::string last_path_;
  std::deque<bool> fresh_;                   // per frame handed to on_batch and not yet tracked: starts over
  std::future<std::vector<cv::Mat>> motion_;  // the warps of the batch in flight
  std::deque<cv::Mat> warps_;                // its warps not yet used
  struct Saved {
    Tracker::SavedTracks tracks;
    CameraMotion::Saved motion;
    bool first;
    std::string last_path;
    uint64_t changes;  // the shared tracker's count when saved
  };
  std::optional<Saved> saved_;  // before the batch in flight
  uint64_t own_changes_ = 0;    // of the shared count, this stream's since saved_
};

}  // namespace

void track_result(Tracker& tracker, Result& r, const cv::Mat& image) { apply_tracks(tracker.update(track_inputs(r), image), r); }

void attach_tracking(PipelineOptions& po, std::shared_ptr<SharedTracker> tracker, bool persist, bool overlap_motion) {
  auto stream = std::make_shared<StreamTracking>(std::move(tracker), persist, overlap_motion);
  po.on_batch = [stream](const std::vector<Frame>& frames) { stream->on_batch(frames); };
  po.on_result = [stream](Result& r, const cv::Mat& image) { stream->on_result(r, image); };
  po.on_batch_failed = [stream] { stream->on_batch_failed(); };
}

}  // namespace y26
