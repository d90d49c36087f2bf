// The run-folder plots of the official trainer and validator (the `plots` argument), drawn with OpenCV:
// results.png (loss and metric columns of results.csv against epoch), train_batch{N}.jpg / val_batch{N}_labels.jpg /
// val_batch{N}_pred.jpg (image grids with boxes, names, keypoints, masks, rotated boxes), confusion_matrix.png and
// confusion_matrix_normalized.png, and the <Box|Mask|Pose>{PR,F1,P,R}_curve.png curves of ap_per_class.
// Every writer replaces its file atomically (temp file + rename); callers treat a throw as a warning (plots never
// end a run).
#pragma once
#include <opencv2/core.hpp>
#include <torch/types.h>

#include <functional>
#include <string>
#include <vector>

#include "model/task.h"
#include "data/loader.h"
#include "eval/metrics.h"

namespace y26 {

// Runs `fn`; an exception becomes a "WARNING: <what> plot failed: ..." line for `log` (which may be empty), so a
// plot never ends a run. Returns whether `fn` completed.
bool plot_safely(const std::function<void(const std::string&)>& log, const std::string& what,
                 const std::function<void()>& fn);

// Encodes by the file's extension (.jpg, .png) to `path`.tmp, then renames it over `path`.
void save_image_atomic(const std::string& path, const cv::Mat& bgr);

// results.png beside `csv_path` (or at out_path): one small chart per "loss" / "metric" column, the official
// order (first half of the losses and metrics on the top row, the rest below), values against the first column
// (epoch) with a Gaussian-smoothed dotted line. Returns the image.
cv::Mat plot_results(const std::string& csv_path, const std::string& out_path = "");

// One image's annotations for an image grid, in that image's pixels.
struct TileLabels {
  std::string title;          // file name drawn in the tile's corner
  torch::Tensor cls;          // (N) int64
  torch::Tensor conf;         // (N) float; undefined for labels (no confidence shown, nothing filtered)
  torch::Tensor boxes;        // (N, 4) float xyxy; undefined for classify (the class name is written instead)
  torch::Tensor obb;          // (N, 5) cx, cy, w, h, angle (radians), or undefined
  torch::Tensor keypoints;    // (N, K, 2|3), or undefined
  torch::Tensor masks;        // (N, h, w) uint8 0/1 over the whole image at any resolution, or undefined
};

// The official plot_images layout: up to 16 images in a square grid filled column by column, scaled so the grid is
// at most max_size px, white borders, file names, and each tile's labels (predictions only with conf > conf_thres,
// tagged "name 0.87"). images: BGR, all the same size.
cv::Mat image_grid(const std::vector<cv::Mat>& images, const std::vector<TileLabels>& labels,
                   const std::vector<std::string>& names, double conf_thres = 0.25, int max_size = 1920,
                   int max_subplots = 16);

// A loader batch's images (B, 3, H, W) uint8 RGB -> BGR mats.
std::vector<cv::Mat> batch_images(const Batch& b);
// The batch's labels per image in its pixels: boxes, plus keypoints (pose), polygon masks (segment) or rotated boxes
// (obb, from the polygons); classify batches give class-only labels.
std::vector<TileLabels> batch_labels(const Batch& b, Task task);
// Validator detections per image (rows [box, score, cls, extra] in input pixels, as ValMatcher::add_batch takes
// them) as tile labels: pose keypoints from the extra columns (kpt_shape), obb angle, segment masks from `proto`.
std::vector<TileLabels> batch_predictions(const Batch& b, const std::vector<torch::Tensor>& dets,
                                          Task task, const std::vector<int64_t>& kpt_shape = {},
                                          const torch::Tensor& proto = {});

// confusion_matrix.png (counts) or confusion_matrix_normalized.png (columns summed to 1) in `dir`, as the
// official plot: Blues heat map, rows Predicted, columns True, cell values when there are fewer than 30 rows.
// Returns the path written.
std::string plot_confusion_matrix(const ConfusionMatrix& cm, bool normalize, const std::string& dir);

// <prefix>PR_curve.png, <prefix>F1_curve.png, <prefix>P_curve.png and <prefix>R_curve.png in `dir` from
// DetResults::curves (prefix "Box", "Mask" or "Pose"). names: class id -> name. Returns the paths written.
std::vector<std::string> plot_curves(const ApPerClass& curves, const std::vector<std::string>& names,
                                     const std::string& dir, const std::string& prefix);

}  // namespace y26
