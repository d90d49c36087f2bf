#include "infer/letterbox.h"

#include <opencv2/imgproc.hpp>

#include <cmath>

#include "util/error.h"

namespace y26 {

namespace {
// Python's round(): half to even, which nearbyint gives under the default rounding mode.
int py_round(double v) { return static_cast<int>(std::nearbyint(v)); }
}  // namespace

Letterboxed letterbox(const cv::Mat& image, const LetterboxOptions& opt) {
  if (image.empty()) fail("letterbox: empty image (the decoder returned no pixels)");
  if (image.depth() != CV_8U) fail("letterbox: expected an 8-bit image, got OpenCV depth " + std::to_string(image.depth()));
  if (opt.height <= 0 || opt.width <= 0 || opt.stride <= 0)
    fail("letterbox: imgsz and stride must be positive (got " + std::to_string(opt.height) + "x" +
         std::to_string(opt.width) + ", stride " + std::to_string(opt.stride) + ")");
  const int h0 = image.rows, w0 = image.cols;
  double r = std::min(static_cast<double>(opt.height) / h0, static_cast<double>(opt.width) / w0);
  if (!opt.scaleup) r = std::min(r, 1.0);
  double gain_x = r, gain_y = r;
  int new_w = py_round(w0 * r), new_h = py_round(h0 * r);
  double dw = opt.width - new_w, dh = opt.height - new_h;
  if (opt.auto_pad) {
    dw = std::fmod(dw, opt.stride);
    dh = std::fmod(dh, opt.stride);
  } else if (opt.scale_fill) {
    dw = dh = 0.0;
    new_w = opt.width;
    new_h = opt.height;
    gain_x = static_cast<double>(opt.width) / w0;
    gain_y = static_cast<double>(opt.height) / h0;
  }
  if (opt.center) {
    dw /= 2;
    dh /= 2;
  }
  cv::Mat resized;
  if (new_w != w0 || new_h != h0)
    cv::resize(image, resized, cv::Size(new_w, new_h), 0, 0, cv::INTER_LINEAR);
  else
    resized = image;
  // The +-0.1 splits an odd padding one pixel more to the bottom/right, as the official code does.
  const int top = opt.center ? py_round(dh - 0.1) : 0, bottom = py_round(dh + 0.1);
  const int left = opt.center ? py_round(dw - 0.1) : 0, right = py_round(dw + 0.1);
  Letterboxed out;
  cv::copyMakeBorder(resized, out.image, top, bottom, left, right, cv::BORDER_CONSTANT, cv::Scalar::all(opt.pad_value));
  out.ratio_pad = RatioPad{gain_x, gain_y, static_cast<double>(left), static_cast<double>(top)};
  out.orig_h = h0;
  out.orig_w = w0;
  out.in_h = out.image.rows;
  out.in_w = out.image.cols;
  return out;
}

bool batch_allows_auto_pad(const std::vector<cv::Mat>& images) {
  for (const auto& im : images)
    if (im.size() != images.front().size()) return false;
  return true;
}

RatioPad ratio_pad_from_shapes(int input_h, int input_w, int orig_h, int orig_w) {
  const double gain = std::min(static_cast<double>(input_h) / orig_h, static_cast<double>(input_w) / orig_w);
  return RatioPad{gain, gain, static_cast<double>(py_round((input_w - orig_w * gain) / 2 - 0.1)),
                  static_cast<double>(py_round((input_h - orig_h * gain) / 2 - 0.1))};
}

void clip_boxes_(torch::Tensor& boxes, int h, int w) {
  using torch::indexing::Slice;
  boxes.index({"...", Slice(0, 4, 2)}).clamp_(0, w);
  boxes.index({"...", Slice(1, 4, 2)}).clamp_(0, h);
}

torch::Tensor scale_boxes(const torch::Tensor& boxes, const RatioPad& rp, int orig_h, int orig_w) {
  using torch::indexing::Slice;
  if (boxes.size(-1) < 4) fail("scale_boxes: boxes need 4 columns (x1,y1,x2,y2), got " + std::to_string(boxes.size(-1)));
  torch::Tensor out = boxes.clone();
  torch::Tensor x = out.index({"...", Slice(0, 4, 2)}), y = out.index({"...", Slice(1, 4, 2)});
  x.sub_(rp.pad_x).div_(rp.gain_x);
  y.sub_(rp.pad_y).div_(rp.gain_y);
  clip_boxes_(out, orig_h, orig_w);
  return out;
}

torch::Tensor scale_coords(const torch::Tensor& coords, const RatioPad& rp, int orig_h, int orig_w) {
  if (coords.size(-1) < 2) fail("scale_coords: keypoints need (x, y) columns, got " + std::to_string(coords.size(-1)));
  torch::Tensor out = coords.clone();
  out.select(-1, 0).sub_(rp.pad_x).div_(rp.gain_x).clamp_(0, orig_w);
  out.select(-1, 1).sub_(rp.pad_y).div_(rp.gain_y).clamp_(0, orig_h);
  return out;
}

}  // namespace y26
