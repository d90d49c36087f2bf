// Rotated task-aligned assigner for OBB training: the TAL of train/assigner.h with rotated boxes (cx, cy, w, h,
// angle), probiou as the overlap, and "anchor centre inside the rotated rectangle" as the candidate rule (STAL: a
// side shorter than the smallest stride is widened to the next stride first, as for axis-aligned boxes).
#pragma once
#include "train/assigner.h"

namespace y26 {

class RotatedTaskAlignedAssigner : public TaskAlignedAssigner {
 public:
  // pd_bboxes (B, A, 5) and gt_bboxes (B, n, 5) are xywhr in input pixels, angle in radians; target_bboxes too.
  explicit RotatedTaskAlignedAssigner(AssignerOptions opts) : TaskAlignedAssigner(std::move(opts)) {}

  // (B, n, A) float 0/1: anchor_points (A, 2) px inside (borders included) each STAL-enlarged rotated GT.
  torch::Tensor candidates(const torch::Tensor& anchor_points, const torch::Tensor& gt_bboxes,
                           const torch::Tensor& mask_gt) const {
    return candidates_in_gts(anchor_points, gt_bboxes, mask_gt);
  }

 protected:
  int64_t box_dim() const override { return 5; }
  torch::Tensor candidates_in_gts(const torch::Tensor& anchor_points, const torch::Tensor& gt_bboxes,
                                  const torch::Tensor& mask_gt) const override;
  torch::Tensor pair_overlaps(const torch::Tensor& gt_pairs, const torch::Tensor& pd_pairs) const override;
};

}  // namespace y26
