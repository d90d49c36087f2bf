// Box conversions and IoU variants shared by the assigner, the loss, the validator and NMS; geometry/ sits below
// train/, eval/ and infer/ and depends on none of them.
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

// ---- rotated boxes (..., 5) [cx, cy, w, h, angle in radians] ------------------------------------------------------

// Probabilistic IoU (1 - Hellinger distance of the boxes' Gaussians, Bhattacharyya form) of obb1[i] and obb2[i]
// (both (..., 5), broadcastable) -> (..., 1), differentiable. `floor` is added to both variances (w^2/12, h^2/12):
// the OBB loss uses 0.01 to bound the gradients of sub-stride boxes; matching and NMS use 0.
// probiou_matrix (infer/postprocess.h) is this with (N,1,5) x (1,M,5) broadcasting.
torch::Tensor probiou(const torch::Tensor& obb1, const torch::Tensor& obb2, double eps = 1e-7, double floor = 0.0);

// (..., 5) -> (..., 4, 2) corners: c + u + v, c + u - v, c - u - v, c - u + v with u = w/2 (cos, sin) and
// v = h/2 (-sin, cos), the official xywhr2xyxyxyxy order.
torch::Tensor xywhr2corners(const torch::Tensor& xywhr);

}  // namespace y26
