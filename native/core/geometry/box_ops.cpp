#include "geometry/box_ops.h"

#include "util/error.h"

#include <torch/torch.h>

#include <array>
#include <cmath>

namespace y26 {

std::string shape_str(const torch::Tensor& t) { return t.defined() ? c10::str(t.sizes()) : "<undefined>"; }

namespace {
void require_last4(const torch::Tensor& t, const char* fn) {
  if (!t.defined() || t.dim() < 1 || t.size(-1) != 4)
    fail(std::string(fn) + ": expected boxes with a last dimension of 4, got shape " +
         shape_str(t) + "; pass (..., 4) box tensors");
}
}  // namespace

torch::Tensor xywh2xyxy(const torch::Tensor& x) {
  require_last4(x, "xywh2xyxy");
  auto y = torch::empty_like(x);
  auto xy = x.narrow(-1, 0, 2);
  auto half_wh = x.narrow(-1, 2, 2) / 2;
  y.narrow(-1, 0, 2).copy_(xy - half_wh);
  y.narrow(-1, 2, 2).copy_(xy + half_wh);
  return y;
}

torch::Tensor xyxy2xywh(const torch::Tensor& x) {
  require_last4(x, "xyxy2xywh");
  auto y = torch::empty_like(x);
  auto c = [&](int64_t i) { return x.select(-1, i); };
  y.select(-1, 0).copy_((c(0) + c(2)) / 2);
  y.select(-1, 1).copy_((c(1) + c(3)) / 2);
  y.select(-1, 2).copy_(c(2) - c(0));
  y.select(-1, 3).copy_(c(3) - c(1));
  return y;
}

torch::Tensor bbox_iou(const torch::Tensor& box1, const torch::Tensor& box2, IouKind kind, bool xywh, double eps) {
  require_last4(box1, "bbox_iou");
  require_last4(box2, "bbox_iou");
  torch::Tensor b1_x1, b1_y1, b1_x2, b1_y2, b2_x1, b2_y1, b2_x2, b2_y2, w1, h1, w2, h2;
  if (xywh) {
    auto p = box1.chunk(4, -1), q = box2.chunk(4, -1);
    auto w1_ = p[2] / 2, h1_ = p[3] / 2, w2_ = q[2] / 2, h2_ = q[3] / 2;
    b1_x1 = p[0] - w1_; b1_x2 = p[0] + w1_; b1_y1 = p[1] - h1_; b1_y2 = p[1] + h1_;
    b2_x1 = q[0] - w2_; b2_x2 = q[0] + w2_; b2_y1 = q[1] - h2_; b2_y2 = q[1] + h2_;
  } else {
    auto p = box1.chunk(4, -1), q = box2.chunk(4, -1);
    b1_x1 = p[0]; b1_y1 = p[1]; b1_x2 = p[2]; b1_y2 = p[3];
    b2_x1 = q[0]; b2_y1 = q[1]; b2_x2 = q[2]; b2_y2 = q[3];
  }
  // eps only on the heights, as the reference does: it keeps w/h finite for the CIoU aspect term.
  w1 = b1_x2 - b1_x1; h1 = b1_y2 - b1_y1 + eps;
  w2 = b2_x2 - b2_x1; h2 = b2_y2 - b2_y1 + eps;

  auto inter = (b1_x2.minimum(b2_x2) - b1_x1.maximum(b2_x1)).clamp_(0) *
               (b1_y2.minimum(b2_y2) - b1_y1.maximum(b2_y1)).clamp_(0);
  auto uni = w1 * h1 + w2 * h2 - inter + eps;
  auto iou = inter / uni;
  if (kind == IouKind::IoU) return iou;

  auto cw = b1_x2.maximum(b2_x2) - b1_x1.minimum(b2_x1);  // enclosing box
  auto ch = b1_y2.maximum(b2_y2) - b1_y1.minimum(b2_y1);
  if (kind == IouKind::GIoU) {
    auto c_area = cw * ch + eps;
    return iou - (c_area - uni) / c_area;
  }
  auto c2 = cw.pow(2) + ch.pow(2) + eps;
  auto rho2 = ((b2_x1 + b2_x2 - b1_x1 - b1_x2).pow(2) + (b2_y1 + b2_y2 - b1_y1 - b1_y2).pow(2)) / 4;
  if (kind == IouKind::DIoU) return iou - rho2 / c2;

  auto v = (4.0 / (M_PI * M_PI)) * ((w2 / h2).atan() - (w1 / h1).atan()).pow(2);
  torch::Tensor alpha;
  {
    torch::NoGradGuard no_grad;  // CIoU paper: alpha is a trade-off weight, not optimised
    alpha = v / (v - iou + (1.0 + eps));
  }
  return iou - (rho2 / c2 + v * alpha);
}

torch::Tensor box_iou_matrix(const torch::Tensor& a, const torch::Tensor& b, double eps) {
  require_last4(a, "box_iou_matrix");
  require_last4(b, "box_iou_matrix");
  auto a12 = a.unsqueeze(1).chunk(2, 2), b12 = b.unsqueeze(0).chunk(2, 2);
  auto inter = (torch::min(a12[1], b12[1]) - torch::max(a12[0], b12[0])).clamp_(0).prod(2);
  return inter / ((a12[1] - a12[0]).prod(2) + (b12[1] - b12[0]).prod(2) - inter + eps);
}

torch::Tensor probiou(const torch::Tensor& obb1, const torch::Tensor& obb2, double eps, double floor) {
  if (!obb1.defined() || !obb2.defined() || obb1.dim() < 1 || obb2.dim() < 1 || obb1.size(-1) != 5 ||
      obb2.size(-1) != 5)
    fail("probiou: expected rotated boxes (..., 5) [cx, cy, w, h, angle], got " + shape_str(obb1) + " and " +
         shape_str(obb2));
  // Gaussian of each box: covariance [[a, c], [c, b]] of the rotated uniform rectangle.
  auto covariance = [floor](const torch::Tensor& r) {
    auto var = r.narrow(-1, 2, 2).pow(2) / 12 + floor;
    auto vw = var.narrow(-1, 0, 1), vh = var.narrow(-1, 1, 1);
    auto ang = r.narrow(-1, 4, 1);
    auto cs = ang.cos(), sn = ang.sin();
    auto cs2 = cs.pow(2), sn2 = sn.pow(2);
    return std::array<torch::Tensor, 3>{vw * cs2 + vh * sn2, vw * sn2 + vh * cs2, (vw - vh) * cs * sn};
  };
  auto [a1, b1, c1] = covariance(obb1);
  auto [a2, b2, c2] = covariance(obb2);
  auto x1 = obb1.narrow(-1, 0, 1), y1 = obb1.narrow(-1, 1, 1);
  auto x2 = obb2.narrow(-1, 0, 1), y2 = obb2.narrow(-1, 1, 1);
  auto sa = a1 + a2, sb = b1 + b2, sc = c1 + c2;
  auto det = sa * sb - sc.pow(2);
  auto t1 = (sa * (y1 - y2).pow(2) + sb * (x1 - x2).pow(2)) / (det + eps) * 0.25;
  auto t2 = (sc * (x2 - x1) * (y1 - y2)) / (det + eps) * 0.5;
  auto t3 = (det / (4 * ((a1 * b1 - c1.pow(2)).clamp_min(0) * (a2 * b2 - c2.pow(2)).clamp_min(0)).sqrt() + eps) + eps)
                .log() * 0.5;
  auto bd = (t1 + t2 + t3).clamp(eps, 100.0);
  return 1 - (1 - (-bd).exp() + eps).sqrt();
}

torch::Tensor xywhr2corners(const torch::Tensor& x) {
  if (!x.defined() || x.dim() < 1 || x.size(-1) != 5)
    fail("xywhr2corners: expected rotated boxes (..., 5) [cx, cy, w, h, angle], got " + shape_str(x));
  auto ctr = x.narrow(-1, 0, 2);
  auto w = x.narrow(-1, 2, 1), h = x.narrow(-1, 3, 1), ang = x.narrow(-1, 4, 1);
  auto cs = ang.cos(), sn = ang.sin();
  auto u = torch::cat({w / 2 * cs, w / 2 * sn}, -1);
  auto v = torch::cat({-h / 2 * sn, h / 2 * cs}, -1);
  return torch::stack({ctr + u + v, ctr + u - v, ctr - u - v, ctr - u + v}, -2);
}

}  // namespace y26
