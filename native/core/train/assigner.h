// Task-aligned assigner (TAL) with the small-target-aware candidate rule (STAL) of YOLO26.
// Picks, per ground-truth box, the anchors whose predictions best combine class score and CIoU, and builds the
// soft classification targets the detection loss trains on. All inputs in input-image pixels.
#pragma once
#include <torch/types.h>

#include <vector>

namespace y26 {

struct AssignerResult {
  torch::Tensor target_labels;  // (B, A) int64, class of the assigned GT (GT 0's class on background anchors)
  torch::Tensor target_bboxes;  // (B, A, 4) xyxy pixels of the assigned GT
  torch::Tensor target_scores;  // (B, A, nc) float soft one-hot (0 on background)
  torch::Tensor fg_mask;        // (B, A) bool, anchor is positive
  torch::Tensor target_gt_idx;  // (B, A) int64, index of the assigned GT within its image
};

struct AssignerOptions {
  int64_t topk = 13;
  int64_t topk2 = 0;  // 0 = same as topk (no second narrowing); one2one uses topk 7, topk2 1
  int64_t num_classes = 80;
  double alpha = 1.0;  // score exponent
  double beta = 6.0;   // CIoU exponent
  double eps = 1e-9;
  std::vector<double> strides{8, 16, 32};  // STAL: GT sides < strides[0] count as strides[1] for the centre test
  // Images are assigned in chunks so that chunk * n_max_gt * anchors stays below this many elements
  // (dense scenes at high resolution would otherwise build multi-GB (B, n_gt, A) tensors).
  int64_t max_pair_elements = int64_t(1) << 26;
};

class TaskAlignedAssigner {
 public:
  explicit TaskAlignedAssigner(AssignerOptions opts);
  virtual ~TaskAlignedAssigner() = default;

  // pd_scores (B, A, nc) probabilities (sigmoid applied), pd_bboxes (B, A, 4) xyxy px, anchor_points (A, 2) px,
  // gt_labels (B, n, 1), gt_bboxes (B, n, 4) xyxy px, mask_gt (B, n, 1) 1 for real GT rows, 0 for padding.
  // (Boxes are (.., 5) xywhr px in the rotated assigner; target_bboxes then too.)
  // Runs without gradient.
  AssignerResult operator()(const torch::Tensor& pd_scores, const torch::Tensor& pd_bboxes,
                            const torch::Tensor& anchor_points, const torch::Tensor& gt_labels,
                            const torch::Tensor& gt_bboxes, const torch::Tensor& mask_gt) const;

  const AssignerOptions& options() const { return opts_; }

 protected:
  // The hooks a box representation changes (train/rotated_assigner.h: rotated boxes, probiou, inside-polygon test).
  virtual int64_t box_dim() const { return 4; }  // values per box: xyxy
  // (B, n, A) float 0/1: anchor centre inside the (STAL-enlarged) GT.
  virtual torch::Tensor candidates_in_gts(const torch::Tensor& anchor_points, const torch::Tensor& gt_bboxes,
                                          const torch::Tensor& mask_gt) const;
  // (P) overlap of paired GT and predicted boxes (P, box_dim), clamped at 0: CIoU here.
  virtual torch::Tensor pair_overlaps(const torch::Tensor& gt_pairs, const torch::Tensor& pd_pairs) const;

 private:
  AssignerResult assign_batch(const torch::Tensor& pd_scores, const torch::Tensor& pd_bboxes,
                              const torch::Tensor& anchor_points, const torch::Tensor& gt_labels,
                              const torch::Tensor& gt_bboxes, const torch::Tensor& mask_gt) const;
  AssignerResult assign_chunk(const torch::Tensor& pd_scores, const torch::Tensor& pd_bboxes,
                              const torch::Tensor& anchor_points, const torch::Tensor& gt_labels,
                              const torch::Tensor& gt_bboxes, const torch::Tensor& mask_gt) const;
  AssignerOptions opts_;
};

}  // namespace y26
