// Validation as the official DetectionValidator / PoseValidator: rect val batches, end2end top-k (or classic NMS),
// matching in the letterboxed input space (boxes by IoU; pose keypoints also by OKS), the metrics, the printed
// table and the official result keys. Used by the trainer (model in memory, EMA, with val losses) and standalone
// (a checkpoint path and a data.yaml).
#pragma once
#include <yaml-cpp/yaml.h>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>
#include "data/loader.h"
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
  std::string device = "cpu";
};

struct ValResult {
  std::string task = "detect";
  DetResults det;                         // box metrics (B)
  DetResults kpt;                         // pose only: keypoint metrics (P), TP by OKS
  std::map<std::string, double> metrics;  // metrics/precision(B), metrics/recall(B), metrics/mAP50(B),
                                          // metrics/mAP50-95(B) (+ the same with (P) for pose), fitness
                                          // (+ val/box_loss.. when losses computed)
  std::vector<double> loss;               // mean criterion items per batch (its loss_names order); empty if none
  double preprocess_ms = 0, inference_ms = 0, loss_ms = 0, postprocess_ms = 0;  // per image
  int64_t images = 0;
  std::string table;                      // the official header + all row (+ per-class rows when verbose)
  std::string speed_line;                 // "Speed: ... per image"
};

// Validates `model` on every batch of `loader` (one pass; build it with rect = true, augment = false).
// The model is switched to eval for the pass and left in eval. `criterion` (optional, the model's task) adds the
// val losses (val/<name>_loss). Pose models need a loader whose dataset has the model's kpt_shape.
ValResult validate(YoloModel& model, DataLoader& loader, const std::vector<std::string>& names,
                   const ValOptions& opt, const TrainCriterion* criterion = nullptr);

// The official metric keys of a task, in results.csv order: detect the four (B) keys, pose (B) then (P).
std::vector<std::string> metric_keys(const std::string& task);

// The official printout for the result's task: "Class Images Instances Box(P R mAP50 mAP50-95)" [+ "Pose(P R
// mAP50 mAP50-95)"], an "all" row, then per-class rows when per_class and there is more than one class name.
std::string format_val_table(const ValResult& r, const std::vector<std::string>& names, bool per_class = true);

// The loader the validator expects for a dataset: rect batches, letterbox only, no shuffle.
std::unique_ptr<DataLoader> make_val_loader(std::shared_ptr<const Dataset> ds, int batch, int workers, int stride,
                                            const std::string& device);

// Standalone val(): args with the official names: model (checkpoint path), data (data.yaml), imgsz (640),
// batch (16), conf (0.001), iou (0.7), max_det (300), split ("val"), half, end2end (model's default),
// device ("cpu"), workers (2), single_cls, verbose (true). `log` receives the printed lines.
ValResult run_validation(const YAML::Node& args, const std::function<void(const std::string&)>& log = {});

}  // namespace y26
