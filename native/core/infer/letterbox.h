// LetterBox resize + pad exactly as the official predictor, and the way back to original pixels.
#pragma once
#include <opencv2/core.hpp>
#include <torch/types.h>

#include <utility>
#include <vector>

namespace y26 {

struct LetterboxOptions {
  int height = 640, width = 640;  // target shape (imgsz)
  bool auto_pad = true;           // pad only to the next stride multiple (rect predict of one-shape batches)
  bool scale_fill = false;        // stretch to the target, no padding
  bool scaleup = true;            // false: only shrink (val)
  bool center = true;             // pad both sides (false: pad bottom/right only)
  int stride = 32;
  int pad_value = 114;
};

// How an original image maps into the letterboxed one: input = original * gain + pad.
struct RatioPad {
  double gain_x = 1.0, gain_y = 1.0;  // equal unless scale_fill
  double pad_x = 0.0, pad_y = 0.0;    // left and top padding in input pixels
};

struct Letterboxed {
  cv::Mat image;      // H x W x C uint8, same channel order as the input
  RatioPad ratio_pad;
  int orig_h = 0, orig_w = 0;
  int in_h = 0, in_w = 0;  // letterboxed (model input) size
};

// Resizes (INTER_LINEAR, only when the size changes) and pads with pad_value; bit-exact with the official LetterBox.
Letterboxed letterbox(const cv::Mat& image, const LetterboxOptions& opt);

// The predictor's choice: minimal stride padding only when every image in the batch has the same shape.
bool batch_allows_auto_pad(const std::vector<cv::Mat>& images);

// Gain and pad recomputed from the shapes alone (what the official scale_boxes does without ratio_pad).
RatioPad ratio_pad_from_shapes(int input_h, int input_w, int orig_h, int orig_w);

// Boxes (..., >=4) xyxy in input pixels -> original pixels, clipped to the original image. Returns a new tensor;
// columns after the fourth are copied unchanged.
torch::Tensor scale_boxes(const torch::Tensor& boxes, const RatioPad& rp, int orig_h, int orig_w);

// Keypoints (..., K, >=2) (x, y[, v]) in input pixels -> original pixels, clipped; visibility unchanged.
torch::Tensor scale_coords(const torch::Tensor& coords, const RatioPad& rp, int orig_h, int orig_w);

// Clamps x to [0, w] and y to [0, h] for xyxy boxes, in place.
void clip_boxes_(torch::Tensor& boxes, int h, int w);

}  // namespace y26
