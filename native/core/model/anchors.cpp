#include "model/anchors.h"

#include <torch/torch.h>

namespace y26 {

Anchors make_anchors(const std::vector<std::pair<int64_t, int64_t>>& grid_hw, const std::vector<double>& strides,
                     double offset, torch::Device device, torch::Dtype dtype) {
  std::vector<torch::Tensor> pts, strd;
  auto opts = torch::TensorOptions().device(device).dtype(dtype);
  for (size_t i = 0; i < grid_hw.size(); ++i) {
    auto [h, w] = grid_hw[i];
    auto sx = torch::arange(w, opts) + offset;
    auto sy = torch::arange(h, opts) + offset;
    auto grids = torch::meshgrid({sy, sx}, "ij");
    pts.push_back(torch::stack({grids[1], grids[0]}, -1).view({-1, 2}));
    strd.push_back(torch::full({h * w, 1}, strides[i], opts));
  }
  return {torch::cat(pts), torch::cat(strd)};
}

torch::Tensor dist2bbox(const torch::Tensor& distance, const torch::Tensor& anchor_points, bool xywh, int64_t dim) {
  auto lt_rb = distance.chunk(2, dim);
  auto x1y1 = anchor_points - lt_rb[0];
  auto x2y2 = anchor_points + lt_rb[1];
  if (xywh) return torch::cat({(x1y1 + x2y2) / 2, x2y2 - x1y1}, dim);
  return torch::cat({x1y1, x2y2}, dim);
}

torch::Tensor bbox2dist(const torch::Tensor& anchor_points, const torch::Tensor& bbox, double reg_max) {
  auto xy = bbox.chunk(2, -1);
  auto d = torch::cat({anchor_points - xy[0], xy[1] - anchor_points}, -1);
  if (reg_max > 1) d = d.clamp(0, reg_max - 1 - 0.01);
  return d;
}

}  // namespace y26
