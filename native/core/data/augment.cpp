#include "data/augment.h"

#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <array>
#include <cmath>

#include "data/hsv_row.h"
#include "data/image_io.h"
#include "data/obb_labels.h"
#include "util/error.h"

namespace y26 {

// ---- config ----------------------------------------------------------------------------------------------------
void AugmentConfig::set(const std::string& key, double value) {
  auto prob = [&](float& f) {
    if (value < 0 || value > 1) fail("augmentation '" + key + "' is a probability: use a value in [0, 1]");
    f = (float)value;
  };
  auto nonneg = [&](float& f) {
    if (value < 0) fail("augmentation '" + key + "' must be >= 0");
    f = (float)value;
  };
  if (key == "hsv_h") prob(hsv_h);
  else if (key == "hsv_s") prob(hsv_s);
  else if (key == "hsv_v") prob(hsv_v);
  else if (key == "degrees") nonneg(degrees);
  else if (key == "translate") prob(translate);
  else if (key == "scale") nonneg(scale);
  else if (key == "shear") nonneg(shear);
  else if (key == "perspective") { if (value < 0 || value > 0.001) fail("perspective must be in [0, 0.001]"); perspective = (float)value; }
  else if (key == "flipud") prob(flipud);
  else if (key == "fliplr") prob(fliplr);
  else if (key == "bgr") prob(bgr);
  else if (key == "mosaic") prob(mosaic);
  else if (key == "mixup") prob(mixup);
  else if (key == "cutmix") prob(cutmix);
  else if (key == "close_mosaic") { if (value < 0) fail("close_mosaic must be >= 0"); close_mosaic = (int)value; }
  else fail("unknown augmentation key '" + key + "': use the official names (hsv_h, hsv_s, hsv_v, degrees, translate, "
            "scale, shear, perspective, flipud, fliplr, bgr, mosaic, mixup, cutmix, close_mosaic)");
}

AugmentConfig AugmentConfig::none() {
  AugmentConfig c;
  c.hsv_h = c.hsv_s = c.hsv_v = 0;
  c.translate = c.scale = 0;
  c.fliplr = 0;
  c.mosaic = 0;
  c.close_mosaic = 0;
  return c;
}

// ---- instances -------------------------------------------------------------------------------------------------
void Instances::append(const Instances& o) {
  // Polygons stay aligned with boxes when only one side has them.
  if (!o.segs.empty() || !segs.empty()) {
    segs.resize(size());
    if (o.segs.empty()) segs.resize(size() + o.size());
    else segs.insert(segs.end(), o.segs.begin(), o.segs.end());
  }
  cls.insert(cls.end(), o.cls.begin(), o.cls.end());
  xyxy.insert(xyxy.end(), o.xyxy.begin(), o.xyxy.end());
  kpts.insert(kpts.end(), o.kpts.begin(), o.kpts.end());
}

void Instances::keep(const std::vector<uint8_t>& mask) {
  size_t n = size(), kd = n ? kpts.size() / n : 0, j = 0;
  for (size_t i = 0; i < n; ++i) {
    if (!mask[i]) continue;
    if (j != i) {
      cls[j] = cls[i];
      std::copy_n(&xyxy[4 * i], 4, &xyxy[4 * j]);
      if (kd) std::copy_n(&kpts[kd * i], kd, &kpts[kd * j]);
      if (!segs.empty()) segs[j] = std::move(segs[i]);
    }
    ++j;
  }
  cls.resize(j);
  xyxy.resize(4 * j);
  kpts.resize(kd * j);
  if (!segs.empty()) segs.resize(j);
}

uint64_t SampleRng::derive(uint64_t seed, uint64_t epoch, uint64_t position) {
  auto mix = [](uint64_t z) {  // splitmix64 finaliser
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  };
  return mix(mix(mix(seed) ^ epoch) ^ position);
}

double SampleRng::beta(double a, double b) {
  double x = std::gamma_distribution<double>(a, 1.0)(gen);
  double y = std::gamma_distribution<double>(b, 1.0)(gen);
  return x / (x + y);
}

Instances labels_in_pixels(const Dataset& ds, size_t i, cv::Size size, cv::Point2f pad) {
  const ImageLabels& L = ds.labels(i);
  Instances out;
  const float W = (float)size.width, H = (float)size.height;
  out.cls = L.cls;
  out.xyxy.resize(L.boxes.size());
  for (size_t k = 0; k < L.count(); ++k) {
    const float* b = &L.boxes[4 * k];
    out.xyxy[4 * k + 0] = (b[0] - b[2] / 2) * W + pad.x;
    out.xyxy[4 * k + 1] = (b[1] - b[3] / 2) * H + pad.y;
    out.xyxy[4 * k + 2] = (b[0] + b[2] / 2) * W + pad.x;
    out.xyxy[4 * k + 3] = (b[1] + b[3] / 2) * H + pad.y;
  }
  const int D = ds.kpt_dims();
  out.kpts = L.keypoints;
  for (size_t k = 0; D && k < out.kpts.size(); k += D) {
    out.kpts[k] = out.kpts[k] * W + pad.x;
    out.kpts[k + 1] = out.kpts[k + 1] * H + pad.y;
  }
  out.segs.resize(L.segments.size());
  for (size_t k = 0; k < L.segments.size(); ++k)
    for (size_t p = 0; p + 1 < L.segments[k].size(); p += 2)
      out.segs[k].emplace_back(L.segments[k][p] * W + pad.x, L.segments[k][p + 1] * H + pad.y);
  return out;
}

namespace {

const cv::Scalar kPadColor(114, 114, 114);

// Python's round() on the values LetterBox feeds it (never exact halves after the +-0.1 nudge).
int py_round(double v) { return (int)std::nearbyint(v); }

// Clips boxes (and polygons, keypoints: out-of-image keypoints become invisible) to [0,w]x[0,h]. Segment polygons
// are clipped point by point; OBB polygons (`obb`) as rotated boxes that keep their angle, their box becoming the
// visible part's extent (zero when nothing is visible, so the callers' size filters drop it).
void clip_instances(Instances& inst, float w, float h, int kpt_dims, bool obb) {
  for (size_t i = 0; i < inst.xyxy.size(); i += 2) {
    inst.xyxy[i] = std::min(std::max(inst.xyxy[i], 0.f), w);
    inst.xyxy[i + 1] = std::min(std::max(inst.xyxy[i + 1], 0.f), h);
  }
  for (size_t i = 0; i < inst.segs.size(); ++i) {
    auto& poly = inst.segs[i];
    if (obb && !poly.empty()) {
      std::array<float, 4> box{};
      clip_obb_polygon(poly, w, h, &box);
      std::copy(box.begin(), box.end(), &inst.xyxy[4 * i]);
      continue;
    }
    for (auto& p : poly) { p.x = std::min(std::max(p.x, 0.f), w); p.y = std::min(std::max(p.y, 0.f), h); }
  }
  for (size_t k = 0; kpt_dims && k < inst.kpts.size(); k += kpt_dims) {
    float& x = inst.kpts[k];
    float& y = inst.kpts[k + 1];
    if (kpt_dims == 3 && (x < 0 || x > w || y < 0 || y > h)) inst.kpts[k + 2] = 0;
    x = std::min(std::max(x, 0.f), w);
    y = std::min(std::max(y, 0.f), h);
  }
}

// Moves every coordinate of the instances by (dx, dy).
void shift_instances(Instances& inst, float dx, float dy, int kpt_dims) {
  for (size_t i = 0; i < inst.xyxy.size(); i += 2) inst.xyxy[i] += dx, inst.xyxy[i + 1] += dy;
  for (auto& poly : inst.segs)
    for (auto& p : poly) p.x += dx, p.y += dy;
  for (size_t k = 0; kpt_dims && k < inst.kpts.size(); k += kpt_dims) inst.kpts[k] += dx, inst.kpts[k + 1] += dy;
}

cv::Matx33d translation(double tx, double ty) { return {1, 0, tx, 0, 1, ty, 0, 0, 1}; }

cv::Point2f apply(const cv::Matx33d& M, float x, float y, bool perspective) {
  double X = M(0, 0) * x + M(0, 1) * y + M(0, 2);
  double Y = M(1, 0) * x + M(1, 1) * y + M(1, 2);
  if (perspective) {
    double Z = M(2, 0) * x + M(2, 1) * y + M(2, 2);
    X /= Z;
    Y /= Z;
  }
  return {(float)X, (float)Y};
}

void warp(const cv::Mat& src, cv::Mat& dst, const cv::Matx33d& M, cv::Size out, bool perspective) {
  if (perspective) cv::warpPerspective(src, dst, cv::Mat(M), out, cv::INTER_LINEAR, cv::BORDER_CONSTANT, kPadColor);
  else cv::warpAffine(src, dst, cv::Mat(M).rowRange(0, 2), out, cv::INTER_LINEAR, cv::BORDER_CONSTANT, kPadColor);
}

// Plans one axis of a scale + shift drawn with cv::resize: which output range this image owns (output pixels
// whose source position lies in [-0.5, size - 0.5)), the source crop (with a margin) that feeds it, and the
// integer offset D of the resized crop. The shift b is snapped by at most half an output pixel so that the
// resized crop lands on whole pixels; the caller moves the labels with the snapped value.
struct AxisPlan {
  int X0 = 0, X1 = 0, u0 = 0, u1 = 0, D = 0;
  double b = 0;
  bool empty() const { return X1 <= X0; }
};

AxisPlan plan_axis(int src_size, int out_size, double a, double b) {
  AxisPlan p;
  p.b = b;
  auto own = [&](double bb, int& X0, int& X1) {
    X0 = std::max(0, (int)std::ceil(a * -0.5 + bb));
    X1 = std::min(out_size, (int)std::ceil(a * (src_size - 0.5) + bb));
  };
  own(b, p.X0, p.X1);
  if (p.empty()) return p;
  const int margin = 2 + (int)std::ceil(0.5 / a);
  p.u0 = std::min(std::max((int)std::floor((p.X0 - b) / a) - margin, 0), src_size);
  p.u1 = std::min(std::max((int)std::ceil((p.X1 - 1 - b) / a) + margin + 1, 0), src_size);
  // cv::resize(fx = a) maps crop pixel c to output c' with u0 + c = (c' + 0.5) / a - 0.5, i.e. X = a*u + b when
  // X = c' + D and b = D - a*u0 - 0.5 + 0.5a.
  p.D = (int)std::lround(a * p.u0 + 0.5 - 0.5 * a + b);
  p.b = p.D - a * p.u0 - 0.5 + 0.5 * a;
  own(p.b, p.X0, p.X1);
  const int resized = (int)std::lround((p.u1 - p.u0) * a);  // cv::resize's output size for fx = a
  p.X0 = std::max(p.X0, p.D);
  p.X1 = std::min(p.X1, p.D + resized);
  return p;
}

// Draws src into out under X = a*u + bx, Y = a*v + by (bilinear, OpenCV's SIMD resize), over the output pixels it
// owns, so neighbouring mosaic tiles never overwrite each other. Returns the snapped (bx, by) actually used.
cv::Point2d draw_scaled(const cv::Mat& src, cv::Mat& out, double a, double bx, double by) {
  AxisPlan px = plan_axis(src.cols, out.cols, a, bx), py = plan_axis(src.rows, out.rows, a, by);
  if (px.empty() || py.empty()) return {bx, by};
  thread_local cv::Mat tmp;
  cv::Mat crop = src(cv::Rect(px.u0, py.u0, px.u1 - px.u0, py.u1 - py.u0));
  cv::resize(crop, tmp, cv::Size(), a, a, cv::INTER_LINEAR);
  // cv::resize rounds its output size; keep to what it produced.
  int X1 = std::min(px.X1, px.D + tmp.cols), Y1 = std::min(py.X1, py.D + tmp.rows);
  if (X1 > px.X0 && Y1 > py.X0)
    tmp(cv::Rect(px.X0 - px.D, py.X0 - py.D, X1 - px.X0, Y1 - py.X0))
        .copyTo(out(cv::Rect(px.X0, py.X0, X1 - px.X0, Y1 - py.X0)));
  return {px.b, py.b};
}

// Area of the intersection of box b (x1,y1,x2,y2) with area a over the area of b (the official bbox_ioa).
float ioa(const float* a, const float* b) {
  float iw = std::max(0.f, std::min(a[2], b[2]) - std::max(a[0], b[0]));
  float ih = std::max(0.f, std::min(a[3], b[3]) - std::max(a[1], b[1]));
  return iw * ih / ((b[2] - b[0]) * (b[3] - b[1]) + 1e-7f);
}

}  // namespace

// ---- letterbox -------------------------------------------------------------------------------------------------
Sample letterbox_sample(const Dataset& ds, size_t i, cv::Size target, bool scaleup) {
  Sample s;
  s.index = i;
  const ImageLabels& L = ds.labels(i);
  s.ori_size = {L.width, L.height};
  cv::Mat img = ds.load_image(i);
  s.resized_size = img.size();
  double r = std::min((double)target.height / img.rows, (double)target.width / img.cols);
  if (!scaleup) r = std::min(r, 1.0);
  cv::Size unpad(py_round(img.cols * r), py_round(img.rows * r));
  double dw = (target.width - unpad.width) / 2.0, dh = (target.height - unpad.height) / 2.0;
  int top = py_round(dh - 0.1), bottom = py_round(dh + 0.1), left = py_round(dw - 0.1), right = py_round(dw + 0.1);
  cv::Mat resized = img;
  if (unpad != img.size()) cv::resize(img, resized, unpad, 0, 0, cv::INTER_LINEAR);
  cv::copyMakeBorder(resized, s.img, top, bottom, left, right, cv::BORDER_CONSTANT, kPadColor);
  // Labels scale by r (not by the rounded size ratio), as the official LetterBox does.
  Instances scaled = labels_in_pixels(ds, i, img.size());
  for (size_t k = 0; k < scaled.xyxy.size(); k += 2) {
    scaled.xyxy[k] = scaled.xyxy[k] * r + left;
    scaled.xyxy[k + 1] = scaled.xyxy[k + 1] * r + top;
  }
  for (size_t k = 0; ds.kpt_dims() && k < scaled.kpts.size(); k += ds.kpt_dims()) {
    scaled.kpts[k] = scaled.kpts[k] * r + left;
    scaled.kpts[k + 1] = scaled.kpts[k + 1] * r + top;
  }
  for (auto& poly : scaled.segs) for (auto& p : poly) { p.x = p.x * r + left; p.y = p.y * r + top; }
  s.inst = std::move(scaled);
  s.gain_w = (double)img.cols / L.width * r;
  s.gain_h = (double)img.rows / L.height * r;
  s.pad_left = left;
  s.pad_top = top;
  return s;
}

// ---- random perspective ----------------------------------------------------------------------------------------
cv::Matx33d random_perspective_matrix(const AugmentConfig& cfg, cv::Size in, cv::Size out, SampleRng& rng,
                                      double* applied_scale) {
  const double pi = 3.14159265358979323846;
  cv::Matx33d C = translation(-in.width / 2.0, -in.height / 2.0);  // move the centre to the origin
  cv::Matx33d P = cv::Matx33d::eye();
  P(2, 0) = rng.uniform(-cfg.perspective, cfg.perspective);
  P(2, 1) = rng.uniform(-cfg.perspective, cfg.perspective);
  double a = rng.uniform(-cfg.degrees, cfg.degrees) * pi / 180;
  double s = rng.uniform(1 - cfg.scale, 1 + cfg.scale);
  // cv2.getRotationMatrix2D(center=(0,0), angle, scale): counter-clockwise for positive angles.
  cv::Matx33d R(s * std::cos(a), s * std::sin(a), 0, -s * std::sin(a), s * std::cos(a), 0, 0, 0, 1);
  cv::Matx33d S = cv::Matx33d::eye();
  S(0, 1) = std::tan(rng.uniform(-cfg.shear, cfg.shear) * pi / 180);
  S(1, 0) = std::tan(rng.uniform(-cfg.shear, cfg.shear) * pi / 180);
  cv::Matx33d T = translation(rng.uniform(0.5 - cfg.translate, 0.5 + cfg.translate) * out.width,
                              rng.uniform(0.5 - cfg.translate, 0.5 + cfg.translate) * out.height);
  if (applied_scale) *applied_scale = s;
  return T * S * R * P * C;
}

void transform_instances(Instances& inst, const cv::Matx33d& M, cv::Size out, double scale, bool perspective,
                         int kpt_dims, bool obb) {
  const size_t n = inst.size();
  if (!n) return;
  const float W = (float)out.width, H = (float)out.height;
  std::vector<float> before = inst.xyxy;
  for (size_t i = 0; i < n; ++i) {
    float* b = &inst.xyxy[4 * i];
    float x0 = 1e30f, y0 = 1e30f, x1 = -1e30f, y1 = -1e30f;
    auto grow = [&](cv::Point2f p) { x0 = std::min(x0, p.x); y0 = std::min(y0, p.y); x1 = std::max(x1, p.x); y1 = std::max(y1, p.y); };
    bool poly = !inst.segs.empty() && !inst.segs[i].empty();
    if (poly) {
      // Polygons: the new box is the extent of the transformed polygon, clipped.
      for (auto& p : inst.segs[i]) { p = apply(M, p.x, p.y, perspective); grow(p); }
    } else {
      grow(apply(M, b[0], b[1], perspective));
      grow(apply(M, b[2], b[1], perspective));
      grow(apply(M, b[0], b[3], perspective));
      grow(apply(M, b[2], b[3], perspective));
    }
    b[0] = x0; b[1] = y0; b[2] = x1; b[3] = y1;
  }
  for (size_t k = 0; kpt_dims && k < inst.kpts.size(); k += kpt_dims) {
    cv::Point2f p = apply(M, inst.kpts[k], inst.kpts[k + 1], perspective);
    inst.kpts[k] = p.x;
    inst.kpts[k + 1] = p.y;
  }
  clip_instances(inst, W, H, kpt_dims, obb);
  // The official box_candidates filter, against the input boxes scaled by the drawn scale.
  const float area_thr = inst.segs.empty() ? 0.1f : 0.01f, eps = 1e-16f;
  std::vector<uint8_t> keep(n);
  for (size_t i = 0; i < n; ++i) {
    float w1 = (before[4 * i + 2] - before[4 * i]) * (float)scale, h1 = (before[4 * i + 3] - before[4 * i + 1]) * (float)scale;
    float w2 = inst.xyxy[4 * i + 2] - inst.xyxy[4 * i], h2 = inst.xyxy[4 * i + 3] - inst.xyxy[4 * i + 1];
    float ar = std::max(w2 / (h2 + eps), h2 / (w2 + eps));
    keep[i] = w2 > 2 && h2 > 2 && w2 * h2 / (w1 * h1 + eps) > area_thr && ar < 100;
  }
  inst.keep(keep);
}

// ---- colour and flips ------------------------------------------------------------------------------------------
HsvShift draw_hsv(float hgain, float sgain, float vgain, SampleRng& rng) {
  HsvShift r;
  if (!hgain && !sgain && !vgain) return r;
  r.active = true;
  r.h = rng.uniform(-1, 1) * hgain * 180;
  r.s = 1 + rng.uniform(-1, 1) * sgain;
  r.v = 1 + rng.uniform(-1, 1) * vgain;
  return r;
}

namespace {

// The per-sample tables of the official HSV jitter (hue shifted, saturation and value scaled, all truncated).
void hsv_tables(const HsvShift& shift, int* lut_h, int* lut_s, int* lut_v) {
  for (int x = 0; x < 256; ++x) {
    double h = std::fmod(x + shift.h, 180.0);
    if (h < 0) h += 180;
    lut_h[x] = (uint8_t)h;
    lut_s[x] = (uint8_t)std::min(std::max(x * shift.s, 0.0), 255.0);
    lut_v[x] = (uint8_t)std::min(std::max(x * shift.v, 0.0), 255.0);
  }
}

}  // namespace

void apply_hsv(cv::Mat& bgr, const HsvShift& shift) {
  if (!shift.active) return;
  int lut[3][256];
  hsv_tables(shift, lut[0], lut[1], lut[2]);
  thread_local cv::Mat hsv;
  cv::cvtColor(bgr, hsv, cv::COLOR_BGR2HSV);
  // A plain loop: cv::LUT with a 3-channel table is several times slower.
  for (int y = 0; y < hsv.rows; ++y) {
    uint8_t* p = hsv.ptr<uint8_t>(y);
    for (int x = 0; x < hsv.cols; ++x, p += 3) { p[0] = lut[0][p[0]]; p[1] = lut[1][p[1]]; p[2] = lut[2][p[2]]; }
  }
  cv::cvtColor(hsv, bgr, cv::COLOR_HSV2BGR);
}

void write_planes(const cv::Mat& bgr, const PendingPixels& p, bool keep_bgr, uint8_t* dst) {
  if (bgr.type() != CV_8UC3) fail("internal: write_planes needs an 8-bit 3-channel image");
  const int H = bgr.rows, W = bgr.cols;
  const size_t plane = (size_t)H * W;
  // Output channel order: RGB (the network's) unless the bgr augmentation fired.
  uint8_t* out_b = dst + (keep_bgr ? 0 : 2) * plane;
  uint8_t* out_g = dst + plane;
  uint8_t* out_r = dst + (keep_bgr ? 2 : 0) * plane;
  // The table's hue shift as a whole number: (x + h) truncated after fmod equals x + floor(h) modulo 180.
  const int hshift = (int)std::floor(p.hsv.h);
  constexpr int kChunk = 256;  // hsv_row's most
  for (int y = 0; y < H; ++y) {
    const uint8_t* src = bgr.ptr<uint8_t>(p.flip_ud ? H - 1 - y : y);
    const size_t row = (size_t)y * W;
    for (int x0 = 0; x0 < W; x0 += kChunk) {
      const int n = std::min(kChunk, W - x0);
      uint8_t *ob = out_b + row + x0, *og = out_g + row + x0, *orr = out_r + row + x0;
      // Output pixels x0 .. x0+n-1 come from source pixels x0 .. x0+n-1, or mirrored from W-x0-n .. W-x0-1.
      const uint8_t* s = src + 3 * (p.flip_lr ? W - x0 - n : x0);
      if (p.hsv.active) {
        hsv_row(s, n, p.flip_lr, ob, og, orr, hshift, p.hsv.s, p.hsv.v);
      } else if (p.flip_lr) {
        for (int i = 0; i < n; ++i) ob[n - 1 - i] = s[3 * i], og[n - 1 - i] = s[3 * i + 1], orr[n - 1 - i] = s[3 * i + 2];
      } else {
        for (int i = 0; i < n; ++i) ob[i] = s[3 * i], og[i] = s[3 * i + 1], orr[i] = s[3 * i + 2];
      }
    }
  }
}

void flip_labels(Instances& in, cv::Size size, bool horizontal, int kpt_count, int kpt_dims, const std::vector<int>& flip_idx) {
  const float W = (float)size.width, H = (float)size.height;
  for (size_t i = 0; i < in.size(); ++i) {
    float* b = &in.xyxy[4 * i];
    if (horizontal) { float x0 = W - b[2], x1 = W - b[0]; b[0] = x0; b[2] = x1; }
    else { float y0 = H - b[3], y1 = H - b[1]; b[1] = y0; b[3] = y1; }
  }
  for (auto& poly : in.segs) for (auto& p : poly) { if (horizontal) p.x = W - p.x; else p.y = H - p.y; }
  if (kpt_count && !in.kpts.empty()) {
    const size_t per = (size_t)kpt_count * kpt_dims;
    for (size_t k = 0; k < in.kpts.size(); k += kpt_dims) {
      if (horizontal) in.kpts[k] = W - in.kpts[k];
      else in.kpts[k + 1] = H - in.kpts[k + 1];
    }
    // Left/right keypoints swap under a horizontal flip (official: only the horizontal flip remaps).
    if (horizontal && !flip_idx.empty()) {
      std::vector<float> tmp(per);
      for (size_t i = 0; i < in.size(); ++i) {
        float* p = &in.kpts[i * per];
        for (int j = 0; j < kpt_count; ++j) std::copy_n(p + flip_idx[j] * kpt_dims, kpt_dims, &tmp[j * kpt_dims]);
        std::copy(tmp.begin(), tmp.end(), p);
      }
    }
  }
}

void flip_sample(Sample& s, bool horizontal, int kpt_count, int kpt_dims, const std::vector<int>& flip_idx) {
  cv::flip(s.img, s.img, horizontal ? 1 : 0);
  flip_labels(s.inst, s.img.size(), horizontal, kpt_count, kpt_dims, flip_idx);
}

// ---- training sample -------------------------------------------------------------------------------------------
TrainAugmenter::TrainAugmenter(std::shared_ptr<const Dataset> ds, AugmentConfig cfg, size_t buffer_capacity)
    : ds_(std::move(ds)), cfg_(cfg), capacity_(std::max<size_t>(buffer_capacity, 4)) {
  if (!ds_ || ds_->size() == 0) fail("TrainAugmenter needs a non-empty dataset");
}

TrainAugmenter::Loaded TrainAugmenter::load(size_t index) {
  for (auto it = buffer_.rbegin(); it != buffer_.rend(); ++it)
    if (it->index == index) return *it;
  Loaded l{index, ds_->load_image(index)};
  if (ds_->ram_cached()) return l;
  ++decodes_;
  buffer_.push_back(l);
  if (buffer_.size() > capacity_) {
    recycle_image(std::move(buffer_.front().img));  // the next decode on this thread writes into it
    buffer_.pop_front();
  }
  return l;
}

cv::Mat TrainAugmenter::blank(int s) {
  for (cv::Mat& m : pool_)
    if (m.rows == s && m.cols == s && m.u && m.u->refcount == 1) {
      m.setTo(kPadColor);
      return m;
    }
  cv::Mat m(s, s, CV_8UC3, kPadColor);
  if (pool_.size() < 64) pool_.push_back(m);  // a batch's worth and more; beyond that, plain allocations
  return m;
}

TrainAugmenter::Loaded TrainAugmenter::partner(SampleRng& rng) {
  // RAM cache: any image is free. Otherwise the buffer of recent decodes (random images until it holds a few).
  if (ds_->ram_cached() || buffer_.size() < 4) return load((size_t)rng.randint((int64_t)ds_->size()));
  return buffer_[(size_t)rng.randint((int64_t)buffer_.size())];
}

Sample TrainAugmenter::base_sample(size_t index, SampleRng& rng, bool mosaic_enabled) {
  if (mosaic_enabled && cfg_.mosaic > 0 && rng.uniform() < cfg_.mosaic) return mosaic_perspective(index, rng);
  return letterbox_perspective(index, rng);
}

Sample TrainAugmenter::letterbox_perspective(size_t index, SampleRng& rng) {
  const int s = ds_->imgsz();
  const ImageLabels& L = ds_->labels(index);
  Loaded l = load(index);
  Sample out;
  out.index = index;
  out.ori_size = {L.width, L.height};
  out.resized_size = l.img.size();
  // LetterBox(imgsz) composed with the perspective matrix: one warp straight from the loaded image.
  double r = std::min((double)s / l.img.rows, (double)s / l.img.cols);
  cv::Size unpad(py_round(l.img.cols * r), py_round(l.img.rows * r));
  int left = py_round((s - unpad.width) / 2.0 - 0.1), top = py_round((s - unpad.height) / 2.0 - 0.1);
  double scale = 1;
  cv::Matx33d M = random_perspective_matrix(cfg_, {s, s}, {s, s}, rng, &scale);
  bool persp = cfg_.perspective > 0;
  if (cfg_.degrees == 0 && cfg_.shear == 0 && !persp) {
    // Scale + shift only: a resize of the image's visible part into the output, 114 elsewhere.
    out.img = blank(s);
    cv::Mat src = l.img;
    if (unpad != l.img.size()) cv::resize(l.img, src, unpad, 0, 0, cv::INTER_LINEAR);
    cv::Point2d b = draw_scaled(src, out.img, M(0, 0), M(0, 2) + M(0, 0) * left, M(1, 2) + M(1, 1) * top);
    M(0, 2) = b.x - M(0, 0) * left;  // the labels follow the (sub-pixel) snapped shift
    M(1, 2) = b.y - M(1, 1) * top;
  } else {
    cv::Matx33d place = translation(left, top) * cv::Matx33d(r, 0, 0, 0, r, 0, 0, 0, 1);
    warp(l.img, out.img, M * place, {s, s}, persp);
  }
  out.inst = labels_in_pixels(*ds_, index, unpad, cv::Point2f((float)left, (float)top));
  transform_instances(out.inst, M, {s, s}, scale, persp, ds_->kpt_dims(), ds_->options().obb);
  out.gain_w = (double)l.img.cols / L.width;
  out.gain_h = (double)l.img.rows / L.height;
  return out;
}

Sample TrainAugmenter::mosaic_perspective(size_t index, SampleRng& rng) {
  const int s = ds_->imgsz();
  const ImageLabels& L = ds_->labels(index);
  Loaded tiles[4];
  tiles[0] = load(index);
  for (int k = 1; k < 4; ++k) tiles[k] = partner(rng);
  // Mosaic centre in the 2s canvas, then the perspective matrix that crops the canvas back to s x s.
  const int xc = (int)rng.uniform(s / 2.0, 1.5 * s), yc = (int)rng.uniform(s / 2.0, 1.5 * s);
  double scale = 1;
  cv::Matx33d M = random_perspective_matrix(cfg_, {2 * s, 2 * s}, {s, s}, rng, &scale);
  const bool persp = cfg_.perspective > 0;
  // Without rotation, shear or perspective M is a scale plus shift: each tile is warped straight into its own part
  // of the output. Otherwise the official 2s canvas is built and warped once.
  const bool axis_aligned = cfg_.degrees == 0 && cfg_.shear == 0 && !persp;
  Sample out;
  out.index = index;
  out.ori_size = {L.width, L.height};
  out.resized_size = tiles[0].img.size();
  out.gain_w = (double)tiles[0].img.cols / L.width;
  out.gain_h = (double)tiles[0].img.rows / L.height;
  out.img = blank(s);
  cv::Mat canvas;
  if (!axis_aligned) canvas = cv::Mat(2 * s, 2 * s, CV_8UC3, kPadColor);
  const int S2 = 2 * s;
  for (int k = 0; k < 4; ++k) {
    const cv::Mat& img = tiles[k].img;
    const int h = img.rows, w = img.cols;
    int x1a, y1a, x2a, y2a, x1b, y1b;  // canvas region and the matching source corner
    switch (k) {
      case 0: x1a = std::max(xc - w, 0); y1a = std::max(yc - h, 0); x2a = xc; y2a = yc;
              x1b = w - (x2a - x1a); y1b = h - (y2a - y1a); break;
      case 1: x1a = xc; y1a = std::max(yc - h, 0); x2a = std::min(xc + w, S2); y2a = yc;
              x1b = 0; y1b = h - (y2a - y1a); break;
      case 2: x1a = std::max(xc - w, 0); y1a = yc; x2a = xc; y2a = std::min(S2, yc + h);
              x1b = w - (x2a - x1a); y1b = 0; break;
      default: x1a = xc; y1a = yc; x2a = std::min(xc + w, S2); y2a = std::min(S2, yc + h);
               x1b = 0; y1b = 0; break;
    }
    if (x2a <= x1a || y2a <= y1a) continue;
    cv::Mat src = img(cv::Rect(x1b, y1b, x2a - x1a, y2a - y1a));
    Instances inst = labels_in_pixels(*ds_, tiles[k].index, img.size(), cv::Point2f((float)(x1a - x1b), (float)(y1a - y1b)));
    // Official mosaic: labels clipped to the canvas and zero-area boxes removed before the perspective step.
    clip_instances(inst, (float)S2, (float)S2, ds_->kpt_dims(), ds_->options().obb);
    std::vector<uint8_t> keep(inst.size());
    for (size_t i = 0; i < keep.size(); ++i)
      keep[i] = inst.xyxy[4 * i + 2] > inst.xyxy[4 * i] && inst.xyxy[4 * i + 3] > inst.xyxy[4 * i + 1];
    inst.keep(keep);
    if (!axis_aligned) {
      src.copyTo(canvas(cv::Rect(x1a, y1a, x2a - x1a, y2a - y1a)));
      out.inst.append(inst);
      continue;
    }
    // Straight into the output: canvas position x1a + u maps to a * (x1a + u) + ox. The tile's labels follow its
    // own (sub-pixel) snapped shift.
    cv::Point2d b = draw_scaled(src, out.img, M(0, 0), M(0, 2) + M(0, 0) * x1a, M(1, 2) + M(1, 1) * y1a);
    cv::Matx33d Mk = M;
    Mk(0, 2) = b.x - M(0, 0) * x1a;
    Mk(1, 2) = b.y - M(1, 1) * y1a;
    transform_instances(inst, Mk, {s, s}, scale, false, ds_->kpt_dims(), ds_->options().obb);
    out.inst.append(inst);
  }
  if (!axis_aligned) {
    warp(canvas, out.img, M, {s, s}, persp);
    transform_instances(out.inst, M, {s, s}, scale, persp, ds_->kpt_dims(), ds_->options().obb);
  }
  return out;
}

void TrainAugmenter::mixup(Sample& s, Sample&& other, SampleRng& rng) {
  double r = rng.beta(32.0, 32.0);  // official mixup ratio
  cv::addWeighted(s.img, r, other.img, 1 - r, 0, s.img);
  s.inst.append(other.inst);
}

void TrainAugmenter::cutmix(Sample& s, Sample&& other, SampleRng& rng) {
  const int w = s.img.cols, h = s.img.rows;
  // Up to three random cut areas (beta(1,1) area ratio); only one that touches none of the current boxes is used.
  std::vector<std::array<float, 4>> free_areas;
  for (int t = 0; t < 3; ++t) {
    double lam = rng.beta(1.0, 1.0), cut = std::sqrt(1 - lam);
    int cw = (int)(w * cut), ch = (int)(h * cut);
    int cx = (int)rng.randint(w), cy = (int)rng.randint(h);
    std::array<float, 4> a = {(float)std::clamp(cx - cw / 2, 0, w), (float)std::clamp(cy - ch / 2, 0, h),
                              (float)std::clamp(cx + cw / 2, 0, w), (float)std::clamp(cy + ch / 2, 0, h)};
    bool touches = false;
    for (size_t i = 0; i < s.inst.size() && !touches; ++i) touches = ioa(a.data(), &s.inst.xyxy[4 * i]) > 0;
    if (!touches) free_areas.push_back(a);
  }
  if (free_areas.empty()) return;
  auto area = free_areas[(size_t)rng.randint((int64_t)free_areas.size())];
  const float thr = s.inst.segs.empty() ? 0.1f : 0.01f;
  std::vector<uint8_t> keep(other.inst.size());
  bool any = false;
  for (size_t i = 0; i < keep.size(); ++i) any |= (keep[i] = ioa(area.data(), &other.inst.xyxy[4 * i]) >= thr);
  if (!any) return;
  other.inst.keep(keep);
  int x1 = (int)area[0], y1 = (int)area[1], x2 = (int)area[2], y2 = (int)area[3];
  cv::Rect roi(x1, y1, x2 - x1, y2 - y1);
  other.img(roi).copyTo(s.img(roi));
  // The pasted labels are cut to the pasted area (boxes, polygons, keypoints; OBB polygons as rotated boxes, and
  // those left with no area dropped, as upstream's preserve_obb).
  const int kd = ds_->kpt_dims();
  const bool obb = ds_->options().obb;
  shift_instances(other.inst, (float)-x1, (float)-y1, kd);
  clip_instances(other.inst, (float)(x2 - x1), (float)(y2 - y1), kd, obb);
  shift_instances(other.inst, (float)x1, (float)y1, kd);
  if (obb) {
    std::vector<uint8_t> visible(other.inst.size());
    for (size_t i = 0; i < visible.size(); ++i) {
      const float* b = &other.inst.xyxy[4 * i];
      visible[i] = b[2] > b[0] && b[3] > b[1];
    }
    other.inst.keep(visible);
  }
  s.inst.append(other.inst);
}

Sample TrainAugmenter::make(size_t index, uint64_t seed, bool mosaic_enabled, bool defer_pixels) {
  SampleRng rng(seed);
  Sample s = base_sample(index, rng, mosaic_enabled);
  if (mosaic_enabled && cfg_.mixup > 0 && rng.uniform() < cfg_.mixup)
    mixup(s, base_sample(partner(rng).index, rng, true), rng);
  if (mosaic_enabled && cfg_.cutmix > 0 && rng.uniform() < cfg_.cutmix)
    cutmix(s, base_sample(partner(rng).index, rng, true), rng);
  PendingPixels& px = s.pending;
  px.hsv = draw_hsv(cfg_.hsv_h, cfg_.hsv_s, cfg_.hsv_v, rng);
  px.flip_ud = cfg_.flipud > 0 && rng.uniform() < cfg_.flipud;
  px.flip_lr = cfg_.fliplr > 0 && rng.uniform() < cfg_.fliplr;
  s.keep_bgr = cfg_.bgr > 0 && rng.uniform() < cfg_.bgr;
  const int K = ds_->kpt_count(), D = ds_->kpt_dims();
  if (defer_pixels) {
    if (px.flip_ud) flip_labels(s.inst, s.img.size(), false, K, D, ds_->flip_idx());
    if (px.flip_lr) flip_labels(s.inst, s.img.size(), true, K, D, ds_->flip_idx());
    return s;
  }
  apply_hsv(s.img, px.hsv);
  if (px.flip_ud) flip_sample(s, false, K, D, ds_->flip_idx());
  if (px.flip_lr) flip_sample(s, true, K, D, ds_->flip_idx());
  px = PendingPixels{};
  return s;
}

}  // namespace y26
