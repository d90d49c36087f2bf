#include "train/obb_loss.h"

#include "model/anchors.h"
#include "model/postprocess.h"
#include "geometry/box_ops.h"
#include "util/error.h"

#include <torch/torch.h>

#include <cmath>

namespace y26 {

namespace {
constexpr double kPi = 3.14159265358979323846;

// (h, w) -> (w, h, w, h): per-coordinate scale of xywh / ltrb values.
torch::Tensor wh_wh(const torch::Tensor& imgsz_hw) {
  return torch::stack({imgsz_hw[1], imgsz_hw[0], imgsz_hw[1], imgsz_hw[0]});
}
}  // namespace

torch::Tensor rbox2dist(const torch::Tensor& xywh, const torch::Tensor& anchor_points, const torch::Tensor& angle) {
  // Offset of the centre from the anchor, rotated into the box frame; then half sides minus / plus it.
  auto offset = xywh.narrow(-1, 0, 2) - anchor_points;
  auto ox = offset.narrow(-1, 0, 1), oy = offset.narrow(-1, 1, 1);
  auto cs = angle.cos(), sn = angle.sin();
  auto xf = ox * cs + oy * sn, yf = -ox * sn + oy * cs;
  auto half_w = xywh.narrow(-1, 2, 1) / 2, half_h = xywh.narrow(-1, 3, 1) / 2;
  return torch::cat({half_w - xf, half_h - yf, half_w + xf, half_h + yf}, -1);
}

torch::Tensor obb_angle_loss(const torch::Tensor& pred_angle, const torch::Tensor& target_angle,
                             const torch::Tensor& target_w, const torch::Tensor& target_h, double lambda) {
  auto log_ar = torch::log((target_w + 1e-9) / (target_h + 1e-9));
  auto scale = torch::exp(-log_ar.pow(2) / (lambda * lambda));
  auto delta = pred_angle - target_angle;
  auto wrapped = delta - torch::round(delta / kPi) * kPi;  // a box turned by pi is the same box
  return scale * torch::sin(2 * wrapped).pow(2);
}

ObbLoss::ObbLoss(int64_t num_classes, std::vector<double> strides, int64_t topk, int64_t topk2, ObbGains gains)
    : nc_(num_classes), strides_(std::move(strides)), gains_(gains), assigner_([&] {
        AssignerOptions o;
        o.topk = topk;
        o.topk2 = topk2;
        o.num_classes = num_classes;
        o.alpha = 0.5;  // as the detection loss: YOLO26's values, not the class defaults
        o.beta = 6.0;
        o.strides = strides_;
        return o;
      }()) {}

torch::Tensor ObbLoss::preprocess_targets(const ObbBatch& batch, int64_t batch_size, const torch::Tensor& imgsz_hw,
                                          torch::Device device) const {
  if (!batch.batch_idx.defined() || !batch.cls.defined() || !batch.rboxes.defined())
    fail("ObbLoss: the batch needs batch_idx, cls and rboxes tensors (an image without labels is fine, an undefined "
         "tensor is not); rboxes come from data/obb_labels.h batch_rboxes()");
  auto bi = batch.batch_idx.reshape({-1}).to(device, torch::kFloat);
  auto cls = batch.cls.reshape({-1}).to(device, torch::kFloat);
  const int64_t nl = bi.size(0);
  if (cls.size(0) != nl || batch.rboxes.dim() != 2 || batch.rboxes.size(0) != nl || batch.rboxes.size(1) != 5)
    fail("ObbLoss: batch_idx " + shape_str(batch.batch_idx) + ", cls " + shape_str(batch.cls) + " and rboxes " +
         shape_str(batch.rboxes) + " disagree; expected N, N and (N, 5) normalised xywh + angle (an OBB dataset, "
         "not a detect one)");
  auto rows = torch::cat({cls.view({-1, 1}), batch.rboxes.to(device, torch::kFloat)}, 1);  // (N, 6)
  auto scale = wh_wh(imgsz_hw.to(device, torch::kFloat));
  // Tiny rotated boxes make probiou and the angle ill-conditioned: dropped, as the reference does.
  auto keep = (rows.select(1, 3) * scale[0] >= kMinSidePx) & (rows.select(1, 4) * scale[1] >= kMinSidePx);
  rows = rows.index({keep});
  bi = bi.index({keep});
  auto out = group_by_image(rows, bi, batch_size);  // (B, n_max, 6)
  out.narrow(2, 1, 4).mul_(scale);
  return out;
}

BranchLossResult ObbLoss::operator()(const ObbBranchOutput& preds,
                                     const std::vector<std::pair<int64_t, int64_t>>& grid_hw, const ObbBatch& batch,
                                     const torch::Tensor& class_weights) const {
  const auto& boxes = preds.boxes;
  const auto& scores = preds.scores;
  const auto& angle = preds.angle;
  if (!boxes.defined() || boxes.dim() != 3 || boxes.size(1) != 4)
    fail("ObbLoss: head boxes must be (B, 4, A) raw rotated ltrb, got " + shape_str(boxes) +
         " (reg_max must be 1 for YOLO26)");
  if (!scores.defined() || scores.dim() != 3 || scores.size(0) != boxes.size(0) || scores.size(2) != boxes.size(2) ||
      scores.size(1) != nc_)
    fail("ObbLoss: head scores must be (B, " + std::to_string(nc_) + ", A) logits matching boxes " +
         shape_str(boxes) + ", got " + shape_str(scores) + "; check the model's nc");
  if (!angle.defined() || angle.dim() != 3 || angle.size(0) != boxes.size(0) || angle.size(1) != 1 ||
      angle.size(2) != boxes.size(2))
    fail("ObbLoss: head angle must be (B, 1, A) matching boxes " + shape_str(boxes) + ", got " + shape_str(angle) +
         "; is this an OBB model (OBB26 head)?");
  if (grid_hw.size() != strides_.size())
    fail("ObbLoss: got " + std::to_string(grid_hw.size()) + " feature-map sizes for " +
         std::to_string(strides_.size()) + " strides; pass one (H, W) per detection level");
  int64_t na = 0;
  for (auto& hw : grid_hw) na += hw.first * hw.second;
  if (na != boxes.size(2))
    fail("ObbLoss: the feature-map sizes give " + std::to_string(na) + " anchors but the head output has " +
         std::to_string(boxes.size(2)) + "; pass the grid sizes of this forward pass");

  auto pred_distri = boxes.permute({0, 2, 1}).contiguous();  // (B, A, 4)
  auto pred_scores = scores.permute({0, 2, 1}).contiguous();  // (B, A, nc)
  auto pred_angle = angle.permute({0, 2, 1}).contiguous();    // (B, A, 1)
  const auto dtype = pred_scores.scalar_type();
  const auto device = pred_scores.device();
  const int64_t bs = pred_scores.size(0);

  auto anchors = make_anchors(grid_hw, strides_, 0.5, device, dtype);
  auto imgsz = input_size_hw(grid_hw, strides_[0], pred_scores.options());  // (h, w)

  auto targets = preprocess_targets(batch, bs, imgsz, device);
  auto gt_labels = targets.narrow(2, 0, 1);
  auto gt_bboxes = targets.narrow(2, 1, 5);
  auto mask_gt = gt_bboxes.sum(2, /*keepdim=*/true).gt_(0.0);

  // The model's decode in grid units (unit strides): centre = anchor + R(angle)((r - l)/2, (b - t)/2), w = l + r,
  // h = t + b; then the angle as the fifth value.
  AnchorGrid unit{anchors.points.t().unsqueeze(0), torch::ones({1, na}, anchors.points.options())};
  auto pred_bboxes = torch::cat({decode_rboxes(boxes, angle, unit), angle}, 1).permute({0, 2, 1});  // (B, A, 5)

  BranchLossResult r;
  {
    auto for_assigner = pred_bboxes.detach().clone();
    for_assigner.narrow(-1, 0, 4).mul_(anchors.strides);
    r.assigned = assigner_(pred_scores.detach().sigmoid(), for_assigner.to(gt_bboxes.dtype()),
                           anchors.points * anchors.strides, gt_labels, gt_bboxes, mask_gt);
  }
  const auto& target_scores = r.assigned.target_scores;
  const auto& fg = r.assigned.fg_mask;
  auto tss = target_scores.sum().clamp_min(1);

  auto bce = torch::binary_cross_entropy_with_logits(pred_scores, target_scores.to(dtype), {}, {},
                                                     at::Reduction::None);
  const torch::Tensor& cw = class_weights.defined() && class_weights.numel() > 0 ? class_weights : gains_.det.class_weights;
  if (cw.defined() && cw.numel() > 0) {
    if (cw.numel() != nc_)
      fail("ObbLoss: class_weights must have nc = " + std::to_string(nc_) + " entries, got " +
           std::to_string(cw.numel()));
    bce = bce * cw.to(device, dtype).view({1, 1, -1});
  }
  auto loss_cls = bce.sum() / tss;

  auto zero = torch::zeros({}, pred_scores.options());
  torch::Tensor loss_box = zero, loss_dfl = zero, loss_angle = zero;
  r.fg_count = fg.sum().item<int64_t>();
  if (r.fg_count > 0) {
    auto target_bboxes = r.assigned.target_bboxes.clone();
    target_bboxes.narrow(-1, 0, 4).div_(anchors.strides);  // grid units; the angle stays
    auto weight = target_scores.index({fg}).sum(-1, /*keepdim=*/true);
    auto pred_fg = pred_bboxes.index({fg}), target_fg = target_bboxes.index({fg});

    auto iou = probiou(pred_fg, target_fg, 1e-7, kProbiouFloor);
    loss_box = ((1.0 - iou) * weight).sum() / tss;

    // reg_max = 1: L1 between predicted and target rotated distances, in pixels over the image width (l, r) or
    // height (t, b); the target is not clamped.
    auto wh = wh_wh(imgsz);
    auto target_ltrb = rbox2dist(target_bboxes.narrow(-1, 0, 4), anchors.points, target_bboxes.narrow(-1, 4, 1)) *
                       anchors.strides / wh;
    auto pred_ltrb = pred_distri * anchors.strides / wh;
    auto l1 = torch::l1_loss(pred_ltrb.index({fg}), target_ltrb.index({fg}), at::Reduction::None);
    loss_dfl = (l1.mean(-1, /*keepdim=*/true) * weight).sum() / tss;

    auto ang = obb_angle_loss(pred_fg.select(-1, 4), target_fg.select(-1, 4), target_fg.select(-1, 2),
                              target_fg.select(-1, 3));
    loss_angle = (ang * weight.squeeze(-1)).sum() / tss;
  } else {
    loss_box = (pred_angle * 0).sum();  // keeps the angle branch in the graph
  }
  r.raw_items = torch::stack({loss_box, loss_cls, loss_dfl, loss_angle}).detach();
  r.loss = torch::stack({loss_box * gains_.det.box, loss_cls * gains_.det.cls, loss_dfl * gains_.det.dfl,
                         loss_angle * gains_.angle});
  r.target_scores_sum = tss.detach();
  return r;
}

}  // namespace y26
