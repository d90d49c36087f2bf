// Detection loss parity with the official implementation (fixtures in test/fixtures/loss, see its README):
// box ops, the task-aligned assigner of both branches, per-branch items, the E2E totals for two weightings and
// the gradients that reach the head outputs.
#include "testing.h"

#include "train/assigner.h"
#include "geometry/box_ops.h"
#include "train/criterion.h"
#include "train/detection_loss.h"
#include "train/pose_loss.h"
#include "util/error.h"
#include "util/npy.h"

#include <torch/torch.h>
#include <yaml-cpp/yaml.h>

#include <cmath>
#include <cstring>

using namespace y26;

namespace {

torch::Tensor load(const std::string& rel) {
  auto a = read_npy(y26test::fixture(rel));
  torch::Dtype dt;
  if (a.dtype == "f4") dt = torch::kFloat;
  else if (a.dtype == "i8") dt = torch::kLong;
  else if (a.dtype == "u1") dt = torch::kByte;
  else throw std::runtime_error("unexpected dtype " + a.dtype + " in " + rel);
  auto t = torch::empty(a.shape, torch::TensorOptions().dtype(dt));
  std::memcpy(t.data_ptr(), a.bytes.data(), a.bytes.size());
  return t;
}

const YAML::Node& loss_json() {  // JSON is a YAML subset, yaml-cpp reads it
  static YAML::Node n = YAML::LoadFile(y26test::fixture("loss/loss.json"));
  return n;
}

double rel_err(double a, double b) { return std::fabs(a - b) / std::max(std::fabs(b), 1e-12); }

DetectionBatch fixture_batch() {
  return {load("loss/batch_batch_idx.npy"), load("loss/batch_cls.npy"), load("loss/batch_bboxes_xywhn.npy")};
}

HeadBranchOutput fixture_preds(const std::string& branch, bool requires_grad = false) {
  auto b = load("loss/train_preds_" + branch + "_boxes_ltrb.npy");
  auto s = load("loss/train_preds_" + branch + "_scores_logits.npy");
  if (requires_grad) { b.requires_grad_(true); s.requires_grad_(true); }
  return {b, s};
}

const std::vector<double> kStrides{8, 16, 32};
const auto kGrid = grid_sizes_for(320, 320, kStrides);

void check_assigner(const AssignerResult& r, const std::string& branch) {
  const std::string p = "loss/assigner_" + branch + "_";
  auto fg_ref = load(p + "fg_mask.npy").to(torch::kBool);
  EXPECT_MSG(torch::equal(r.fg_mask, fg_ref), branch << ": fg_mask differs in "
             << (r.fg_mask != fg_ref).sum().item<int64_t>() << " anchors");
  auto idx_ref = load(p + "target_gt_idx.npy");
  EXPECT_MSG(torch::equal(r.target_gt_idx.index({fg_ref}), idx_ref.index({fg_ref})), branch << ": target_gt_idx on fg");
  auto lab_ref = load(p + "target_labels.npy");
  EXPECT_MSG(torch::equal(r.target_labels, lab_ref), branch << ": target_labels differ");
  auto box_ref = load(p + "target_bboxes_xyxy_px.npy");
  double box_d = (r.target_bboxes - box_ref).abs().max().item<double>();
  EXPECT_MSG(box_d <= 1e-4, branch << ": target_bboxes max diff " << box_d);
  auto sc_ref = load(p + "target_scores.npy");
  double sc_d = (r.target_scores - sc_ref).abs().max().item<double>();
  EXPECT_MSG(sc_d <= 1e-5, branch << ": target_scores max diff " << sc_d);
  std::cout << "  " << branch << ": fg " << r.fg_mask.sum().item<int64_t>() << ", target_scores max diff " << sc_d
            << ", target_bboxes max diff " << box_d << "\n";
}

void check_branch(const BranchLossResult& r, const std::string& branch) {
  const auto& j = loss_json()["branches"][branch];
  for (int i = 0; i < 3; ++i) {
    double raw = r.raw_items[i].item<double>(), raw_ref = j["items_raw_unweighted"][i].as<double>();
    double g = r.loss[i].item<double>(), g_ref = j["items_gained"][i].as<double>();
    EXPECT_MSG(rel_err(raw, raw_ref) <= 1e-5, branch << " raw item " << i << ": " << raw << " vs " << raw_ref);
    EXPECT_MSG(rel_err(g, g_ref) <= 1e-5, branch << " gained item " << i << ": " << g << " vs " << g_ref);
  }
  double tss = r.target_scores_sum.item<double>(), tss_ref = j["target_scores_sum"].as<double>();
  EXPECT_MSG(rel_err(tss, tss_ref) <= 1e-5, branch << " target_scores_sum " << tss << " vs " << tss_ref);
  EXPECT(r.fg_count == j["fg_mask_count"].as<int64_t>());
  auto per_image = r.assigned.fg_mask.sum(1);
  for (int b = 0; b < 4; ++b)
    EXPECT(per_image[b].item<int64_t>() == j["fg_mask_count_per_image"][b].as<int64_t>());
}

}  // namespace

TEST_CASE("box conversions round-trip and match hand values") {
  auto xyxy = torch::tensor({10.f, 20.f, 50.f, 80.f}).view({1, 4});
  auto xywh = xyxy2xywh(xyxy);
  EXPECT(torch::equal(xywh, torch::tensor({30.f, 50.f, 40.f, 60.f}).view({1, 4})));
  EXPECT(torch::equal(xywh2xyxy(xywh), xyxy));
  EXPECT_THROWS(xyxy2xywh(torch::zeros({3, 5})));
}

TEST_CASE("IoU, GIoU, DIoU, CIoU on known boxes") {
  auto a = torch::tensor({0.f, 0.f, 10.f, 10.f}).view({1, 4});
  auto b = torch::tensor({5.f, 0.f, 15.f, 10.f}).view({1, 4});
  EXPECT_NEAR(bbox_iou(a, b).item<double>(), 50.0 / 150.0, 1e-6);
  EXPECT_NEAR(bbox_iou(a, a, IouKind::CIoU).item<double>(), 1.0, 1e-6);
  // GIoU: enclosing area 150 = union, so GIoU = IoU; DIoU: centre distance 5, enclosing diagonal^2 = 15^2 + 10^2.
  EXPECT_NEAR(bbox_iou(a, b, IouKind::GIoU).item<double>(), 1.0 / 3.0, 1e-6);
  EXPECT_NEAR(bbox_iou(a, b, IouKind::DIoU).item<double>(), 1.0 / 3.0 - 25.0 / 325.0, 1e-6);
  auto far = torch::tensor({20.f, 0.f, 30.f, 10.f}).view({1, 4});
  EXPECT_NEAR(bbox_iou(a, far).item<double>(), 0.0, 1e-9);
  EXPECT(bbox_iou(a, far, IouKind::GIoU).item<double>() < 0);
  // CIoU aspect term: same centre, 10x10 vs 10x20 -> v = 4/pi^2 (atan 0.5 - atan 1)^2.
  auto tall = torch::tensor({0.f, -5.f, 10.f, 15.f}).view({1, 4});
  double v = 4 / (M_PI * M_PI) * std::pow(std::atan(0.5) - std::atan(1.0), 2), iou = 0.5;
  double ciou = iou - (0.0 + v * v / (v - iou + 1));
  EXPECT_NEAR(bbox_iou(a, tall, IouKind::CIoU).item<double>(), ciou, 1e-6);
  // xywh input gives the same answer.
  EXPECT_NEAR(bbox_iou(xyxy2xywh(a), xyxy2xywh(b), IouKind::CIoU, true).item<double>(),
              bbox_iou(a, b, IouKind::CIoU).item<double>(), 1e-6);
  auto m = box_iou_matrix(torch::cat({a, far}), torch::cat({b, a, tall}));
  EXPECT(m.sizes() == torch::IntArrayRef({2, 3}));
  EXPECT_NEAR(m[0][0].item<double>(), 1.0 / 3.0, 1e-6);
  EXPECT_NEAR(m[0][1].item<double>(), 1.0, 1e-6);
  EXPECT_NEAR(m[1][2].item<double>(), 0.0, 1e-9);
}

TEST_CASE("CIoU alpha carries no gradient") {
  auto pred = torch::tensor({1.f, 2.f, 11.f, 9.f}).view({1, 4}).requires_grad_(true);
  auto gt = torch::tensor({0.f, 0.f, 10.f, 12.f}).view({1, 4});
  auto l = bbox_iou(pred, gt, IouKind::CIoU).sum();
  l.backward();
  auto g = pred.grad().clone();
  // Finite differences of the same formula with alpha frozen at its value equal the analytic gradient
  // only if alpha is treated as constant; check against a float64 recomputation instead.
  auto p64 = pred.detach().to(torch::kDouble).requires_grad_(true);
  bbox_iou(p64, gt.to(torch::kDouble), IouKind::CIoU).sum().backward();
  EXPECT(torch::allclose(g.to(torch::kDouble), p64.grad(), 1e-4, 1e-5));
  EXPECT(torch::isfinite(g).all().item<bool>());
}

TEST_CASE("target preprocessing: padding, pixel xyxy, grouping") {
  DetectionLoss loss(3, kStrides, 10);
  auto imgsz = torch::tensor({320.f, 320.f});
  // Unsorted rows: image 1, image 0, image 1.
  DetectionBatch b{torch::tensor({1.f, 0.f, 1.f}), torch::tensor({2.f, 0.f, 1.f}),
                   torch::tensor({0.5f, 0.5f, 0.25f, 0.5f, 0.1f, 0.1f, 0.1f, 0.1f, 0.75f, 0.25f, 0.5f, 0.5f})
                       .view({3, 4})};
  auto t = loss.preprocess_targets(b, 3, imgsz, torch::kCPU);
  EXPECT(t.sizes() == torch::IntArrayRef({3, 2, 5}));
  EXPECT(torch::equal(t[0][0], torch::tensor({0.f, 16.f, 16.f, 48.f, 48.f})));
  EXPECT(torch::equal(t[0][1], torch::zeros({5})));
  EXPECT(torch::equal(t[1][0], torch::tensor({2.f, 120.f, 80.f, 200.f, 240.f})));
  EXPECT(torch::equal(t[1][1], torch::tensor({1.f, 160.f, 0.f, 320.f, 160.f})));
  EXPECT(torch::equal(t[2], torch::zeros({2, 5})));
  DetectionBatch bad{torch::tensor({0.f, 3.f}), torch::tensor({0.f, 0.f}), torch::rand({2, 4})};
  EXPECT_THROWS(loss.preprocess_targets(bad, 3, imgsz, torch::kCPU));
  DetectionBatch mismatched{torch::tensor({0.f}), torch::tensor({0.f, 1.f}), torch::rand({1, 4})};
  EXPECT_THROWS(loss.preprocess_targets(mismatched, 3, imgsz, torch::kCPU));
}

TEST_CASE("one2many branch: assigner and items match the reference") {
  DetectionLoss loss(3, kStrides, 10);
  auto r = loss(fixture_preds("one2many"), kGrid, fixture_batch());
  check_assigner(r.assigned, "one2many");
  check_branch(r, "one2many");
}

TEST_CASE("one2one branch (topk 7, topk2 1): assigner and items match the reference") {
  DetectionLoss loss(3, kStrides, 7, 1);
  auto r = loss(fixture_preds("one2one"), kGrid, fixture_batch());
  check_assigner(r.assigned, "one2one");
  check_branch(r, "one2one");
  // topk2 = 1 leaves at most one positive anchor per GT.
  EXPECT(r.fg_count == 11);
}

TEST_CASE("assigner gives the same result when chunked per image") {
  auto preds = fixture_preds("one2many");
  DetectionLoss whole(3, kStrides, 10);
  auto ref = whole(preds, kGrid, fixture_batch()).assigned;
  AssignerOptions o = whole.assigner().options();
  o.max_pair_elements = 1;  // forces one image per chunk
  TaskAlignedAssigner chunked(o);
  // Rebuild the assigner inputs the way the loss does.
  auto anchors_loss = DetectionLoss(3, kStrides, 10);
  auto imgsz = torch::tensor({320.f, 320.f});
  auto targets = anchors_loss.preprocess_targets(fixture_batch(), 4, imgsz, torch::kCPU);
  auto gt_bboxes = targets.narrow(2, 1, 4);
  auto mask_gt = gt_bboxes.sum(2, true).gt_(0.0);
  auto grid = kGrid;
  std::vector<torch::Tensor> pts, strd;
  int64_t a0 = 0;
  for (size_t i = 0; i < grid.size(); ++i) {
    auto [h, w] = grid[i];
    auto ys = torch::arange(h, torch::kFloat) + 0.5, xs = torch::arange(w, torch::kFloat) + 0.5;
    auto g = torch::meshgrid({ys, xs}, "ij");
    pts.push_back(torch::stack({g[1], g[0]}, -1).view({-1, 2}));
    strd.push_back(torch::full({h * w, 1}, kStrides[i]));
    a0 += h * w;
  }
  auto ap = torch::cat(pts), st = torch::cat(strd);
  auto dist = preds.boxes.permute({0, 2, 1}).contiguous();
  auto pb = torch::cat({ap - dist.narrow(-1, 0, 2), ap + dist.narrow(-1, 2, 2)}, -1) * st;
  auto r = chunked(preds.scores.permute({0, 2, 1}).contiguous().sigmoid(), pb, ap * st, targets.narrow(2, 0, 1),
                   gt_bboxes, mask_gt);
  EXPECT(torch::equal(r.fg_mask, ref.fg_mask));
  EXPECT(torch::equal(r.target_gt_idx, ref.target_gt_idx));
  EXPECT(torch::allclose(r.target_scores, ref.target_scores, 0, 1e-6));
}

namespace {
// Scalar, loop-based statement of the assignment rules (float64), independent of the tensor code under test.
struct LoopAssignment {
  std::vector<std::vector<int>> gt_of_anchor;        // [b][a] assigned GT or -1
  std::vector<std::vector<double>> soft;             // [b][a] soft target value (class of the GT)
  bool ambiguous = false;                            // a zero-metric anchor would enter top-k (tie order undefined)
  int64_t conflicts = 0;                             // anchors picked by several GTs
};
LoopAssignment loop_assign(const torch::Tensor& scores, const torch::Tensor& pboxes, const torch::Tensor& anchors,
                           const torch::Tensor& labels, const torch::Tensor& gboxes, const torch::Tensor& mask,
                           int topk, int topk2) {
  const int64_t B = scores.size(0), A = scores.size(1), N = gboxes.size(1);
  auto sc = scores.to(torch::kDouble), pb = pboxes.to(torch::kDouble), an = anchors.to(torch::kDouble);
  auto gb = gboxes.to(torch::kDouble);
  auto ciou = [](const double* p, const double* g) {  // CIoU as in the paper, eps as the reference
    const double eps = 1e-7;
    double w1 = g[2] - g[0], h1 = g[3] - g[1] + eps, w2 = p[2] - p[0], h2 = p[3] - p[1] + eps;
    double iw = std::max(0.0, std::min(g[2], p[2]) - std::max(g[0], p[0]));
    double ih = std::max(0.0, std::min(g[3], p[3]) - std::max(g[1], p[1]));
    double inter = iw * ih, iou = inter / (w1 * h1 + w2 * h2 - inter + eps);
    double cw = std::max(g[2], p[2]) - std::min(g[0], p[0]), ch = std::max(g[3], p[3]) - std::min(g[1], p[1]);
    double c2 = cw * cw + ch * ch + eps;
    double rho2 = (std::pow(p[0] + p[2] - g[0] - g[2], 2) + std::pow(p[1] + p[3] - g[1] - g[3], 2)) / 4;
    double v = 4 / (M_PI * M_PI) * std::pow(std::atan(w2 / h2) - std::atan(w1 / h1), 2);
    double alpha = v / (v - iou + 1 + eps);
    return iou - (rho2 / c2 + v * alpha);
  };
  LoopAssignment out;
  for (int64_t b = 0; b < B; ++b) {
    std::vector<std::vector<double>> align(N, std::vector<double>(A, 0)), ov(N, std::vector<double>(A, 0));
    std::vector<std::vector<int>> pos(N, std::vector<int>(A, 0));
    for (int64_t j = 0; j < N; ++j) {
      if (mask[b][j][0].item<float>() == 0) continue;
      double g[4];
      for (int c = 0; c < 4; ++c) g[c] = gb[b][j][c].item<double>();
      double cx = (g[0] + g[2]) / 2, cy = (g[1] + g[3]) / 2, w = g[2] - g[0], h = g[3] - g[1];
      if (w < 8) w = 16;  // STAL
      if (h < 8) h = 16;
      std::vector<int64_t> inside;
      for (int64_t a = 0; a < A; ++a) {
        double ax = an[a][0].item<double>(), ay = an[a][1].item<double>();
        double d = std::min({ax - (cx - w / 2), ay - (cy - h / 2), cx + w / 2 - ax, cy + h / 2 - ay});
        if (d <= 1e-9) continue;
        inside.push_back(a);
        double p[4];
        for (int c = 0; c < 4; ++c) p[c] = pb[b][a][c].item<double>();
        ov[j][a] = std::max(ciou(p, g), 0.0);
        align[j][a] = std::sqrt(sc[b][a][labels[b][j][0].item<int64_t>()].item<double>()) * std::pow(ov[j][a], 6);
      }
      std::vector<int64_t> order = inside;
      std::sort(order.begin(), order.end(), [&](int64_t x, int64_t y) { return align[j][x] > align[j][y]; });
      int64_t positive = 0;
      for (auto a : order) positive += align[j][a] > 0;
      if (positive < std::min<int64_t>(topk, inside.size())) out.ambiguous = true;
      for (int64_t i = 0; i < std::min<int64_t>(topk, order.size()); ++i) pos[j][order[i]] = 1;
    }
    for (int64_t a = 0; a < A; ++a) {  // several GTs: the one with the highest overlap (over all GTs)
      int cnt = 0;
      for (int64_t j = 0; j < N; ++j) cnt += pos[j][a];
      if (cnt < 2) continue;
      ++out.conflicts;
      int64_t best = 0;
      for (int64_t j = 1; j < N; ++j) if (ov[j][a] > ov[best][a]) best = j;
      for (int64_t j = 0; j < N; ++j) pos[j][a] = j == best;
    }
    if (topk2 > 0 && topk2 != topk)
      for (int64_t j = 0; j < N; ++j) {
        std::vector<int64_t> cand;
        for (int64_t a = 0; a < A; ++a) if (pos[j][a]) cand.push_back(a);
        std::sort(cand.begin(), cand.end(), [&](int64_t x, int64_t y) { return align[j][x] > align[j][y]; });
        for (size_t i = topk2; i < cand.size(); ++i) pos[j][cand[i]] = 0;
      }
    std::vector<double> max_align(N, 0), max_ov(N, 0);
    for (int64_t j = 0; j < N; ++j)
      for (int64_t a = 0; a < A; ++a)
        if (pos[j][a]) { max_align[j] = std::max(max_align[j], align[j][a]); max_ov[j] = std::max(max_ov[j], ov[j][a]); }
    out.gt_of_anchor.emplace_back(A, -1);
    out.soft.emplace_back(A, 0.0);
    for (int64_t a = 0; a < A; ++a)
      for (int64_t j = 0; j < N; ++j)
        if (pos[j][a]) {
          out.gt_of_anchor[b][a] = j;
          out.soft[b][a] = align[j][a] * max_ov[j] / (max_align[j] + 1e-9);
        }
  }
  return out;
}
}  // namespace

TEST_CASE("assigner agrees with a loop statement of the rules on dense scenes with tiny and overlapping GTs") {
  torch::manual_seed(7);
  const int64_t B = 2, N = 8;
  std::vector<torch::Tensor> pts, strd;
  for (size_t i = 0; i < kGrid.size(); ++i) {
    auto [h, w] = kGrid[i];
    auto g = torch::meshgrid({torch::arange(h, torch::kFloat) + 0.5, torch::arange(w, torch::kFloat) + 0.5}, "ij");
    pts.push_back(torch::stack({g[1], g[0]}, -1).view({-1, 2}) * kStrides[i]);
  }
  auto anchors = torch::cat(pts);  // pixels
  const int64_t A = anchors.size(0);
  // GTs: 2 tiny (3..7 px, STAL), the rest 20..150 px, some overlapping; image 1 has two padding rows.
  auto wh = torch::cat({torch::rand({B, 2, 2}) * 4 + 3, torch::rand({B, N - 2, 2}) * 130 + 20}, 1);
  auto c = torch::rand({B, N, 2}) * 200 + 60;
  auto gboxes = torch::cat({c - wh / 2, c + wh / 2}, -1);
  gboxes.select(1, 3).copy_(gboxes.select(1, 2) + torch::tensor({6.f, -4.f, 9.f, 3.f}));  // GTs 2 and 3 overlap
  auto mask = torch::ones({B, N, 1});
  mask[1].narrow(0, N - 2, 2).zero_();
  gboxes.mul_(mask);
  auto labels = torch::randint(5, {B, N, 1}).to(torch::kFloat).mul_(mask);
  // Predictions: every anchor predicts a jittered copy of the GT whose centre is nearest (so CIoU > 0 near GTs).
  auto gc = (gboxes.narrow(-1, 0, 2) + gboxes.narrow(-1, 2, 2)) / 2;                   // (B, N, 2)
  auto dist = (anchors.view({1, A, 1, 2}) - gc.view({B, 1, N, 2})).pow(2).sum(-1);      // (B, A, N)
  dist = dist + (1 - mask.view({B, 1, N})) * 1e9;
  auto nearest = dist.argmin(-1);                                                         // (B, A)
  auto pboxes = gboxes.gather(1, nearest.unsqueeze(-1).expand({B, A, 4}));
  auto pwh = (pboxes.narrow(-1, 2, 2) - pboxes.narrow(-1, 0, 2)).repeat({1, 1, 2});
  pboxes = pboxes + pwh * 0.15 * torch::randn({B, A, 4});
  auto scores = torch::rand({B, A, 5}) * 0.9 + 0.05;

  for (auto [topk, topk2] : {std::pair<int, int>{10, 0}, {7, 1}}) {
    AssignerOptions o;
    o.topk = topk; o.topk2 = topk2; o.num_classes = 5; o.alpha = 0.5; o.beta = 6.0;
    auto r = TaskAlignedAssigner(o)(scores, pboxes, anchors, labels, gboxes, mask);
    auto ref = loop_assign(scores, pboxes, anchors, labels, gboxes, mask, topk, topk2);
    EXPECT_MSG(!ref.ambiguous, "scene has zero-metric top-k candidates; pick another seed");
    EXPECT_MSG(ref.conflicts > 0, "scene has no anchor claimed by two GTs; the highest-IoU rule goes untested");
    int64_t mismatched = 0, fg = 0;
    double soft_diff = 0;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t a = 0; a < A; ++a) {
        const int j = ref.gt_of_anchor[b][a];
        const bool is_fg = r.fg_mask[b][a].item<bool>();
        fg += is_fg;
        if (is_fg != (j >= 0) || (is_fg && r.target_gt_idx[b][a].item<int64_t>() != j)) { ++mismatched; continue; }
        if (j < 0) continue;
        auto lab = labels[b][j][0].item<int64_t>();
        soft_diff = std::max(soft_diff, std::fabs(r.target_scores[b][a][lab].item<double>() - ref.soft[b][a]));
      }
    EXPECT_MSG(mismatched == 0, "topk " << topk << ": " << mismatched << " anchors assigned differently");
    EXPECT_MSG(soft_diff <= 1e-5, "topk " << topk << ": soft target diff " << soft_diff);
    // Every real GT, the tiny ones included (STAL), gets at least one anchor; topk2 = 1 gives at most one.
    auto per_gt = torch::zeros({B, N}, torch::kLong);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t a = 0; a < A; ++a)
        if (r.fg_mask[b][a].item<bool>()) per_gt[b][r.target_gt_idx[b][a].item<int64_t>()] += 1;
    std::cout << "  topk " << topk << "/" << topk2 << ": fg " << fg << ", conflicts " << ref.conflicts << ", positives per GT";
    for (int64_t i = 0; i < per_gt.numel(); ++i) std::cout << " " << per_gt.view({-1})[i].item<int64_t>();
    std::cout << "\n";
    EXPECT(per_gt[0][0].item<int64_t>() > 0 && per_gt[0][1].item<int64_t>() > 0);
    if (topk2 == 1) EXPECT(per_gt.max().item<int64_t>() <= 1);
  }
}

TEST_CASE("assigner without any GT marks everything background") {
  TaskAlignedAssigner a(AssignerOptions{});
  auto r = a(torch::rand({2, 5, 80}), torch::rand({2, 5, 4}), torch::rand({5, 2}), torch::zeros({2, 0, 1}),
             torch::zeros({2, 0, 4}), torch::zeros({2, 0, 1}));
  EXPECT(!r.fg_mask.any().item<bool>());
  EXPECT(r.target_scores.abs().sum().item<double>() == 0);
  EXPECT(r.target_labels.eq(80).all().item<bool>());
  EXPECT_THROWS(a(torch::rand({2, 5, 3}), torch::rand({2, 5, 4}), torch::rand({5, 2}), torch::zeros({2, 1, 1}),
                  torch::zeros({2, 1, 4}), torch::zeros({2, 1, 1})));
}

// On the CPU at the fixture tolerances; on CUDA (where a GPU is visible) within 10x of them.
void check_e2e_loss(const torch::Device& dev, double tol_factor) {
  E2EDetectionLoss loss(3, kStrides, 30);
  const auto& w = loss_json()["weightings"];
  const std::string where = dev.is_cuda() ? " (cuda)" : "";
  for (const std::string name : {"epoch0", "last_epoch_of_30"}) {
    const int64_t updates = w[name]["criterion_updates"].as<int64_t>();
    loss.set_updates(0);
    for (int64_t i = 0; i < updates; ++i) loss.update();
    EXPECT_NEAR(loss.o2m_weight(), w[name]["o2m_weight"].as<double>(), 1e-15);
    EXPECT_NEAR(loss.o2o_weight(), w[name]["o2o_weight"].as<double>(), 1e-15);
    auto o2m = fixture_preds("one2many"), o2o = fixture_preds("one2one");
    for (auto* t : {&o2m.boxes, &o2m.scores, &o2o.boxes, &o2o.scores}) *t = t->to(dev).requires_grad_(true);
    DetectionBatch batch = fixture_batch();
    batch = {batch.batch_idx.to(dev), batch.cls.to(dev), batch.bboxes.to(dev)};
    auto r = loss(o2m, o2o, kGrid, batch);
    double total = r.total.item<double>(), total_ref = w[name]["total_loss"].as<double>();
    EXPECT_MSG(rel_err(total, total_ref) <= 1e-5 * tol_factor, name << where << " total " << total << " vs " << total_ref);
    std::cout << "  " << name << where << ": total " << total << " (ref " << total_ref << ", rel " << rel_err(total, total_ref)
              << ")\n";
    for (int i = 0; i < 3; ++i) {
      EXPECT_NEAR(r.loss_vector[i].item<double>(), w[name]["loss_vector_weighted_x_batch"][i].as<double>(),
                  1e-5 * tol_factor * std::fabs(w[name]["loss_vector_weighted_x_batch"][i].as<double>()));
    }
    const auto& items = w[name]["loss_items_returned_by_criterion"];
    EXPECT(rel_err(r.loss_items[0].item<double>(), items["box_loss"].as<double>()) <= 1e-5 * tol_factor);
    EXPECT(rel_err(r.loss_items[1].item<double>(), items["cls_loss"].as<double>()) <= 1e-5 * tol_factor);
    EXPECT(rel_err(r.loss_items[2].item<double>(), items["l1_loss"].as<double>()) <= 1e-5 * tol_factor);
    EXPECT(!r.loss_items.requires_grad());

    r.total.backward();
    for (auto* t : {&o2m.boxes, &o2m.scores, &o2o.boxes, &o2o.scores}) {
      EXPECT(t->grad().defined());
      EXPECT(torch::isfinite(t->grad()).all().item<bool>());
      EXPECT(t->grad().abs().sum().item<double>() > 0);
    }
    // model.23.cv3.0.2 is the one2many class conv of P3: its bias gradient is the sum of the score gradient
    // over the batch and the 40x40 P3 anchors.
    auto bias_grad = o2m.scores.grad().narrow(2, 0, 40 * 40).sum(torch::IntArrayRef{0, 2}).cpu();
    auto ref = load("loss/grad_" + name + "_model.23.cv3.0.2.bias.npy");
    double tol = 2e-4 * tol_factor * ref.abs().max().item<double>();
    double d = (bias_grad - ref).abs().max().item<double>();
    EXPECT_MSG(d <= tol, name << where << ": cv3.0.2.bias grad diff " << d << " (tol " << tol << ")");
  }
}

TEST_CASE("E2E loss: totals, logged items and gradients for epoch 0 and the last of 30 epochs (and on CUDA)") {
  check_e2e_loss(torch::kCPU, 1.0);
  if (torch::cuda::is_available()) {  // GPU machines: the same within 10x the CPU tolerances, TF32 off
    at::globalContext().setAllowTF32CuBLAS(false);
    at::globalContext().setAllowTF32CuDNN(false);
    check_e2e_loss(torch::Device("cuda:0"), 10.0);
  }
}

TEST_CASE("E2E weighting schedule follows the reference for 30 epochs") {
  E2EDetectionLoss loss(3, kStrides, 30);
  const auto& sched = loss_json()["o2m_weight_schedule_epochs30"];
  for (size_t e = 0; e < sched.size(); ++e) {
    EXPECT_NEAR(loss.o2m_weight(), sched[e].as<double>(), 1e-15);
    EXPECT_NEAR(loss.o2m_weight() + loss.o2o_weight(), 1.0, 1e-15);
    loss.update();
  }
  loss.set_updates(100);  // past the end: stays at the final weights
  EXPECT_NEAR(loss.o2m_weight(), 0.1, 1e-15);
  E2EDetectionLoss one_epoch(3, kStrides, 1);
  one_epoch.update();
  EXPECT_NEAR(one_epoch.o2m_weight(), 0.1, 1e-15);
  EXPECT_THROWS(E2EDetectionLoss(3, kStrides, 0));
}

TEST_CASE("loss rejects mismatched head outputs and handles a batch without labels") {
  DetectionLoss loss(3, kStrides, 10);
  auto p = fixture_preds("one2many");
  EXPECT_THROWS(loss({p.boxes, p.scores.narrow(1, 0, 2)}, kGrid, fixture_batch()));
  EXPECT_THROWS(loss(p, grid_sizes_for(640, 640, kStrides), fixture_batch()));
  DetectionBatch empty{torch::zeros({0}), torch::zeros({0, 1}), torch::zeros({0, 4})};
  auto sc = p.scores.clone().requires_grad_(true);
  auto r = loss({p.boxes, sc}, kGrid, empty);
  EXPECT(r.fg_count == 0);
  EXPECT(r.raw_items[0].item<double>() == 0 && r.raw_items[2].item<double>() == 0);
  // All targets zero and tss clamped to 1: the class loss is the plain BCE sum against 0.
  double bce0 = torch::nn::functional::softplus(p.scores).sum().item<double>();
  EXPECT(rel_err(r.raw_items[1].item<double>(), bce0) <= 1e-5);
  r.loss.sum().backward();
  EXPECT(torch::isfinite(sc.grad()).all().item<bool>());
}

TEST_CASE("class weights scale the BCE term per class") {
  DetectionLoss loss(3, kStrides, 10);
  auto p = fixture_preds("one2many");
  auto base = loss(p, kGrid, fixture_batch());
  auto ones = loss(p, kGrid, fixture_batch(), torch::ones({3}));
  EXPECT(torch::equal(base.raw_items, ones.raw_items));
  auto twice = loss(p, kGrid, fixture_batch(), torch::full({3}, 2.0f));
  EXPECT(rel_err(twice.raw_items[1].item<double>(), 2 * base.raw_items[1].item<double>()) <= 1e-6);
  EXPECT(twice.raw_items[0].item<double>() == base.raw_items[0].item<double>());
  EXPECT_THROWS(loss(p, kGrid, fixture_batch(), torch::ones({2})));
  // Weights held in the gains (what cls_pw sets for every task) act as the same weights passed per call.
  LossGains g;
  g.class_weights = torch::tensor({0.5f, 2.0f, 1.0f});
  DetectionLoss held(3, kStrides, 10, 0, g);
  auto a = held(p, kGrid, fixture_batch());
  auto b = loss(p, kGrid, fixture_batch(), g.class_weights);
  EXPECT(torch::allclose(a.raw_items, b.raw_items, 0, 0));
  EXPECT(a.raw_items[1].item<double>() != base.raw_items[1].item<double>());
}

TEST_CASE("cls_pw class weights: inverse frequency to the power, mean 1, empty classes count 1") {
  auto w = class_weights_for({10, 0, 30}, 1.0);  // 1/10, 1/1, 1/30 -> / mean
  const double m = (0.1 + 1.0 + 1.0 / 30) / 3;
  EXPECT_NEAR(w[0].item<double>(), 0.1 / m, 1e-6);
  EXPECT_NEAR(w[1].item<double>(), 1.0 / m, 1e-6);
  EXPECT_NEAR(w[2].item<double>(), (1.0 / 30) / m, 1e-6);
  auto h = class_weights_for({4, 16}, 0.5);  // 1/2, 1/4 -> mean 3/8
  EXPECT_NEAR(h[0].item<double>(), 0.5 / 0.375, 1e-6);
  EXPECT_NEAR(h.mean().item<double>(), 1.0, 1e-6);
  EXPECT(!class_weights_for({3, 5}, 0.0).defined());
  EXPECT(!class_weights_for({0, 0}, 1.0).defined());
  EXPECT_THROWS(class_weights_for({1, 2}, 1.5));
  EXPECT_THROWS(class_weights_for({1, 2}, -0.1));
}

namespace {
// One 320x320 image, one person box (xywhn 0.5 0.5 0.3 0.4) with 17 keypoints, head outputs whose boxes fit the
// GT (so the assigner has clear positives) and random keypoints, visibilities and sigmas.
struct PoseScene {
  DetectionBatch batch;
  torch::Tensor keypoints;
  PoseBranchOutput preds;
};
PoseScene pose_scene(uint64_t seed) {
  torch::manual_seed(seed);
  PoseScene s;
  s.batch = {torch::zeros({1}), torch::zeros({1, 1}), torch::tensor({0.5f, 0.5f, 0.3f, 0.4f}).view({1, 4})};
  auto xy = torch::rand({1, 17, 2}) * torch::tensor({0.3f, 0.4f}) + torch::tensor({0.35f, 0.3f});
  auto vis = (torch::rand({1, 17, 1}) > 0.3).to(torch::kFloat) * 2;
  s.keypoints = torch::cat({xy, vis}, -1);
  std::vector<torch::Tensor> ltrb;
  for (size_t i = 0; i < kGrid.size(); ++i) {
    auto [h, w] = kGrid[i];
    double st = kStrides[i];
    auto ys = torch::arange(h, torch::kFloat) + 0.5, xs = torch::arange(w, torch::kFloat) + 0.5;
    auto g = torch::meshgrid({ys, xs}, "ij");
    auto ax = g[1].reshape({-1}), ay = g[0].reshape({-1});
    ltrb.push_back(torch::stack({ax - 112 / st, ay - 96 / st, 208 / st - ax, 224 / st - ay}));
  }
  auto boxes = torch::cat(ltrb, 1).unsqueeze(0);
  s.preds.boxes = boxes + 0.3 * torch::randn_like(boxes);
  s.preds.scores = torch::randn({1, 1, 2100});
  s.preds.kpts = torch::randn({1, 51, 2100});
  s.preds.kpts_sigma = torch::randn({1, 34, 2100});
  return s;
}
torch::Tensor std_normal_log_prob(const torch::Tensor& x) {
  return -std::log(2 * M_PI) - 0.5 * x.pow(2).sum(-1);
}
}  // namespace

TEST_CASE("pose loss: keypoint, kobj and RLE terms match a direct computation") {
  auto sc = pose_scene(3);
  PoseLoss loss(1, kStrides, {17, 3}, 7, 1, PoseGains{}, std_normal_log_prob);
  auto r = loss(sc.preds, kGrid, sc.batch, sc.keypoints);
  EXPECT(r.loss.numel() == 6 && r.raw_items.numel() == 6);
  EXPECT(r.det.fg_count == 1);
  auto fg = r.det.assigned.fg_mask[0];
  const int64_t a = fg.nonzero().item<int64_t>();
  // Anchor geometry of the positive anchor.
  int64_t off = 0;
  double st = 0, ax = 0, ay = 0;
  for (size_t i = 0; i < kGrid.size(); ++i) {
    auto [h, w] = kGrid[i];
    if (a < off + h * w) { st = kStrides[i]; ax = (a - off) % w + 0.5; ay = (a - off) / w + 0.5; break; }
    off += h * w;
  }
  const double area = (96.0 / st) * (128.0 / st);
  auto sig = default_keypoint_sigmas(17);
  auto rw = default_rle_weights(17);
  double kpt = 0, kobj = 0, rle = 0;
  int nvis = 0;
  for (int k = 0; k < 17; ++k) nvis += sc.keypoints[0][k][2].item<float>() != 0;
  for (int k = 0; k < 17; ++k) {
    double px = sc.preds.kpts[0][3 * k][a].item<double>() + ax, py = sc.preds.kpts[0][3 * k + 1][a].item<double>() + ay;
    double pv = sc.preds.kpts[0][3 * k + 2][a].item<double>();
    double gx = sc.keypoints[0][k][0].item<double>() * 320 / st, gy = sc.keypoints[0][k][1].item<double>() * 320 / st;
    bool vis = sc.keypoints[0][k][2].item<float>() != 0;
    double s2 = std::pow(2 * sig[k].item<double>(), 2);
    double e = ((px - gx) * (px - gx) + (py - gy) * (py - gy)) / (s2 * area * 2);
    if (vis) kpt += 17.0 / nvis * (1 - std::exp(-e));
    double t = vis ? 1 : 0;
    kobj += std::max(pv, 0.0) - pv * t + std::log1p(std::exp(-std::fabs(pv)));
    if (vis) {
      double sx = 1 / (1 + std::exp(-sc.preds.kpts_sigma[0][2 * k][a].item<double>()));
      double sy = 1 / (1 + std::exp(-sc.preds.kpts_sigma[0][2 * k + 1][a].item<double>()));
      double ex = std::clamp((px - gx) / sx, -100.0, 100.0), ey = std::clamp((py - gy) / sy, -100.0, 100.0);
      double log_phi = -std::log(2 * M_PI) - 0.5 * (ex * ex + ey * ey);
      double w = rw[k].item<double>();
      rle += w * (std::log(sx) - log_phi + std::log(2 * sx) + std::fabs(ex));
      rle += w * (std::log(sy) - log_phi + std::log(2 * sy) + std::fabs(ey));
    }
  }
  kpt /= 17;
  kobj /= 17;
  rle = std::max(rle / nvis, 0.0);
  EXPECT_MSG(rel_err(r.raw_items[1].item<double>(), kpt) <= 1e-4, "pose " << r.raw_items[1].item<double>() << " vs " << kpt);
  EXPECT_MSG(rel_err(r.raw_items[2].item<double>(), kobj) <= 1e-4, "kobj " << r.raw_items[2].item<double>() << " vs " << kobj);
  EXPECT_MSG(rel_err(r.raw_items[5].item<double>(), rle) <= 1e-4, "rle " << r.raw_items[5].item<double>() << " vs " << rle);
  EXPECT(rel_err(r.loss[1].item<double>(), 12.0 * kpt) <= 1e-4);
  // Detection part unchanged by the pose terms.
  DetectionLoss det(1, kStrides, 7, 1);
  auto d = det({sc.preds.boxes, sc.preds.scores}, kGrid, sc.batch);
  EXPECT(torch::equal(r.raw_items.index({torch::tensor({0, 3, 4})}), d.raw_items));
}

TEST_CASE("pose loss: no flow means five items; E2E pose gradients are finite") {
  auto sc = pose_scene(5);
  PoseLoss no_rle(1, kStrides, {17, 3}, 10);
  auto r = no_rle(sc.preds, kGrid, sc.batch, sc.keypoints);
  EXPECT(r.loss.numel() == 5);
  EXPECT(r.det.fg_count > 1);
  EXPECT_THROWS(no_rle(sc.preds, kGrid, sc.batch, sc.keypoints.narrow(1, 0, 16)));
  EXPECT_THROWS(PoseLoss(1, kStrides, {17, 4}, 10));

  E2EPoseLoss e2e(1, kStrides, {17, 3}, 10, PoseGains{}, std_normal_log_prob);
  PoseBranchOutput o2m = sc.preds, o2o = pose_scene(6).preds;
  for (auto* b : {&o2m, &o2o})
    for (auto* t : {&b->boxes, &b->scores, &b->kpts, &b->kpts_sigma}) *t = t->detach().clone().requires_grad_(true);
  auto res = e2e(o2m, o2o, kGrid, sc.batch, sc.keypoints);
  auto expect = (res.one2many.loss * 1) * 0.8 + (res.one2one.loss * 1) * (1.0 - 0.8);
  EXPECT(torch::allclose(res.loss_vector, expect, 1e-6, 1e-7));
  EXPECT(torch::equal(res.loss_items, res.one2one.loss.detach()));
  res.total.backward();
  for (auto* b : {&o2m, &o2o})
    for (auto* t : {&b->boxes, &b->scores, &b->kpts, &b->kpts_sigma}) {
      EXPECT(t->grad().defined());
      EXPECT(torch::isfinite(t->grad()).all().item<bool>());
    }
  EXPECT(o2o.kpts_sigma.grad().abs().sum().item<double>() > 0);
}

TEST_MAIN()
