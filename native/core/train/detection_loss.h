// YOLO26 detection training loss: the per-branch loss (TAL assignment, BCE classification, CIoU box and the
// reg_max=1 L1 "dfl" term); E2ELoss<DetectionLoss> (train/e2e_loss.h) blends its two branches. Takes the head's
// train-mode outputs as tensors; no model code needed.
#pragma once
#include "train/assigner.h"
#include "train/e2e_loss.h"

#include <torch/types.h>

#include <utility>
#include <vector>

namespace y26 {

// One branch of the head in train mode.
struct HeadBranchOutput {
  torch::Tensor boxes;   // (B, 4, A) raw l,t,r,b distances in units of the level stride (reg_max 1)
  torch::Tensor scores;  // (B, nc, A) class logits
};

// The trainer's batch labels (collate order: rows grouped by image).
struct DetectionBatch {
  torch::Tensor batch_idx;  // (N) or (N, 1) image index of each label, any numeric dtype
  torch::Tensor cls;        // (N) or (N, 1) class id
  torch::Tensor bboxes;     // (N, 4) xywh normalised to the network input (letterboxed) image
};

struct LossGains {
  double box = 7.5;
  double cls = 0.5;
  double dfl = 1.5;
  torch::Tensor class_weights;  // (nc) BCE multipliers from cls_pw (undefined = off); a call's own weights win
};

struct BranchLossResult {
  torch::Tensor loss;               // (3) gained [box, cls, dfl], differentiable (not yet x batch size)
  torch::Tensor raw_items;          // (3) the same before gains, detached
  torch::Tensor target_scores_sum;  // () max(sum of target scores, 1), detached
  int64_t fg_count = 0;             // positive anchors in the batch
  AssignerResult assigned;          // what the assigner produced (for tests and diagnostics)
};

// Grid (H, W) per level for a network input of imgsz_h x imgsz_w: ceil(size / stride), like the head.
std::vector<std::pair<int64_t, int64_t>> grid_sizes_for(int64_t imgsz_h, int64_t imgsz_w,
                                                        const std::vector<double>& strides);
// Network input size as a (2) tensor (h, w) = first level grid x its stride, as the reference derives it.
torch::Tensor input_size_hw(const std::vector<std::pair<int64_t, int64_t>>& grid_hw, double first_stride,
                            const torch::TensorOptions& options);
// Grid (H, W) per level from the head's feature maps (B, C, H, W).
std::vector<std::pair<int64_t, int64_t>> grid_sizes_of(const std::vector<torch::Tensor>& feats);

// Pads per-image rows into a batch: values (N, ...) with image index batch_idx (N) -> (B, n_max, ...), zeros as
// padding, rows keeping their order within each image (the trainer's collate groups them; a stable sort makes
// ungrouped input work too). Throws y26::Error when an index is outside [0, B).
torch::Tensor group_by_image(const torch::Tensor& values, const torch::Tensor& batch_idx, int64_t batch_size);

// Per-branch loss (v8DetectionLoss with reg_max = 1).
class DetectionLoss {
 public:
  using Preds = HeadBranchOutput;
  using Result = BranchLossResult;

  // topk2 = 0 means no second narrowing (one2many: topk 10; one2one: topk 7, topk2 1).
  DetectionLoss(int64_t num_classes, std::vector<double> strides, int64_t topk, int64_t topk2 = 0,
                LossGains gains = {});

  // grid_hw: the (H, W) of each level's feature map, in head order (P3, P4, P5); the network input size is
  // grid_hw[0] * strides[0]. class_weights: optional (nc) multipliers of the BCE term (empty = off).
  BranchLossResult operator()(const HeadBranchOutput& preds, const std::vector<std::pair<int64_t, int64_t>>& grid_hw,
                              const DetectionBatch& batch, const torch::Tensor& class_weights = {}) const;

  // (B, n_max, 5) [cls, x1, y1, x2, y2] pixels, zero rows as padding (exposed for tests and other tasks' losses).
  torch::Tensor preprocess_targets(const DetectionBatch& batch, int64_t batch_size, const torch::Tensor& imgsz_hw,
                                   torch::Device device) const;

  const TaskAlignedAssigner& assigner() const { return assigner_; }
  const LossGains& gains() const { return gains_; }
  const std::vector<double>& strides() const { return strides_; }
  int64_t num_classes() const { return nc_; }

 private:
  int64_t nc_;
  std::vector<double> strides_;
  LossGains gains_;
  TaskAlignedAssigner assigner_;
};

// End-to-end detection loss: both branches blended by ProgLossSchedule (train/e2e_loss.h).
using E2ELossResult = E2EResult<BranchLossResult>;
using E2EDetectionLoss = E2ELoss<DetectionLoss>;

}  // namespace y26
