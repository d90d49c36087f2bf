// YOLO26 segmentation training loss (the reference's v8SegmentationLoss inside E2ELoss): the detection loss plus
// the per-instance mask loss on coef . proto and the semantic auxiliary loss on the proto module's semseg map,
// for both branches of the end-to-end head. Items in the reference's order: [box, seg, cls, dfl, sem].
#pragma once
#include "train/detection_loss.h"

namespace y26 {

struct SegmentBranchOutput {
  torch::Tensor boxes;      // (B, 4, A) raw ltrb, stride units
  torch::Tensor scores;     // (B, nc, A) logits
  torch::Tensor mask_coef;  // (B, nm, A) mask coefficients (model BranchOutput::mask_coef)
};

struct SegmentBranchLossResult {
  torch::Tensor loss;       // (5) gained [box, seg, cls, dfl, sem], differentiable, not yet x batch size
  torch::Tensor raw_items;  // (5) the same before the gains, detached
  BranchLossResult det;     // detection part (its assignment picks the positives and their GT masks)
};

// Semantic target of the sem term: (B, nc, h, w) float one-hot of the class of the instance covering each pixel,
// zero where no instance is. masks/overlap as SegmentLoss takes them; cls (N) and batch_idx (N) per instance.
// Without overlap, a pixel covered by several instances takes the class of the smallest one (by mask pixels),
// as the reference's non-overlap format does.
torch::Tensor semantic_targets(const torch::Tensor& masks, bool overlap, const torch::Tensor& cls,
                               const torch::Tensor& batch_idx, int64_t batch_size, int64_t num_classes);

// 0.5 * BCE-with-logits (mean) + 0.5 * multi-channel Dice (smooth 1, per image and channel, averaged) of
// pred (B, C, h, w) logits against target (B, C, H, W) in [0, 1]; a target of another size is resized to the
// prediction's with nearest interpolation first.
torch::Tensor bce_dice_loss(const torch::Tensor& pred, const torch::Tensor& target);

class SegmentLoss {
 public:
  using Preds = SegmentBranchOutput;
  using Result = SegmentBranchLossResult;
  // In the end-to-end loss the one2one branch sees proto and semseg detached, as in the reference head: only the
  // one2many terms train the proto module (its sem term is computed and logged for both).
  static constexpr bool kOne2OneDetachesShared = true;

  // overlap: the masks tensor's layout (polygon_masks' overlap flag; the reference default overlap_mask = true).
  SegmentLoss(int64_t num_classes, std::vector<double> strides, int64_t topk, int64_t topk2 = 0, LossGains gains = {},
              bool overlap = true);

  // proto (B, nm, Hm, Wm) and semseg (B, nc, Hs, Ws) as the model returns them (pass them detached for a branch
  // whose loss must not train the proto module; an undefined semseg means no sem term, as after fuse()).
  // masks from polygon_masks(batch, mask_ratio, overlap):
  //   overlap = true:  (B, H/r, W/r) integer, value j + 1 = the image's j-th label (labels in batch order), 0 = none;
  //   overlap = false: (N, H/r, W/r) 0/1, one mask per label row of `batch`.
  // When the masks' size differs from the proto's, the proto is resized (bilinear) to the masks' size.
  // Mask loss per positive anchor: BCE(coef . proto, GT mask of its assigned label), cropped to the label box,
  // mean over the mask pixels, divided by the box area normalised to the image; summed and divided by the number
  // of positives; gain `box`. Sem loss: bce_dice_loss(semseg, semantic_targets(...)), gain `box`. Both are 0 (with
  // a graph that still reaches proto, coef and semseg) when the branch has no positive anchor.
  SegmentBranchLossResult operator()(const SegmentBranchOutput& preds, const torch::Tensor& proto,
                                     const torch::Tensor& semseg,
                                     const std::vector<std::pair<int64_t, int64_t>>& grid_hw,
                                     const DetectionBatch& batch, const torch::Tensor& masks) const;


 private:
  DetectionLoss det_;
  bool overlap_;
};

// Both branches blended by ProgLossSchedule (train/e2e_loss.h); loss_vector and loss_items have the 5 items.
using E2ESegmentLossResult = E2EResult<SegmentBranchLossResult>;
using E2ESegmentLoss = E2ELoss<SegmentLoss>;

}  // namespace y26
