// Segmentation training loss (train/segment_loss) and mask validation metrics (eval/mask_metrics): hand-made masks
// with known IoUs, the loss terms against a direct computation on a hand-made scene, and a tiny seg model whose
// seg term falls under a few optimiser steps on one fixed batch.
#include "testing.h"

#include "data/loader.h"
#include "eval/mask_metrics.h"
#include "model/yolo.h"
#include "train/segment_loss.h"
#include "util/error.h"

#include <torch/torch.h>

#include <cmath>

using namespace y26;
using torch::indexing::Slice;

namespace {

// (h, w) 0/1 float mask with the rectangle [x1, x2) x [y1, y2) set.
torch::Tensor rect(int64_t h, int64_t w, int64_t x1, int64_t y1, int64_t x2, int64_t y2) {
  auto m = torch::zeros({h, w});
  m.index_put_({Slice(y1, y2), Slice(x1, x2)}, 1.0);
  return m;
}

double bce(double logit, double target) {  // binary cross-entropy with logits, the stable form
  return std::max(logit, 0.0) - logit * target + std::log1p(std::exp(-std::fabs(logit)));
}

const std::vector<double> kStrides{8, 16, 32};

// A 64 x 64 input with one GT box (xywhn 0.5 0.5 0.5 0.5 = pixels 16..48) whose polygon is the box itself,
// head boxes that fit it (so the assigner has clear positives), random scores, coefficients, proto and semseg.
struct SegScene {
  std::vector<std::pair<int64_t, int64_t>> grid = grid_sizes_for(64, 64, kStrides);
  DetectionBatch batch;
  SegmentBranchOutput preds;
  torch::Tensor proto, semseg, masks;
};
SegScene seg_scene(uint64_t seed, int64_t nm = 4) {
  torch::manual_seed(seed);
  SegScene s;
  s.batch = {torch::zeros({1}), torch::zeros({1, 1}), torch::tensor({0.5f, 0.5f, 0.5f, 0.5f}).view({1, 4})};
  std::vector<torch::Tensor> ltrb;
  for (size_t i = 0; i < s.grid.size(); ++i) {
    auto [h, w] = s.grid[i];
    double st = kStrides[i];
    auto ys = torch::arange(h, torch::kFloat) + 0.5, xs = torch::arange(w, torch::kFloat) + 0.5;
    auto g = torch::meshgrid({ys, xs}, "ij");
    auto ax = g[1].reshape({-1}), ay = g[0].reshape({-1});
    ltrb.push_back(torch::stack({ax - 16 / st, ay - 16 / st, 48 / st - ax, 48 / st - ay}));
  }
  auto boxes = torch::cat(ltrb, 1).unsqueeze(0);  // (1, 4, 84)
  s.preds.boxes = boxes + 0.1 * torch::randn_like(boxes);
  s.preds.scores = torch::randn({1, 1, boxes.size(2)});
  s.preds.mask_coef = torch::randn({1, nm, boxes.size(2)});
  s.proto = torch::randn({1, nm, 16, 16});
  s.semseg = torch::randn({1, 1, 8, 8});
  s.masks = rect(16, 16, 4, 4, 12, 12).to(torch::kInt).unsqueeze(0);  // overlap layout: label 0 -> value 1
  return s;
}

// A Batch with two 64 x 64 images for polygon_masks and the model: image 0 holds a square (class 0) and a
// triangle (class 1), image 1 a rectangle (class 1). Polygons normalised, boxes their bounds.
Batch polygon_batch() {
  Batch b;
  b.img = torch::zeros({2, 3, 64, 64}, torch::kUInt8);
  std::vector<std::vector<float>> polys = {
      {0.10f, 0.10f, 0.45f, 0.10f, 0.45f, 0.45f, 0.10f, 0.45f},  // square
      {0.55f, 0.55f, 0.95f, 0.55f, 0.75f, 0.95f},                // triangle
      {0.20f, 0.30f, 0.80f, 0.30f, 0.80f, 0.70f, 0.20f, 0.70f},  // rectangle
  };
  std::vector<float> bidx = {0, 0, 1}, cls = {0, 1, 1};
  std::vector<torch::Tensor> boxes;
  for (auto& p : polys) {
    auto t = torch::tensor(p).view({-1, 2});
    b.segments.push_back(t);
    auto lo = std::get<0>(t.min(0)), hi = std::get<0>(t.max(0));
    boxes.push_back(torch::cat({(lo + hi) / 2, hi - lo}));
  }
  b.bboxes = torch::stack(boxes);
  b.batch_idx = torch::tensor(bidx);
  b.cls = torch::tensor(cls).view({-1, 1});
  return b;
}

SegmentBranchOutput branch(const BranchOutput& o) { return {o.boxes, o.scores, o.mask_coef}; }

}  // namespace

// ---- mask metrics -----------------------------------------------------------------------------------------------

TEST_CASE("crop_mask keeps x1 <= col < x2, y1 <= row < y2; mask_iou on hand-made masks") {
  auto ones = torch::ones({2, 6, 8});
  auto c = crop_mask(ones, torch::tensor({1.5f, 0.f, 3.f, 6.f, 0.f, 2.f, 8.f, 4.f}).view({2, 4}));
  EXPECT(c[0].sum().item<double>() == 6);  // column 2 only (1.5 <= 2 < 3), all 6 rows
  EXPECT(c[0].index({Slice(), 2}).sum().item<double>() == 6);
  EXPECT(c[1].sum().item<double>() == 16);  // rows 2, 3 x all 8 columns
  EXPECT(c[1].index({Slice(2, 4)}).sum().item<double>() == 16);
  EXPECT(ones.sum().item<double>() == 96);  // input untouched

  auto a = rect(8, 8, 0, 0, 4, 4), b = rect(8, 8, 2, 2, 6, 6), d = rect(8, 8, 6, 6, 8, 8);
  auto iou = mask_iou(torch::stack({a, b}).flatten(1), torch::stack({a, b, d}).to(torch::kUInt8).flatten(1));
  EXPECT(iou.sizes() == torch::IntArrayRef({2, 3}));
  EXPECT_NEAR(iou[0][0].item<double>(), 1.0, 1e-6);
  EXPECT_NEAR(iou[0][1].item<double>(), 4.0 / 28.0, 1e-6);  // 2x2 overlap of two 4x4 squares
  EXPECT_NEAR(iou[1][0].item<double>(), 4.0 / 28.0, 1e-6);
  EXPECT(iou[0][2].item<double>() == 0 && iou[1][2].item<double>() == 0);
  EXPECT_THROWS(mask_iou(a.flatten().unsqueeze(0), torch::ones({1, 10})));
}

TEST_CASE("mask TP matrix: IoU thresholds, class agreement, one prediction per GT") {
  auto g0 = rect(32, 32, 0, 0, 10, 10), g1 = rect(32, 32, 16, 16, 26, 26);
  auto gt = torch::stack({g0, g1});
  auto gt_cls = torch::tensor({0, 1});
  // pred 0 = GT 0 exactly (IoU 1); pred 1 inside GT 1, 9x8 = 72 px (IoU 0.72); pred 2 = GT 0 but class 1;
  // pred 3 = GT 0 again (duplicate: GT 0 is already taken by pred 0).
  auto pred = torch::stack({g0, rect(32, 32, 16, 16, 25, 24), g0, g0}).to(torch::kUInt8);
  auto tp = mask_tp(pred, torch::tensor({0, 1, 1, 0}), gt, gt_cls);
  EXPECT(tp.sizes() == torch::IntArrayRef({4, 10}));
  EXPECT(tp[0].all().item<bool>());
  EXPECT(tp[1].sum().item<int64_t>() == 5);  // 0.50 .. 0.70 hold, 0.75 .. 0.95 do not
  EXPECT(tp[1].narrow(0, 0, 5).all().item<bool>());
  EXPECT(!tp[2].any().item<bool>());
  EXPECT(!tp[3].any().item<bool>());
  EXPECT(mask_tp(pred.narrow(0, 0, 0), torch::zeros({0}), gt, gt_cls).sizes() == torch::IntArrayRef({0, 10}));
  EXPECT(!mask_tp(pred, torch::tensor({0, 1, 1, 0}), gt.narrow(0, 0, 0), torch::zeros({0})).any().item<bool>());
  EXPECT_THROWS(mask_tp(pred.narrow(1, 0, 16), torch::tensor({0, 1, 1, 0}), gt, gt_cls));
}

TEST_CASE("predict_masks: proto resolution crop (validator default) and native upsampling") {
  // One prototype that is +1 everywhere: coef 1 -> the whole box, coef -1 -> nothing.
  auto proto = torch::ones({1, 16, 16});
  auto coef = torch::tensor({1.f, -1.f, 2.f}).view({3, 1});
  auto boxes = torch::tensor({8.f, 8.f, 32.f, 32.f, 0.f, 0.f, 64.f, 64.f, 10.f, 0.f, 64.f, 3.f}).view({3, 4});
  auto m = predict_masks(proto, coef, boxes, 64, 64);
  EXPECT(m.sizes() == torch::IntArrayRef({3, 16, 16}) && m.scalar_type() == torch::kUInt8);
  EXPECT(m[0].sum().item<int64_t>() == 36);  // box (2, 2, 8, 8) in proto pixels
  EXPECT(m[0].index({Slice(2, 8), Slice(2, 8)}).all().item<bool>());
  EXPECT(m[1].sum().item<int64_t>() == 0);
  EXPECT(m[2].sum().item<int64_t>() == 13);  // x 2.5..16 -> columns 3..15, y 0..0.75 -> row 0
  auto n = predict_masks(proto, coef, boxes, 64, 64, /*native=*/true);
  EXPECT(n.sizes() == torch::IntArrayRef({3, 64, 64}));
  EXPECT(n[0].sum().item<int64_t>() == 24 * 24);
  EXPECT(n[2].sum().item<int64_t>() == 54 * 3);
  // A prototype with a sign change: the mask follows coef . proto > 0 inside the box.
  auto half = torch::cat({torch::ones({1, 16, 8}), -torch::ones({1, 16, 8})}, 2);
  auto h = predict_masks(half, torch::ones({1, 1}), torch::tensor({0.f, 0.f, 64.f, 64.f}).view({1, 4}), 64, 64);
  EXPECT(h[0].sum().item<int64_t>() == 16 * 8 && h[0].index({Slice(), Slice(0, 8)}).all().item<bool>());
  EXPECT(predict_masks(proto, torch::zeros({0, 1}), torch::zeros({0, 4}), 64, 64).size(0) == 0);
  EXPECT_THROWS(predict_masks(proto, torch::ones({2, 3}), boxes.narrow(0, 0, 2), 64, 64));
}

TEST_CASE("gt_instance_masks from overlap index maps and per-instance masks, with resizing") {
  auto idx = torch::zeros({16, 16}, torch::kInt);
  idx.index_put_({Slice(0, 8), Slice(0, 8)}, 1);
  idx.index_put_({Slice(8, 16), Slice(4, 16)}, 2);
  auto g = gt_instance_masks(idx, 2, /*overlap=*/true, 16, 16);
  EXPECT(g.sizes() == torch::IntArrayRef({2, 16, 16}));
  EXPECT(g[0].sum().item<double>() == 64 && g[1].sum().item<double>() == 96);
  auto small = gt_instance_masks(idx, 2, true, 8, 8);  // bilinear to half size, > 0.5
  EXPECT(small[0].sum().item<double>() == 16 && small[1].sum().item<double>() == 24);
  auto sep = gt_instance_masks(g.to(torch::kUInt8), 2, /*overlap=*/false, 16, 16);
  EXPECT(torch::equal(sep, g));
  EXPECT(gt_instance_masks(idx, 0, true, 16, 16).size(0) == 0);
  EXPECT_THROWS(gt_instance_masks(g, 3, false, 16, 16));
}

TEST_CASE("SegmentMetrics: perfect masks score like perfect boxes, shifted masks lower only the mask metrics") {
  SegmentMetrics perfect({"a", "b"}), shifted({"a", "b"});
  for (int img = 0; img < 3; ++img) {
    auto gt_boxes = torch::tensor({0.f, 0.f, 40.f, 40.f, 64.f, 64.f, 120.f, 120.f}).view({2, 4});
    auto gt_cls = torch::tensor({0.f, 1.f});
    auto gm = torch::stack({rect(32, 32, 0, 0, 10, 10), rect(32, 32, 16, 16, 30, 30)});
    auto conf = torch::tensor({0.9f, 0.8f});
    perfect.add_image(gt_boxes, conf, gt_cls, gm.to(torch::kUInt8), gt_boxes, gt_cls, gm);
    // Masks shifted by 4 px: class a IoU 60/140 = 0.43 (no match), class b 140/196 = 0.71 (0.50 .. 0.70).
    auto moved = torch::stack({rect(32, 32, 4, 0, 14, 10), rect(32, 32, 20, 16, 30, 30)}).to(torch::kUInt8);
    shifted.add_image(gt_boxes, conf, gt_cls, moved, gt_boxes, gt_cls, gm);
  }
  auto pb = perfect.box(), pm = perfect.mask();
  EXPECT(pb.images == 3 && pm.instances == 6);
  EXPECT_NEAR(pm.map50_95, pb.map50_95, 1e-12);
  EXPECT_NEAR(pm.map50_95, 0.995, 1e-9);
  EXPECT_NEAR(perfect.fitness(), pb.map50_95 + pm.map50_95, 1e-12);
  auto sb = shifted.box(), sm = shifted.mask();
  EXPECT_NEAR(sb.map50_95, 0.995, 1e-9);
  EXPECT_NEAR(sm.map50, 0.995 / 2, 1e-9);  // class a misses at 0.5, class b hits
  EXPECT_NEAR(sm.map50_95, 0.995 * 5 / 10 / 2, 1e-9);
  EXPECT(shifted.fitness() < perfect.fitness());
  auto table = format_seg_table(sb, sm, {"a", "b"});
  EXPECT(table.find("Mask(P") != std::string::npos && table.find("all") != std::string::npos);
  perfect.reset();
  EXPECT(perfect.images() == 0);
}

// ---- loss pieces ------------------------------------------------------------------------------------------------

TEST_CASE("semantic targets: one-hot class of the covering instance, smallest wins without overlap masks") {
  // Image 0: labels (class 2, class 0); image 1: one label of class 1.
  auto idx = torch::zeros({2, 4, 4}, torch::kInt);
  idx[0].index_put_({Slice(0, 2), Slice()}, 1);
  idx[0].index_put_({3, 3}, 2);
  idx[1].index_put_({Slice(), 0}, 1);
  auto cls = torch::tensor({2.f, 0.f, 1.f}).view({-1, 1});
  auto bidx = torch::tensor({0.f, 0.f, 1.f});
  auto t = semantic_targets(idx, true, cls, bidx, 2, 3);
  EXPECT(t.sizes() == torch::IntArrayRef({2, 3, 4, 4}));
  EXPECT(t[0][2].sum().item<double>() == 8 && t[0][2].index({Slice(0, 2)}).sum().item<double>() == 8);
  EXPECT(t[0][0].sum().item<double>() == 1 && t[0][0][3][3].item<double>() == 1);
  EXPECT(t[0][1].sum().item<double>() == 0);
  EXPECT(t[1][1].sum().item<double>() == 4 && t[1].sum().item<double>() == 4);
  EXPECT(t.sum(1).max().item<double>() == 1);  // at most one class per pixel
  // Labels listed out of image order give the same map.
  auto t2 = semantic_targets(idx, true, torch::tensor({1.f, 2.f, 0.f}), torch::tensor({1.f, 0.f, 0.f}), 2, 3);
  EXPECT(torch::equal(t, t2));
  EXPECT_THROWS(semantic_targets(idx, true, cls.narrow(0, 0, 1), bidx.narrow(0, 0, 1), 2, 3));  // index 2 > 1 label
  EXPECT_THROWS(semantic_targets(idx, true, torch::tensor({2.f, 3.f, 1.f}), bidx, 2, 3));        // class 3 >= nc

  // Per-instance masks: a big class-0 square and a small class-1 square on top of it.
  auto big = rect(4, 4, 0, 0, 4, 4), tiny = rect(4, 4, 1, 1, 2, 3);
  auto sep = torch::stack({big, tiny}).to(torch::kUInt8);
  auto ts = semantic_targets(sep, false, torch::tensor({0.f, 1.f}), torch::zeros({2}), 1, 2);
  EXPECT(ts[0][1].sum().item<double>() == 2 && ts[0][1][1][1].item<double>() == 1 && ts[0][1][2][1].item<double>() == 1);
  EXPECT(ts[0][0].sum().item<double>() == 14);
}

TEST_CASE("BCE + Dice: hand values and nearest downsampling of the target") {
  auto pred = torch::zeros({1, 1, 2, 2});
  auto r = bce_dice_loss(pred, torch::ones({1, 1, 2, 2}));
  // p = 0.5 everywhere: BCE ln 2; Dice (2 * 2 + 1) / (2 + 4 + 1) = 5/7.
  EXPECT_NEAR(r.item<double>(), 0.5 * std::log(2.0) + 0.5 * (1 - 5.0 / 7.0), 1e-6);
  // A 4x4 target whose even rows/cols are 1 becomes all ones at 2x2 (nearest picks pixels 0 and 2).
  auto t4 = torch::zeros({1, 1, 4, 4});
  t4.index_put_({0, 0, torch::tensor({0, 2}).view({2, 1}), torch::tensor({0, 2}).view({1, 2})}, 1.0);
  EXPECT_NEAR(bce_dice_loss(pred, t4).item<double>(), r.item<double>(), 1e-7);
  // Confident right answers cost almost nothing, confident wrong ones a lot.
  auto tgt = torch::tensor({1.f, 0.f, 0.f, 1.f}).view({1, 1, 2, 2});
  EXPECT(bce_dice_loss((tgt * 2 - 1) * 20, tgt).item<double>() < 1e-6);
  EXPECT(bce_dice_loss((1 - tgt * 2) * 20, tgt).item<double>() > 10);
}

TEST_CASE("segment branch loss: mask and sem terms match a direct computation") {
  auto s = seg_scene(11);
  SegmentLoss loss(1, kStrides, 10);
  auto r = loss(s.preds, s.proto, s.semseg, s.grid, s.batch, s.masks);
  EXPECT(r.loss.numel() == 5 && r.raw_items.numel() == 5);
  EXPECT(r.det.fg_count > 1);
  // Detection items pass through unchanged.
  EXPECT(r.raw_items[0].item<double>() == r.det.raw_items[0].item<double>());
  EXPECT(r.raw_items[2].item<double>() == r.det.raw_items[1].item<double>());
  EXPECT(r.raw_items[3].item<double>() == r.det.raw_items[2].item<double>());

  // Mask term: every positive is assigned the one GT; box 16..48 px = 4..12 in 16x16 mask pixels, area 0.25.
  auto fg = r.det.assigned.fg_mask[0];
  double expect_seg = 0;
  int64_t npos = 0;
  for (int64_t a = 0; a < fg.size(0); ++a) {
    if (!fg[a].item<bool>()) continue;
    ++npos;
    double sum = 0;
    for (int y = 4; y < 12; ++y)
      for (int x = 4; x < 12; ++x) {
        double logit = (s.preds.mask_coef[0].select(1, a) * s.proto[0].select(1, y).select(1, x)).sum().item<double>();
        sum += bce(logit, 1.0);  // the whole box is inside the GT polygon
      }
    expect_seg += sum / 256.0 / 0.25;
  }
  expect_seg /= npos;
  EXPECT_NEAR(r.raw_items[1].item<double>(), expect_seg, 1e-5 * expect_seg);
  EXPECT_NEAR(r.loss[1].item<double>(), 7.5 * expect_seg, 1e-5 * 7.5 * expect_seg);

  // Sem term: 8x8 target = GT pixels (2i, 2j) of the 16x16 mask -> rows/cols 2..5.
  double b = 0, inter = 0, psum = 0, tsum = 0;
  for (int y = 0; y < 8; ++y)
    for (int x = 0; x < 8; ++x) {
      double t = (y >= 2 && y < 6 && x >= 2 && x < 6) ? 1 : 0, z = s.semseg[0][0][y][x].item<double>();
      double p = 1 / (1 + std::exp(-z));
      b += bce(z, t);
      inter += p * t;
      psum += p;
      tsum += t;
    }
  double expect_sem = 0.5 * b / 64 + 0.5 * (1 - (2 * inter + 1) / (psum + tsum + 1));
  EXPECT_NEAR(r.raw_items[4].item<double>(), expect_sem, 1e-5);
  EXPECT_NEAR(r.loss[4].item<double>(), 7.5 * expect_sem, 1e-4);

  // Without semseg the sem term is 0; per-instance masks give the same loss as the overlap map.
  auto no_sem = loss(s.preds, s.proto, torch::Tensor(), s.grid, s.batch, s.masks);
  EXPECT(no_sem.raw_items[4].item<double>() == 0);
  SegmentLoss sep(1, kStrides, 10, 0, LossGains{}, /*overlap=*/false);
  auto rs = sep(s.preds, s.proto, s.semseg, s.grid, s.batch, (s.masks > 0).to(torch::kUInt8));
  EXPECT(torch::allclose(rs.raw_items, r.raw_items, 1e-6, 1e-7));
  // Masks at another size than the proto: the proto is resized to them (the loss stays finite and positive).
  auto big = torch::nn::functional::interpolate(
                 s.masks.unsqueeze(0).to(torch::kFloat),
                 torch::nn::functional::InterpolateFuncOptions().size(std::vector<int64_t>{32, 32}).mode(torch::kNearest))[0]
                 .to(torch::kInt);
  auto rb = loss(s.preds, s.proto, s.semseg, s.grid, s.batch, big);
  EXPECT(std::isfinite(rb.raw_items[1].item<double>()) && rb.raw_items[1].item<double>() > 0);
  EXPECT_THROWS(loss(s.preds, s.proto, s.semseg, s.grid, s.batch, torch::zeros({2, 16, 16}, torch::kInt)));
  EXPECT_THROWS(loss({s.preds.boxes, s.preds.scores, s.preds.mask_coef.narrow(1, 0, 3)}, s.proto, s.semseg, s.grid,
                     s.batch, s.masks));
}

TEST_CASE("segment loss: a matching mask costs near zero, a wrong one a lot; no labels keeps the graph") {
  auto s = seg_scene(5, 1);
  // One prototype: +20 inside the GT mask, -20 outside; coefficient +1 predicts the GT, -1 its inverse.
  auto proto = (s.masks.to(torch::kFloat) * 40 - 20).unsqueeze(1);
  SegmentLoss loss(1, kStrides, 10);
  auto right = loss({s.preds.boxes, s.preds.scores, torch::ones_like(s.preds.mask_coef)}, proto, s.semseg, s.grid,
                    s.batch, s.masks);
  auto wrong = loss({s.preds.boxes, s.preds.scores, -torch::ones_like(s.preds.mask_coef)}, proto, s.semseg, s.grid,
                    s.batch, s.masks);
  EXPECT(right.raw_items[1].item<double>() < 1e-6);
  // BCE 20 on the 8x8 in-box pixels, mean over the 16x16 mask, / area 0.25
  EXPECT_NEAR(wrong.raw_items[1].item<double>(), 20.0 * 64 / 256 / 0.25, 1e-3);
  // Only the positives' coefficients matter.
  auto coef = torch::ones_like(s.preds.mask_coef);
  coef.index_put_({0, 0, ~right.det.assigned.fg_mask[0]}, -5.0);
  auto mixed = loss({s.preds.boxes, s.preds.scores, coef}, proto, s.semseg, s.grid, s.batch, s.masks);
  EXPECT(mixed.raw_items[1].item<double>() == right.raw_items[1].item<double>());

  DetectionBatch empty{torch::zeros({0}), torch::zeros({0, 1}), torch::zeros({0, 4})};
  auto c = s.preds.mask_coef.clone().requires_grad_(true);
  auto p = s.proto.clone().requires_grad_(true);
  auto sem = s.semseg.clone().requires_grad_(true);
  auto r = loss({s.preds.boxes, s.preds.scores, c}, p, sem, s.grid, empty, torch::zeros({1, 16, 16}, torch::kInt));
  EXPECT(r.det.fg_count == 0 && r.raw_items[1].item<double>() == 0 && r.raw_items[4].item<double>() == 0);
  r.loss.sum().backward();
  EXPECT(c.grad().defined() && p.grad().defined() && sem.grad().defined());
}

TEST_CASE("E2E segment loss: ProgLoss weighting, one2one items, detached proto for one2one") {
  auto s = seg_scene(7);
  E2ESegmentLoss e2e(1, kStrides, 10);
  auto o2o_preds = s.preds;
  o2o_preds.mask_coef = torch::randn_like(s.preds.mask_coef).requires_grad_(true);
  auto p = s.proto.clone().requires_grad_(true);
  auto r = e2e(s.preds, o2o_preds, p, s.semseg, s.grid, s.batch, s.masks);
  EXPECT(r.loss_items.numel() == 5 && !r.loss_items.requires_grad());
  EXPECT(torch::allclose(r.loss_items, r.one2one.loss.detach()));
  auto want = r.one2many.loss.detach() * 0.8 + r.one2one.loss.detach() * 0.2;  // batch size 1
  EXPECT(torch::allclose(r.loss_vector.detach(), want, 1e-6, 1e-7));
  EXPECT_NEAR(r.total.item<double>(), want.sum().item<double>(), 1e-5);
  EXPECT(r.one2one.det.fg_count == 1);  // topk2 = 1 for the single GT
  EXPECT_NEAR(r.one2one.raw_items[4].item<double>(), r.one2many.raw_items[4].item<double>(), 1e-7);
  // The one2one terms never reach the proto.
  r.one2one.loss.sum().backward();
  EXPECT(!p.grad().defined() || p.grad().abs().sum().item<double>() == 0);
  e2e.update();
  EXPECT(e2e.updates() == 1 && e2e.o2m_weight() < 0.8);
  e2e.set_updates(9);
  EXPECT_NEAR(e2e.o2m_weight(), 0.1, 1e-12);
  auto late = e2e(s.preds, o2o_preds, s.proto, s.semseg, s.grid, s.batch, s.masks);
  EXPECT(torch::allclose(late.loss_vector, late.one2many.loss * 0.1 + late.one2one.loss * 0.9, 1e-6, 1e-7));
}

// ---- tiny model ---------------------------------------------------------------------------------------------------

TEST_CASE("tiny yolo26n-seg: finite loss, gradients reach proto and mask coefficients, steps lower the seg term") {
  torch::manual_seed(0);
  auto model = build_model("yolo26n-seg.yaml", 2);
  model->train();
  Batch b = polygon_batch();
  auto masks = polygon_masks(b, 4, true);
  EXPECT(masks.sizes() == torch::IntArrayRef({2, 16, 16}));
  EXPECT(masks[0].max().item<int>() == 2 && masks[1].max().item<int>() == 1);
  DetectionBatch db{b.batch_idx, b.cls, b.bboxes};
  auto x = torch::rand({2, 3, 64, 64});
  E2ESegmentLoss loss(2, model->stride(), 10);

  auto out = model->forward(x);
  auto grid = grid_sizes_of(out.feats);
  auto r = loss(branch(out.one2many), branch(out.one2one), out.proto, out.semseg, grid, db, masks);
  EXPECT(r.loss_items.numel() == 5);
  EXPECT(torch::isfinite(r.loss_vector).all().item<bool>() && torch::isfinite(r.total).item<bool>());
  EXPECT(r.one2many.det.fg_count > 0);
  r.total.backward();
  auto grad_sum = [&](const std::string& part) {
    double g = 0;
    int n = 0;
    for (auto& kv : model->named_parameters()) {
      if (kv.key().find(part) == std::string::npos) continue;
      ++n;
      if (kv.value().grad().defined()) g += kv.value().grad().abs().sum().item<double>();
    }
    EXPECT_MSG(n > 0, "no parameter named like " << part);
    return g;
  };
  EXPECT(grad_sum(".proto.") > 0);             // mask and sem terms of the one2many branch
  EXPECT(grad_sum(".proto.semseg.") > 0);      // the sem term
  EXPECT(grad_sum("23.cv4.") > 0);             // one2many mask coefficients
  EXPECT(grad_sum("23.one2one_cv4.") > 0);     // one2one mask coefficients
  for (auto& kv : model->named_parameters())
    if (kv.value().grad().defined())
      EXPECT_MSG(torch::isfinite(kv.value().grad()).all().item<bool>(), "non-finite gradient in " << kv.key());

  // A few Adam steps on this one batch: the seg term falls.
  torch::optim::Adam opt(model->parameters(), torch::optim::AdamOptions(2e-3));
  auto seg_term = [&] {
    auto o = model->forward(x);
    return loss(branch(o.one2many), branch(o.one2one), o.proto, o.semseg, grid, db, masks);
  };
  const double before = r.one2many.raw_items[1].item<double>();
  double after = before;
  for (int step = 0; step < 12; ++step) {
    opt.zero_grad();
    auto rs = seg_term();
    rs.total.backward();
    opt.step();
    after = rs.one2many.raw_items[1].item<double>();
  }
  std::cout << "  one2many seg term: " << before << " -> " << after << "\n";
  EXPECT(std::isfinite(after));
  EXPECT_MSG(after < 0.8 * before, "seg term " << before << " -> " << after);
}

TEST_MAIN()
