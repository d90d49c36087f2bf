// YoloModel: a YOLO26 network built from a ModelConfig, with official state_dict names, fuse and stats.
#pragma once
#include "model/config.h"
#include "model/heads.h"

#include <map>
#include <utility>

namespace y26 {

struct ModelOutput {
  // Raw head outputs (train and eval). one2many is undefined after fuse(); one2one undefined if !end2end.
  BranchOutput one2many, one2one;
  std::vector<torch::Tensor> feats;   // the head's input maps (P3, P4, P5)
  torch::Tensor proto, semseg;        // segment; semseg in training only
  torch::Tensor cls_logits;           // classify
  // Eval mode only:
  torch::Tensor cls_probs;            // classify: softmax
  torch::Tensor decoded;              // (B, 4+nc+extra, A) one2one decode: xyxy px (obb: xywh + angle), sigmoid
  torch::Tensor end2end;              // (B, k, 6+extra) [x1,y1,x2,y2,score,cls, extra], k = min(max_det, A)
  torch::Tensor end2end_anchor;       // (B, k) anchor index behind each end2end row
  torch::Tensor classic;              // (B, 4+nc+extra, A) one2many decode, xywh + sigmoid: input for NMS
};

using StateDict = std::vector<std::pair<std::string, torch::Tensor>>;

class YoloModel : public torch::nn::Module {
 public:
  explicit YoloModel(const ModelConfig& cfg);

  ModelOutput forward(const torch::Tensor& x);

  const ModelConfig& config() const { return cfg_; }
  const std::string& task() const { return cfg_.task; }  // the name, for messages, files and metadata
  Task task_kind() const { return task_kind_; }          // what the code branches on
  int64_t nc() const { return cfg_.nc; }
  bool end2end() const { return cfg_.end2end; }
  const std::vector<double>& stride() const { return stride_; }
  DetectHead* head() const { return head_.get(); }  // the detect/segment/pose/obb head; nullptr for classify
  ClassifyHead* classify_head() const;              // the classify head; nullptr for the other tasks
  int max_det = 300;            // end2end rows (official default)
  bool compute_classic = true;  // eval: also decode one2many (xywh) for the NMS path

  // Official names and order (params then buffers per module, children in registration order).
  StateDict state_dict() const;
  // Exact key set and shapes required (io/checkpoint's loader: the error names `source` and the first
  // mismatching keys); nothing is copied unless everything fits. Only before fuse().
  void load_state_dict(const StateDict& sd, const std::string& source);
  void load_state_dict(const std::map<std::string, torch::Tensor>& sd, const std::string& source);

  // Folds BatchNorm into convs and drops the one2many head (and pose sigma/flow, seg semseg) as deploy does.
  void fuse();
  bool is_fused() const { return fused_; }

  // An independent copy (same config, weights, buffers, fused state, device and mode): EMA, export.
  std::shared_ptr<YoloModel> clone_model() const;

  int64_t num_params(bool trainable_only = false) const;
  int64_t num_layers() const;  // modules in the (fuse-aware) tree
  double gflops(int imgsz = 640);  // 2 x multiply-adds of convs, linears and attention matmuls at imgsz x imgsz
  std::string info(bool verbose = false, int imgsz = 640);
  std::string display_name() const;  // e.g. "YOLO26n-seg"

 private:
  enum class Kind { Block, Concat, Upsample, Head, Classify };
  struct Step {
    Kind kind;
    std::vector<int> from;
    std::shared_ptr<Layer> block;  // Block / Classify
    bool save = false;
  };
  ModelConfig cfg_;
  Task task_kind_;  // parsed from cfg_.task once
  std::vector<Step> steps_;
  std::shared_ptr<DetectHead> head_;
  std::vector<double> stride_;
  bool fused_ = false;
  std::map<int, double> gflops_;  // by imgsz: a forward pass each, and the architecture decides (cleared by fuse)
  std::vector<std::string> layer_rows_;  // one info() line per layer, made while building
  // Anchor cache, rebuilt when the feature-map sizes change.
  std::vector<std::pair<int64_t, int64_t>> anchor_hw_;
  torch::Tensor anchor_points_, anchor_strides_;

  void build();
  std::vector<torch::Tensor> run_backbone(const torch::Tensor& x, torch::Tensor* last);
};

// Builds from a YAML path or builtin name ("yolo26n.yaml", "yolo26s-seg.yaml"); nc > 0 overrides the YAML's.
std::shared_ptr<YoloModel> build_model(const std::string& name_or_path, int nc = -1);

// Sets every BatchNorm's running mean and variance to the statistics of one train-mode pass over `x`, then
// returns the model to eval mode. Fresh random models shrink activations layer by layer until every output is
// the head's bias; tests calibrate them this way so outputs depend on the input (as the fixture models' recipe).
void calibrate_batchnorm(YoloModel& model, const torch::Tensor& x);

// Stores every 4-D parameter and buffer channels-last (NHWC). oneDNN then convolves without reordering to and from
// its blocked layout on each call: about 10-20 % less CPU time per fp32 training step here. Tensors keep their
// identity (optimisers and EMA that hold them stay valid); inputs should be channels-last too.
void to_channels_last(torch::nn::Module& model);

struct CheckpointData;
// Builds the network from a checkpoint's model YAML dict and loads its weights (unfused, train mode).
std::shared_ptr<YoloModel> build_model(const CheckpointData& ckpt, const std::string& source);

}  // namespace y26
