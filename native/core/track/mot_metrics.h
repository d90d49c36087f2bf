// MOTA-style scoring of tracker output against ground truth: per frame, truth and tracks are matched one-to-one
// by IoU (>= 0.5, best total IoU); unmatched truth are misses, unmatched tracks false positives, and a truth object
// matched to a different track id than the last time it was matched is an identity switch.
#pragma once
#include <opencv2/core.hpp>

#include <map>
#include <vector>

#include "track/scene.h"

namespace y26 {

struct TrackedBox {
  int64_t id = 0;
  cv::Rect2d box;
};

class MotAccumulator {
 public:
  MotAccumulator() = default;
  explicit MotAccumulator(double iou_thresh) : iou_thresh_(iou_thresh) {}
  void add_frame(const std::vector<TruthBox>& truth, const std::vector<TrackedBox>& tracks);

  int truth = 0, matches = 0, misses = 0, false_positives = 0, id_switches = 0;
  double mota() const { return truth ? 1.0 - double(misses + false_positives + id_switches) / truth : 1.0; }
  // Distinct track ids ever matched to each truth id (1 everywhere = no fragmentation).
  std::map<int, std::vector<int64_t>> ids_of_truth;

 private:
  double iou_thresh_ = 0.5;
  std::map<int, int64_t> last_id_;
};

}  // namespace y26
