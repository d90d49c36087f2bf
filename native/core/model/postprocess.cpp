#include "model/postprocess.h"

namespace y26 {

AnchorGrid anchor_grid(const std::vector<std::pair<int64_t, int64_t>>& grid_hw, const std::vector<double>& strides,
                       torch::Device device, torch::Dtype dtype) {
  auto a = make_anchors(grid_hw, strides, 0.5, device, dtype);
  return {a.points.t().unsqueeze(0), a.strides.t()};
}

torch::Tensor decode_kpts(const torch::Tensor& raw, const AnchorGrid& a, int64_t ndim) {
  const int64_t B = raw.size(0), A = raw.size(2);
  auto k = raw.view({B, -1, ndim, A});
  auto x = (k.select(2, 0) + a.points.select(1, 0).unsqueeze(1)) * a.strides.unsqueeze(0);
  auto y = (k.select(2, 1) + a.points.select(1, 1).unsqueeze(1)) * a.strides.unsqueeze(0);
  std::vector<torch::Tensor> parts{x, y};
  if (ndim == 3) parts.push_back(k.select(2, 2).sigmoid());
  return torch::stack(parts, 2).view({B, -1, A});
}

torch::Tensor decode_rboxes(const torch::Tensor& ltrb, const torch::Tensor& angle, const AnchorGrid& a) {
  auto lt_rb = ltrb.chunk(2, 1);
  auto cs = torch::cos(angle), sn = torch::sin(angle);
  auto half = (lt_rb[1] - lt_rb[0]) / 2;
  auto xf = half.narrow(1, 0, 1), yf = half.narrow(1, 1, 1);
  auto xy = torch::cat({xf * cs - yf * sn, xf * sn + yf * cs}, 1) + a.points;
  return torch::cat({xy, lt_rb[0] + lt_rb[1]}, 1) * a.strides;
}

torch::Tensor decode_branch(const BranchOutput& b, const AnchorGrid& a, Task task, bool xywh,
                            int64_t kpt_ndim) {
  std::vector<torch::Tensor> parts;
  if (task == Task::Obb) parts.push_back(decode_rboxes(b.boxes, b.angle, a));
  else parts.push_back(dist2bbox(b.boxes, a.points, xywh, 1) * a.strides);
  parts.push_back(b.scores.sigmoid());
  if (task == Task::Segment) parts.push_back(b.mask_coef);
  else if (task == Task::Pose) parts.push_back(decode_kpts(b.kpts, a, kpt_ndim));
  else if (task == Task::Obb) parts.push_back(b.angle);
  return torch::cat(parts, 1);
}

torch::Tensor topk_end2end(const torch::Tensor& decoded, int64_t nc, int64_t max_det, torch::Tensor* anchor_index) {
  auto preds = decoded.permute({0, 2, 1});  // (B, A, C)
  const int64_t B = preds.size(0), A = preds.size(1), C = preds.size(2), extra = C - 4 - nc;
  const int64_t k = std::min(max_det, A);
  auto boxes = preds.narrow(2, 0, 4);
  auto scores = preds.narrow(2, 4, nc);
  // Stage 1: the k anchors with the best class score; stage 2: best k (anchor, class) pairs among them.
  auto anchor_idx = std::get<1>(std::get<0>(scores.max(-1)).topk(k, 1)).unsqueeze(-1);  // (B, k, 1)
  auto cand = scores.gather(1, anchor_idx.expand({B, k, nc}));
  auto top = cand.flatten(1).topk(k, 1);
  auto best = std::get<0>(top).unsqueeze(-1);
  auto flat = std::get<1>(top);
  auto cls = flat.remainder(nc).unsqueeze(-1).to(preds.scalar_type());
  auto idx = anchor_idx.squeeze(-1).gather(1, flat.div(nc, "floor")).unsqueeze(-1);  // (B, k, 1)
  if (anchor_index) *anchor_index = idx.squeeze(-1);
  std::vector<torch::Tensor> out{boxes.gather(1, idx.expand({B, k, 4})), best, cls};
  if (extra > 0) out.push_back(preds.narrow(2, 4 + nc, extra).gather(1, idx.expand({B, k, extra})));
  return torch::cat(out, -1);
}

}  // namespace y26
