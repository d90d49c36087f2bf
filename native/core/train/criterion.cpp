#include "train/criterion.h"

#include <torch/nn/functional/loss.h>

#include "data/obb_labels.h"
#include "train/detection_loss.h"
#include "train/obb_loss.h"
#include "train/pose_loss.h"
#include "train/segment_loss.h"
#include "util/error.h"

namespace y26 {

namespace {

double gain(const YAML::Node& hyp, const char* key, double fallback) {
  return hyp && hyp[key] && !hyp[key].IsNull() ? hyp[key].as<double>() : fallback;
}

// Labels of a loader batch on the loss device; single_cls maps every class to 0 (nc is then 1).
DetectionBatch labels_of(const Batch& b, const torch::Device& device, bool single_cls) {
  auto cls = b.cls.to(device);
  if (single_cls) cls = torch::zeros_like(cls);
  return DetectionBatch{b.batch_idx.to(device), cls, b.bboxes.to(device)};
}

torch::Tensor f32(const torch::Tensor& t) { return t.defined() ? t.to(torch::kFloat32) : t; }

void need_branch(const BranchOutput& br, const char* which) {
  if (!br.defined())
    fail(std::string("training loss: the model gave no ") + which +
         " head output; losses need the unfused model (fuse() drops the one2many head)");
}

// The ProgLoss epoch counter of a task's end-to-end loss (none for one2many-only models).
template <class E2E>
class ProgLossCriterion : public TrainCriterion {
 public:
  void update() override {
    if (e2e_) e2e_->schedule().update();
  }
  void set_updates(int64_t n) override {
    if (e2e_) e2e_->schedule().set_updates(n);
  }
  int64_t updates() const override { return e2e_ ? e2e_->schedule().updates() : 0; }

 protected:
  std::unique_ptr<E2E> e2e_;
};

class DetectCriterion : public ProgLossCriterion<E2EDetectionLoss> {
 public:
  DetectCriterion(const YoloModel& model, int64_t nc, int64_t epochs, const LossGains& g) {
    if (model.end2end()) e2e_ = std::make_unique<E2EDetectionLoss>(nc, model.stride(), epochs, g);
    else o2m_ = std::make_unique<DetectionLoss>(nc, model.stride(), 10, 0, g);
  }
  const std::vector<std::string>& loss_names() const override { return names_; }
  CriterionResult compute(const ModelOutput& out, const Batch& b, const torch::Device& device,
                          bool single_cls) const override {
    need_branch(out.one2many, "one2many");
    const auto db = labels_of(b, device, single_cls);
    HeadBranchOutput o2m{f32(out.one2many.boxes), f32(out.one2many.scores)};
    if (e2e_) {
      need_branch(out.one2one, "one2one");
      HeadBranchOutput o2o{f32(out.one2one.boxes), f32(out.one2one.scores)};
      auto r = (*e2e_)(o2m, o2o, grid_sizes_of(out.feats), db);
      return {r.total, r.loss_items};
    }
    auto r = (*o2m_)(o2m, grid_sizes_of(out.feats), db);
    return {r.loss.sum() * (double)b.size(), r.loss.detach()};
  }

 private:
  std::vector<std::string> names_{"box", "cls", "dfl"};
  std::unique_ptr<DetectionLoss> o2m_;
};

PoseBranchOutput pose_branch(const BranchOutput& br) {
  return {f32(br.boxes), f32(br.scores), f32(br.kpts), f32(br.kpts_sigma)};
}

class PoseCriterion : public ProgLossCriterion<E2EPoseLoss> {
 public:
  PoseCriterion(YoloModel& model, int64_t nc, int64_t epochs, const PoseGains& g, const std::vector<double>& sigmas) {
    const auto& ks = model.config().kpt_shape;
    FlowLogProb flow;
    if (model.head() && model.head()->flow_model) {
      // The flow is trained with the model (its parameters are in the optimiser), as the official RLE term.
      auto nvp = model.head()->flow_model;
      flow = [nvp](const torch::Tensor& e) { return nvp->log_prob(e); };
    }
    names_ = {"box", "pose", "kobj", "cls", "dfl"};
    if (flow) names_.push_back("rle");
    if (model.end2end()) e2e_ = std::make_unique<E2EPoseLoss>(nc, model.stride(), ks, epochs, g, flow);
    else o2m_ = std::make_unique<PoseLoss>(nc, model.stride(), ks, 10, 0, g, flow);
    kpt_count_ = ks.at(0);
    kpt_dims_ = ks.at(1);
    if (!sigmas.empty()) {
      auto s = torch::tensor(sigmas, torch::kFloat64).to(torch::kFloat);
      if (e2e_) e2e_->set_sigmas(s);
      else o2m_->set_sigmas(s);
    }
  }
  const std::vector<std::string>& loss_names() const override { return names_; }
  CriterionResult compute(const ModelOutput& out, const Batch& b, const torch::Device& device,
                          bool single_cls) const override {
    need_branch(out.one2many, "one2many");
    if (!b.keypoints.defined() || b.keypoints.dim() != 3 || b.keypoints.size(1) != kpt_count_ ||
        b.keypoints.size(2) != kpt_dims_)
      fail("pose training: the batch has no keypoints of shape (N, " + std::to_string(kpt_count_) + ", " +
           std::to_string(kpt_dims_) + "); the data yaml needs kpt_shape: [" + std::to_string(kpt_count_) + ", " +
           std::to_string(kpt_dims_) + "] like the model");
    const auto db = labels_of(b, device, single_cls);
    auto kpts = b.keypoints.to(device);
    if (e2e_) {
      need_branch(out.one2one, "one2one");
      auto r = (*e2e_)(pose_branch(out.one2many), pose_branch(out.one2one), grid_sizes_of(out.feats), db, kpts);
      return {r.total, r.loss_items};
    }
    auto r = (*o2m_)(pose_branch(out.one2many), grid_sizes_of(out.feats), db, kpts);
    return {r.loss.sum() * (double)b.size(), r.loss.detach()};
  }

 private:
  std::vector<std::string> names_;
  std::unique_ptr<PoseLoss> o2m_;
  int64_t kpt_count_ = 0, kpt_dims_ = 0;
};

SegmentBranchOutput seg_branch(const BranchOutput& br) {
  return {f32(br.boxes), f32(br.scores), f32(br.mask_coef)};
}

class SegmentCriterion : public ProgLossCriterion<E2ESegmentLoss> {
 public:
  SegmentCriterion(const YoloModel& model, int64_t nc, int64_t epochs, const LossGains& g, bool overlap,
                   int mask_ratio)
      : overlap_(overlap), mask_ratio_(mask_ratio) {
    if (mask_ratio_ < 1) fail("train(): mask_ratio must be >= 1, got " + std::to_string(mask_ratio_));
    if (model.end2end()) e2e_ = std::make_unique<E2ESegmentLoss>(nc, model.stride(), epochs, g, overlap);
    else o2m_ = std::make_unique<SegmentLoss>(nc, model.stride(), 10, 0, g, overlap);
  }
  const std::vector<std::string>& loss_names() const override { return names_; }
  CriterionResult compute(const ModelOutput& out, const Batch& b, const torch::Device& device,
                          bool single_cls) const override {
    need_branch(out.one2many, "one2many");
    if (!out.proto.defined()) fail("segment training: the model gave no proto output");
    const auto db = labels_of(b, device, single_cls);
    // Loader-side GT masks at 1/mask_ratio of the input, in the layout the loss was built for.
    auto masks = polygon_masks(b, mask_ratio_, overlap_).to(device);
    auto proto = f32(out.proto), semseg = f32(out.semseg);  // semseg: training mode only (no sem term in eval)
    if (e2e_) {
      need_branch(out.one2one, "one2one");
      auto r = (*e2e_)(seg_branch(out.one2many), seg_branch(out.one2one), proto, semseg, grid_sizes_of(out.feats), db,
                       masks);
      return {r.total, r.loss_items};
    }
    auto r = (*o2m_)(seg_branch(out.one2many), proto, semseg, grid_sizes_of(out.feats), db, masks);
    return {r.loss.sum() * (double)b.size(), r.loss.detach()};
  }

 private:
  std::vector<std::string> names_{"box", "seg", "cls", "dfl", "sem"};
  bool overlap_;
  int mask_ratio_;
  std::unique_ptr<SegmentLoss> o2m_;
};

ObbBranchOutput obb_branch(const BranchOutput& br) { return {f32(br.boxes), f32(br.scores), f32(br.angle)}; }

class ObbCriterion : public ProgLossCriterion<E2EObbLoss> {
 public:
  ObbCriterion(const YoloModel& model, int64_t nc, int64_t epochs, const ObbGains& g) {
    if (model.end2end()) e2e_ = std::make_unique<E2EObbLoss>(nc, model.stride(), epochs, g);
    else o2m_ = std::make_unique<ObbLoss>(nc, model.stride(), 10, 0, g);
  }
  const std::vector<std::string>& loss_names() const override { return names_; }
  CriterionResult compute(const ModelOutput& out, const Batch& b, const torch::Device& device,
                          bool single_cls) const override {
    need_branch(out.one2many, "one2many");
    auto cls = b.cls.to(device);
    if (single_cls) cls = torch::zeros_like(cls);
    // Rotated boxes from the batch's (augmented) polygons, normalised as the official Format(return_obb).
    ObbBatch ob{b.batch_idx.to(device), cls, batch_rboxes(b, true).to(device)};
    if (e2e_) {
      need_branch(out.one2one, "one2one");
      auto r = (*e2e_)(obb_branch(out.one2many), obb_branch(out.one2one), grid_sizes_of(out.feats), ob);
      return {r.total, r.loss_items};
    }
    auto r = (*o2m_)(obb_branch(out.one2many), grid_sizes_of(out.feats), ob);
    return {r.loss.sum() * (double)b.size(), r.loss.detach()};
  }

 private:
  std::vector<std::string> names_ = E2EObbLoss::loss_names();
  std::unique_ptr<ObbLoss> o2m_;
};

// Official v8ClassificationLoss: cross-entropy of the logits, mean over the batch (not scaled by the batch size,
// unlike the detection losses), logged as the single item "loss".
class ClassifyCriterion : public TrainCriterion {
 public:
  const std::vector<std::string>& loss_names() const override { return names_; }
  CriterionResult compute(const ModelOutput& out, const Batch& b, const torch::Device& device,
                          bool single_cls) const override {
    if (!out.cls_logits.defined()) fail("classify training: the model gave no logits; use a -cls model");
    auto target = b.cls.to(device).view({-1}).to(torch::kLong);
    if (single_cls) target = torch::zeros_like(target);
    auto loss = torch::nn::functional::cross_entropy(f32(out.cls_logits), target);
    return {loss, loss.detach().reshape({1})};
  }

 private:
  std::vector<std::string> names_{"loss"};
};

}  // namespace

torch::Tensor class_weights_for(const std::vector<int64_t>& class_counts, double cls_pw) {
  if (cls_pw < 0 || cls_pw > 1) fail("cls_pw=" + std::to_string(cls_pw) + " must be in [0, 1] (0 = off, 1 = inverse frequency)");
  int64_t total = 0;
  for (auto c : class_counts) total += c;
  if (cls_pw == 0 || total == 0) return {};
  auto w = torch::empty({(int64_t)class_counts.size()}, torch::kFloat64);
  for (size_t i = 0; i < class_counts.size(); ++i) w[(int64_t)i] = std::pow(1.0 / (double)std::max<int64_t>(class_counts[i], 1), cls_pw);
  return (w / w.mean()).to(torch::kFloat32);
}

std::unique_ptr<TrainCriterion> make_criterion(YoloModel& model, int64_t nc, int64_t epochs, const YAML::Node& hyp,
                                               const std::vector<double>& kpt_sigmas, const torch::Tensor& class_weights) {
  LossGains det{gain(hyp, "box", 7.5), gain(hyp, "cls", 0.5), gain(hyp, "dfl", 1.5), class_weights};
  switch (model.task_kind()) {
    case Task::Detect:
      return std::make_unique<DetectCriterion>(model, nc, epochs, det);
    case Task::Pose: {
    PoseGains g;
    g.det = det;
    g.pose = gain(hyp, "pose", 12.0);
    g.kobj = gain(hyp, "kobj", 1.0);
    g.rle = gain(hyp, "rle", 1.0);
    return std::make_unique<PoseCriterion>(model, nc, epochs, g, kpt_sigmas);
    }
    case Task::Segment: {
    const bool overlap = hyp && hyp["overlap_mask"] && !hyp["overlap_mask"].IsNull() ? hyp["overlap_mask"].as<bool>()
                                                                                     : true;
    return std::make_unique<SegmentCriterion>(model, nc, epochs, det, overlap, (int)gain(hyp, "mask_ratio", 4));
    }
    case Task::Obb:
      return std::make_unique<ObbCriterion>(model, nc, epochs, ObbGains{det, gain(hyp, "angle", 1.0)});
    case Task::Classify:
      return std::make_unique<ClassifyCriterion>();
  }
  fail("train(): unknown task '" + model.task() + "'; use a detect, segment, pose, obb or classify "
       "model (yolo26n.yaml, yolo26n-seg.yaml, yolo26n-pose.yaml, yolo26n-obb.yaml, yolo26n-cls.yaml)");
}

std::vector<std::string> loss_columns(const TrainCriterion& c, const std::string& prefix) {
  std::vector<std::string> out;
  for (const auto& n : c.loss_names()) out.push_back(prefix + loss_column(n));
  return out;
}

std::string loss_column(const std::string& name) { return name == "loss" ? name : name + "_loss"; }

}  // namespace y26
