#include "train/pose_loss.h"

#include "model/anchors.h"
#include "geometry/box_ops.h"
#include "util/error.h"

#include <torch/torch.h>

namespace y26 {

namespace {

// OKS-style keypoint loss: 1 - exp(-d^2 / ((2 sigma)^2 * area * 2)) over labelled keypoints, scaled by
// nk / #labelled per object, averaged over all entries.
torch::Tensor keypoint_loss(const torch::Tensor& pred, const torch::Tensor& gt, const torch::Tensor& kpt_mask,
                            const torch::Tensor& area, const torch::Tensor& sigmas) {
  auto d = (pred.select(-1, 0) - gt.select(-1, 0)).pow(2) + (pred.select(-1, 1) - gt.select(-1, 1)).pow(2);
  // int / tensor in the reference is reciprocal() * int, kept for identical rounding
  auto factor = (kpt_mask.sum(1) + 1e-9).reciprocal() * double(kpt_mask.size(1));
  auto e = d / ((2 * sigmas).pow(2) * (area + 1e-9) * 2);
  return (factor.view({-1, 1}) * ((1 - torch::exp(-e)) * kpt_mask)).mean();
}
}  // namespace

torch::Tensor default_keypoint_sigmas(int64_t nk) {
  if (nk == 17)
    return torch::tensor({0.26f, 0.25f, 0.25f, 0.35f, 0.35f, 0.79f, 0.79f, 0.72f, 0.72f, 0.62f, 0.62f, 1.07f, 1.07f,
                          0.87f, 0.87f, 0.89f, 0.89f}) / 10.0;
  return torch::ones({nk}) / double(nk);
}

torch::Tensor default_rle_weights(int64_t nk) {
  if (nk == 17)  // float64 like the reference's numpy array
    return torch::tensor({1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.2, 1.2, 1.5, 1.5, 1.0, 1.0, 1.2, 1.2, 1.5, 1.5},
                         torch::kDouble);
  return torch::ones({nk}, torch::kFloat);
}

PoseLoss::PoseLoss(int64_t num_classes, std::vector<double> strides, std::vector<int64_t> kpt_shape, int64_t topk,
                   int64_t topk2, PoseGains gains, FlowLogProb flow)
    : det_(num_classes, std::move(strides), topk, topk2, gains.det), gains_(gains), flow_(std::move(flow)) {
  if (kpt_shape.size() != 2 || kpt_shape[0] < 1 || (kpt_shape[1] != 2 && kpt_shape[1] != 3))
    fail("PoseLoss: kpt_shape must be [nk, 2] or [nk, 3] (x, y[, visibility]); check the data yaml's kpt_shape");
  nk_ = kpt_shape[0];
  ndim_ = kpt_shape[1];
  sigmas_ = default_keypoint_sigmas(nk_);
  rle_weights_ = default_rle_weights(nk_);
}

void PoseLoss::set_sigmas(const torch::Tensor& sigmas) {
  auto s = sigmas.to(torch::kFloat).flatten();
  if (s.numel() != nk_ || !(s > 0).all().item<bool>())
    fail("PoseLoss: kpt_oks_sigmas must be " + std::to_string(nk_) + " positive values, got " + shape_str(sigmas));
  sigmas_ = s;
}

PoseBranchLossResult PoseLoss::operator()(const PoseBranchOutput& preds,
                                          const std::vector<std::pair<int64_t, int64_t>>& grid_hw,
                                          const DetectionBatch& batch, const torch::Tensor& keypoints) const {
  PoseBranchLossResult r;
  r.det = det_({preds.boxes, preds.scores}, grid_hw, batch);  // validates boxes, scores and grid
  const int64_t bs = preds.boxes.size(0), na = preds.boxes.size(2);
  if (!preds.kpts.defined() || preds.kpts.dim() != 3 || preds.kpts.size(0) != bs || preds.kpts.size(1) != nk_ * ndim_ ||
      preds.kpts.size(2) != na)
    fail("PoseLoss: head kpts must be (B, " + std::to_string(nk_ * ndim_) + ", A) like boxes " +
         shape_str(preds.boxes) + ", got " + shape_str(preds.kpts) + "; check kpt_shape");
  const bool use_rle = bool(flow_) && preds.kpts_sigma.defined();
  if (use_rle && (preds.kpts_sigma.dim() != 3 || preds.kpts_sigma.size(0) != bs ||
                  preds.kpts_sigma.size(1) != nk_ * 2 || preds.kpts_sigma.size(2) != na))
    fail("PoseLoss: head kpts_sigma must be (B, " + std::to_string(nk_ * 2) + ", A), got " +
         shape_str(preds.kpts_sigma));
  if (!keypoints.defined() || keypoints.dim() != 3 || keypoints.size(1) != nk_ || keypoints.size(2) != ndim_ ||
      keypoints.size(0) != batch.bboxes.size(0))
    fail("PoseLoss: keypoints must be (N, " + std::to_string(nk_) + ", " + std::to_string(ndim_) +
         ") with one row per box label, got " + shape_str(keypoints) + " for " + shape_str(batch.bboxes) + " boxes");

  const auto dtype = preds.kpts.scalar_type();
  const auto device = preds.kpts.device();
  auto anchors = make_anchors(grid_hw, det_.strides(), 0.5, device, dtype);
  auto imgsz = input_size_hw(grid_hw, det_.strides()[0], preds.kpts.options());  // (h, w)

  auto pred_kpts = preds.kpts.permute({0, 2, 1}).contiguous().view({bs, na, nk_, ndim_});
  if (use_rle)  // sigma logits ride along as the last two channels of each keypoint
    pred_kpts = torch::cat(
        {pred_kpts, preds.kpts_sigma.permute({0, 2, 1}).contiguous().view({bs, na, nk_, 2})}, -1);
  // Pose26 decode: raw offset + anchor, in grid units (no "x2 - 0.5" of v8)
  auto decoded = pred_kpts.clone();
  decoded.select(-1, 0).add_(anchors.points.narrow(1, 0, 1));
  decoded.select(-1, 1).add_(anchors.points.narrow(1, 1, 1));

  auto zero = torch::zeros({}, preds.kpts.options());
  torch::Tensor kpt_loss = zero, kobj_loss = zero, rle_loss = zero;
  const auto& fg = r.det.assigned.fg_mask;
  if (r.det.fg_count > 0) {
    auto kp = keypoints.to(device, torch::kFloat).clone();
    kp.select(-1, 0).mul_(imgsz[1]);
    kp.select(-1, 1).mul_(imgsz[0]);
    auto per_image = group_by_image(kp, batch.batch_idx, bs);  // (B, n_max, nk, ndim) pixels
    auto selected = per_image.gather(
        1, r.det.assigned.target_gt_idx.unsqueeze(-1).unsqueeze(-1).expand({bs, na, nk_, ndim_}));

    auto target_bboxes = r.det.assigned.target_bboxes / anchors.strides;  // grid units
    auto gt_kpt = selected.index({fg});
    auto fg_stride = anchors.strides.view({1, -1}).expand({bs, na}).index({fg});
    gt_kpt.narrow(-1, 0, 2).div_(fg_stride.view({-1, 1, 1}));
    auto area = xyxy2xywh(target_bboxes.index({fg})).narrow(-1, 2, 2).prod(1, /*keepdim=*/true);
    auto pred_kpt = decoded.index({fg});
    auto kpt_mask = ndim_ == 3 ? gt_kpt.select(-1, 2) != 0
                               : torch::ones({gt_kpt.size(0), nk_}, gt_kpt.options().dtype(torch::kBool));
    kpt_loss = keypoint_loss(pred_kpt, gt_kpt, kpt_mask, area, sigmas_.to(device));
    if (use_rle) rle_loss = this->rle_loss(pred_kpt, gt_kpt, kpt_mask).clamp_min(0);
    if (ndim_ == 3)
      kobj_loss = torch::binary_cross_entropy_with_logits(pred_kpt.select(-1, 2), kpt_mask.to(dtype));
  }

  const auto& d = r.det.raw_items;
  const auto& g = r.det.loss;
  std::vector<torch::Tensor> raw{d[0], kpt_loss.detach(), kobj_loss.detach(), d[1], d[2]};
  std::vector<torch::Tensor> gained{g[0], kpt_loss * gains_.pose, kobj_loss * gains_.kobj, g[1], g[2]};
  if (flow_) {
    raw.push_back(rle_loss.detach());
    gained.push_back(rle_loss * gains_.rle);
  }
  r.raw_items = torch::stack(raw);
  r.loss = torch::stack(gained);
  return r;
}

torch::Tensor PoseLoss::rle_loss(const torch::Tensor& pred_kpt, const torch::Tensor& gt_kpt,
                                 const torch::Tensor& kpt_mask) const {
  auto none = pred_kpt.narrow(-1, 0, 0).sum();  // zero that keeps the graph connected
  if (!kpt_mask.any().item<bool>()) return none;
  auto pred_vis = pred_kpt.index({kpt_mask});  // (V, D): x, y[, v], sigma_x, sigma_y
  auto gt_vis = gt_kpt.index({kpt_mask});
  auto coords = pred_vis.narrow(1, 0, 2);
  auto sigma = pred_vis.narrow(1, pred_vis.size(1) - 2, 2).sigmoid();
  auto weights = rle_weights_.to(pred_kpt.device()).unsqueeze(0).repeat({kpt_mask.size(0), 1}).index({kpt_mask});
  auto error = (coords - gt_vis.narrow(1, 0, 2)) / (sigma + 1e-9);
  auto valid = ~(torch::isnan(error) | torch::isinf(error)).any(-1);
  if (!valid.any().item<bool>()) return none;
  error = error.index({valid}).clamp(-100, 100);
  sigma = sigma.index({valid});
  weights = weights.index({valid});

  auto log_phi = flow_(error);
  if (!log_phi.defined() || log_phi.dim() != 1 || log_phi.size(0) != error.size(0))
    fail("PoseLoss: the flow log_prob must map (N, 2) to (N), got " + shape_str(log_phi));
  auto loss = torch::log(sigma) - log_phi.unsqueeze(1);
  loss = loss + (torch::log(sigma * 2) + torch::abs(error));
  loss.mul_(weights.unsqueeze(1));  // in place: float64 weights, float32 result, as the reference
  loss.div_(loss.size(0));
  return loss.sum();
}

}  // namespace y26
