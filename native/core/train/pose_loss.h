// YOLO26 pose training loss (PoseLoss26): the detection loss plus the OKS-style keypoint loss, the keypoint
// visibility BCE (kobj) and the RLE residual log-likelihood loss with the RealNVP flow prior, for both branches
// of the end-to-end head.
#pragma once
#include "train/detection_loss.h"

#include <functional>

namespace y26 {

struct PoseBranchOutput {
  torch::Tensor boxes;       // (B, 4, A) raw ltrb, stride units
  torch::Tensor scores;      // (B, nc, A) logits
  torch::Tensor kpts;        // (B, nk * ndim, A) raw x, y offsets (grid units, relative to the anchor) [, visibility logit]
  torch::Tensor kpts_sigma;  // (B, nk * 2, A) raw sigma logits; undefined = no RLE term
};

struct PoseGains {
  LossGains det;
  double pose = 12.0;
  double kobj = 1.0;
  double rle = 1.0;
};

// log-density of the flow prior: (N, 2) residuals -> (N). The model's RealNVP::log_prob fits directly.
using FlowLogProb = std::function<torch::Tensor(const torch::Tensor&)>;

struct PoseBranchLossResult {
  // Gained [box, pose, kobj, cls, dfl, rle] (rle only when a flow is given, as the reference's loss names), not x B.
  torch::Tensor loss;
  torch::Tensor raw_items;  // the same before the gains, detached
  BranchLossResult det;     // detection part (its assignment drives the keypoint targets)
};

// COCO OKS sigmas / 10 for 17 keypoints, 1/nk otherwise (the reference's defaults).
torch::Tensor default_keypoint_sigmas(int64_t nk);
// RLE per-keypoint weights: COCO weights for 17 keypoints, ones otherwise.
torch::Tensor default_rle_weights(int64_t nk);

class PoseLoss {
 public:
  using Preds = PoseBranchOutput;
  using Result = PoseBranchLossResult;

  // kpt_shape = {nk, ndim} with ndim 2 (x, y) or 3 (x, y, visibility). flow may be empty: then no RLE term.
  PoseLoss(int64_t num_classes, std::vector<double> strides, std::vector<int64_t> kpt_shape, int64_t topk,
           int64_t topk2 = 0, PoseGains gains = {}, FlowLogProb flow = {});

  // keypoints: (N, nk, ndim) with x, y normalised to the network input and the visibility flag, one row per label.
  PoseBranchLossResult operator()(const PoseBranchOutput& preds, const std::vector<std::pair<int64_t, int64_t>>& grid_hw,
                                  const DetectionBatch& batch, const torch::Tensor& keypoints) const;

  void set_sigmas(const torch::Tensor& sigmas);  // per-keypoint OKS sigmas (dataset kpt_oks_sigmas), all > 0

 private:
  torch::Tensor rle_loss(const torch::Tensor& pred_kpt, const torch::Tensor& gt_kpt, const torch::Tensor& kpt_mask) const;
  DetectionLoss det_;
  int64_t nk_, ndim_;
  PoseGains gains_;
  FlowLogProb flow_;
  torch::Tensor sigmas_, rle_weights_;
};

// loss_vector and loss_items: 5 or 6 items, as PoseBranchLossResult::loss.
using E2EPoseLossResult = E2EResult<PoseBranchLossResult>;

// Both branches blended by ProgLossSchedule (train/e2e_loss.h); PoseLoss takes kpt_shape before topk, hence the
// own constructor.
class E2EPoseLoss : public E2ELoss<PoseLoss> {
 public:
  E2EPoseLoss(int64_t num_classes, const std::vector<double>& strides, const std::vector<int64_t>& kpt_shape,
              int64_t epochs, const PoseGains& gains = {}, const FlowLogProb& flow = {})
      : E2ELoss(PoseLoss(num_classes, strides, kpt_shape, kOne2ManyTopk, /*topk2=*/0, gains, flow),
                PoseLoss(num_classes, strides, kpt_shape, kOne2OneTopk, kOne2OneTopk2, gains, flow), epochs) {}
  void set_sigmas(const torch::Tensor& sigmas) {  // both branches (PoseLoss::set_sigmas)
    one2many_.set_sigmas(sigmas);
    one2one_.set_sigmas(sigmas);
  }
};

}  // namespace y26
