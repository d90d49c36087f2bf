#include "eval/mask_metrics.h"

#include "util/error.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace y26 {

namespace F = torch::nn::functional;

namespace {
std::string dims(const torch::Tensor& t) { return t.defined() ? c10::str(t.sizes()) : std::string("<undefined>"); }

torch::Tensor resize_bilinear(const torch::Tensor& m, int64_t h, int64_t w) {  // (N, H, W) float -> (N, h, w)
  return F::interpolate(m.unsqueeze(0), F::InterpolateFuncOptions()
                                            .size(std::vector<int64_t>{h, w})
                                            .mode(torch::kBilinear)
                                            .align_corners(false))[0];
}
}  // namespace

torch::Tensor crop_mask(const torch::Tensor& masks, const torch::Tensor& boxes) {
  if (!masks.defined() || masks.dim() != 3 || !boxes.defined() || boxes.dim() != 2 || boxes.size(1) != 4 ||
      boxes.size(0) != masks.size(0))
    fail("crop_mask: expected masks (N, h, w) and boxes (N, 4) xyxy, got " + dims(masks) + " and " + dims(boxes));
  const int64_t n = masks.size(0), h = masks.size(1), w = masks.size(2);
  auto b = boxes.to(masks.device());
  if (!b.is_floating_point()) b = b.to(torch::kFloat);
  auto cols = torch::arange(w, b.options()).view({1, 1, w});
  auto rows = torch::arange(h, b.options()).view({1, h, 1});
  auto edge = [&](int k) { return b.select(1, k).view({n, 1, 1}); };
  // The region is separable: one column test and one row test instead of a (N, h, w) boolean grid.
  auto keep_cols = (cols >= edge(0)) & (cols < edge(2));  // (N, 1, w)
  auto keep_rows = (rows >= edge(1)) & (rows < edge(3));  // (N, h, 1)
  return masks * keep_cols.to(masks.scalar_type()) * keep_rows.to(masks.scalar_type());
}

torch::Tensor mask_iou(const torch::Tensor& mask1, const torch::Tensor& mask2, double eps) {
  if (!mask1.defined() || !mask2.defined() || mask1.dim() != 2 || mask2.dim() != 2 || mask1.size(1) != mask2.size(1))
    fail("mask_iou: expected flattened masks (M, n) and (N, n), got " + dims(mask1) + " and " + dims(mask2));
  auto a = mask1.to(torch::kFloat), b = mask2.to(a.device(), torch::kFloat);
  auto inter = a.matmul(b.t()).clamp_min(0);
  auto uni = (a.sum(1).unsqueeze(1) + b.sum(1).unsqueeze(0)) - inter;
  return inter / (uni + eps);
}

torch::Tensor predict_masks(const torch::Tensor& proto, const torch::Tensor& coef, const torch::Tensor& boxes,
                            int64_t in_h, int64_t in_w, bool native) {
  if (!proto.defined() || proto.dim() != 3 || !coef.defined() || coef.dim() != 2 || coef.size(1) != proto.size(0) ||
      !boxes.defined() || boxes.numel() != coef.size(0) * 4)
    fail("predict_masks: expected proto (nm, mh, mw), coef (N, nm) and boxes (N, 4), got " + dims(proto) + ", " +
         dims(coef) + " and " + dims(boxes));
  if (in_h < 1 || in_w < 1) fail("predict_masks: the input size must be positive");
  const int64_t nm = proto.size(0), mh = proto.size(1), mw = proto.size(2), n = coef.size(0);
  const auto dev = proto.device();
  if (n == 0)
    return torch::zeros({0, native ? in_h : mh, native ? in_w : mw}, torch::TensorOptions().dtype(torch::kUInt8).device(dev));
  auto logits = coef.to(dev, torch::kFloat).matmul(proto.to(torch::kFloat).reshape({nm, -1})).view({n, mh, mw});
  auto b = boxes.reshape({n, 4}).to(dev, torch::kFloat);
  if (native) {
    // scale_masks without ratio_pad: cut the padding a letterbox of (in_h, in_w) into (mh, mw) would leave
    // (none when the proto is exactly a quarter of the input), then bilinear to the input size.
    const double gain = std::min(double(mh) / in_h, double(mw) / in_w);
    const double pad_w = (mw - std::nearbyint(in_w * gain)) / 2, pad_h = (mh - std::nearbyint(in_h * gain)) / 2;
    const int64_t top = int64_t(std::nearbyint(pad_h - 0.1)), left = int64_t(std::nearbyint(pad_w - 0.1));
    const int64_t bottom = mh - int64_t(std::nearbyint(pad_h + 0.1)), right = mw - int64_t(std::nearbyint(pad_w + 0.1));
    using torch::indexing::Slice;
    logits = logits.index({Slice(), Slice(top, bottom), Slice(left, right)});
    if (logits.size(1) != in_h || logits.size(2) != in_w) logits = resize_bilinear(logits, in_h, in_w);
  } else {
    b = b * torch::tensor({float(mw) / in_w, float(mh) / in_h, float(mw) / in_w, float(mh) / in_h}, b.options());
  }
  return crop_mask(logits.gt(0.0).to(torch::kUInt8), b);
}

torch::Tensor gt_instance_masks(const torch::Tensor& masks, int64_t num_labels, bool overlap, int64_t out_h,
                                int64_t out_w) {
  if (!masks.defined() || masks.dim() != (overlap ? 2 : 3) || (!overlap && masks.size(0) != num_labels))
    fail(std::string("gt_instance_masks: expected ") +
         (overlap ? "one image's (H, W) overlap index map" : "(num_labels, H, W) 0/1 masks") + " for " +
         std::to_string(num_labels) + " labels, got " + dims(masks));
  if (num_labels == 0) return torch::zeros({0, out_h, out_w}, torch::TensorOptions().device(masks.device()));
  torch::Tensor m;
  if (overlap) {
    auto index = torch::arange(1, num_labels + 1, torch::TensorOptions().dtype(torch::kLong).device(masks.device()));
    m = (masks.to(torch::kLong).unsqueeze(0) == index.view({-1, 1, 1})).to(torch::kFloat);
  } else {
    m = masks.to(torch::kFloat);
  }
  if (m.size(1) != out_h || m.size(2) != out_w) m = resize_bilinear(m, out_h, out_w).gt(0.5).to(torch::kFloat);
  return m;
}

torch::Tensor mask_tp(const torch::Tensor& pred_masks, const torch::Tensor& pred_cls, const torch::Tensor& gt_masks,
                      const torch::Tensor& gt_cls) {
  const int64_t np_ = pred_cls.numel(), ng = gt_cls.numel();
  const torch::Tensor th = iou_thresholds();
  if (np_ == 0 || ng == 0) return torch::zeros({np_, th.numel()}, torch::kBool);
  if (pred_masks.dim() != 3 || gt_masks.dim() != 3 || pred_masks.size(0) != np_ || gt_masks.size(0) != ng ||
      pred_masks.size(1) != gt_masks.size(1) || pred_masks.size(2) != gt_masks.size(2))
    fail("mask_tp: expected pred_masks (N, h, w) and gt_masks (M, h, w) of one size for " + std::to_string(np_) +
         " predictions and " + std::to_string(ng) + " labels, got " + dims(pred_masks) + " and " + dims(gt_masks));
  auto iou = mask_iou(gt_masks.reshape({ng, -1}), pred_masks.reshape({np_, -1})).to(torch::kCPU);
  return match_predictions(pred_cls.reshape({-1}).to(torch::kCPU), gt_cls.reshape({-1}).to(torch::kCPU), iou, th);
}

SegmentMetrics::SegmentMetrics(std::vector<std::string> names) : box_(names), mask_(names) {}

void SegmentMetrics::add_image(const torch::Tensor& pred_boxes, const torch::Tensor& pred_conf,
                               const torch::Tensor& pred_cls, const torch::Tensor& pred_masks,
                               const torch::Tensor& gt_boxes, const torch::Tensor& gt_cls,
                               const torch::Tensor& gt_masks) {
  // Validate both before adding either, so a bad call leaves the two in step.
  auto tp = mask_tp(pred_masks, pred_cls, gt_masks, gt_cls);
  box_.add_image(pred_boxes, pred_conf, pred_cls, gt_boxes, gt_cls);
  mask_.add_matched(tp, pred_conf, pred_cls, gt_cls);
}

void SegmentMetrics::reset() {
  box_.reset();
  mask_.reset();
}

std::string format_seg_table(const DetResults& box, const DetResults& mask, const std::vector<std::string>& names,
                             bool per_class) {
  char buf[320];
  std::string out;
  std::snprintf(buf, sizeof buf, "%22s%11s%11s%11s%11s%11s%11s%11s%11s%11s%11s\n", "Class", "Images", "Instances",
                "Box(P", "R", "mAP50", "mAP50-95)", "Mask(P", "R", "mAP50", "mAP50-95)");
  out += buf;
  const char* row = "%22s%11lld%11lld%11.3g%11.3g%11.3g%11.3g%11.3g%11.3g%11.3g%11.3g\n";
  std::snprintf(buf, sizeof buf, row, "all", (long long)box.images, (long long)box.instances, box.precision,
                box.recall, box.map50, box.map50_95, mask.precision, mask.recall, mask.map50, mask.map50_95);
  out += buf;
  if (per_class && names.size() > 1)
    for (size_t k = 0; k < box.per_class.size() && k < mask.per_class.size(); ++k) {
      const auto& b = box.per_class[k];
      const auto& m = mask.per_class[k];  // same classes: both come from the same GT
      const std::string name = b.cls < (int64_t)names.size() ? names[b.cls] : b.name;
      std::snprintf(buf, sizeof buf, row, name.c_str(), (long long)b.images, (long long)b.instances, b.precision,
                    b.recall, b.ap50, b.ap50_95, m.precision, m.recall, m.ap50, m.ap50_95);
      out += buf;
    }
  return out;
}

}  // namespace y26
