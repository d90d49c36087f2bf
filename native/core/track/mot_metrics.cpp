#include "track/mot_metrics.h"

#include <algorithm>

#include "track/lap.h"

namespace y26 {

void MotAccumulator::add_frame(const std::vector<TruthBox>& gt, const std::vector<TrackedBox>& tr) {
  truth += static_cast<int>(gt.size());
  std::vector<double> cost(gt.size() * tr.size());
  for (size_t i = 0; i < gt.size(); ++i)
    for (size_t j = 0; j < tr.size(); ++j) {
      const double inter = (gt[i].box & tr[j].box).area();
      const double iou = inter / (gt[i].box.area() + tr[j].box.area() - inter + 1e-9);
      cost[i * tr.size() + j] = 1 - iou;
    }
  const Assignment a = linear_assignment(cost, static_cast<int>(gt.size()), static_cast<int>(tr.size()), 1 - iou_thresh_ + 1e-9);
  matches += static_cast<int>(a.matches.size());
  misses += static_cast<int>(a.unmatched_rows.size());
  false_positives += static_cast<int>(a.unmatched_cols.size());
  for (auto [i, j] : a.matches) {
    const int t = gt[i].id;
    const int64_t id = tr[j].id;
    auto it = last_id_.find(t);
    if (it != last_id_.end() && it->second != id) ++id_switches;
    last_id_[t] = id;
    auto& ids = ids_of_truth[t];
    if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
  }
}

}  // namespace y26
