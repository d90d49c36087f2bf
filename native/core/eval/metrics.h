// Detection validation metrics as the official DetectionValidator computes them: IoU matching at
// 0.50:0.05:0.95, COCO 101-point AP per class, P/R at the best smoothed mean F1, mAP50, mAP50-95, fitness.
#pragma once
#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace y26 {

// The validator's thresholds: torch.linspace(0.5, 0.95, 10) in float32 (matching compares float32 IoUs to them).
torch::Tensor iou_thresholds();

// Pairwise IoU of xyxy boxes (N,4) x (M,4) -> (N,M) float32, with the official op order (eps 1e-7 in the union).
torch::Tensor box_iou(const torch::Tensor& box1, const torch::Tensor& box2, double eps = 1e-7);

// The validator's matching -> (npred, T) bool TP matrix. iou is (ngt, npred) from box_iou(gt, pred); a pair
// counts only when the classes agree. Per threshold: candidate pairs with iou >= t sorted by IoU descending,
// then each prediction keeps its best GT, then each GT keeps its lowest-index prediction (numpy.unique order).
torch::Tensor match_predictions(const torch::Tensor& pred_cls, const torch::Tensor& gt_cls, const torch::Tensor& iou,
                                const torch::Tensor& thresholds);

// Box TP matrix of one image (npred, 10): box_iou(gt, pred) then match_predictions; zeros when either is empty.
torch::Tensor box_tp(const torch::Tensor& pred_boxes, const torch::Tensor& pred_cls, const torch::Tensor& gt_boxes,
                     const torch::Tensor& gt_cls);

// Keypoint similarity (OKS) as the pose validator computes it: gt_kpts (M,K,3) with visibility, pred_kpts (N,K,2|3),
// area (M) = GT box w*h*0.53, sigmas (K) -> (M,N). Only GT keypoints with visibility != 0 count.
torch::Tensor kpt_iou(const torch::Tensor& gt_kpts, const torch::Tensor& pred_kpts, const torch::Tensor& area,
                      const std::vector<double>& sigmas, double eps = 1e-7);
// COCO's 17 person-keypoint sigmas for K == 17, else 1/K each (as the official PoseValidator).
std::vector<double> oks_sigmas(int64_t num_keypoints);

// numpy.interp (xp ascending, duplicates allowed) and the pieces of ap_per_class, exposed for tests.
double np_interp(double x, const std::vector<double>& xp, const std::vector<double>& fp, double left, double right);
// Box filter of width `fraction` (odd length round(n*fraction*2)//2 + 1) with edge padding, like metrics.smooth.
std::vector<double> smooth(const std::vector<double>& y, double fraction = 0.05);
// COCO 101-point AP: sentinels (0,1) before and (last recall, 0), (1, 0) after the curve, precision envelope,
// interpolated at recall 0:0.01:1, trapezoidal integral. A perfect class scores 0.995, as the official one does.
double compute_ap(const std::vector<double>& recall, const std::vector<double>& precision);

struct ApPerClass {
  std::vector<int64_t> classes;             // classes with at least one GT, ascending (ap_class_index)
  std::vector<int64_t> n_targets;           // GT count per entry of `classes`
  std::vector<double> p, r, f1;             // at the confidence with the best smoothed mean F1
  std::vector<std::vector<double>> ap;      // [class][threshold]
  int64_t best_index = 0;                   // index into the 1000-point confidence grid
  // The curves the official plots draw, one row per entry of `classes`, on the grid px = linspace(0, 1, 1000):
  // precision, recall and F1 against confidence, and (pr) precision against recall at IoU 0.5 (the envelope).
  std::vector<double> px;
  std::vector<std::vector<double>> p_curve, r_curve, f1_curve, pr_curve;
};

// tp: npred x T (row-major, 0/1); conf, pred_cls: npred; target_cls: all GT classes.
ApPerClass ap_per_class(const std::vector<uint8_t>& tp, int64_t num_thresholds, const std::vector<double>& conf,
                        const std::vector<int64_t>& pred_cls, const std::vector<int64_t>& target_cls);

struct ClassMetrics {
  int64_t cls = 0;
  std::string name;
  int64_t images = 0;       // images containing this class
  int64_t instances = 0;    // GT boxes of this class
  double precision = 0, recall = 0, ap50 = 0, ap50_95 = 0;
  std::vector<double> ap_per_iou;  // AP at each threshold
};

struct DetResults {
  int64_t images = 0, instances = 0;
  double precision = 0, recall = 0, map50 = 0, map50_95 = 0;
  double fitness = 0;                     // = mAP50-95 (weights 0, 0, 0, 1)
  std::vector<ClassMetrics> per_class;    // classes with GT, ascending
  std::vector<double> maps;               // AP50-95 by class id; classes without GT get the mean
  std::vector<int64_t> nt_per_class, nt_per_image;
  ApPerClass curves;                      // ap_per_class's output, with the plotted curves (classes with GT)
};

// Accumulates per-image results like DetectionValidator.update_metrics, then computes like DetMetrics.process.
class DetMetrics {
 public:
  explicit DetMetrics(std::vector<std::string> names);

  // Boxes xyxy in the same pixel space for predictions and GT (the validator uses letterboxed input space).
  // pred_boxes (N,4), pred_conf (N), pred_cls (N); gt_boxes (M,4), gt_cls (M). Any of them may be empty.
  void add_image(const torch::Tensor& pred_boxes, const torch::Tensor& pred_conf, const torch::Tensor& pred_cls,
                 const torch::Tensor& gt_boxes, const torch::Tensor& gt_cls);
  // Same, with the TP matrix (N, 10) already computed.
  void add_matched(const torch::Tensor& tp, const torch::Tensor& pred_conf, const torch::Tensor& pred_cls,
                   const torch::Tensor& gt_cls);

  int64_t images() const { return images_; }
  const std::vector<std::string>& names() const { return names_; }
  DetResults compute() const;
  void reset();

 private:
  std::vector<std::string> names_;
  int64_t images_ = 0;
  std::vector<uint8_t> tp_;
  std::vector<double> conf_;
  std::vector<int64_t> pred_cls_, target_cls_, target_img_;
};

// Pose validation: box metrics plus keypoint metrics (TP by OKS, same AP machinery); fitness = box + pose
// mAP50-95 as the official PoseMetrics.
class PoseMetrics {
 public:
  // sigmas: per-keypoint OKS sigmas (data.yaml kpt_oks_sigmas, K values > 0); empty = oks_sigmas(num_keypoints).
  PoseMetrics(std::vector<std::string> names, int64_t num_keypoints, std::vector<double> sigmas = {});
  // Boxes xyxy and keypoints (x, y[, visibility]) in the same pixel space; gt_kpts need the visibility column.
  void add_image(const torch::Tensor& pred_boxes, const torch::Tensor& pred_conf, const torch::Tensor& pred_cls,
                 const torch::Tensor& pred_kpts, const torch::Tensor& gt_boxes, const torch::Tensor& gt_cls,
                 const torch::Tensor& gt_kpts);
  DetResults box() const { return box_.compute(); }
  DetResults pose() const { return pose_.compute(); }
  double fitness() const { return box().map50_95 + pose().map50_95; }

 private:
  DetMetrics box_, pose_;
  std::vector<double> sigmas_;
};

// The official detection confusion matrix (ConfusionMatrix.process_batch): (nc + 1) x (nc + 1), rows predicted
// class, columns true class, the last row and column "background". Per image, predictions with conf > `conf` are
// paired with GT (any class) at IoU > `iou_thres`, best IoU first, each prediction and each GT at most once: a pair
// counts at [pred class][GT class], an unpaired GT at [background][GT class] (missed), an unpaired prediction at
// [pred class][background] (false positive). Classify: nc x nc, [predicted][true].
class ConfusionMatrix {
 public:
  explicit ConfusionMatrix(std::vector<std::string> names, bool classify = false);
  // iou (M, N): every GT against every prediction (box_iou(gt, pred); probiou for rotated boxes).
  void process_detections(const torch::Tensor& iou, const torch::Tensor& pred_conf, const torch::Tensor& pred_cls,
                          const torch::Tensor& gt_cls, double conf = 0.25, double iou_thres = 0.45);
  // Same with xyxy boxes (N, 4) and (M, 4).
  void process_boxes(const torch::Tensor& pred_boxes, const torch::Tensor& pred_conf, const torch::Tensor& pred_cls,
                     const torch::Tensor& gt_boxes, const torch::Tensor& gt_cls, double conf = 0.25,
                     double iou_thres = 0.45);
  void process_classes(const std::vector<int64_t>& pred, const std::vector<int64_t>& target);  // classify
  const std::vector<std::vector<double>>& matrix() const { return m_; }
  // Each column divided by its sum (+1e-9), as the normalized plot.
  std::vector<std::vector<double>> normalized() const;
  const std::vector<std::string>& names() const { return names_; }
  bool classify() const { return classify_; }

 private:
  std::vector<std::string> names_;
  bool classify_;
  std::vector<std::vector<double>> m_;
};

// The official printout: header "Class Images Instances Box(P R mAP50 mAP50-95)", an "all" row, then one row
// per class with GT when per_class and there is more than one class name.
std::string format_det_table(const DetResults& r, const std::vector<std::string>& names, bool per_class = true);

}  // namespace y26
