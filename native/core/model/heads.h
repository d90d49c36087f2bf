// YOLO26 heads: end-to-end Detect (one2many + one2one), Segment26, Pose26, OBB26 as one class, and Classify.
#pragma once
#include "model/modules.h"
#include "model/task.h"

namespace y26 {

// Raw outputs of one head branch, exactly as the official head exposes them (no activation, no decode).
struct BranchOutput {
  torch::Tensor boxes;       // (B, 4, A) l,t,r,b distances in units of the level's stride
  torch::Tensor scores;      // (B, nc, A) class logits
  torch::Tensor mask_coef;   // segment: (B, nm, A)
  torch::Tensor angle;       // obb: (B, ne, A), raw radians (not squashed)
  torch::Tensor kpts;        // pose: (B, nk*ndim, A) raw x, y offsets (grid units) and visibility logits
  torch::Tensor kpts_sigma;  // pose, training only: (B, nk*2, A)
  bool defined() const { return boxes.defined(); }
};

struct HeadSpec {
  Task task = Task::Detect;      // detect, segment, pose, obb
  int64_t nc = 80;
  int64_t reg_max = 1;
  bool end2end = true;
  std::vector<int64_t> ch;       // input channels per level
  int64_t nm = 32, npr = 256;    // segment: mask coefficients, proto width
  std::vector<int64_t> kpt_shape;  // pose: {nk, ndim}
  int64_t ne = 1;                // obb: extra (angle) channels
};

class DetectHead : public Node {
 public:
  explicit DetectHead(const HeadSpec& spec);

  struct Output {
    BranchOutput one2many, one2one;  // one2many undefined after fuse(); one2one undefined if !end2end
    torch::Tensor proto;             // segment: (B, nm, 2H3, 2W3)
    torch::Tensor semseg;            // segment, training only: (B, nc, H3, W3)
  };
  // one2one runs on detached features so its loss never reaches the backbone.
  Output forward(const std::vector<torch::Tensor>& x);

  void bias_init(const std::vector<double>& strides);  // box 2.0, cls log(5/nc/(640/s)^2), both branches
  void fuse();                                         // drops the one2many branch and training-only parts
  bool has_one2many() const { return !is_dropped("cv2"); }

  HeadSpec spec;
  int64_t nl;
  std::shared_ptr<Seq> cv2, cv3, one2one_cv2, one2one_cv3;  // ModuleLists of per-level Sequentials
  std::shared_ptr<Seq> cv4, one2one_cv4;                   // seg coef / obb angle / pose feature branch
  torch::nn::ModuleList cv4_kpts{nullptr}, cv4_sigma{nullptr}, one2one_cv4_kpts{nullptr}, one2one_cv4_sigma{nullptr};
  std::shared_ptr<Proto26> proto;
  std::shared_ptr<RealNVP> flow_model;

 private:
  BranchOutput run_branch(const std::vector<torch::Tensor>& x, bool one2one);
};

// Conv(c1 -> 1280, 1x1) -> global average pool -> Dropout(dropout) -> Linear(1280 -> nc): returns logits.
// The official Dropout module holds no weights; its p is 0 unless classify training sets the `dropout` arg.
class ClassifyHead : public Layer {
 public:
  ClassifyHead(int64_t c1, int64_t nc);
  torch::Tensor forward(const torch::Tensor& x) override;
  std::shared_ptr<Conv> conv;
  torch::nn::Linear linear{nullptr};
  double dropout = 0.0;  // applied in training mode only
};

}  // namespace y26
