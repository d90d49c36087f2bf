// Validation metrics against the official DetectionValidator run stored in test/fixtures/metrics/metrics.json,
// plus hand-computed cases for IoU, matching, AP and smoothing.
#include <torch/torch.h>
#include <yaml-cpp/yaml.h>

#include <cmath>

#include "eval/metrics.h"
#include "testing.h"

namespace {

// JSON numbers that were float32 in the reference: parse as double, then cast (fixtures README).
torch::Tensor f32_matrix(const YAML::Node& n, int64_t cols) {
  std::vector<float> v;
  for (auto row : n)
    for (auto x : row) v.push_back((float)x.as<double>());
  return torch::from_blob(v.data(), {(int64_t)v.size() / cols, cols}, torch::kFloat32).clone();
}
torch::Tensor f32_vector(const YAML::Node& n) {
  std::vector<float> v;
  for (auto x : n) v.push_back((float)x.as<double>());
  return torch::from_blob(v.data(), {(int64_t)v.size()}, torch::kFloat32).clone();
}
torch::Tensor i64_vector(const YAML::Node& n) {
  std::vector<int64_t> v;
  for (auto x : n) v.push_back(x.as<int64_t>());
  return torch::from_blob(v.data(), {(int64_t)v.size()}, torch::kInt64).clone();
}
torch::Tensor bool_matrix(const YAML::Node& n) {
  std::vector<uint8_t> v;
  int64_t rows = 0;
  for (auto row : n) {
    ++rows;
    for (auto x : row) v.push_back((uint8_t)x.as<int>());
  }
  return torch::from_blob(v.data(), {rows, 10}, torch::kUInt8).clone().to(torch::kBool);
}

const YAML::Node& reference() {
  static YAML::Node root = YAML::LoadFile(y26test::fixture("metrics/metrics.json"));
  return root;
}

}  // namespace

TEST_CASE("IoU thresholds are the validator's float32 linspace") {
  auto t = y26::iou_thresholds();
  EXPECT(t.numel() == 10 && t.scalar_type() == torch::kFloat32);
  EXPECT(t[0].item<float>() == 0.5f && t[9].item<float>() == 0.95f);
  EXPECT(std::fabs(t[1].item<float>() - 0.55f) <= 1e-7f);
}

TEST_CASE("box_iou on hand-made boxes") {
  auto a = torch::tensor({0.f, 0.f, 10.f, 10.f, 20.f, 20.f, 30.f, 30.f}).reshape({2, 4});
  auto b = torch::tensor({5.f, 0.f, 15.f, 10.f, 0.f, 0.f, 10.f, 10.f, 100.f, 100.f, 101.f, 101.f}).reshape({3, 4});
  auto iou = y26::box_iou(a, b);
  EXPECT(iou.sizes() == torch::IntArrayRef({2, 3}));
  EXPECT_NEAR(iou[0][0].item<float>(), 50.0 / 150.0, 1e-6);
  EXPECT_NEAR(iou[0][1].item<float>(), 1.0, 1e-6);
  EXPECT_NEAR(iou[0][2].item<float>(), 0.0, 0);
  EXPECT_NEAR(iou[1][0].item<float>(), 0.0, 0);
  EXPECT_THROWS(y26::box_iou(torch::zeros({2, 3}), b));
}

TEST_CASE("greedy matching: class must agree, one GT per prediction and vice versa") {
  // GT 0 (class 0) and GT 1 (class 1); predictions: 0 = class 0 on GT 0 (iou .9), 1 = class 0 on GT 0 (iou .95),
  // 2 = class 1 on GT 0 (iou .99, wrong class), 3 = class 1 on GT 1 (iou .6).
  auto iou = torch::tensor({0.9f, 0.95f, 0.99f, 0.0f, 0.0f, 0.0f, 0.0f, 0.6f}).reshape({2, 4});
  auto pred_cls = torch::tensor({0, 0, 1, 1}, torch::kInt64);
  auto gt_cls = torch::tensor({0, 1}, torch::kInt64);
  auto tp = y26::match_predictions(pred_cls, gt_cls, iou, y26::iou_thresholds());
  EXPECT(tp.sizes() == torch::IntArrayRef({4, 10}));
  // The official quirk: after keeping each prediction's best GT, each GT keeps its lowest-index prediction,
  // so prediction 0 (iou .9) wins GT 0 over prediction 1 (iou .95) wherever both qualify.
  for (int t = 0; t < 10; ++t) {
    const float thr = y26::iou_thresholds()[t].item<float>();
    EXPECT(tp[0][t].item<bool>() == (thr <= 0.9f));
    EXPECT(tp[1][t].item<bool>() == (thr > 0.9f && thr <= 0.95f));
    EXPECT(!tp[2][t].item<bool>());
    EXPECT(tp[3][t].item<bool>() == (thr <= 0.6f));
  }
  EXPECT(y26::match_predictions(torch::zeros({0}, torch::kInt64), gt_cls, torch::zeros({2, 0}), y26::iou_thresholds())
             .size(0) == 0);
  EXPECT_THROWS(y26::match_predictions(pred_cls, gt_cls, torch::zeros({4, 2}), y26::iou_thresholds()));
}

TEST_CASE("np_interp follows numpy on duplicates and edges") {
  std::vector<double> xp = {0.0, 0.5, 0.5, 1.0}, fp = {1.0, 0.8, 0.4, 0.0};
  EXPECT_NEAR(y26::np_interp(0.25, xp, fp, -1, -2), 0.9, 1e-15);
  EXPECT_NEAR(y26::np_interp(0.5, xp, fp, -1, -2), 0.4, 0);   // last duplicate wins
  EXPECT_NEAR(y26::np_interp(0.75, xp, fp, -1, -2), 0.2, 1e-15);
  EXPECT_NEAR(y26::np_interp(-0.1, xp, fp, -1, -2), -1, 0);
  EXPECT_NEAR(y26::np_interp(1.0, xp, fp, -1, -2), 0.0, 0);
  EXPECT_NEAR(y26::np_interp(1.1, xp, fp, -1, -2), -2, 0);
}

TEST_CASE("compute_ap and smooth on hand-computed curves") {
  // One prediction, a TP: envelope 1 up to recall 1, where the sentinel drops to 0 -> the last trapezoid
  // loses half a step: 0.995 (the official value for a perfect class).
  EXPECT_NEAR(y26::compute_ap({1.0}, {1.0}), 0.995, 1e-12);
  // TP then FP with 1 GT: recall [1, 1], precision [1, .5] -> same envelope -> 0.995.
  EXPECT_NEAR(y26::compute_ap({1.0, 1.0}, {1.0, 0.5}), 0.995, 1e-12);
  // FP then TP, 1 GT: recall [0, 1], precision [0, .5]: envelope .5 on [0, 1), 0 at 1 -> .5*.99 + .25*.01.
  EXPECT_NEAR(y26::compute_ap({0.0, 1.0}, {0.0, 0.5}), 0.4975, 1e-12);
  // 2 GTs, one TP: recall [.5], precision [1] -> 1 below recall .5, 0 from .5 on: .49 + .005.
  EXPECT_NEAR(y26::compute_ap({0.5}, {1.0}), 0.495, 1e-12);
  // An empty curve: only the sentinels (0,1) and (1,0) -> a straight fall, area .5.
  EXPECT_NEAR(y26::compute_ap({}, {}), 0.5, 1e-12);
  // smooth: width round(10*0.2*2)//2+1 = 3 (pad 1) over a step.
  auto s = y26::smooth({0, 0, 0, 0, 0, 1, 1, 1, 1, 1}, 0.2);
  EXPECT(s.size() == 10);
  EXPECT_NEAR(s[0], 0.0, 0);
  EXPECT_NEAR(s[4], 1.0 / 3, 1e-15);
  EXPECT_NEAR(s[5], 2.0 / 3, 1e-15);
  EXPECT(y26::smooth(std::vector<double>(1000, 0.25), 0.1).size() == 1000);
  EXPECT_NEAR(s[9], 1.0, 1e-15);
}

TEST_CASE("TP matrices equal the validator's for every image") {
  const YAML::Node& ref = reference();
  int images = 0;
  for (auto it = ref["images"].begin(); it != ref["images"].end(); ++it) {
    const YAML::Node& im = it->second;
    auto pb = f32_matrix(im["pred_xyxy_input_space"], 4);
    auto gb = f32_matrix(im["gt_xyxy_input_space"], 4);
    auto pc = i64_vector(im["pred_cls"]), gc = i64_vector(im["gt_cls"]);
    auto want = bool_matrix(im["tp_iou50_95"]);
    auto tp = y26::match_predictions(pc, gc, y26::box_iou(gb, pb), y26::iou_thresholds());
    EXPECT_MSG(torch::equal(tp, want), it->first.as<std::string>() << ": TP matrix differs in "
                                                                    << tp.ne(want).sum().item<int64_t>() << " cells");
    ++images;
  }
  EXPECT(images == 8);
}

TEST_CASE("DetMetrics reproduces the official validation numbers") {
  const YAML::Node& ref = reference();
  std::vector<std::string> names = {"rectangle", "ellipse", "triangle"};
  y26::DetMetrics m(names);
  for (auto it = ref["images"].begin(); it != ref["images"].end(); ++it) {
    const YAML::Node& im = it->second;
    m.add_image(f32_matrix(im["pred_xyxy_input_space"], 4), f32_vector(im["pred_conf"]), i64_vector(im["pred_cls"]),
                f32_matrix(im["gt_xyxy_input_space"], 4), i64_vector(im["gt_cls"]));
  }
  EXPECT(m.images() == 8);
  auto r = m.compute();
  const YAML::Node& rm = ref["reference_metrics"];
  const YAML::Node& rd = rm["results_dict"];
  EXPECT_NEAR(r.precision, rd["metrics/precision(B)"].as<double>(), 1e-9);
  EXPECT_NEAR(r.recall, rd["metrics/recall(B)"].as<double>(), 1e-9);
  EXPECT_NEAR(r.map50, rd["metrics/mAP50(B)"].as<double>(), 1e-9);
  EXPECT_NEAR(r.map50_95, rd["metrics/mAP50-95(B)"].as<double>(), 1e-9);
  EXPECT_NEAR(r.fitness, rd["fitness"].as<double>(), 1e-9);
  EXPECT(r.per_class.size() == 3);
  for (const auto& c : r.per_class) {
    const YAML::Node& pc = rm["per_class"][c.name];
    EXPECT(pc["class_id"].as<int64_t>() == c.cls);
    EXPECT_NEAR(c.precision, pc["precision"].as<double>(), 1e-9);
    EXPECT_NEAR(c.recall, pc["recall"].as<double>(), 1e-9);
    EXPECT_NEAR(c.ap50, pc["ap50"].as<double>(), 1e-9);
    EXPECT_NEAR(c.ap50_95, pc["ap50_95"].as<double>(), 1e-9);
    for (size_t t = 0; t < 10; ++t) EXPECT_NEAR(c.ap_per_iou[t], pc["ap_per_iou"][t].as<double>(), 1e-9);
    EXPECT_NEAR(r.maps[c.cls], rm["maps_per_class_ap50_95_indexed_by_class_id"][c.cls].as<double>(), 1e-9);
    EXPECT(c.instances == rm["nt_per_class"][c.cls].as<int64_t>());
    EXPECT(c.images == rm["nt_per_image"][c.cls].as<int64_t>());
  }
  EXPECT(r.instances == 20);

  // The printed table, as the official validator formats it.
  std::string table = y26::format_det_table(r, names);
  char line[128];
  std::snprintf(line, sizeof line, "%22s%11d%11d%11.3g%11.3g%11.3g%11.3g", "all", 8, 20, 0.474591, 0.458333,
                0.590933, 0.326037);
  EXPECT_MSG(table.find(line) != std::string::npos, "table:\n" << table);
  EXPECT(table.find("                 Class     Images  Instances      Box(P          R      mAP50  mAP50-95)") == 0);
  EXPECT(table.find("             rectangle          5          8") != std::string::npos);
  EXPECT(std::count(table.begin(), table.end(), '\n') == 5);
  const std::string short_table = y26::format_det_table(r, names, false);
  EXPECT(std::count(short_table.begin(), short_table.end(), '\n') == 2);
}

TEST_CASE("DetMetrics edge cases: no predictions, no GT, bad classes") {
  y26::DetMetrics m({"a", "b"});
  auto none4 = torch::zeros({0, 4}), none = torch::zeros({0}), none_i = torch::zeros({0}, torch::kInt64);
  // An image with a GT but no prediction counts its instance; an image with a prediction but no GT adds a FP.
  m.add_image(none4, none, none_i, torch::tensor({0.f, 0.f, 10.f, 10.f}).reshape({1, 4}), torch::tensor({1}));
  m.add_image(torch::tensor({0.f, 0.f, 10.f, 10.f}).reshape({1, 4}), torch::tensor({0.9f}), torch::tensor({1}),
              none4, none_i);
  auto r = m.compute();
  EXPECT(r.images == 2 && r.instances == 1);
  EXPECT(r.per_class.size() == 1 && r.per_class[0].cls == 1);
  EXPECT_NEAR(r.map50_95, 0.0, 0);
  EXPECT_NEAR(r.precision, 0.0, 0);
  // Class "a" has no GT: its maps entry is the mean.
  EXPECT_NEAR(r.maps[0], r.map50_95, 0);
  // A perfect detection gives AP 1 at every threshold.
  y26::DetMetrics perfect({"a"});
  auto box = torch::tensor({5.f, 5.f, 50.f, 40.f}).reshape({1, 4});
  perfect.add_image(box, torch::tensor({0.8f}), torch::tensor({0}), box, torch::tensor({0}));
  auto p = perfect.compute();
  EXPECT_NEAR(p.map50_95, 0.995, 1e-12);
  EXPECT_NEAR(p.recall, 1.0, 1e-12);
  EXPECT_THROWS(m.add_image(none4, none, none_i, torch::tensor({0.f, 0.f, 1.f, 1.f}).reshape({1, 4}),
                            torch::tensor({5})));
  EXPECT_THROWS(m.add_image(torch::zeros({2, 4}), torch::zeros({1}), torch::zeros({2}), none4, none_i));
  EXPECT_THROWS(y26::DetMetrics({}));
}

TEST_CASE("keypoint OKS and pose metrics") {
  auto sig = y26::oks_sigmas(17);
  EXPECT(sig.size() == 17);
  EXPECT_NEAR(sig[0], 0.026, 1e-15);
  EXPECT_NEAR(sig[16], 0.089, 1e-15);
  auto sig2 = y26::oks_sigmas(2);
  EXPECT(sig2.size() == 2 && sig2[0] == 0.5);
  // One GT, 2 keypoints (the second invisible), area 100; sigma .5 -> (2 sigma)^2 = 1, e = d^2 / (2 * area).
  auto gt = torch::tensor({0.f, 0.f, 2.f, 10.f, 0.f, 0.f}).reshape({1, 2, 3});
  auto pred = torch::tensor({0.f, 0.f, 0.f, 50.f, 50.f, 0.f,    // exact on the visible point
                             6.f, 0.f, 0.f, 10.f, 0.f, 0.f})   // 6 px off the visible point
                  .reshape({2, 2, 3});
  auto oks = y26::kpt_iou(gt, pred, torch::tensor({100.f}), sig2);
  EXPECT(oks.sizes() == torch::IntArrayRef({1, 2}));
  EXPECT_NEAR(oks[0][0].item<float>(), 1.0, 1e-6);
  EXPECT_NEAR(oks[0][1].item<float>(), std::exp(-36.0 / 200), 1e-6);
  EXPECT_THROWS(y26::kpt_iou(gt, pred, torch::tensor({100.f}), sig));

  // Pose metrics: both predictions share the GT box; the better keypoints win more thresholds.
  y26::PoseMetrics pm({"person"}, 2);
  auto box = torch::tensor({0.f, 0.f, 10.f, 10.f}).reshape({1, 4});  // area 100 * .53
  auto pboxes = torch::tensor({0.f, 0.f, 10.f, 10.f, 0.f, 0.f, 10.f, 10.f}).reshape({2, 4});
  pm.add_image(pboxes, torch::tensor({0.9f, 0.8f}), torch::tensor({0, 0}), pred, box, torch::tensor({0}), gt);
  auto b = pm.box(), p = pm.pose();
  EXPECT(b.images == 1 && p.images == 1 && p.instances == 1);
  EXPECT_NEAR(b.map50_95, 0.995, 1e-12);   // the first box is a perfect match
  EXPECT_NEAR(p.map50_95, 0.995, 1e-12);   // so is its keypoint
  EXPECT_NEAR(pm.fitness(), b.map50_95 + p.map50_95, 0);
  // Swap the confidences: the far keypoint now ranks first; with area 53, OKS exp(-36/106) = .712 passes
  // thresholds .50 to .70.
  y26::PoseMetrics pm2({"person"}, 2);
  // (predictions come sorted by confidence, as the end2end head emits them: the far one first)
  auto swapped = torch::stack({pred[1], pred[0]});
  pm2.add_image(pboxes, torch::tensor({0.9f, 0.8f}), torch::tensor({0, 0}), swapped, box, torch::tensor({0}), gt);
  auto p2 = pm2.pose();
  // The data.yaml's kpt_oks_sigmas replace the defaults: with sigma .25 the far point's OKS is exp(-36/26.5) = .26,
  // below every threshold, so the first-ranked prediction is a FP everywhere (AP50 .4975 instead of .995).
  y26::PoseMetrics pm3({"person"}, 2, {0.25, 0.25});
  pm3.add_image(pboxes, torch::tensor({0.9f, 0.8f}), torch::tensor({0, 0}), swapped, box, torch::tensor({0}), gt);
  EXPECT_NEAR(p2.map50, 0.995, 1e-12);
  EXPECT_NEAR(pm3.pose().map50, 0.4975, 1e-3);
  EXPECT_THROWS(y26::PoseMetrics({"person"}, 2, {0.5}));        // one sigma per keypoint
  EXPECT_THROWS(y26::PoseMetrics({"person"}, 2, {0.5, 0.0}));   // all > 0
  const double far = std::exp(-36.0 / (2 * 53.0));
  int above = 0;
  for (int t = 0; t < 10; ++t) above += far >= y26::iou_thresholds()[t].item<float>();
  EXPECT(above == 5);
  // Thresholds the far point passes: the GT keeps the lowest-index prediction (the far one) -> first is a TP ->
  // .995; above .70 only the exact one matches, a TP after one FP -> .4975.
  EXPECT_NEAR(p2.map50_95, (above * 0.995 + (10 - above) * 0.4975) / 10, 1e-12);
  EXPECT_THROWS(pm2.add_image(pboxes, torch::tensor({0.8f, 0.9f}), torch::tensor({0, 0}), torch::zeros({2, 3, 3}),
                              box, torch::tensor({0}), gt));
}

TEST_MAIN()
