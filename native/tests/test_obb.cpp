// OBB training and validation pieces: probiou, polygon -> rotated box labels (incl. after a flip), the rotated
// assigner's candidate rule, the angle loss, the per-branch and end-to-end OBB loss (hand-made heads and a tiny
// yolo26n-obb model), and the probiou TP matrix of the OBB validator. References are computed independently here
// (2x2-matrix Gaussians, OpenCV point-in-polygon, closed-form angle terms).
#include "testing.h"

#include "data/augment.h"
#include "data/loader.h"
#include "data/obb_labels.h"
#include "eval/obb_metrics.h"
#include "infer/postprocess.h"
#include "model/anchors.h"
#include "model/postprocess.h"
#include "model/yolo.h"
#include "geometry/box_ops.h"
#include "train/detection_loss.h"
#include "train/obb_loss.h"
#include "train/rotated_assigner.h"

#include <opencv2/imgproc.hpp>
#include <torch/torch.h>

#include <cmath>
#include <vector>

using namespace y26;

namespace {

constexpr double kPi = 3.14159265358979323846;
const std::vector<double> kStrides{8, 16, 32};

// Probabilistic IoU from the Bhattacharyya distance of the two Gaussians written with explicit 2x2 matrices
// (Sigma = R diag(w^2/12 + floor, h^2/12 + floor) R^T, mean covariance (S1 + S2) / 2), in double; clamp and the
// 1e-7 inside the square root as the reference defines it.
double probiou_ref(const double* p, const double* q, double floor = 0) {
  auto cov = [floor](const double* r, double* S) {
    const double c = std::cos(r[4]), s = std::sin(r[4]);
    const double l1 = r[2] * r[2] / 12 + floor, l2 = r[3] * r[3] / 12 + floor;
    S[0] = c * c * l1 + s * s * l2;  // xx
    S[1] = s * s * l1 + c * c * l2;  // yy
    S[2] = c * s * (l1 - l2);        // xy
  };
  double A[3], B[3];
  cov(p, A);
  cov(q, B);
  const double S[3] = {(A[0] + B[0]) / 2, (A[1] + B[1]) / 2, (A[2] + B[2]) / 2};
  const double det = S[0] * S[1] - S[2] * S[2];
  const double dx = p[0] - q[0], dy = p[1] - q[1];
  const double maha = (S[1] * dx * dx - 2 * S[2] * dx * dy + S[0] * dy * dy) / det;
  double bd = maha / 8 + 0.5 * std::log(det / std::sqrt((A[0] * A[1] - A[2] * A[2]) * (B[0] * B[1] - B[2] * B[2])));
  bd = std::min(std::max(bd, 1e-7), 100.0);
  return 1 - std::sqrt(1 - std::exp(-bd) + 1e-7);
}

double probiou_ref(const torch::Tensor& p, const torch::Tensor& q, double floor = 0) {
  auto a = p.to(torch::kDouble).contiguous(), b = q.to(torch::kDouble).contiguous();
  return probiou_ref(a.data_ptr<double>(), b.data_ptr<double>(), floor);
}

torch::Tensor rb(std::initializer_list<double> v) { return torch::tensor(std::vector<double>(v), torch::kDouble); }

// The canonical angle as the official label path states it: w >= h, angle wrapped into [-pi/4, 3pi/4).
double wrap_angle(double t) {
  while (t >= 3 * kPi / 4) t -= kPi;
  while (t < -kPi / 4) t += kPi;
  return t;
}

std::vector<cv::Point2f> corners_of(const std::array<double, 5>& r) {
  auto c = xywhr2corners(torch::tensor({r[0], r[1], r[2], r[3], r[4]}, torch::kDouble)).to(torch::kFloat).contiguous();
  std::vector<cv::Point2f> pts;
  for (int k = 0; k < 4; ++k) pts.emplace_back(c[k][0].item<float>(), c[k][1].item<float>());
  return pts;
}

// A one-image Batch from a sample's pixel labels (what the loader's collate does), H x W image.
Batch batch_of(const Sample& s) {
  Batch b;
  const int H = s.img.rows, W = s.img.cols;
  const int64_t n = (int64_t)s.inst.size();
  b.img = torch::zeros({1, 3, H, W}, torch::kUInt8);
  b.cls = torch::empty({n, 1});
  b.bboxes = torch::empty({n, 4});
  b.batch_idx = torch::zeros({n});
  for (int64_t i = 0; i < n; ++i) {
    const float* x = &s.inst.xyxy[4 * i];
    b.cls[i][0] = s.inst.cls[i];
    b.bboxes[i] = torch::tensor({(x[0] + x[2]) / 2 / W, (x[1] + x[3]) / 2 / H, (x[2] - x[0]) / W, (x[3] - x[1]) / H});
    auto t = torch::empty({(int64_t)s.inst.segs[i].size(), 2});
    for (size_t k = 0; k < s.inst.segs[i].size(); ++k) {
      t[k][0] = s.inst.segs[i][k].x / W;
      t[k][1] = s.inst.segs[i][k].y / H;
    }
    b.segments.push_back(t);
  }
  return b;
}

cv::Rect2f extent_of(const std::vector<cv::Point2f>& pts) {
  float x0 = 1e30f, y0 = 1e30f, x1 = -1e30f, y1 = -1e30f;
  for (auto& p : pts) {
    x0 = std::min(x0, p.x); y0 = std::min(y0, p.y);
    x1 = std::max(x1, p.x); y1 = std::max(y1, p.y);
  }
  return {x0, y0, x1 - x0, y1 - y0};
}

Sample sample_of(int H, int W, const std::vector<std::array<double, 5>>& rects) {
  Sample s;
  s.img = cv::Mat(H, W, CV_8UC3, cv::Scalar(0, 0, 0));
  for (size_t i = 0; i < rects.size(); ++i) {
    auto pts = corners_of(rects[i]);
    cv::Rect2f bb = extent_of(pts);
    s.inst.cls.push_back(float(i));
    s.inst.xyxy.insert(s.inst.xyxy.end(), {bb.x, bb.y, bb.x + bb.width, bb.y + bb.height});
    s.inst.segs.push_back(pts);
  }
  return s;
}

// Anchors of a 64 x 64 input in pixels (A, 2), and the grid.
const auto kGrid64 = grid_sizes_for(64, 64, kStrides);
torch::Tensor anchors_px() {
  auto a = make_anchors(kGrid64, kStrides);
  return a.points * a.strides;
}

// Head outputs for one image whose every anchor predicts exactly `target_px` (cx, cy, w, h in input pixels) with
// angle `theta`: raw ltrb = rbox2dist of the target in each anchor's grid units. Class logits fall with the
// anchor's distance from the centre, so that the assignment does not hinge on rounding-level ties.
ObbBranchOutput exact_head(const std::array<double, 4>& target_px, double theta, int64_t nc) {
  auto a = make_anchors(kGrid64, kStrides);
  const int64_t na = a.points.size(0);
  auto t = torch::tensor({float(target_px[0]), float(target_px[1]), float(target_px[2]), float(target_px[3])})
               .view({1, 4}) / a.strides;  // (A, 4) grid units
  auto ang = torch::full({na, 1}, float(theta));
  auto ltrb = rbox2dist(t, a.points, ang);  // (A, 4)
  ObbBranchOutput o;
  o.boxes = ltrb.t().unsqueeze(0).contiguous();
  auto anchor_px = a.points * a.strides;
  auto dist = (anchor_px - torch::tensor({float(target_px[0]), float(target_px[1])})).pow(2).sum(1).sqrt();
  o.scores = (-0.05 * dist).view({1, 1, na}).expand({1, nc, na}).contiguous();
  o.angle = ang.t().unsqueeze(0).contiguous();
  return o;
}

ObbBatch one_box_batch(const std::array<double, 5>& r_px, double imgsz = 64, int cls = 1) {
  ObbBatch b;
  b.batch_idx = torch::zeros({1});
  b.cls = torch::full({1, 1}, float(cls));
  b.rboxes = torch::tensor({float(r_px[0] / imgsz), float(r_px[1] / imgsz), float(r_px[2] / imgsz),
                            float(r_px[3] / imgsz), float(r_px[4])}).view({1, 5});
  return b;
}

}  // namespace

// ---- probiou ---------------------------------------------------------------------------------------------------

TEST_CASE("probiou matches a 2x2-matrix Bhattacharyya computation; probiou_matrix is the same function") {
  torch::manual_seed(3);
  const int64_t n = 24;
  auto rnd = [&](double lo, double hi) { return torch::rand({n}, torch::kDouble) * (hi - lo) + lo; };
  auto a = torch::stack({rnd(0, 100), rnd(0, 100), rnd(4, 60), rnd(4, 60), rnd(-3, 3)}, 1);
  auto b = a.clone();
  b.narrow(1, 0, 2).add_(torch::randn({n, 2}, torch::kDouble) * 8);  // overlapping but different boxes
  b.narrow(1, 2, 2).mul_(torch::rand({n, 2}, torch::kDouble) + 0.5);
  b.select(1, 4).add_(torch::randn({n}, torch::kDouble) * 0.5);
  for (double floor : {0.0, 0.01}) {
    auto got = probiou(a, b, 1e-7, floor);
    EXPECT(got.sizes() == torch::IntArrayRef({n, 1}));
    for (int64_t i = 0; i < n; ++i)
      EXPECT_NEAR(got[i][0].item<double>(), probiou_ref(a[i], b[i], floor), 1e-5);  // eps placements differ
  }
  auto m = probiou_matrix(a, b);  // float32 (N, M)
  EXPECT(m.sizes() == torch::IntArrayRef({n, n}));
  for (int64_t i = 0; i < n; i += 5)
    for (int64_t j = 0; j < n; j += 3) EXPECT_NEAR(m[i][j].item<double>(), probiou_ref(a[i], b[j]), 2e-5);
}

TEST_CASE("probiou: ~1 for identical boxes, a turn of pi or a square's quarter turn; lower when rotated or shifted") {
  auto box = rb({40, 30, 36, 12, 0.4});
  const double same = probiou(box, box).item<double>();
  EXPECT(1 - same < 1e-3);                            // box loss 1 - probiou near 0
  EXPECT(1 - probiou(box, box, 1e-7, 0.01).item<double>() < 1e-3);
  EXPECT_NEAR(probiou(box, rb({40, 30, 36, 12, 0.4 + kPi})).item<double>(), same, 1e-9);
  EXPECT_NEAR(probiou(box, rb({40, 30, 12, 36, 0.4 + kPi / 2})).item<double>(), same, 1e-9);  // same rectangle
  auto square = rb({10, 10, 20, 20, 0.1});
  EXPECT(1 - probiou(square, rb({10, 10, 20, 20, 0.1 + kPi / 2})).item<double>() < 1e-3);
  double prev = same;
  for (double d : {0.2, 0.5, 1.0, kPi / 2}) {  // more rotation, less overlap (up to the quarter turn)
    const double v = probiou(box, rb({40, 30, 36, 12, 0.4 + d})).item<double>();
    EXPECT_MSG(v < prev - 1e-3, "rotation " << d << ": probiou " << v << " not below " << prev);
    prev = v;
  }
  EXPECT(probiou(box, rb({46, 30, 36, 12, 0.4})).item<double>() < same - 0.05);
}

// ---- labels ----------------------------------------------------------------------------------------------------

TEST_CASE("polygon -> rotated box: minAreaRect in the canonical form (w >= h, angle in [-pi/4, 3pi/4))") {
  struct Case { std::array<double, 5> in, want; };
  const std::vector<Case> cases = {
      {{50, 40, 30, 10, 0.3}, {50, 40, 30, 10, 0.3}},
      {{50, 40, 10, 30, 0.3}, {50, 40, 30, 10, 0.3 + kPi / 2}},  // w < h: swapped, turned a quarter
      {{20, 30, 24, 8, -1.0}, {20, 30, 24, 8, -1.0 + kPi}},     // below -pi/4: + pi
      {{20, 30, 24, 8, 2.5}, {20, 30, 24, 8, 2.5 - kPi}},       // from 3pi/4 on: - pi
      {{70, 15, 40, 6, 0.0}, {70, 15, 40, 6, 0.0}},
      {{70, 15, 6, 40, 0.0}, {70, 15, 40, 6, kPi / 2}},
  };
  for (const auto& c : cases) {
    auto pts = corners_of(c.in);
    auto r = min_area_rbox(pts);
    for (int k = 0; k < 4; ++k) EXPECT_NEAR(r[k], c.want[k], 2e-3);
    EXPECT_NEAR(r[4], c.want[4], 1e-4);
    EXPECT(r[2] >= r[3] && r[4] >= -kPi / 4 && r[4] < 3 * kPi / 4);
    // the same through the tensor API, also with extra points on the edges (a resampled polygon)
    std::vector<float> flat;
    for (size_t k = 0; k < 4; ++k) {
      const auto& p = pts[k];
      const auto& q = pts[(k + 1) % 4];
      for (int s = 0; s < 5; ++s) {
        flat.push_back(p.x + (q.x - p.x) * s / 5.f);
        flat.push_back(p.y + (q.y - p.y) * s / 5.f);
      }
    }
    auto t = corners_to_rboxes(torch::tensor(flat).view({1, -1}));
    for (int k = 0; k < 5; ++k) EXPECT_NEAR(t[0][k].item<double>(), c.want[k], k == 4 ? 2e-4 : 3e-3);
    auto canon = canonical_rboxes(torch::tensor({c.in[0], c.in[1], c.in[2], c.in[3], c.in[4]}, torch::kDouble).view({1, 5}));
    for (int k = 0; k < 5; ++k) EXPECT_NEAR(canon[0][k].item<double>(), c.want[k], 1e-9);
  }
  EXPECT_THROWS(corners_to_rboxes(torch::zeros({2, 3})));
}

TEST_CASE("batch_rboxes: pixels and normalised boxes of a non-square batch, also after a horizontal flip") {
  const int H = 64, W = 128;
  const std::vector<std::array<double, 5>> rects = {{40, 30, 36, 12, 0.5}, {90, 20, 20, 8, -0.3}};
  Sample s = sample_of(H, W, rects);
  auto check = [&](const Batch& b, const std::vector<std::array<double, 5>>& want) {
    auto px = batch_rboxes(b, /*normalized=*/false);
    auto nz = batch_rboxes(b);
    EXPECT(px.sizes() == torch::IntArrayRef({(int64_t)want.size(), 5}));
    for (size_t i = 0; i < want.size(); ++i) {
      for (int k = 0; k < 4; ++k) EXPECT_NEAR(px[i][k].item<double>(), want[i][k], 3e-3);
      EXPECT_NEAR(px[i][4].item<double>(), want[i][4], 2e-4);
      const double scale[4] = {double(W), double(H), double(W), double(H)};
      for (int k = 0; k < 4; ++k) EXPECT_NEAR(nz[i][k].item<double>(), px[i][k].item<double>() / scale[k], 1e-6);
      EXPECT_NEAR(nz[i][4].item<double>(), px[i][4].item<double>(), 1e-7);
    }
  };
  check(batch_of(s), rects);
  flip_sample(s, /*horizontal=*/true, 0, 0, {});  // the augmenter's flip: x -> W - x for polygons
  std::vector<std::array<double, 5>> flipped;
  for (auto r : rects) flipped.push_back({W - r[0], r[1], r[2], r[3], wrap_angle(-r[4])});
  check(batch_of(s), flipped);
  flip_sample(s, /*horizontal=*/false, 0, 0, {});  // and a vertical one: y -> H - y, angle negated again
  std::vector<std::array<double, 5>> both;
  for (auto r : flipped) both.push_back({r[0], H - r[1], r[2], r[3], wrap_angle(-r[4])});
  check(batch_of(s), both);

  Batch b = batch_of(s);  // an instance without polygon uses its axis-aligned box, canonicalised
  b.segments[1] = torch::zeros({0, 2});
  b.bboxes[1] = torch::tensor({0.5f, 0.5f, 0.1f, 0.5f});  // 12.8 x 32 px: taller than wide
  auto px = batch_rboxes(b, false);
  EXPECT_NEAR(px[1][2].item<double>(), 32.0, 1e-4);
  EXPECT_NEAR(px[1][3].item<double>(), 12.8, 1e-4);
  EXPECT_NEAR(px[1][4].item<double>(), kPi / 2, 1e-6);
  b.segments.clear();  // a detect dataset: no polygons at all
  EXPECT_THROWS(batch_rboxes(b));
}

TEST_CASE("clip_obb_polygon: border crops keep the box direction, inside polygons stay, invisible ones go") {
  const std::array<double, 5> r{8, 32, 40, 10, 0.3};  // crosses the left border of a 64 x 64 image
  auto orig = corners_of(r);
  auto poly = orig;
  std::array<float, 4> box{};
  EXPECT(clip_obb_polygon(poly, 64, 64, &box));
  EXPECT(poly.size() == 4);
  EXPECT_NEAR(box[0], 0.0, 1e-4);  // the visible part starts at the border
  auto cut = min_area_rbox(poly);
  EXPECT_NEAR(cut[4], 0.3, 1e-3);              // same direction
  EXPECT_NEAR(cut[3], 10.0, 0.05);             // the short side is untouched
  EXPECT(cut[2] < 40 - 5 && cut[2] > 20);      // the long side lost the part beyond the border
  for (auto& p : poly)                         // and the new box lies inside the old one
    EXPECT_MSG(cv::pointPolygonTest(orig, p, true) >= -1e-3, "corner " << p << " outside the original box");

  auto inside = corners_of({32, 32, 20, 8, 1.0});
  auto kept = inside;
  EXPECT(clip_obb_polygon(kept, 64, 64, &box));
  for (size_t k = 0; k < 4; ++k) EXPECT(kept[k] == inside[k]);

  auto gone = corners_of({-30, 20, 20, 8, 0.5});
  EXPECT(!clip_obb_polygon(gone, 64, 64, &box));
  EXPECT(box[2] == 0 && box[3] == 0);
}

// ---- assigner --------------------------------------------------------------------------------------------------

TEST_CASE("rotated assigner: candidates are exactly the anchors inside the rotated box (STAL for tiny ones)") {
  AssignerOptions o;
  o.topk = 10;
  o.num_classes = 2;
  o.alpha = 0.5;
  o.strides = kStrides;
  RotatedTaskAlignedAssigner assigner(o);
  auto anchors = anchors_px();
  const int64_t na = anchors.size(0);

  // A long thin box along the diagonal and a tiny one (both sides under the smallest stride), plus a padding row.
  const std::array<double, 5> diag{31, 33, 50, 9, kPi / 4 + 0.05}, tiny{13, 50, 5, 3, 0.2};
  auto gt = torch::tensor({float(diag[0]), float(diag[1]), float(diag[2]), float(diag[3]), float(diag[4]),
                           float(tiny[0]), float(tiny[1]), float(tiny[2]), float(tiny[3]), float(tiny[4]),
                           0.f, 0.f, 0.f, 0.f, 0.f}).view({1, 3, 5});
  auto mask = torch::tensor({1.f, 1.f, 0.f}).view({1, 3, 1});
  auto cand = assigner.candidates(anchors, gt, mask);
  EXPECT(cand.sizes() == torch::IntArrayRef({1, 3, na}));

  auto inside_ref = [&](const std::array<double, 5>& r) {  // OpenCV's point-in-polygon on the corners
    auto pts = corners_of(r);
    std::vector<float> out;
    for (int64_t a = 0; a < na; ++a)
      out.push_back(cv::pointPolygonTest(pts, {anchors[a][0].item<float>(), anchors[a][1].item<float>()}, false) >= 0);
    return torch::tensor(out);
  };
  auto ref_diag = inside_ref(diag);
  EXPECT(torch::equal(cand[0][0], ref_diag));
  // Rotation matters: the axis-aligned extent of the diagonal box holds many more anchor centres.
  auto pts = corners_of(diag);
  cv::Rect2f bb = extent_of(pts);
  auto ax = anchors.select(1, 0), ay = anchors.select(1, 1);
  auto in_extent = (ax > bb.x) & (ax < bb.x + bb.width) & (ay > bb.y) & (ay < bb.y + bb.height);
  EXPECT_MSG(ref_diag.sum().item<double>() >= 3 && in_extent.sum().item<double>() > 2 * ref_diag.sum().item<double>(),
             "inside " << ref_diag.sum().item<double>() << ", in extent " << in_extent.sum().item<int64_t>());
  // The tiny box holds no anchor itself; STAL widens both sides to 16 px.
  EXPECT(inside_ref(tiny).sum().item<double>() == 0);
  auto ref_tiny = inside_ref({tiny[0], tiny[1], 16, 16, tiny[4]});
  EXPECT(ref_tiny.sum().item<double>() > 0 && torch::equal(cand[0][1], ref_tiny));

  // Full assignment with every anchor predicting the diagonal box: positives are candidates of their GT only.
  auto pd_scores = torch::full({1, na, 2}, 0.5f);
  auto pd_boxes = gt.select(1, 0).unsqueeze(1).expand({1, na, 5}).contiguous();
  auto labels = torch::tensor({0.f, 1.f, 0.f}).view({1, 3, 1});
  auto r = assigner(pd_scores, pd_boxes, anchors, labels, gt, mask);
  auto fg = r.fg_mask[0];
  EXPECT(fg.sum().item<int64_t>() > 0);
  auto of_gt = r.target_gt_idx[0];
  for (int64_t a = 0; a < na; ++a) {
    if (!fg[a].item<bool>()) continue;
    const int64_t g = of_gt[a].item<int64_t>();
    EXPECT_MSG(g < 2 && cand[0][g][a].item<float>() == 1.f, "anchor " << a << " assigned outside GT " << g);
    EXPECT(torch::allclose(r.target_bboxes[0][a], gt[0][g]));
    EXPECT(r.target_labels[0][a].item<int64_t>() == g);  // GT g has class g here
  }
  EXPECT(((of_gt == 0) & fg).sum().item<int64_t>() <= 10);  // topk
  EXPECT(r.target_bboxes.size(2) == 5);
}

// ---- angle loss ------------------------------------------------------------------------------------------------

TEST_CASE("angle loss: pi-periodic, zero for equal angles, sin^2(2d) exp(-log(w/h)^2/9), full weight for squares") {
  torch::manual_seed(1);
  auto target = torch::rand({50}, torch::kDouble) * 4 - 2;
  auto delta = torch::rand({50}, torch::kDouble) * 6 - 3;
  auto w = torch::rand({50}, torch::kDouble) * 40 + 2, h = torch::rand({50}, torch::kDouble) * 40 + 2;
  auto l = obb_angle_loss(target + delta, target, w, h);
  EXPECT(torch::allclose(l, obb_angle_loss(target + delta + kPi, target, w, h), 0, 1e-9));
  EXPECT(torch::allclose(l, obb_angle_loss(target + delta - 2 * kPi, target, w, h), 0, 1e-9));
  EXPECT(torch::allclose(l, obb_angle_loss(target + delta, target, h, w), 0, 1e-9));  // w/h and h/w alike
  // Squares get the full weight (log(w/h) = 0), elongated boxes less: the reference's exp(-log(w/h)^2 / 9).
  // (Not zero for squares: sin^2(2d) is already blind to a square's quarter-turn ambiguity.)
  EXPECT(torch::allclose(obb_angle_loss(target + delta, target, w, w), torch::sin(2 * delta).pow(2), 0, 1e-9));
  EXPECT(torch::allclose(l, obb_angle_loss(target + delta + kPi / 2, target, w, h), 0, 1e-9));
  auto weight_of = [](double ar) { return obb_angle_loss(rb({kPi / 4}), rb({0}), rb({ar}), rb({1})).item<double>(); };
  EXPECT(weight_of(1) > weight_of(2) && weight_of(2) > weight_of(8) && weight_of(8) > 0);
  EXPECT_NEAR(weight_of(1), 1.0, 1e-9);
  EXPECT(obb_angle_loss(target, target, w, h).abs().max().item<double>() < 1e-12);
  for (int64_t i = 0; i < 50; i += 7) {
    const double d = delta[i].item<double>(), ar = std::log(w[i].item<double>() / h[i].item<double>());
    EXPECT_NEAR(l[i].item<double>(), std::pow(std::sin(2 * d), 2) * std::exp(-ar * ar / 9), 1e-6);
  }
  // A quarter turn of a non-square box costs nothing in angle (the box loss sees it); 45 degrees costs most.
  auto one = [](double d) {
    return obb_angle_loss(rb({0.3 + d}), rb({0.3}), rb({30}), rb({10})).item<double>();
  };
  EXPECT(one(kPi / 2) < 1e-12);
  EXPECT(one(kPi / 4) > one(0.5) && one(0.5) > one(0.2) && one(0.2) > 0);
}

// ---- per-branch loss -------------------------------------------------------------------------------------------

TEST_CASE("rbox2dist inverts the model's rotated decode") {
  torch::manual_seed(2);
  auto a = make_anchors(kGrid64, kStrides);
  const int64_t na = a.points.size(0);
  auto ltrb = torch::rand({1, 4, na}) * 5 + 0.1;
  auto ang = torch::rand({1, 1, na}) * 6 - 3;
  AnchorGrid unit{a.points.t().unsqueeze(0), torch::ones({1, na})};
  auto xywh = decode_rboxes(ltrb, ang, unit).permute({0, 2, 1});  // (1, A, 4) grid units
  auto back = rbox2dist(xywh, a.points, ang.permute({0, 2, 1}));
  EXPECT(torch::allclose(back, ltrb.permute({0, 2, 1}), 1e-4, 1e-4));
}

TEST_CASE("OBB branch loss: exact predictions cost ~0 box/dfl/angle; items match a direct computation when turned") {
  const std::array<double, 5> gt{31.3, 27.1, 40, 16, 0.4};
  ObbLoss loss(2, kStrides, /*topk=*/10);
  auto batch = one_box_batch(gt);

  auto exact = loss(exact_head({gt[0], gt[1], gt[2], gt[3]}, gt[4], 2), kGrid64, batch);
  EXPECT(exact.loss.numel() == 4 && exact.raw_items.numel() == 4);
  EXPECT(exact.fg_count > 0);
  EXPECT(exact.raw_items[0].item<double>() < 1e-3);   // box: 1 - probiou of identical boxes
  EXPECT(exact.raw_items[1].item<double>() > 0.1);    // cls: negative logits are far from the targets
  EXPECT(exact.raw_items[2].item<double>() < 1e-5);   // dfl
  EXPECT(exact.raw_items[3].item<double>() < 1e-9);   // angle
  EXPECT_NEAR(exact.loss[0].item<double>(), 7.5 * exact.raw_items[0].item<double>(), 1e-7);
  EXPECT_NEAR(exact.loss[1].item<double>(), 0.5 * exact.raw_items[1].item<double>(), 1e-6);
  EXPECT_NEAR(exact.loss[3].item<double>(), 1.0 * exact.raw_items[3].item<double>(), 1e-9);

  // The same box with the angle turned by 0.5: box and angle losses rise; check them against their definitions on
  // the assigned anchors (probiou with the 0.01 variance floor, in grid units; angle sin^2(2d) with the aspect weight).
  const double turn = 0.5;
  auto head = exact_head({gt[0], gt[1], gt[2], gt[3]}, gt[4] + turn, 2);
  auto r = loss(head, kGrid64, batch);
  EXPECT(r.raw_items[0].item<double>() > exact.raw_items[0].item<double>() + 0.05);
  EXPECT(r.raw_items[3].item<double>() > 0.1);
  auto a = make_anchors(kGrid64, kStrides);
  const auto& as = r.assigned;
  const double tss = r.target_scores_sum.item<double>();
  double box = 0, ang = 0;
  for (int64_t i = 0; i < as.fg_mask.size(1); ++i) {
    if (!as.fg_mask[0][i].item<bool>()) continue;
    const double s = a.strides[i][0].item<double>(), wgt = as.target_scores[0][i].sum().item<double>();
    const double t[5] = {gt[0] / s, gt[1] / s, gt[2] / s, gt[3] / s, gt[4]};
    const double p[5] = {t[0], t[1], t[2], t[3], gt[4] + turn};
    box += (1 - probiou_ref(p, t, 0.01)) * wgt;
    ang += std::pow(std::sin(2 * turn), 2) * std::exp(-std::pow(std::log(gt[2] / gt[3]), 2) / 9) * wgt;
  }
  EXPECT_NEAR(r.raw_items[0].item<double>(), box / tss, 2e-5);
  EXPECT_NEAR(r.raw_items[3].item<double>(), ang / tss, 2e-5);

  // theta + pi describes the same rectangle: same box and angle loss, but the rotated ltrb differ (dfl).
  auto flipped = loss(exact_head({gt[0], gt[1], gt[2], gt[3]}, gt[4] + turn + kPi, 2), kGrid64, batch);
  EXPECT(torch::equal(flipped.assigned.fg_mask, r.assigned.fg_mask));
  EXPECT_NEAR(flipped.raw_items[0].item<double>(), r.raw_items[0].item<double>(), 1e-5);
  EXPECT_NEAR(flipped.raw_items[3].item<double>(), r.raw_items[3].item<double>(), 1e-5);
  EXPECT(flipped.raw_items[2].item<double>() > r.raw_items[2].item<double>() + 1e-3);
}

TEST_CASE("OBB branch loss: tiny labels are dropped, empty batches keep the graph, bad inputs are rejected") {
  ObbLoss loss(2, kStrides, 10);
  auto head = exact_head({32, 28, 40, 16}, 0.4, 2);
  head.boxes.requires_grad_(true);
  head.angle.requires_grad_(true);
  auto tiny = loss(head, kGrid64, one_box_batch({32, 28, 40, 1.5, 0.4}));  // h under 2 px
  EXPECT(tiny.fg_count == 0);
  EXPECT(tiny.raw_items[0].item<double>() == 0 && tiny.raw_items[3].item<double>() == 0);
  tiny.loss.sum().backward();
  EXPECT(head.angle.grad().defined() && head.angle.grad().abs().sum().item<double>() == 0);

  ObbBatch none{torch::zeros({0}), torch::zeros({0, 1}), torch::zeros({0, 5})};
  auto empty = loss(head, kGrid64, none);
  EXPECT(empty.fg_count == 0 && std::isfinite(empty.loss.sum().item<double>()));

  ObbBatch det_like{torch::zeros({1}), torch::zeros({1, 1}), torch::rand({1, 4})};
  EXPECT_THROWS(loss(head, kGrid64, det_like));
  auto no_angle = head;
  no_angle.angle = torch::Tensor();
  EXPECT_THROWS(loss(no_angle, kGrid64, one_box_batch({32, 28, 40, 16, 0.4})));
  EXPECT_THROWS(loss(head, grid_sizes_for(96, 96, kStrides), one_box_batch({32, 28, 40, 16, 0.4})));
}

// ---- E2E loss on a model ---------------------------------------------------------------------------------------

TEST_CASE("E2E OBB loss on a tiny yolo26n-obb: finite, 4 items, angle head trained, falls over steps on one batch") {
  torch::manual_seed(0);
  auto model = build_model("yolo26n-obb.yaml", 2);
  model->train();
  EXPECT(model->task() == "obb");
  const int64_t imgsz = 64;
  auto x = torch::rand({2, 3, imgsz, imgsz});
  ObbBatch batch;
  batch.batch_idx = torch::tensor({0.f, 0.f, 1.f});
  batch.cls = torch::tensor({0.f, 1.f, 1.f}).view({-1, 1});
  batch.rboxes = torch::tensor({0.5f, 0.5f, 0.5f, 0.25f, 0.4f,  0.25f, 0.7f, 0.3f, 0.12f, -0.3f,
                                0.6f, 0.4f, 0.45f, 0.3f, 1.2f}).view({3, 5});
  E2EObbLoss criterion(2, model->stride(), /*epochs=*/10);
  EXPECT(E2EObbLoss::loss_names() == std::vector<std::string>({"box", "cls", "dfl", "angle"}));
  auto run = [&]() {
    auto out = model->forward(x);
    auto grid = grid_sizes_of(out.feats);
    return criterion({out.one2many.boxes, out.one2many.scores, out.one2many.angle},
                     {out.one2one.boxes, out.one2one.scores, out.one2one.angle}, grid, batch);
  };
  auto first = run();
  EXPECT(first.loss_items.numel() == 4 && first.loss_vector.numel() == 4);
  EXPECT(torch::isfinite(first.loss_items).all().item<bool>() && (first.loss_items >= 0).all().item<bool>());
  EXPECT(std::isfinite(first.total.item<double>()) && first.total.item<double>() > 0);
  EXPECT(first.one2many.fg_count > first.one2one.fg_count && first.one2one.fg_count > 0);
  EXPECT(first.one2one.fg_count <= 3);  // one anchor per GT
  auto expect_total = ((first.one2many.loss * 2) * 0.8 + (first.one2one.loss * 2) * 0.2).sum();
  EXPECT_NEAR(first.total.item<double>(), expect_total.item<double>(), 1e-4);
  EXPECT(torch::allclose(first.loss_items, first.one2one.loss.detach()));

  first.total.backward();
  double angle_grad = 0;
  for (const auto& p : model->named_parameters())
    if (p.key().find(".cv4.") != std::string::npos && p.value().grad().defined())
      angle_grad += p.value().grad().abs().sum().item<double>();
  EXPECT_MSG(angle_grad > 0, "no gradient reached the angle branch (cv4)");

  torch::optim::Adam opt(model->parameters(), torch::optim::AdamOptions(2e-3));
  std::vector<double> totals;
  for (int step = 0; step < 8; ++step) {
    opt.zero_grad();
    auto r = run();
    r.total.backward();
    opt.step();
    totals.push_back(r.total.item<double>());
  }
  const double last = std::min({totals[5], totals[6], totals[7]});
  EXPECT_MSG(last < totals[0] * 0.9, "loss did not fall: " << totals[0] << " -> " << totals[7]);

  EXPECT_NEAR(criterion.o2m_weight(), 0.8, 1e-12);
  criterion.update();
  EXPECT(criterion.updates() == 1);
  EXPECT_NEAR(criterion.o2m_weight(), (1 - 1.0 / 9) * 0.7 + 0.1, 1e-12);
  criterion.set_updates(9);
  EXPECT_NEAR(criterion.o2m_weight(), 0.1, 1e-12);
  EXPECT_NEAR(criterion.o2o_weight(), 0.9, 1e-12);
}

// ---- validation matching ---------------------------------------------------------------------------------------

TEST_CASE("OBB TP matrix: probiou matching at 0.50:0.05:0.95 with classes and one prediction per GT") {
  auto th = iou_thresholds();
  auto g0 = rb({50, 50, 40, 20, 0.3}), g1 = rb({150, 80, 30, 30, 0.0});
  auto shifted = rb({53, 51, 40, 20, 0.35});
  const double v = probiou(g0, shifted).item<double>();
  EXPECT_MSG(v > 0.55 && v < 0.9, "probiou of the shifted box " << v);  // a mixed TP row below

  // One GT, one prediction: TP exactly where probiou >= threshold.
  auto tp = obb_tp(shifted.view({1, 5}), torch::zeros({1}), g0.view({1, 5}), torch::zeros({1}));
  EXPECT(tp.sizes() == torch::IntArrayRef({1, 10}));
  int64_t n_true = 0;
  for (int64_t t = 0; t < 10; ++t) {
    EXPECT(tp[0][t].item<bool>() == (float(v) >= th[t].item<float>()));
    n_true += tp[0][t].item<bool>();
  }
  EXPECT(n_true > 0 && n_true < 10);

  // p0 = g0 exactly; p1 = the shifted copy of g0 (same GT, lower IoU: no match left); p2 = g1 a quarter turn
  // (a square: the same box); p3 = near g1 but the wrong class.
  auto preds = torch::stack({g0, shifted, rb({150, 80, 30, 30, kPi / 2}), rb({151, 80, 30, 30, 0.0})});
  auto pcls = torch::tensor({0, 0, 1, 0});
  auto gts = torch::stack({g0, g1});
  auto gcls = torch::tensor({0, 1});
  tp = obb_tp(preds, pcls, gts, gcls);
  EXPECT(tp[0].all().item<bool>());
  EXPECT(!tp[1].any().item<bool>());
  EXPECT(tp[2].all().item<bool>());
  EXPECT(!tp[3].any().item<bool>());
  // The shifted copy alone on g0 does match (it lost only to p0 above).
  tp = obb_tp(preds.narrow(0, 1, 1), pcls.narrow(0, 1, 1), gts, gcls);
  EXPECT(tp[0][0].item<bool>());

  EXPECT(obb_tp(torch::zeros({0, 5}), torch::zeros({0}), gts, gcls).sizes() == torch::IntArrayRef({0, 10}));
  EXPECT(!obb_tp(preds, pcls, torch::zeros({0, 5}), torch::zeros({0})).any().item<bool>());
  EXPECT_THROWS(obb_tp(torch::zeros({2, 4}), torch::zeros({2}), gts, gcls));

  auto px = rboxes_to_pixels(torch::tensor({0.5f, 0.25f, 0.5f, 0.25f, 0.3f}).view({1, 5}), 64, 128);
  EXPECT(torch::allclose(px, torch::tensor({64.f, 16.f, 64.f, 16.f, 0.3f}).view({1, 5})));

  // ObbMetrics: perfect predictions score the COCO maximum, a confident false positive lowers precision.
  ObbMetrics m({"a", "b"});
  m.add_image(gts, torch::tensor({0.9, 0.8}), gcls, gts, gcls);
  m.add_image(gts, torch::tensor({0.9, 0.8}), gcls, gts, gcls);
  auto res = m.compute();
  EXPECT(m.images() == 2 && res.instances == 4);
  EXPECT_NEAR(res.map50, 0.995, 1e-6);
  EXPECT_NEAR(res.map50_95, 0.995, 1e-6);
  m.add_image(rb({10, 10, 8, 4, 0}).view({1, 5}), torch::tensor({0.95}), torch::tensor({0}), torch::zeros({0, 5}),
              torch::zeros({0}));
  EXPECT(m.compute().precision < 1.0);
}

TEST_MAIN()
