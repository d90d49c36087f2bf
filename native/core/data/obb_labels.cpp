#include "data/obb_labels.h"

#include <opencv2/imgproc.hpp>
#include <torch/torch.h>

#include <cmath>

#include "util/error.h"

namespace y26 {

namespace {
constexpr double kPi = 3.14159265358979323846;

// w >= h and angle in [-pi/4, 3pi/4), in double as the official numpy code does.
void canonicalise(double& w, double& h, double& theta) {
  if (w < h) {
    std::swap(w, h);
    theta += kPi / 2;
  }
  while (theta >= 3 * kPi / 4) theta -= kPi;
  while (theta < -kPi / 4) theta += kPi;
}
}  // namespace

std::array<float, 5> min_area_rbox(const std::vector<cv::Point2f>& pts) {
  if (pts.empty()) return {0, 0, 0, 0, 0};
  const cv::RotatedRect r = cv::minAreaRect(pts);
  double w = r.size.width, h = r.size.height, theta = r.angle / 180.0 * kPi;
  canonicalise(w, h, theta);
  return {r.center.x, r.center.y, float(w), float(h), float(theta)};
}

torch::Tensor canonical_rboxes(const torch::Tensor& rboxes) {
  if (!rboxes.defined() || rboxes.dim() != 2 || rboxes.size(1) != 5)
    fail("canonical_rboxes: expected (N, 5) [cx, cy, w, h, angle], got " +
         (rboxes.defined() ? c10::str(rboxes.sizes()) : std::string("<undefined>")));
  auto r = rboxes.to(torch::kCPU, torch::kDouble).contiguous().clone();
  auto a = r.accessor<double, 2>();
  for (int64_t i = 0; i < r.size(0); ++i) canonicalise(a[i][2], a[i][3], a[i][4]);
  return r.to(rboxes.scalar_type()).to(rboxes.device());
}

torch::Tensor corners_to_rboxes(const torch::Tensor& corners) {
  if (!corners.defined() || corners.dim() < 2 || corners.dim() > 3 ||
      (corners.dim() == 3 && corners.size(2) != 2) || (corners.dim() == 2 && corners.size(1) % 2 != 0))
    fail("corners_to_rboxes: expected polygons (N, P, 2) or (N, 2P), got " +
         (corners.defined() ? c10::str(corners.sizes()) : std::string("<undefined>")));
  const int64_t n = corners.size(0);
  auto pts = corners.to(torch::kCPU, torch::kFloat).reshape({n, -1, 2}).contiguous();
  const int64_t p = pts.size(1);
  if (n > 0 && p < 3) fail("corners_to_rboxes: polygons need at least 3 points, got " + std::to_string(p));
  auto out = torch::zeros({n, 5}, torch::kFloat);
  const float* src = pts.data_ptr<float>();
  float* dst = out.data_ptr<float>();
  for (int64_t i = 0; i < n; ++i) {
    std::vector<cv::Point2f> poly;
    for (int64_t k = 0; k < p; ++k) poly.emplace_back(src[(i * p + k) * 2], src[(i * p + k) * 2 + 1]);
    auto r = min_area_rbox(poly);
    std::copy(r.begin(), r.end(), dst + i * 5);
  }
  return out;
}

bool clip_obb_polygon(std::vector<cv::Point2f>& poly, float w, float h, std::array<float, 4>* box) {
  auto extent = [](const std::vector<cv::Point2f>& pts) {
    std::array<float, 4> e{1e30f, 1e30f, -1e30f, -1e30f};
    for (auto& p : pts) {
      e[0] = std::min(e[0], p.x); e[1] = std::min(e[1], p.y);
      e[2] = std::max(e[2], p.x); e[3] = std::max(e[3], p.y);
    }
    return e;
  };
  if (poly.empty()) {
    if (box) *box = {0, 0, 0, 0};
    return false;
  }
  auto e = extent(poly);
  if (e[0] >= 0 && e[1] >= 0 && e[2] <= w && e[3] <= h) {
    if (box) *box = e;
    return true;
  }
  std::vector<cv::Point2f> hull, visible;
  cv::convexHull(poly, hull);
  const std::vector<cv::Point2f> canvas{{0, 0}, {w, 0}, {w, h}, {0, h}};
  const float area = hull.size() >= 3 ? cv::intersectConvexConvex(hull, canvas, visible) : 0.f;
  if (area <= 0 || visible.empty()) {
    poly.assign(poly.size(), cv::Point2f(0, 0));
    if (box) *box = {0, 0, 0, 0};
    return false;
  }
  if (box) *box = extent(visible);
  // The visible part in the frame of the full box (long side along u), its extent there, and back.
  const cv::RotatedRect r = cv::minAreaRect(poly);
  double angle = r.angle;
  if (r.size.width < r.size.height) angle += 90;
  const double a = angle / 180.0 * kPi, cs = std::cos(a), sn = std::sin(a);
  double u1 = 1e30, v1 = 1e30, u2 = -1e30, v2 = -1e30;
  for (auto& p : visible) {
    const double u = p.x * cs + p.y * sn, v = -p.x * sn + p.y * cs;
    u1 = std::min(u1, u); u2 = std::max(u2, u);
    v1 = std::min(v1, v); v2 = std::max(v2, v);
  }
  auto back = [&](double u, double v) { return cv::Point2f(float(u * cs - v * sn), float(u * sn + v * cs)); };
  poly = {back(u2, v2), back(u2, v1), back(u1, v1), back(u1, v2)};
  return true;
}

torch::Tensor batch_rboxes(const Batch& batch, bool normalized) {
  const int64_t n = batch.cls.defined() ? batch.cls.size(0) : 0;
  auto out = torch::zeros({n, 5}, torch::kFloat);
  if (n == 0) return out;
  if ((int64_t)batch.segments.size() != n)
    fail("batch_rboxes: the batch has " + std::to_string(n) + " labels but " + std::to_string(batch.segments.size()) +
         " polygons; OBB training needs a dataset whose label rows are 'class x1 y1 x2 y2 x3 y3 x4 y4' (normalised "
         "corners), not 'class x y w h' boxes");
  if (!batch.img.defined() || batch.img.dim() != 4)
    fail("batch_rboxes: the batch has no (B, 3, H, W) image tensor to scale the polygons with");
  const float H = float(batch.img.size(2)), W = float(batch.img.size(3));
  auto boxes = batch.bboxes.to(torch::kCPU, torch::kFloat).contiguous();
  const float* bx = boxes.data_ptr<float>();
  float* dst = out.data_ptr<float>();
  for (int64_t i = 0; i < n; ++i) {
    auto poly_t = batch.segments[i].to(torch::kCPU, torch::kFloat).contiguous();
    std::array<float, 5> r{};
    if (poly_t.numel() >= 2) {
      const float* p = poly_t.data_ptr<float>();
      std::vector<cv::Point2f> poly;
      for (int64_t k = 0; k + 1 < poly_t.numel(); k += 2) poly.emplace_back(p[k] * W, p[k + 1] * H);
      r = min_area_rbox(poly);
    } else {  // no polygon: the axis-aligned box, angle 0, canonicalised
      double w = bx[i * 4 + 2] * W, h = bx[i * 4 + 3] * H, theta = 0;
      canonicalise(w, h, theta);
      r = {bx[i * 4] * W, bx[i * 4 + 1] * H, float(w), float(h), float(theta)};
    }
    if (normalized) {
      r[0] /= W; r[2] /= W;
      r[1] /= H; r[3] /= H;
    }
    std::copy(r.begin(), r.end(), dst + i * 5);
  }
  return out;
}

}  // namespace y26
