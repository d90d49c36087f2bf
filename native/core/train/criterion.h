// The task criterion the trainer and validator talk to: one object per training run that turns the model's
// train-mode (or unfused eval-mode) outputs and a loader batch into the value to back-propagate and the logged
// items, named as the official loss_names. Detect, segment, pose and obb (end-to-end and one2many-only) and classify
// implement it.
//
// Adding a task: subclass TrainCriterion, map ModelOutput + Batch to the task loss in compute()
// (cast the branch tensors to float32, zero the classes when single_cls), return its official names from
// loss_names() without the "_loss" suffix, derive from ProgLossCriterion (criterion.cpp) for the ProgLoss schedule, and add the
// task to make_criterion(). The trainer and validator then need no change for the losses.
#pragma once
#include <yaml-cpp/yaml.h>

#include <torch/types.h>

#include <memory>
#include <string>
#include <vector>

#include "data/loader.h"
#include "model/yolo.h"

namespace y26 {

struct CriterionResult {
  torch::Tensor total;  // () what the trainer back-propagates (already x batch size, ProgLoss-weighted)
  torch::Tensor items;  // (loss_names().size()) detached gained items as the official trainer logs them
};

class TrainCriterion {
 public:
  virtual ~TrainCriterion() = default;
  // Official loss names without "_loss", in item order: detect {box, cls, dfl}; segment {box, seg, cls, dfl, sem};
  // pose {box, pose, kobj, cls, dfl, rle}; obb {box, cls, dfl, angle}; classify {loss}.
  virtual const std::vector<std::string>& loss_names() const = 0;
  // out: the model's forward (train mode, or eval mode of an unfused model for the val losses); b: the loader's
  // batch on any device (moved to `device` here). single_cls: every label counts as class 0.
  virtual CriterionResult compute(const ModelOutput& out, const Batch& b, const torch::Device& device,
                                  bool single_cls) const = 0;
  virtual void update() {}                 // once after each finished epoch (ProgLoss weighting)
  virtual void set_updates(int64_t) {}     // resume: number of finished epochs
  virtual int64_t updates() const { return 0; }
};

// The criterion of `model`'s task (end2end or one2many-only as the model is built). hyp: the resolved train args
// (box, cls, dfl, pose, kobj, rle, angle gains; overlap_mask, mask_ratio). Pose uses the model's RealNVP flow for
// the RLE term, so `model` must outlive the criterion. Classify: cross-entropy of the logits, item "loss". kpt_sigmas: pose
// OKS sigmas (the data.yaml's kpt_oks_sigmas, K values > 0); empty = the defaults.
// class_weights: (nc) multipliers of the classification BCE (detect, segment, pose, obb; see class_weights_for).
std::unique_ptr<TrainCriterion> make_criterion(YoloModel& model, int64_t nc, int64_t epochs, const YAML::Node& hyp,
                                               const std::vector<double>& kpt_sigmas = {},
                                               const torch::Tensor& class_weights = {});

// The official cls_pw class weights: (1 / count)^cls_pw per class (a class with no instances counts 1),
// normalised to mean 1. Returns an undefined tensor when cls_pw is 0 or nothing was counted.
torch::Tensor class_weights_for(const std::vector<int64_t>& class_counts, double cls_pw);

// Column name of a loss item: "box" -> "box_loss"; classify's single item "loss" stays "loss" (official train/loss).
std::string loss_column(const std::string& name);

// "box" -> "box_loss"; the prefix ("train/", "val/") is prepended.
std::vector<std::string> loss_columns(const TrainCriterion& c, const std::string& prefix);

}  // namespace y26
