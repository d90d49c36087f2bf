// Segmentation validation metrics as the official SegmentationValidator computes them: predicted masks from
// coef . proto (logit > 0, i.e. sigmoid > 0.5, cropped to the box), GT instance masks from the loader's masks,
// mask IoU, the TP matrix at IoU 0.50:0.05:0.95 with the box matcher, and box + mask metrics.
#pragma once
#include "eval/metrics.h"

namespace y26 {

// Zeroes what lies outside each box: masks (N, h, w) any dtype, boxes (N, 4) xyxy in mask pixels. Pixel column x
// is kept when x1 <= x < x2 (integer index against the float coordinate), rows alike. Returns a new tensor.
torch::Tensor crop_mask(const torch::Tensor& masks, const torch::Tensor& boxes);

// Pairwise mask IoU: mask1 (M, n), mask2 (N, n) flattened 0/1 masks of any dtype -> (M, N) float32,
// intersection / (area1 + area2 - intersection + eps), on the masks' device.
torch::Tensor mask_iou(const torch::Tensor& mask1, const torch::Tensor& mask2, double eps = 1e-7);

// Binary instance masks of one image's predictions: proto (nm, mh, mw), coef (N, nm), boxes (N, 4) xyxy in input
// pixels of an in_h x in_w input. native = false (the validator during training, process_mask): masks at proto
// resolution, boxes scaled by mw / in_w and mh / in_h. native = true (save_json / save_txt, process_mask_native):
// logits upsampled bilinearly to in_h x in_w first. Both: logit > 0, then crop. Returns (N, h, w) uint8 0/1.
torch::Tensor predict_masks(const torch::Tensor& proto, const torch::Tensor& coef, const torch::Tensor& boxes,
                            int64_t in_h, int64_t in_w, bool native = false);

// One image's GT instance masks for the validator, (num_labels, out_h, out_w) float 0/1. masks is that image's
// slice of polygon_masks: overlap = true: (H, W) index map (value j + 1 = the image's j-th label);
// overlap = false: (num_labels, H, W) 0/1. A different size is resized bilinearly and thresholded at 0.5,
// as the validator does (out_h, out_w = input size / 4 for the default process, the input size for native).
torch::Tensor gt_instance_masks(const torch::Tensor& masks, int64_t num_labels, bool overlap, int64_t out_h,
                                int64_t out_w);

// Mask TP matrix of one image (npred, 10) bool: mask_iou(gt, pred) then match_predictions, as box_tp does for
// boxes. pred_masks (N, h, w) and gt_masks (M, h, w) at the same size; zeros when either side is empty.
torch::Tensor mask_tp(const torch::Tensor& pred_masks, const torch::Tensor& pred_cls, const torch::Tensor& gt_masks,
                      const torch::Tensor& gt_cls);

// Segment validation: box metrics plus mask metrics (TP by mask IoU, same AP machinery); fitness = box + mask
// mAP50-95 as the official SegmentMetrics.
class SegmentMetrics {
 public:
  explicit SegmentMetrics(std::vector<std::string> names);
  // Boxes xyxy in one pixel space (the letterboxed input); masks as predict_masks / gt_instance_masks give them,
  // both at the same size. Any side may be empty.
  void add_image(const torch::Tensor& pred_boxes, const torch::Tensor& pred_conf, const torch::Tensor& pred_cls,
                 const torch::Tensor& pred_masks, const torch::Tensor& gt_boxes, const torch::Tensor& gt_cls,
                 const torch::Tensor& gt_masks);
  DetResults box() const { return box_.compute(); }
  DetResults mask() const { return mask_.compute(); }
  double fitness() const { return box().fitness + mask().fitness; }
  int64_t images() const { return box_.images(); }
  void reset();

 private:
  DetMetrics box_, mask_;
};

// The official printout: "Class Images Instances Box(P R mAP50 mAP50-95) Mask(P R mAP50 mAP50-95)", an "all" row,
// then one row per class with GT when per_class and there is more than one class name.
std::string format_seg_table(const DetResults& box, const DetResults& mask, const std::vector<std::string>& names,
                             bool per_class = true);

}  // namespace y26
