// YOLO26 OBB training loss (v8OBBLoss inside the end-to-end loss): rotated TAL assignment with probiou, BCE
// classification, box loss 1 - probiou (variance floor 0.01), the reg_max=1 "dfl" term as L1 on the rotated l,t,r,b
// distances, and the angle loss sin^2(2 dtheta) weighted by exp(-log(w/h)^2 / 9) (1 for squares, less for elongated
// boxes, whose angle the box loss already constrains).
// Loss names, in order: box, cls, dfl, angle.
#pragma once
#include "train/detection_loss.h"
#include "train/rotated_assigner.h"

#include <string>

namespace y26 {

// One branch of the OBB head in train mode (model/heads.h BranchOutput: boxes, scores, angle).
struct ObbBranchOutput {
  torch::Tensor boxes;   // (B, 4, A) raw rotated l,t,r,b distances in units of the level stride
  torch::Tensor scores;  // (B, nc, A) class logits
  torch::Tensor angle;   // (B, 1, A) raw angle, radians (not squashed)
};

// The trainer's OBB batch labels (rows grouped by image, as collated).
struct ObbBatch {
  torch::Tensor batch_idx;  // (N) or (N, 1) image index of each label
  torch::Tensor cls;        // (N) or (N, 1) class id
  torch::Tensor rboxes;     // (N, 5) cx, cy, w, h normalised (x, w by the input width; y, h by its height), angle
                            // in radians: data/obb_labels.h batch_rboxes()
};

struct ObbGains {
  LossGains det;       // box 7.5, cls 0.5, dfl 1.5
  double angle = 1.0;  // hyp "angle"
};

// Rotated l,t,r,b distances of xywh boxes (..., 4) with angle (..., 1) from anchor_points (..., 2), same units:
// the inverse of the model's decode (dist2rbox, model/postprocess.h decode_rboxes).
torch::Tensor rbox2dist(const torch::Tensor& xywh, const torch::Tensor& anchor_points, const torch::Tensor& angle);

// Angle loss per pair: sin^2(2 * wrap(pred - target)) * exp(-log((w + 1e-9) / (h + 1e-9))^2 / lambda^2), with wrap
// to [-pi/2, pi/2] (pi-periodic). pred_angle, target_angle, target_w, target_h broadcastable -> elementwise.
torch::Tensor obb_angle_loss(const torch::Tensor& pred_angle, const torch::Tensor& target_angle,
                             const torch::Tensor& target_w, const torch::Tensor& target_h, double lambda = 3.0);

// Per-branch loss. BranchLossResult as for detection, with (4) vectors [box, cls, dfl, angle] and the assigner's
// target_bboxes (B, A, 5) xywhr in input pixels.
class ObbLoss {
 public:
  using Preds = ObbBranchOutput;
  using Result = BranchLossResult;

  // topk2 = 0 means no second narrowing (one2many: topk 10; one2one: topk 7, topk2 1).
  ObbLoss(int64_t num_classes, std::vector<double> strides, int64_t topk, int64_t topk2 = 0, ObbGains gains = {});

  // grid_hw: (H, W) of each level's feature map in head order; the network input is grid_hw[0] * strides[0].
  // Labels whose w or h is under 2 input pixels are ignored (as the reference, for stability).
  // class_weights: optional (nc) multipliers of the BCE term (empty = off).
  BranchLossResult operator()(const ObbBranchOutput& preds, const std::vector<std::pair<int64_t, int64_t>>& grid_hw,
                              const ObbBatch& batch, const torch::Tensor& class_weights = {}) const;

  // (B, n_max, 6) [cls, cx, cy, w, h, angle] input pixels, zero rows as padding, tiny boxes dropped.
  torch::Tensor preprocess_targets(const ObbBatch& batch, int64_t batch_size, const torch::Tensor& imgsz_hw,
                                   torch::Device device) const;

  static std::vector<std::string> loss_names() { return {"box", "cls", "dfl", "angle"}; }

  static constexpr double kProbiouFloor = 0.01;  // variance floor of the box loss's probiou
  static constexpr double kMinSidePx = 2.0;      // labels with a side under this are dropped

 private:
  int64_t nc_;
  std::vector<double> strides_;
  ObbGains gains_;
  RotatedTaskAlignedAssigner assigner_;
};

// End-to-end OBB loss: both branches blended by ProgLossSchedule (train/e2e_loss.h).
// E2ELossResult: total (), loss_vector (4), loss_items (4) detached gained one2one [box, cls, dfl, angle].
using E2EObbLoss = E2ELoss<ObbLoss>;

}  // namespace y26
