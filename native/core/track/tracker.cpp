#include "track/tracker.h"

#include <torch/torch.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <set>
#include <unordered_set>

#include "infer/postprocess.h"
#include "track/lap.h"
#include "util/error.h"
#include "util/text.h"

namespace y26 {

enum class TrackState { New, Tracked, Lost, Removed };

struct Tracker::Track {
  int64_t id = 0;
  TrackState state = TrackState::New;
  bool activated = false;
  bool has_kf = false;
  KalmanState kf;
  std::array<double, 4> det_tlwh{};  // the detection box until the filter starts
  double angle = 0;
  bool rotated = false;
  double score = 0;
  int64_t cls = 0;
  int idx = 0;
  int frame_id = 0, start_frame = 0, tracklet_len = 0;

  std::array<double, 4> tlwh(const KalmanBoxFilter& f) const { return has_kf ? f.to_tlwh(kf.mean) : det_tlwh; }
  void take_detection(const Track& d) {
    score = d.score;
    cls = d.cls;
    angle = d.angle;
    idx = d.idx;
  }
};

using TrackPtr = std::shared_ptr<Tracker::Track>;

namespace {

void check_unit(double v, const char* key, const std::string& where) {
  if (!(v >= 0 && v <= 1)) fail(where + ": " + key + " = " + std::to_string(v) + " must be between 0 and 1");
}

// IoU of the current boxes (rotated: probabilistic IoU, as upstream), tracks a (rows) x b (cols).
std::vector<double> iou_matrix(const std::vector<TrackPtr>& a, const std::vector<TrackPtr>& b, const KalmanBoxFilter& f) {
  std::vector<double> out(a.size() * b.size(), 0.0);
  if (a.empty() || b.empty()) return out;
  if (a[0]->rotated && b[0]->rotated) {
    auto pack = [&](const std::vector<TrackPtr>& ts) {
      torch::Tensor t = torch::empty({(int64_t)ts.size(), 5}, torch::kFloat32);
      auto acc = t.accessor<float, 2>();
      for (size_t i = 0; i < ts.size(); ++i) {
        const auto b = ts[i]->tlwh(f);
        acc[i][0] = b[0] + b[2] / 2;
        acc[i][1] = b[1] + b[3] / 2;
        acc[i][2] = b[2];
        acc[i][3] = b[3];
        acc[i][4] = ts[i]->angle;
      }
      return t;
    };
    torch::Tensor m = probiou_matrix(pack(a), pack(b)).contiguous();
    const float* p = m.data_ptr<float>();
    for (size_t i = 0; i < out.size(); ++i) out[i] = p[i];
    return out;
  }
  std::vector<std::array<double, 4>> bb(b.size());
  for (size_t j = 0; j < b.size(); ++j) bb[j] = b[j]->tlwh(f);
  for (size_t i = 0; i < a.size(); ++i) {
    const auto p = a[i]->tlwh(f);
    for (size_t j = 0; j < b.size(); ++j) {
      const auto& q = bb[j];
      const double iw = std::max(0.0, std::min(p[0] + p[2], q[0] + q[2]) - std::max(p[0], q[0]));
      const double ih = std::max(0.0, std::min(p[1] + p[3], q[1] + q[3]) - std::max(p[1], q[1]));
      const double inter = iw * ih;
      out[i * b.size() + j] = inter / (p[2] * p[3] + q[2] * q[3] - inter + 1e-7);
    }
  }
  return out;
}

std::vector<double> iou_distance(const std::vector<TrackPtr>& a, const std::vector<TrackPtr>& b, const KalmanBoxFilter& f) {
  auto d = iou_matrix(a, b, f);
  for (double& v : d) v = 1 - v;
  return d;
}

// Tracks in a, then those of b whose id is not in a.
std::vector<TrackPtr> joint(const std::vector<TrackPtr>& a, const std::vector<TrackPtr>& b) {
  std::vector<TrackPtr> out = a;
  std::unordered_set<int64_t> ids;
  for (const auto& t : a) ids.insert(t->id);
  for (const auto& t : b)
    if (ids.insert(t->id).second) out.push_back(t);
  return out;
}

// Tracks of a whose id is not in b.
std::vector<TrackPtr> without(const std::vector<TrackPtr>& a, const std::vector<TrackPtr>& b) {
  std::unordered_set<int64_t> ids;
  for (const auto& t : b) ids.insert(t->id);
  std::vector<TrackPtr> out;
  for (const auto& t : a)
    if (!ids.count(t->id)) out.push_back(t);
  return out;
}

}  // namespace

void validate_tracker_config(const TrackerConfig& c, const std::string& where) {
  if (c.tracker_type != "bytetrack" && c.tracker_type != "botsort")
    fail(where + ": tracker_type '" + c.tracker_type + "' is not supported: use bytetrack or botsort");
  check_unit(c.track_high_thresh, "track_high_thresh", where);
  check_unit(c.track_low_thresh, "track_low_thresh", where);
  check_unit(c.new_track_thresh, "new_track_thresh", where);
  check_unit(c.match_thresh, "match_thresh", where);
  check_unit(c.proximity_thresh, "proximity_thresh", where);
  check_unit(c.appearance_thresh, "appearance_thresh", where);
  if (c.track_buffer < 0) fail(where + ": track_buffer must be >= 0 (got " + std::to_string(c.track_buffer) + ")");
  if (c.with_reid)
    fail(where + ": with_reid: True is not supported (this package has no ReID encoder); set with_reid: False");
  if (c.tracker_type == "botsort") CameraMotion check(c.gmc_method);  // fails on an unknown method
}

TrackerConfig load_tracker_config(const std::string& path) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    fail("tracker: cannot read " + path + ": give bytetrack.yaml, botsort.yaml or the path of a tracker YAML file");
  } catch (const YAML::Exception& e) {
    fail("tracker: " + path + " is not valid YAML: " + e.what());
  }
  if (!root.IsMap()) fail("tracker: " + path + " must be a mapping of tracker keys (tracker_type, track_high_thresh, ...)");
  TrackerConfig c;
  for (const auto& kv : root) {
    const std::string key = kv.first.as<std::string>();
    const YAML::Node& v = kv.second;
    try {
      if (key == "tracker_type") c.tracker_type = v.as<std::string>();
      else if (key == "track_high_thresh") c.track_high_thresh = v.as<double>();
      else if (key == "track_low_thresh") c.track_low_thresh = v.as<double>();
      else if (key == "new_track_thresh") c.new_track_thresh = v.as<double>();
      else if (key == "track_buffer") c.track_buffer = v.as<int>();
      else if (key == "match_thresh") c.match_thresh = v.as<double>();
      else if (key == "fuse_score") c.fuse_score = v.as<bool>();
      else if (key == "gmc_method") c.gmc_method = v.IsNull() ? "none" : v.as<std::string>();
      else if (key == "proximity_thresh") c.proximity_thresh = v.as<double>();
      else if (key == "appearance_thresh") c.appearance_thresh = v.as<double>();
      else if (key == "with_reid") c.with_reid = v.as<bool>();
      else if (key == "model") c.model = v.IsNull() ? "auto" : v.as<std::string>();
      else {
        const std::vector<std::string> keys{"tracker_type", "track_high_thresh", "track_low_thresh", "new_track_thresh",
                                            "track_buffer", "match_thresh", "fuse_score", "gmc_method", "proximity_thresh",
                                            "appearance_thresh", "with_reid", "model"};
        const std::string hint = closest_name(key, keys);
        std::string list;
        for (const auto& k : keys) list += (list.empty() ? "" : ", ") + k;
        fail("tracker: " + path + ": unknown key '" + key + "'" + (hint.empty() ? "" : " (did you mean '" + hint + "'?)") +
             "; accepted: " + list);
      }
    } catch (const YAML::Exception&) {
      fail("tracker: " + path + ": key '" + key + "' has a value of the wrong type");
    }
  }
  validate_tracker_config(c, "tracker: " + path);
  return c;
}

Tracker::Tracker(TrackerConfig cfg)
    : cfg_(std::move(cfg)),
      kf_(cfg_.tracker_type == "botsort" ? BoxCoding::XYWH : BoxCoding::XYAH),
      gmc_(cfg_.tracker_type == "botsort" ? cfg_.gmc_method : "none") {
  validate_tracker_config(cfg_, "tracker");
}

Tracker::~Tracker() = default;

void Tracker::reset() {
  reset_tracks();
  reset_motion();
}

void Tracker::reset_tracks() {
  tracked_.clear();
  lost_.clear();
  frame_id_ = 0;
  next_id_ = 0;
}

Tracker::SavedTracks Tracker::save_tracks() const {
  SavedTracks s;
  s.frame_id = frame_id_;
  s.next_id = next_id_;
  auto copy = [](const std::vector<TrackPtr>& from, std::vector<TrackPtr>& to) {
    for (const auto& t : from) to.push_back(std::make_shared<Track>(*t));
  };
  copy(tracked_, s.tracked);
  copy(lost_, s.lost);
  return s;
}

void Tracker::restore_tracks(SavedTracks s) {
  tracked_ = std::move(s.tracked);
  lost_ = std::move(s.lost);
  frame_id_ = s.frame_id;
  next_id_ = s.next_id;
}

cv::Mat Tracker::estimate_motion(const cv::Mat& image) {
  if (!gmc_.enabled() || image.empty()) return cv::Mat();
  try {
    return gmc_.apply(image);
  } catch (const cv::Exception&) {  // as upstream: a failed estimate means no camera motion
    return cv::Mat::eye(2, 3, CV_64F);
  }
}

std::vector<TrackOutput> Tracker::update(const std::vector<TrackInput>& dets, const cv::Mat& image) {
  return update_warped(dets, estimate_motion(image));
}

std::vector<TrackOutput> Tracker::update_warped(const std::vector<TrackInput>& dets, const cv::Mat& warp) {
  ++frame_id_;
  std::vector<TrackPtr> activated, refind, lost_now, removed_now;

  // Detections split by score: high ones associate first, low ones only rescue tracks left over.
  std::vector<TrackPtr> high, low;
  for (const auto& d : dets) {
    auto t = std::make_shared<Track>();
    t->det_tlwh = {d.cx - d.w / 2, d.cy - d.h / 2, d.w, d.h};
    t->angle = d.angle;
    t->rotated = d.rotated;
    t->score = d.score;
    t->cls = d.cls;
    t->idx = d.idx;
    if (d.score >= cfg_.track_high_thresh) high.push_back(t);
    else if (d.score > cfg_.track_low_thresh) low.push_back(t);
  }

  std::vector<TrackPtr> unconfirmed, confirmed;
  for (const auto& t : tracked_) (t->activated ? confirmed : unconfirmed).push_back(t);
  std::vector<TrackPtr> pool = joint(confirmed, lost_);
  for (auto& t : pool) {
    if (t->state != TrackState::Tracked) kf_.freeze_size_velocity(t->kf);
    kf_.predict(t->kf);
  }
  if (!warp.empty() && (warp.rows != 2 || warp.cols != 3 || warp.type() != CV_64F))
    fail("tracker: the camera-motion warp must be a 2x3 CV_64F matrix");
  if (!warp.empty()) {
    // The warp's 2x2 part turns every (x, y)-like pair of the state; its translation moves the centre.
    const cv::Matx22d R(warp.at<double>(0, 0), warp.at<double>(0, 1), warp.at<double>(1, 0), warp.at<double>(1, 1));
    KfMat R8 = KfMat::zeros();
    for (int b = 0; b < 4; ++b)
      for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 2; ++j) R8(2 * b + i, 2 * b + j) = R(i, j);
    for (auto* group : {&pool, &unconfirmed})
      for (auto& t : *group) {
        t->kf.mean = R8 * t->kf.mean;
        t->kf.mean[0] += warp.at<double>(0, 2);
        t->kf.mean[1] += warp.at<double>(1, 2);
        t->kf.cov = R8 * t->kf.cov * R8.t();
      }
  }

  // Cost of tracks x detections: 1 - IoU, optionally weighted by the detection score.
  auto dists = [&](const std::vector<TrackPtr>& ts, const std::vector<TrackPtr>& ds) {
    auto d = iou_distance(ts, ds, kf_);
    if (cfg_.fuse_score)
      for (size_t i = 0; i < ts.size(); ++i)
        for (size_t j = 0; j < ds.size(); ++j) d[i * ds.size() + j] = 1 - (1 - d[i * ds.size() + j]) * ds[j]->score;
    return d;
  };
  auto apply_match = [&](const TrackPtr& t, const TrackPtr& d) {
    if (t->state == TrackState::Tracked) {
      t->frame_id = frame_id_;
      ++t->tracklet_len;
      kf_.update(t->kf, kf_.from_tlwh(d->tlwh(kf_)));
      t->take_detection(*d);
      activated.push_back(t);
    } else {  // a lost track found again keeps its id
      kf_.update(t->kf, kf_.from_tlwh(d->tlwh(kf_)));
      t->tracklet_len = 0;
      t->state = TrackState::Tracked;
      t->activated = true;
      t->frame_id = frame_id_;
      t->take_detection(*d);
      refind.push_back(t);
    }
  };

  // 1. Confirmed and lost tracks against the high-score detections.
  const Assignment first = linear_assignment(dists(pool, high), (int)pool.size(), (int)high.size(), cfg_.match_thresh);
  for (auto [i, j] : first.matches) apply_match(pool[i], high[j]);

  // 2. Tracks still unmatched (and tracked last frame) against the low-score detections, by IoU only.
  std::vector<TrackPtr> remaining;
  for (int i : first.unmatched_rows)
    if (pool[i]->state == TrackState::Tracked) remaining.push_back(pool[i]);
  const Assignment second = linear_assignment(iou_distance(remaining, low, kf_), (int)remaining.size(), (int)low.size(), 0.5);
  for (auto [i, j] : second.matches) apply_match(remaining[i], low[j]);
  for (int i : second.unmatched_rows) {
    auto& t = remaining[i];
    if (t->state != TrackState::Lost) {
      t->state = TrackState::Lost;
      lost_now.push_back(t);
    }
  }

  // 3. Tracks seen in one frame only (unconfirmed) against the high-score detections left.
  std::vector<TrackPtr> left;
  for (int j : first.unmatched_cols) left.push_back(high[j]);
  const Assignment third = linear_assignment(dists(unconfirmed, left), (int)unconfirmed.size(), (int)left.size(), 0.7);
  for (auto [i, j] : third.matches) {
    auto& t = unconfirmed[i];
    t->frame_id = frame_id_;
    ++t->tracklet_len;
    kf_.update(t->kf, kf_.from_tlwh(left[j]->tlwh(kf_)));
    t->state = TrackState::Tracked;
    t->activated = true;
    t->take_detection(*left[j]);
    activated.push_back(t);
  }
  for (int i : third.unmatched_rows) {
    unconfirmed[i]->state = TrackState::Removed;
    removed_now.push_back(unconfirmed[i]);
  }

  // 4. New tracks from confident detections nobody claimed; confirmed at once only on the first frame.
  for (int j : third.unmatched_cols) {
    auto& d = left[j];
    if (d->score < cfg_.new_track_thresh) continue;
    d->id = ++next_id_;
    d->kf = kf_.initiate(kf_.from_tlwh(d->det_tlwh));
    d->has_kf = true;
    d->tracklet_len = 0;
    d->state = TrackState::Tracked;
    d->activated = frame_id_ == 1;
    d->frame_id = d->start_frame = frame_id_;
    activated.push_back(d);
  }

  // 5. Lost tracks older than the buffer are dropped.
  for (auto& t : lost_)
    if (frame_id_ - t->frame_id > cfg_.track_buffer) {
      t->state = TrackState::Removed;
      removed_now.push_back(t);
    }

  // Bookkeeping: tracked = still tracked + activated + refound; lost = old lost not found or removed + new lost.
  std::vector<TrackPtr> tracked;
  for (auto& t : tracked_)
    if (t->state == TrackState::Tracked) tracked.push_back(t);
  tracked = joint(joint(tracked, activated), refind);
  std::vector<TrackPtr> lost = without(lost_, tracked);
  lost.insert(lost.end(), lost_now.begin(), lost_now.end());
  lost.erase(std::remove_if(lost.begin(), lost.end(), [](const TrackPtr& t) { return t->state == TrackState::Removed; }), lost.end());
  // A tracked and a lost track on the same spot (IoU > 0.85) are one object: the younger one goes.
  const auto pd = iou_distance(tracked, lost, kf_);
  std::set<size_t> drop_a, drop_b;
  for (size_t p = 0; p < tracked.size(); ++p)
    for (size_t q = 0; q < lost.size(); ++q)
      if (pd[p * lost.size() + q] < 0.15) {
        const int age_p = tracked[p]->frame_id - tracked[p]->start_frame, age_q = lost[q]->frame_id - lost[q]->start_frame;
        if (age_p > age_q) drop_b.insert(q);
        else drop_a.insert(p);
      }
  tracked_.clear();
  for (size_t p = 0; p < tracked.size(); ++p)
    if (!drop_a.count(p)) tracked_.push_back(tracked[p]);
  lost_.clear();
  for (size_t q = 0; q < lost.size(); ++q)
    if (!drop_b.count(q)) lost_.push_back(lost[q]);

  std::vector<TrackOutput> out;
  for (const auto& t : tracked_) {
    if (!t->activated) continue;
    TrackOutput o;
    const auto b = t->tlwh(kf_);
    o.rotated = t->rotated;
    o.box = t->rotated ? std::array<double, 5>{b[0] + b[2] / 2, b[1] + b[3] / 2, b[2], b[3], t->angle}
                       : std::array<double, 5>{b[0], b[1], b[0] + b[2], b[1] + b[3], 0};
    o.id = t->id;
    o.score = t->score;
    o.cls = t->cls;
    o.idx = t->idx;
    out.push_back(o);
  }
  return out;
}

}  // namespace y26
