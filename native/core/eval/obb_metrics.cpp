#include "eval/obb_metrics.h"

#include <torch/torch.h>

#include "infer/postprocess.h"
#include "util/error.h"

namespace y26 {

namespace {
void require_rboxes(const torch::Tensor& t, const char* what) {
  if (!t.defined() || t.dim() != 2 || t.size(1) != 5)
    fail(std::string("obb metrics: ") + what + " must be (N, 5) [cx, cy, w, h, angle], got " +
         (t.defined() ? c10::str(t.sizes()) : std::string("<undefined>")));
}
}  // namespace

torch::Tensor rboxes_to_pixels(const torch::Tensor& rboxes, int64_t imgsz_h, int64_t imgsz_w) {
  require_rboxes(rboxes, "rboxes");
  auto out = rboxes.to(torch::kFloat32).clone();
  auto scale = torch::tensor({float(imgsz_w), float(imgsz_h), float(imgsz_w), float(imgsz_h)}, out.options());
  out.narrow(1, 0, 4).mul_(scale);
  return out;
}

torch::Tensor obb_tp(const torch::Tensor& pred_rboxes_in, const torch::Tensor& pred_cls, const torch::Tensor& gt_rboxes_in,
                     const torch::Tensor& gt_cls) {
  // An image without predictions or labels may come as any empty tensor.
  auto as_rows = [](const torch::Tensor& t) { return t.defined() && t.numel() == 0 ? t.reshape({0, 5}) : t; };
  const auto pred_rboxes = as_rows(pred_rboxes_in), gt_rboxes = as_rows(gt_rboxes_in);
  require_rboxes(pred_rboxes, "predicted boxes");
  require_rboxes(gt_rboxes, "GT boxes");
  if (pred_cls.numel() != pred_rboxes.size(0) || gt_cls.numel() != gt_rboxes.size(0))
    fail("obb_tp: one class per box expected, got " + std::to_string(pred_cls.numel()) + " for " +
         std::to_string(pred_rboxes.size(0)) + " predictions and " + std::to_string(gt_cls.numel()) + " for " +
         std::to_string(gt_rboxes.size(0)) + " GT boxes");
  auto th = iou_thresholds();
  if (pred_rboxes.size(0) == 0 || gt_rboxes.size(0) == 0)
    return torch::zeros({pred_rboxes.size(0), th.numel()}, torch::kBool);
  auto iou = probiou_matrix(gt_rboxes.to(torch::kCPU), pred_rboxes.to(torch::kCPU));  // (M, N)
  return match_predictions(pred_cls.reshape({-1}), gt_cls.reshape({-1}), iou, th);
}

void ObbMetrics::add_image(const torch::Tensor& pred_rboxes, const torch::Tensor& pred_conf,
                           const torch::Tensor& pred_cls, const torch::Tensor& gt_rboxes, const torch::Tensor& gt_cls) {
  det_.add_matched(obb_tp(pred_rboxes, pred_cls, gt_rboxes, gt_cls), pred_conf, pred_cls, gt_cls);
}

}  // namespace y26
