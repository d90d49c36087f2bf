// Decode of raw head outputs and the end-to-end two-stage top-k: the one place predict, val and export use.
#pragma once
#include "model/anchors.h"
#include "model/heads.h"

namespace y26 {

// Anchors for feature maps of the given sizes, laid out for (B, C, A) tensors: points (2, A), strides (1, A).
struct AnchorGrid {
  torch::Tensor points, strides;
};
AnchorGrid anchor_grid(const std::vector<std::pair<int64_t, int64_t>>& grid_hw, const std::vector<double>& strides,
                       torch::Device device, torch::Dtype dtype);

// Pose keypoints (B, nk*ndim, A) raw -> pixels: x = (raw_x + ax) * s, y likewise, v = sigmoid(raw_v).
torch::Tensor decode_kpts(const torch::Tensor& raw, const AnchorGrid& a, int64_t ndim);

// Rotated boxes: centre = anchor + R(angle)((r-l)/2, (b-t)/2), w = l+r, h = t+b, all x stride -> (B, 4, A) xywh.
torch::Tensor decode_rboxes(const torch::Tensor& ltrb, const torch::Tensor& angle, const AnchorGrid& a);

// One branch -> (B, 4 + nc + extra, A): boxes in input pixels (xyxy, or xywh when `xywh`; obb always
// xywh + angle at the end), sigmoid scores, then mask coefficients / decoded keypoints / angle.
torch::Tensor decode_branch(const BranchOutput& b, const AnchorGrid& a, Task task, bool xywh,
                            int64_t kpt_ndim = 3);

// End-to-end selection on decoded (B, 4 + nc + extra, A): top-k anchors by max class score, then top-k over
// their k*nc scores; k = min(max_det, A). Returns (B, k, 6 + extra) = box, score, class, extra; by score.
// `anchor_index` (optional) receives the (B, k) anchor behind each row.
torch::Tensor topk_end2end(const torch::Tensor& decoded, int64_t nc, int64_t max_det = 300,
                           torch::Tensor* anchor_index = nullptr);

}  // namespace y26
