// Box conversions and IoU variants used by the assigner, the loss and the validator.
// Formulas and operation order follow the reference (Ultralytics utils/ops.py, utils/metrics.py) so that
// float32 results match it bit for bit where the kernels are the same.
#pragma once
#include <torch/types.h>

#include <string>

namespace y26 {

// (..., 4) centre x, centre y, width, height <-> (..., 4) x1, y1, x2, y2. Any float dtype, any device.
torch::Tensor xywh2xyxy(const torch::Tensor& xywh);
torch::Tensor xyxy2xywh(const torch::Tensor& xyxy);

enum class IouKind { IoU, GIoU, DIoU, CIoU };

// Elementwise IoU of box1[i] and box2[i] (both (..., 4), broadcastable), returns (..., 1).
// eps 1e-7 as in the reference; for CIoU the aspect weight alpha is computed without gradient.
torch::Tensor bbox_iou(const torch::Tensor& box1, const torch::Tensor& box2, IouKind kind = IouKind::IoU,
                       bool xywh = false, double eps = 1e-7);

// "[2, 4]" or "<undefined>": tensor shapes for the train/ error messages.
std::string shape_str(const torch::Tensor& t);

// Pairwise IoU matrix of xyxy boxes a (N, 4) and b (M, 4) -> (N, M), as the validator's matcher uses it.
torch::Tensor box_iou_matrix(const torch::Tensor& a, const torch::Tensor& b, double eps = 1e-7);

}  // namespace y26
