#include "train/segment_loss.h"

#include "eval/mask_metrics.h"
#include "geometry/box_ops.h"
#include "util/error.h"

#include <torch/torch.h>

#include <limits>

namespace y26 {

namespace F = torch::nn::functional;

namespace {

torch::Tensor as_long(const torch::Tensor& t, torch::Device device) { return t.reshape({-1}).to(device, torch::kLong); }

// Row of each image's j-th label in the batch's label order: rows[starts[i] + j] (labels grouped by a stable sort
// of batch_idx, as group_by_image orders them).
struct LabelRows {
  torch::Tensor order, starts, counts;
};
LabelRows label_rows(const torch::Tensor& batch_idx, int64_t batch_size, torch::Device device) {
  auto img = as_long(batch_idx, device);
  LabelRows r;
  r.order = std::get<1>(img.sort(/*stable=*/true, 0, /*descending=*/false));
  r.counts = torch::bincount(img, {}, batch_size);
  r.starts = torch::cumsum(r.counts, 0) - r.counts;
  return r;
}

void check_masks(const torch::Tensor& masks, bool overlap, int64_t batch_size, int64_t num_labels, const char* who) {
  if (!masks.defined() || masks.dim() != 3)
    fail(std::string(who) + ": masks must be a 3-D tensor from polygon_masks, got " + shape_str(masks));
  const int64_t want = overlap ? batch_size : num_labels;
  if (masks.size(0) != want)
    fail(std::string(who) + ": with overlap = " + (overlap ? "true" : "false") + " the masks must be (" +
         (overlap ? "B" : "N") + " = " + std::to_string(want) + ", H, W), got " + shape_str(masks) +
         "; build them with polygon_masks(batch, mask_ratio, overlap) using the loss's overlap setting");
}

}  // namespace

torch::Tensor semantic_targets(const torch::Tensor& masks, bool overlap, const torch::Tensor& cls,
                               const torch::Tensor& batch_idx, int64_t batch_size, int64_t num_classes) {
  const int64_t nl = cls.defined() ? cls.numel() : 0;
  check_masks(masks, overlap, batch_size, nl, "semantic_targets");
  if (batch_idx.numel() != nl) fail("semantic_targets: cls and batch_idx must have one entry per label");
  const auto device = masks.device();
  const int64_t h = masks.size(1), w = masks.size(2);
  auto target = torch::zeros({batch_size, num_classes, h, w}, torch::TensorOptions().device(device));
  if (nl == 0) return target;
  auto cls_l = as_long(cls, device);
  auto crange = torch::stack({cls_l.min(), cls_l.max()}).cpu();
  if (crange[0].item<int64_t>() < 0 || crange[1].item<int64_t>() >= num_classes)
    fail("semantic_targets: class ids must lie in [0, " + std::to_string(num_classes) + "), got " +
         std::to_string(crange[0].item<int64_t>()) + ".." + std::to_string(crange[1].item<int64_t>()) +
         "; check the labels against the model's nc");
  auto cls_by_image = group_by_image(cls_l, batch_idx, batch_size);  // (B, n_max), label j of image i
  torch::Tensor which, present;                                     // (B, h, w) label index within its image
  if (overlap) {
    auto idx = masks.to(torch::kLong);
    auto rows = label_rows(batch_idx, batch_size, device);
    auto hi = idx.view({batch_size, -1}).amax(1);
    if ((hi > rows.counts).any().item<bool>() || (idx < 0).any().item<bool>())
      fail("semantic_targets: an overlap mask holds an instance index beyond its image's label count; the masks "
           "do not belong to this batch's labels");
    present = idx > 0;
    which = (idx - 1).clamp_min(0);
  } else {
    // The smallest instance (by mask pixels) wins where instances overlap, as the reference's format does.
    auto per_image = group_by_image(masks.to(torch::kFloat), batch_idx, batch_size) > 0;  // (B, n_max, h, w)
    auto area = per_image.sum({2, 3}, /*keepdim=*/true).to(torch::kFloat);
    auto weighted = torch::where(per_image, area.expand_as(per_image),
                                 torch::full({}, std::numeric_limits<float>::infinity(), area.options()));
    which = weighted.argmin(1);
    present = per_image.any(1);
  }
  auto cls_map = cls_by_image.gather(1, which.view({batch_size, -1})).view({batch_size, 1, h, w});
  target.scatter_(1, cls_map, present.unsqueeze(1).to(torch::kFloat));
  return target;
}

torch::Tensor bce_dice_loss(const torch::Tensor& pred, const torch::Tensor& target) {
  if (!pred.defined() || pred.dim() != 4 || !target.defined() || target.dim() != 4 || target.size(0) != pred.size(0) ||
      target.size(1) != pred.size(1))
    fail("bce_dice_loss: pred (B, C, h, w) and target (B, C, H, W) disagree: " + shape_str(pred) + " vs " +
         shape_str(target));
  auto t = target.to(pred.device(), pred.scalar_type());
  if (t.size(2) != pred.size(2) || t.size(3) != pred.size(3))
    t = F::interpolate(t, F::InterpolateFuncOptions()
                              .size(std::vector<int64_t>{pred.size(2), pred.size(3)})
                              .mode(torch::kNearest));
  auto bce = torch::binary_cross_entropy_with_logits(pred, t);
  auto p = pred.sigmoid();
  auto inter = (p * t).sum({2, 3});
  auto uni = p.sum({2, 3}) + t.sum({2, 3});
  auto dice = (2.0 * inter + 1.0) / (uni + 1.0);  // smooth 1
  auto dice_loss = (1.0 - dice).mean(1).mean();
  return 0.5 * bce + 0.5 * dice_loss;
}

SegmentLoss::SegmentLoss(int64_t num_classes, std::vector<double> strides, int64_t topk, int64_t topk2,
                         LossGains gains, bool overlap)
    : det_(num_classes, std::move(strides), topk, topk2, gains), overlap_(overlap) {}

SegmentBranchLossResult SegmentLoss::operator()(const SegmentBranchOutput& preds, const torch::Tensor& proto,
                                                const torch::Tensor& semseg,
                                                const std::vector<std::pair<int64_t, int64_t>>& grid_hw,
                                                const DetectionBatch& batch, const torch::Tensor& masks) const {
  SegmentBranchLossResult r;
  r.det = det_({preds.boxes, preds.scores}, grid_hw, batch);  // validates boxes, scores, grid and labels
  const int64_t bs = preds.boxes.size(0), na = preds.boxes.size(2), nc = det_.num_classes();
  const auto& coef_in = preds.mask_coef;
  if (!proto.defined() || proto.dim() != 4 || proto.size(0) != bs)
    fail("SegmentLoss: proto must be (B, nm, H/4, W/4) for a batch of " + std::to_string(bs) + ", got " +
         shape_str(proto));
  const int64_t nm = proto.size(1);
  if (!coef_in.defined() || coef_in.dim() != 3 || coef_in.size(0) != bs || coef_in.size(1) != nm ||
      coef_in.size(2) != na)
    fail("SegmentLoss: mask_coef must be (B, nm = " + std::to_string(nm) + ", A) like boxes " +
         shape_str(preds.boxes) + ", got " + shape_str(coef_in) + "; pass the branch's mask coefficients");
  if (semseg.defined() && (semseg.dim() != 4 || semseg.size(0) != bs || semseg.size(1) != nc))
    fail("SegmentLoss: semseg must be (B, nc = " + std::to_string(nc) + ", H/8, W/8), got " + shape_str(semseg));
  check_masks(masks, overlap_, bs, batch.cls.numel(), "SegmentLoss");

  const auto device = coef_in.device();
  const auto dtype = coef_in.scalar_type();
  auto coef = coef_in.permute({0, 2, 1}).contiguous();  // (B, A, nm)
  torch::Tensor loss_seg, loss_sem = torch::zeros({}, coef.options());
  if (r.det.fg_count > 0) {
    auto m = masks.to(device);
    auto p = proto;
    const int64_t mh = m.size(1), mw = m.size(2);
    if (p.size(2) != mh || p.size(3) != mw)  // the reference resizes the proto, not the targets
      p = F::interpolate(p, F::InterpolateFuncOptions()
                                .size(std::vector<int64_t>{mh, mw})
                                .mode(torch::kBilinear)
                                .align_corners(false));
    auto imgsz = input_size_hw(grid_hw, det_.strides()[0], coef.options());  // (h, w)
    auto whwh = imgsz.index({torch::tensor({1, 0, 1, 0}, torch::TensorOptions().dtype(torch::kLong).device(device))});
    auto boxes_norm = r.det.assigned.target_bboxes.to(dtype) / whwh;  // (B, A, 4) xyxy in [0, 1]
    // Normalised box area; clamped so that a degenerate box (no pixel inside, so a zero cropped mean) gives 0,
    // not 0/0.
    auto area = xyxy2xywh(boxes_norm).narrow(-1, 2, 2).prod(-1).clamp_min(1e-12);  // (B, A)
    auto boxes_mask = boxes_norm * torch::tensor({float(mw), float(mh), float(mw), float(mh)}, coef.options());
    const auto& fg = r.det.assigned.fg_mask;
    const auto& gt_idx = r.det.assigned.target_gt_idx;
    LabelRows rows;
    if (!overlap_) rows = label_rows(batch.batch_idx, bs, device);
    auto fg_per_image = fg.sum(1).cpu();
    torch::Tensor total = torch::zeros({}, coef.options());
    for (int64_t i = 0; i < bs; ++i) {
      if (fg_per_image[i].item<int64_t>() == 0) continue;
      auto fg_i = fg[i];
      auto idx = gt_idx[i].index({fg_i});  // assigned label within image i, per positive
      torch::Tensor gt;
      if (overlap_) {
        gt = (m[i].unsqueeze(0) == (idx + 1).view({-1, 1, 1}).to(m.scalar_type())).to(dtype);
      } else {
        gt = m.index({rows.order.index({rows.starts[i] + idx})}).to(dtype);
      }
      auto pred = coef[i].index({fg_i}).matmul(p[i].reshape({nm, -1})).view({-1, mh, mw});
      auto bce = torch::binary_cross_entropy_with_logits(pred, gt, {}, {}, at::Reduction::None);
      total = total + (crop_mask(bce, boxes_mask[i].index({fg_i})).mean({1, 2}) / area[i].index({fg_i})).sum();
    }
    loss_seg = total / double(r.det.fg_count);
    if (semseg.defined()) {
      // The one-hot target is resized with nearest anyway: resizing the index map first gives the same target
      // without a (B, nc, H/4, W/4) intermediate.
      auto sem_src = m;
      if (overlap_ && (m.size(1) != semseg.size(2) || m.size(2) != semseg.size(3)))
        sem_src = F::interpolate(m.unsqueeze(1).to(torch::kFloat),
                                 F::InterpolateFuncOptions()
                                     .size(std::vector<int64_t>{semseg.size(2), semseg.size(3)})
                                     .mode(torch::kNearest))
                      .squeeze(1)
                      .to(m.scalar_type());
      loss_sem = bce_dice_loss(semseg, semantic_targets(sem_src, overlap_, batch.cls, batch.batch_idx, bs, nc));
    }
  } else {
    // No positives: zero terms that still reach proto, coef and semseg (the reference keeps them in the graph).
    loss_seg = (proto * 0).sum() + (coef * 0).sum();
    if (semseg.defined()) loss_sem = (semseg * 0).sum();
  }

  const auto& d = r.det.raw_items;
  const auto& g = r.det.loss;
  const double gain = det_.gains().box;  // seg and sem both use the box gain
  r.raw_items = torch::stack({d[0], loss_seg.detach(), d[1], d[2], loss_sem.detach()});
  r.loss = torch::stack({g[0], loss_seg * gain, g[1], g[2], loss_sem * gain});
  return r;
}

}  // namespace y26
