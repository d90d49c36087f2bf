#include "infer/classify.h"

#include <algorithm>
#include <cfenv>
#include <cmath>
#include <cstdio>
#include <numeric>

#include "util/error.h"

namespace y26 {

namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;  // PIL's fixed-point precision for 8-bit images

// Per output pixel: the first source index, the tap count, and the fixed-point weights (ksize per pixel).
struct Taps {
  int ksize = 0;
  std::vector<int> first, count;
  std::vector<int32_t> w;
};

Taps bilinear_taps(int in_size, int out_size) {
  const double scale = static_cast<double>(in_size) / out_size;
  const double filterscale = std::max(scale, 1.0);
  const double support = 1.0 * filterscale;  // the triangle filter has support 1
  Taps t;
  t.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  t.first.resize(out_size);
  t.count.resize(out_size);
  t.w.assign(static_cast<size_t>(out_size) * t.ksize, 0);
  std::vector<double> k(t.ksize);
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = (xx + 0.5) * scale;
    const double ss = 1.0 / filterscale;
    const int xmin = std::max(static_cast<int>(center - support + 0.5), 0);
    const int xmax = std::min(static_cast<int>(center + support + 0.5), in_size) - xmin;
    double ww = 0.0;
    for (int x = 0; x < xmax; ++x) {
      double d = std::fabs((x + xmin - center + 0.5) * ss);
      k[x] = d < 1.0 ? 1.0 - d : 0.0;
      ww += k[x];
    }
    for (int x = 0; x < xmax; ++x) {
      const double v = ww != 0.0 ? k[x] / ww : k[x];
      t.w[static_cast<size_t>(xx) * t.ksize + x] =
          static_cast<int32_t>(v < 0 ? -0.5 + v * (1 << kPrecisionBits) : 0.5 + v * (1 << kPrecisionBits));
    }
    t.first[xx] = xmin;
    t.count[xx] = xmax;
  }
  return t;
}

inline uint8_t clip8(int64_t acc) {
  const int64_t v = acc >> kPrecisionBits;
  return static_cast<uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
}

// One pass along x (horizontal) or y (vertical) of a contiguous HxWxC uint8 image.
cv::Mat resample_pass(const cv::Mat& in, int out_size, bool horizontal) {
  const int H = in.rows, W = in.cols, C = in.channels();
  const Taps t = bilinear_taps(horizontal ? W : H, out_size);
  cv::Mat out(horizontal ? H : out_size, horizontal ? out_size : W, in.type());
  for (int y = 0; y < out.rows; ++y) {
    uint8_t* dst = out.ptr<uint8_t>(y);
    for (int x = 0; x < out.cols; ++x) {
      const int o = horizontal ? x : y;
      const int32_t* k = &t.w[static_cast<size_t>(o) * t.ksize];
      for (int c = 0; c < C; ++c) {
        int64_t acc = int64_t(1) << (kPrecisionBits - 1);
        for (int i = 0; i < t.count[o]; ++i) {
          const int s = t.first[o] + i;
          const uint8_t v = horizontal ? in.ptr<uint8_t>(y)[s * C + c] : in.ptr<uint8_t>(s)[x * C + c];
          acc += static_cast<int64_t>(v) * k[i];
        }
        dst[x * C + c] = clip8(acc);
      }
    }
  }
  return out;
}

}  // namespace

cv::Mat pil_resize_bilinear(const cv::Mat& image, int out_w, int out_h) {
  if (image.empty() || image.depth() != CV_8U) fail("classify resize: expected a non-empty uint8 image");
  if (out_w <= 0 || out_h <= 0) fail("classify resize: target size must be positive");
  cv::Mat x = image.isContinuous() ? image : image.clone();
  if (out_w != x.cols) x = resample_pass(x, out_w, true);
  if (out_h != x.rows) x = resample_pass(x, out_h, false);
  return x.data == image.data ? image.clone() : x;
}

cv::Mat classify_transform(const cv::Mat& image, int height, int width) {
  if (height <= 0 || width <= 0) fail("classify: imgsz must be positive");
  if (height != width) return pil_resize_bilinear(image, width, height);  // exact (h, w), nothing to crop
  const int h = image.rows, w = image.cols;
  const int size = height;
  const int short_side = std::min(h, w), long_side = std::max(h, w);
  const int new_long = static_cast<int>(static_cast<double>(size) * long_side / short_side);
  const int new_w = w <= h ? size : new_long, new_h = w <= h ? new_long : size;
  cv::Mat r = (new_w == w && new_h == h) ? image : pil_resize_bilinear(image, new_w, new_h);
  // CenterCrop: int(round((in - out) / 2)) with Python's round (half to even).
  const int top = static_cast<int>(std::nearbyint((r.rows - size) / 2.0));
  const int left = static_cast<int>(std::nearbyint((r.cols - size) / 2.0));
  return r(cv::Rect(left, top, size, size)).clone();
}

std::vector<int64_t> topk_classes(const torch::Tensor& probs, int64_t k) {
  torch::Tensor p = probs.to(torch::kCPU, torch::kFloat32).contiguous().view(-1);
  const float* d = p.data_ptr<float>();
  std::vector<int64_t> idx(p.numel());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [d](int64_t a, int64_t b) { return d[a] > d[b]; });
  idx.resize(std::min<int64_t>(k, static_cast<int64_t>(idx.size())));
  return idx;
}

Result make_classify_result(const torch::Tensor& probs, int orig_h, int orig_w) {
  Result r;
  r.orig_h = orig_h;
  r.orig_w = orig_w;
  r.probs = probs.to(torch::kCPU, torch::kFloat32).contiguous().view(-1);
  r.boxes = torch::zeros({0, 4}, torch::kFloat32);
  r.conf = torch::zeros({0}, torch::kFloat32);
  r.cls = torch::zeros({0}, torch::kInt64);
  return r;
}

namespace {
std::string class_name(const std::vector<std::string>& names, int64_t c) {
  return c >= 0 && c < static_cast<int64_t>(names.size()) ? names[c] : std::to_string(c);
}
}  // namespace

std::string format_classify_txt(const Result& r, const std::vector<std::string>& names) {
  if (!r.probs.defined()) return "";
  std::string out;
  const float* d = r.probs.data_ptr<float>();
  for (int64_t c : topk_classes(r.probs)) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.2f ", d[c]);
    out += buf + class_name(names, c) + "\n";
  }
  return out;
}

std::string classify_summary(const Result& r, const std::vector<std::string>& names) {
  if (!r.probs.defined()) return "";
  std::string out;
  const float* d = r.probs.data_ptr<float>();
  for (int64_t c : topk_classes(r.probs)) {
    char buf[32];
    std::snprintf(buf, sizeof buf, " %.2f", d[c]);
    out += (out.empty() ? "" : ", ") + class_name(names, c) + buf;
  }
  return out;
}

}  // namespace y26
