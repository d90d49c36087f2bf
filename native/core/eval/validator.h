// Validation as the official Detection/Segmentation/Pose/OBBValidator: rect val batches, end2end top-k (or classic
// NMS, rotated for OBB), matching in the letterboxed input space (boxes by IoU; masks also by mask IoU at proto
// resolution; keypoints also by OKS; OBB by probiou), the metrics, the printed table and the official result keys. Used by the trainer (model in memory, EMA, with val losses) and standalone
// (a checkpoint path and a data.yaml).
#pragma once
#include <yaml-cpp/yaml.h>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>
#include "data/loader.h"
#include "eval/classify_val.h"
#include "eval/metrics.h"
#include "model/yolo.h"
#include "train/criterion.h"

namespace y26 {

struct ValOptions {
  double conf = 0.001;       // keep score > conf (official val default)
  double iou = 0.7;          // classic NMS only; end2end has no suppression
  int max_det = 300;
  bool end2end = true;       // false: one2many head + NMS (needs an unfused model)
  bool half = false;         // fp16 inference (CUDA only; ignored on CPU)
  bool single_cls = false;   // every class counts as class 0
  bool verbose = false;      // per-class rows in the table
  bool overlap_mask = true;  // segment: GT mask layout (the official default)
  int mask_ratio = 4;        // segment: GT masks at 1/mask_ratio of the input
  std::vector<double> kpt_sigmas;  // pose: OKS sigmas (data.yaml kpt_oks_sigmas); empty = the defaults
  std::string device = "cpu";
  // Plots (official plots=True): when set, the first 3 batches as val_batch{i}_labels.jpg / _pred.jpg, the
  // confusion matrices and the PR/F1/P/R curves are written to this folder (eval/plots.h).
  std::string plots_dir;
  double cm_conf = 0.25;  // the confusion matrix's confidence (official: 0.25 unless conf is given)
  std::function<void(const std::string&)> log;  // receives plot warnings (a failed plot never fails validation)
};

struct ValResult {
  std::string task = "detect";
  DetResults det;                         // box metrics (B); OBB: rotated boxes by probiou
  DetResults kpt;                         // pose only: keypoint metrics (P), TP by OKS
  DetResults mask;                        // segment only: mask metrics (M), TP by mask IoU
  std::map<std::string, double> metrics;  // metrics/precision(B), metrics/recall(B), metrics/mAP50(B),
                                          // metrics/mAP50-95(B) (+ the same with (P) for pose, (M) for
                                          // segment), fitness
                                          // (+ val/box_loss.. when losses computed)
  std::vector<double> loss;               // mean criterion items per batch (its loss_names order); empty if none
  double preprocess_ms = 0, inference_ms = 0, loss_ms = 0, postprocess_ms = 0;  // per image
  int64_t images = 0;
  std::string table;                      // the official header + all row (+ per-class rows when verbose)
  std::string speed_line;                 // "Speed: ... per image"
  int imgsz = 0;                          // run_validation: the imgsz and data it used (defaults from the checkpoint)
  std::string data;
  std::string save_dir;                   // run_validation with plots: the runs/<task>/val* folder written
  std::vector<std::vector<double>> confusion_matrix;  // with plots: ConfusionMatrix::matrix() (detection: nc + 1)
};

// Validates `model` on every batch of `loader` (one pass; build it with rect = true, augment = false).
// The model is switched to eval for the pass and left in eval. `criterion` (optional, the model's task) adds the
// val losses (val/<name>_loss). Pose models need a loader whose dataset has the model's kpt_shape; segment and
// OBB models one with polygon labels.
ValResult validate(YoloModel& model, DataLoader& loader, const std::vector<std::string>& names,
                   const ValOptions& opt, const TrainCriterion* criterion = nullptr);

class SegmentMetrics;  // eval/mask_metrics.h
class ObbMetrics;      // eval/obb_metrics.h

// Per-batch matching of one task's predictions against the batch's labels, as validate() does it: everything in
// the batch's letterboxed input pixels (GT boxes, keypoints and rotated boxes scaled by the batch image's W and H;
// segment masks at proto resolution). Exposed so that the space conventions can be tested without a model.
class ValMatcher {
 public:
  // names: the metric class names (["item"] for single_cls); kpt_shape: the pose model's, else empty.
  ValMatcher(const std::string& task, std::vector<std::string> names, std::vector<int64_t> kpt_shape,
             const ValOptions& opt);
  ~ValMatcher();
  // dets[i]: image i's rows (n, 6 + extra) [box, score, cls, extra] in input pixels: boxes xyxy (obb: cx, cy, w, h
  // with the angle as the one extra), pose keypoints (x, y[, v]) / segment mask coefficients as the extra.
  // proto (B, nm, h, w): segment only.
  void add_batch(const Batch& b, const std::vector<torch::Tensor>& dets, const torch::Tensor& proto = {});
  // Fills task, det / kpt / mask and the metrics/* keys + fitness of `res` (and its confusion_matrix with plots).
  void finish(ValResult& res) const;
  const ConfusionMatrix* confusion() const { return cm_.get(); }  // null unless opt.plots_dir is set

 private:
  Task task_;
  ValOptions opt_;
  int64_t nk_ = 0, ndim_ = 0;
  DetMetrics box_;
  std::unique_ptr<PoseMetrics> pose_;
  std::unique_ptr<SegmentMetrics> seg_;
  std::unique_ptr<ObbMetrics> obb_;
  std::unique_ptr<ConfusionMatrix> cm_;
};

// The official metric keys of a task, in results.csv order: detect and obb the four (B) keys, segment (B) then
// (M), pose (B) then (P); classify accuracy_top1, accuracy_top5.
std::vector<std::string> metric_keys(Task task);
std::vector<std::string> metric_keys(const std::string& task);  // throws for an unknown task name

// The official printout for the result's task: "Class Images Instances Box(P R mAP50 mAP50-95)" [+ "Pose(P R
// mAP50 mAP50-95)" or "Mask(...)"], an "all" row, then per-class rows when per_class and there is more than one class name.
std::string format_val_table(const ValResult& r, const std::vector<std::string>& names, bool per_class = true);

// The loader the validator expects for a dataset: rect batches, letterbox only, no shuffle.
std::unique_ptr<DataLoader> make_val_loader(std::shared_ptr<const Dataset> ds, int batch, int workers, int stride,
                                            const std::string& device);

// A classify validation in the shape every task's callers read (metrics, table, speed).
ValResult to_val_result(const ClassifyValResult& cr);

// Standalone val(): args with the official names: model (checkpoint path), data (data.yaml; default the one the
// checkpoint was trained on), imgsz (default the checkpoint's training imgsz, else 640), conf (0.001 for the
// metrics, 0.25 for the confusion matrix, unless given), end2end (model's default), device ("cpu"), plots (the
// validation plots go to project/name, default runs/<task>/val, incremented unless exist_ok); every other key
// absent or null takes its default.yaml value from train_defaults() (batch 16, workers 8 but at most one per
// hardware thread, ...). `log` receives the printed lines.
ValResult run_validation(const YAML::Node& args, const std::function<void(const std::string&)>& log = {});

}  // namespace y26
