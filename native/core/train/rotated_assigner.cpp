#include "train/rotated_assigner.h"

#include "geometry/box_ops.h"

#include <torch/torch.h>

namespace y26 {

torch::Tensor RotatedTaskAlignedAssigner::candidates_in_gts(const torch::Tensor& anchor_points,
                                                            const torch::Tensor& gt_bboxes,
                                                            const torch::Tensor& mask_gt) const {
  const auto& o = options();
  // STAL on the rotated sides: each side under the smallest stride becomes the next stride (centre and angle kept).
  auto boxes = gt_bboxes.clone();
  auto wh = boxes.narrow(-1, 2, 2);
  const double grown = o.strides.size() > 1 ? o.strides[1] : o.strides[0];
  auto small = ((wh < o.strides[0]) * mask_gt).to(torch::kBool);
  wh.copy_(torch::where(small, torch::full({}, grown, boxes.options()), wh));

  // Inside test by projection on the two edges from corner a: 0 <= ap.ab <= |ab|^2 and 0 <= ap.ad <= |ad|^2.
  auto corners = xywhr2corners(boxes);        // (B, n, 4, 2)
  auto a = corners.select(2, 0).unsqueeze(2);  // (B, n, 1, 2)
  auto ab = corners.select(2, 1).unsqueeze(2) - a;
  auto ad = corners.select(2, 3).unsqueeze(2) - a;
  auto ap = anchor_points.view({1, 1, -1, 2}) - a;  // (B, n, A, 2)
  auto ap_ab = (ap * ab).sum(-1), ap_ad = (ap * ad).sum(-1);
  auto inside = (ap_ab >= 0) & (ap_ab <= (ab * ab).sum(-1)) & (ap_ad >= 0) & (ap_ad <= (ad * ad).sum(-1));
  return inside.to(gt_bboxes.scalar_type());
}

torch::Tensor RotatedTaskAlignedAssigner::pair_overlaps(const torch::Tensor& gt_pairs,
                                                        const torch::Tensor& pd_pairs) const {
  return probiou(gt_pairs, pd_pairs).squeeze(-1).clamp_(0);
}

}  // namespace y26
