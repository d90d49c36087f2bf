// OBB validation matching as the official OBBValidator: probiou between GT and predicted rotated boxes, then the
// detection matcher at IoU 0.50:0.05:0.95; the results feed DetMetrics (OBBMetrics is DetMetrics officially).
#pragma once
#include "eval/metrics.h"

namespace y26 {

// Normalised label rotated boxes (M, 5) [cx, cy, w, h, angle] -> input pixels of an imgsz_h x imgsz_w batch:
// x and w times the width, y and h times the height, angle unchanged (the validator's _prepare_batch).
torch::Tensor rboxes_to_pixels(const torch::Tensor& rboxes, int64_t imgsz_h, int64_t imgsz_w);

// TP matrix (npred, 10) bool of one image: probiou_matrix(gt, pred) then match_predictions at iou_thresholds().
// pred_rboxes (N, 5), gt_rboxes (M, 5): [cx, cy, w, h, angle] in the same pixel space; pred_cls (N), gt_cls (M).
// All zeros when either side is empty.
torch::Tensor obb_tp(const torch::Tensor& pred_rboxes, const torch::Tensor& pred_cls, const torch::Tensor& gt_rboxes,
                     const torch::Tensor& gt_cls);

// DetMetrics fed with rotated boxes: box(P R mAP50 mAP50-95) of the OBB validator, fitness = mAP50-95.
class ObbMetrics {
 public:
  explicit ObbMetrics(std::vector<std::string> names) : det_(std::move(names)) {}
  // One image. pred_rboxes (N, 5), pred_conf (N), pred_cls (N); gt_rboxes (M, 5), gt_cls (M); same pixel space.
  void add_image(const torch::Tensor& pred_rboxes, const torch::Tensor& pred_conf, const torch::Tensor& pred_cls,
                 const torch::Tensor& gt_rboxes, const torch::Tensor& gt_cls);
  DetResults compute() const { return det_.compute(); }
  void reset() { det_.reset(); }
  int64_t images() const { return det_.images(); }
  const DetMetrics& det() const { return det_; }

 private:
  DetMetrics det_;
};

}  // namespace y26
