// Model output -> detections in original pixels: the end2end selection, the classic NMS path, and the Result type.
#pragma once
#include <opencv2/core.hpp>
#include <torch/types.h>

#include <string>
#include <vector>

#include "infer/letterbox.h"
#include "model/task.h"

namespace y26 {

struct PostprocessOptions {
  Task task = Task::Detect;
  float conf = 0.25f;               // keep score > conf
  float iou = 0.7f;                 // NMS IoU threshold (classic path only; end2end has no NMS)
  std::vector<int64_t> classes;     // keep only these class ids; empty keeps all
  int max_det = 300;
  bool end2end = true;              // (B,N,6+E) rows [x1,y1,x2,y2,score,cls,extra] vs classic (B,4+nc+E,A)
  bool agnostic_nms = false;        // classic: one NMS over all classes
  bool multi_label = false;         // classic: one row per (box, class) above conf
  int max_nms = 30000;              // classic: boxes fed to NMS at most
  int nc = 0;                       // classic: number of class rows; 0 = every row after the box is a class
  bool classic_xywh = true;         // classic: boxes are centre x, y, w, h (false: already x1, y1, x2, y2)
  int kpt_count = 17, kpt_dims = 3; // pose keypoint shape
};

// Per-stage wall time in milliseconds per image.
struct Speed {
  double decode = 0, preprocess = 0, inference = 0, postprocess = 0;
};

struct Result {
  std::string path;            // file, "memory", "pixels", "camera N"; videos add frame
  int64_t frame = -1;          // video/camera frame index (0-based), -1 for still images
  bool is_video = false;       // frame of a video file or camera (saving writes a video)
  double fps = 0;              // the video's frame rate when known
  int64_t index = 0;           // position in the source stream
  int orig_h = 0, orig_w = 0;
  torch::Tensor boxes;         // (N,4) float32 xyxy in original pixels, CPU (obb: the enclosing axis-aligned box)
  torch::Tensor conf;          // (N) float32
  torch::Tensor cls;           // (N) int64
  torch::Tensor keypoints;     // pose: (N,K,3) x, y in original pixels, visibility; otherwise undefined
  torch::Tensor obb;           // obb: (N,5) cx, cy, w, h, angle (radians) in original pixels; otherwise undefined
  torch::Tensor masks;         // segment: (N,H,W) uint8 0/1 at the original image size; otherwise undefined
  torch::Tensor probs;         // classify: (nc) float32 class probabilities (softmax), CPU; boxes are then empty
  torch::Tensor ids;           // tracking: (N) int64 track ids; undefined when the result is not tracked
  cv::Mat orig_image;          // BGR original, kept only when the pipeline is asked to (annotate/save)
  std::string error;           // non-empty: this item could not be read or run; the fields above are empty
  Speed speed;
  size_t size() const { return conf.defined() ? static_cast<size_t>(conf.size(0)) : 0; }
};

// Greedy NMS, own implementation: indices of the kept boxes (xyxy, N x 4) by descending score; a box is dropped
// when its IoU with a kept, higher-scored box is > iou. Ties keep the earlier index first.
torch::Tensor nms(const torch::Tensor& boxes, const torch::Tensor& scores, double iou);
// Probabilistic IoU (Gaussian Bhattacharyya form) between rotated boxes (N,5) and (M,5) [cx,cy,w,h,angle] -> (N,M).
torch::Tensor probiou_matrix(const torch::Tensor& a, const torch::Tensor& b, double eps = 1e-7);
// The axis-aligned box enclosing each rotated box (N,5) [cx,cy,w,h,angle], clipped to the image: (N,4) xyxy.
torch::Tensor obb_enclosing_xyxy(const torch::Tensor& xywha, int orig_h, int orig_w);
// Rotated NMS as the official OBB predictor: boxes sorted by score, a box is dropped when its probiou with any
// higher-scored box is >= iou. Returns kept indices by descending score.
torch::Tensor nms_rotated(const torch::Tensor& boxes, const torch::Tensor& scores, double iou);

// End2end rows (B,N,6+E) -> per image the rows with score > conf, first max_det, then the class filter.
std::vector<torch::Tensor> select_end2end(const torch::Tensor& preds, const PostprocessOptions& opt);

// Classic output (B,4+nc+E,A) xywh + class scores -> per image (n,6+E) [x1,y1,x2,y2,score,cls,extra] after
// conf filter, optional multi-label, class filter, class-aware (or agnostic) NMS and max_det.
std::vector<torch::Tensor> non_max_suppression(const torch::Tensor& preds, const PostprocessOptions& opt);

// Instance masks in input pixels: sigmoid-free coef . proto (c,mh,mw), cropped to each box (input pixels), bilinear
// upsampling to (in_h, in_w), then > 0. Returns (n,in_h,in_w) uint8 0/1 (the official process_mask, upsample=True).
torch::Tensor process_masks(const torch::Tensor& proto, const torch::Tensor& coef, const torch::Tensor& boxes, int in_h,
                            int in_w);

// (n,in_h,in_w) masks in input pixels -> (n,orig_h,orig_w) uint8 0/1: the letterbox padding cut off, bilinear resize,
// > 0.5 (the official scale_masks).
torch::Tensor scale_masks(const torch::Tensor& masks, const RatioPad& rp, int orig_h, int orig_w);

// One image's rows (n,6+E) in input pixels -> Result in original pixels (clipped), keypoints/obb/masks per task.
// Segment needs that image's proto (c,mh,mw) and the input size.
Result make_result(const torch::Tensor& det, const Letterboxed& meta, const PostprocessOptions& opt,
                   const torch::Tensor& proto = {});

// Whole batch: select (end2end) or NMS (classic), then make_result per image. proto (B,c,mh,mw) for segment.
// Classify: preds are the (B,nc) probabilities, one Result with probs per image.
std::vector<Result> postprocess(const torch::Tensor& preds, const std::vector<Letterboxed>& metas,
                                const PostprocessOptions& opt, const torch::Tensor& proto = {});

}  // namespace y26
