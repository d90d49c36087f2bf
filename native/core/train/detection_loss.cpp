#include "train/detection_loss.h"

#include "model/anchors.h"
#include "geometry/box_ops.h"
#include "util/error.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

namespace y26 {

std::vector<std::pair<int64_t, int64_t>> grid_sizes_for(int64_t imgsz_h, int64_t imgsz_w,
                                                        const std::vector<double>& strides) {
  if (imgsz_h < 1 || imgsz_w < 1) fail("grid_sizes_for: image size must be positive");
  std::vector<std::pair<int64_t, int64_t>> out;
  for (double s : strides)
    out.emplace_back(int64_t(std::ceil(imgsz_h / s)), int64_t(std::ceil(imgsz_w / s)));
  return out;
}

torch::Tensor input_size_hw(const std::vector<std::pair<int64_t, int64_t>>& grid_hw, double first_stride,
                            const torch::TensorOptions& options) {
  if (grid_hw.empty()) fail("input_size_hw: no feature-map sizes given");
  return torch::tensor({float(grid_hw[0].first), float(grid_hw[0].second)}, options) * first_stride;
}

namespace {
// (h, w) -> (w, h, w, h): per-coordinate scale of xyxy / ltrb values.
torch::Tensor wh_wh(const torch::Tensor& imgsz_hw) {
  return imgsz_hw.index({torch::tensor({1, 0, 1, 0}, torch::TensorOptions().dtype(torch::kLong).device(imgsz_hw.device()))});
}
}  // namespace

std::vector<std::pair<int64_t, int64_t>> grid_sizes_of(const std::vector<torch::Tensor>& feats) {
  std::vector<std::pair<int64_t, int64_t>> out;
  for (const auto& f : feats) {
    if (f.dim() != 4) fail("grid_sizes_of: feature maps must be (B, C, H, W), got " + shape_str(f));
    out.emplace_back(f.size(2), f.size(3));
  }
  return out;
}

DetectionLoss::DetectionLoss(int64_t num_classes, std::vector<double> strides, int64_t topk, int64_t topk2,
                             LossGains gains)
    : nc_(num_classes), strides_(std::move(strides)), gains_(gains), assigner_([&] {
        AssignerOptions o;
        o.topk = topk;
        o.topk2 = topk2;
        o.num_classes = num_classes;
        o.alpha = 0.5;  // YOLO26 overrides the class defaults (alpha 1.0)
        o.beta = 6.0;
        o.strides = strides_;
        return o;
      }()) {}

torch::Tensor group_by_image(const torch::Tensor& values, const torch::Tensor& batch_idx, int64_t batch_size) {
  const int64_t nl = values.size(0);
  auto shape = values.sizes().vec();
  if (nl == 0) {
    shape[0] = 0;
    shape.insert(shape.begin(), batch_size);
    return torch::zeros(shape, values.options());
  }
  auto img = batch_idx.reshape({-1}).to(values.device(), torch::kLong);
  auto range = torch::stack({img.min(), img.max()}).cpu();  // one device sync
  const int64_t lo = range[0].item<int64_t>(), hi = range[1].item<int64_t>();
  if (lo < 0 || hi >= batch_size)
    fail("batch_idx must lie in [0, " + std::to_string(batch_size) + ") for a batch of " +
         std::to_string(batch_size) + " images, got " + std::to_string(lo) + ".." + std::to_string(hi) +
         "; the labels do not belong to this batch");
  auto order = std::get<1>(img.sort(/*stable=*/true, 0, /*descending=*/false));
  img = img.index({order});
  auto counts = torch::bincount(img, {}, batch_size);
  shape[0] = counts.max().item<int64_t>();
  shape.insert(shape.begin(), batch_size);
  auto out = torch::zeros(shape, values.options());
  auto within = torch::arange(nl, img.options()) - (torch::cumsum(counts, 0) - counts).index({img});
  out.index_put_({img, within}, values.index({order}));
  return out;
}

torch::Tensor DetectionLoss::preprocess_targets(const DetectionBatch& batch, int64_t batch_size,
                                                const torch::Tensor& imgsz_hw, torch::Device device) const {
  if (!batch.batch_idx.defined() || !batch.cls.defined() || !batch.bboxes.defined())
    fail("DetectionLoss: the batch needs batch_idx, cls and bboxes tensors (an image without labels is fine, "
         "an undefined tensor is not)");
  auto bi = batch.batch_idx.reshape({-1}).to(device, torch::kFloat);
  auto cls = batch.cls.reshape({-1}).to(device, torch::kFloat);
  const int64_t nl = bi.size(0);
  if (cls.size(0) != nl || batch.bboxes.dim() != 2 || batch.bboxes.size(0) != nl || batch.bboxes.size(1) != 4)
    fail("DetectionLoss: batch_idx " + shape_str(batch.batch_idx) + ", cls " + shape_str(batch.cls) + " and bboxes " +
         shape_str(batch.bboxes) + " disagree; expected N, N and (N, 4) normalised xywh");
  auto rows = torch::cat({cls.view({-1, 1}), batch.bboxes.to(device, torch::kFloat)}, 1);
  auto out = group_by_image(rows, bi, batch_size);  // (B, n_max, 5) cls, xywh normalised
  auto xywh = out.narrow(2, 1, 4).mul_(wh_wh(imgsz_hw.to(device)));
  out.narrow(2, 1, 4).copy_(xywh2xyxy(xywh));
  return out;
}

BranchLossResult DetectionLoss::operator()(const HeadBranchOutput& preds,
                                           const std::vector<std::pair<int64_t, int64_t>>& grid_hw,
                                           const DetectionBatch& batch, const torch::Tensor& class_weights) const {
  const auto& boxes = preds.boxes;
  const auto& scores = preds.scores;
  if (!boxes.defined() || boxes.dim() != 3 || boxes.size(1) != 4)
    fail("DetectionLoss: head boxes must be (B, 4, A) raw ltrb, got " + shape_str(boxes) +
         " (reg_max must be 1 for YOLO26)");
  if (!scores.defined() || scores.dim() != 3 || scores.size(0) != boxes.size(0) || scores.size(2) != boxes.size(2) ||
      scores.size(1) != nc_)
    fail("DetectionLoss: head scores must be (B, " + std::to_string(nc_) + ", A) logits matching boxes " +
         shape_str(boxes) + ", got " + shape_str(scores) + "; check the model's nc");
  if (grid_hw.size() != strides_.size())
    fail("DetectionLoss: got " + std::to_string(grid_hw.size()) + " feature-map sizes for " +
         std::to_string(strides_.size()) + " strides; pass one (H, W) per detection level");
  int64_t na = 0;
  for (auto& hw : grid_hw) na += hw.first * hw.second;
  if (na != boxes.size(2))
    fail("DetectionLoss: the feature-map sizes give " + std::to_string(na) + " anchors but the head output has " +
         std::to_string(boxes.size(2)) + "; pass the grid sizes of this forward pass");

  auto pred_distri = boxes.permute({0, 2, 1}).contiguous();  // (B, A, 4)
  auto pred_scores = scores.permute({0, 2, 1}).contiguous();  // (B, A, nc)
  const auto dtype = pred_scores.scalar_type();
  const auto device = pred_scores.device();
  const int64_t bs = pred_scores.size(0);

  auto anchors = make_anchors(grid_hw, strides_, 0.5, device, dtype);
  auto imgsz = input_size_hw(grid_hw, strides_[0], pred_scores.options());  // (h, w)

  auto targets = preprocess_targets(batch, bs, imgsz, device);
  auto gt_labels = targets.narrow(2, 0, 1);
  auto gt_bboxes = targets.narrow(2, 1, 4);
  auto mask_gt = gt_bboxes.sum(2, /*keepdim=*/true).gt_(0.0);

  auto pred_bboxes = dist2bbox(pred_distri, anchors.points, /*xywh=*/false);  // grid units
  BranchLossResult r;
  r.assigned = assigner_(pred_scores.detach().sigmoid(), (pred_bboxes.detach() * anchors.strides).to(gt_bboxes.dtype()),
                         anchors.points * anchors.strides, gt_labels, gt_bboxes, mask_gt);
  const auto& target_scores = r.assigned.target_scores;
  const auto& fg = r.assigned.fg_mask;
  auto tss = target_scores.sum().clamp_min(1);

  auto bce = torch::binary_cross_entropy_with_logits(pred_scores, target_scores.to(dtype), {}, {},
                                                     at::Reduction::None);
  const torch::Tensor& cw = class_weights.defined() && class_weights.numel() > 0 ? class_weights : gains_.class_weights;
  if (cw.defined() && cw.numel() > 0) {
    if (cw.numel() != nc_)
      fail("DetectionLoss: class_weights must have nc = " + std::to_string(nc_) + " entries, got " +
           std::to_string(cw.numel()));
    bce = bce * cw.to(device, dtype).view({1, 1, -1});
  }
  auto loss_cls = bce.sum() / tss;

  auto zero = torch::zeros({}, pred_scores.options());
  torch::Tensor loss_box = zero, loss_dfl = zero;
  r.fg_count = fg.sum().item<int64_t>();
  if (r.fg_count > 0) {
    auto target_bboxes = r.assigned.target_bboxes / anchors.strides;  // grid units
    auto weight = target_scores.index({fg}).sum(-1, /*keepdim=*/true);
    auto iou = bbox_iou(pred_bboxes.index({fg}), target_bboxes.index({fg}), IouKind::CIoU);
    loss_box = ((1.0 - iou) * weight).sum() / tss;

    // reg_max = 1: L1 between predicted and target distances, in pixels divided by the image width (l, r)
    // or height (t, b); the target is not clamped.
    auto wh = wh_wh(imgsz);
    auto target_ltrb = bbox2dist(anchors.points, target_bboxes) * anchors.strides / wh;
    auto pred_ltrb = pred_distri * anchors.strides / wh;
    auto l1 = torch::l1_loss(pred_ltrb.index({fg}), target_ltrb.index({fg}), at::Reduction::None);
    loss_dfl = (l1.mean(-1, /*keepdim=*/true) * weight).sum() / tss;
  }
  r.raw_items = torch::stack({loss_box, loss_cls, loss_dfl}).detach();
  r.loss = torch::stack({loss_box * gains_.box, loss_cls * gains_.cls, loss_dfl * gains_.dfl});
  r.target_scores_sum = tss.detach();
  return r;
}

}  // namespace y26
