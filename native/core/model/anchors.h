// Anchor points and the distance <-> box conversions shared by the head, the loss and the exporter.
#pragma once
#include <torch/types.h>

#include <vector>

namespace y26 {

struct Anchors {
  torch::Tensor points;   // (A, 2) cell centres (x+offset, y+offset) in grid units, levels P3..P5 row-major
  torch::Tensor strides;  // (A, 1) stride of each anchor's level
};

// Grid sizes come from the feature maps (H_i, W_i); strides per level (8, 16, 32).
Anchors make_anchors(const std::vector<std::pair<int64_t, int64_t>>& grid_hw, const std::vector<double>& strides,
                     double offset = 0.5, torch::Device device = torch::kCPU, torch::Dtype dtype = torch::kFloat32);

// distance (..., 4 as l,t,r,b along `dim`) + anchor points -> xyxy (or xywh when xywh=true), same units.
torch::Tensor dist2bbox(const torch::Tensor& distance, const torch::Tensor& anchor_points, bool xywh, int64_t dim = -1);

// xyxy boxes -> (l,t,r,b) distances from the anchor points; reg_max == 1 means no clamping.
torch::Tensor bbox2dist(const torch::Tensor& anchor_points, const torch::Tensor& bbox, double reg_max = -1);

}  // namespace y26
