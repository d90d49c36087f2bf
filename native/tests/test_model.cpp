// YOLO26 model family: structure (param counts, state_dict names), config errors, fuse, and parity with the
// official outputs stored in the fixtures.
#include <cstdio>
#include <fstream>
#include <unistd.h>

#include "io/checkpoint.h"
#include "model/config.h"
#include "model/nhwc_batchnorm.h"
#include "model/postprocess.h"
#include "model/yolo.h"
#include "testing.h"
#include "util/error.h"
#include "util/npy.h"
#include "util/source_dir.h"

using namespace y26;

namespace {

struct KeyEntry {
  std::string key;
  std::vector<int64_t> shape;
};

std::vector<KeyEntry> fixture_keys(const std::string& rel) {
  YAML::Node j = YAML::LoadFile(y26test::fixture(rel));  // JSON is YAML
  std::vector<KeyEntry> out;
  for (const auto& e : j["state_dict"]) out.push_back({e["key"].as<std::string>(), e["shape"].as<std::vector<int64_t>>()});
  return out;
}

// Compares our state_dict with a keys.json fixture: same names, order and shapes.
void expect_keys_match(YoloModel& m, const std::string& rel) {
  auto want = fixture_keys(rel);
  auto have = m.state_dict();
  EXPECT_MSG(have.size() == want.size(), rel << ": " << have.size() << " entries vs " << want.size());
  size_t n = std::min(have.size(), want.size()), bad = 0;
  for (size_t i = 0; i < n && bad < 5; ++i) {
    auto s = have[i].second.sizes().vec();
    if (have[i].first != want[i].key || s != want[i].shape) {
      ++bad;
      EXPECT_MSG(false, rel << " entry " << i << ": have " << have[i].first << " " << have[i].second.sizes()
                            << ", want " << want[i].key << " " << torch::IntArrayRef(want[i].shape));
    }
  }
}

std::string write_temp(const std::string& name, const std::string& text) {
  static std::vector<std::string> written;
  static struct Cleanup { ~Cleanup() { for (auto& p : written) std::remove(p.c_str()); } } cleanup;
  std::string path = "/tmp/y26_test_" + std::to_string(getpid()) + "_" + name;
  std::ofstream(path) << text;
  written.push_back(path);
  return path;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

torch::Tensor load_npy(const std::string& rel) {
  auto a = read_npy(y26test::fixture(rel));
  if (a.dtype == "u1")
    return torch::from_blob(a.bytes.data(), a.shape, torch::kUInt8).clone();
  if (a.dtype == "i8") return torch::tensor(a.as_int64()).view(a.shape);
  return torch::tensor(a.as_float()).view(a.shape);
}

// The predictor's input: float32(u8) / 255.
torch::Tensor load_input(const std::string& dir) { return load_npy(dir + "/input_u8.npy").to(torch::kFloat32) / 255; }

// Fixture tolerance for raw outputs: |a - b| <= 1e-4 + 1e-4 |b|.
void expect_raw_close(const torch::Tensor& have, const std::string& rel) {
  auto want = load_npy(rel);
  EXPECT_MSG(have.sizes() == want.sizes(), rel << ": shape " << have.sizes() << " vs " << want.sizes());
  if (have.sizes() != want.sizes()) return;
  auto excess = ((have - want).abs() - (1e-4 + 1e-4 * want.abs())).max().item<double>();
  EXPECT_MSG(excess <= 0, rel << ": max |diff| " << (have - want).abs().max().item<double>() << " beyond tolerance");
}

// End-to-end rows compared as a set: each reference row needs one of ours with the same class, score within
// 1e-5 and box within 2e-3 px (+1e-5 rel); extras (keypoints) within 2e-3 px / 1e-4 rel. Only rows whose score
// ties the cut-off (within 1e-5 of the last one) may be missing. The sorted score columns must agree.
void expect_e2e_close(const torch::Tensor& have_b, const std::string& rel) {
  auto want = load_npy(rel)[0];
  auto have = have_b[0];
  EXPECT_MSG(have.sizes() == want.sizes(), rel << ": shape " << have.sizes() << " vs " << want.sizes());
  if (have.sizes() != want.sizes()) return;
  const int64_t k = want.size(0), C = want.size(1);
  auto hs = std::get<0>(have.select(1, 4).sort(0, true)), ws = std::get<0>(want.select(1, 4).sort(0, true));
  EXPECT_MSG((hs - ws).abs().max().item<double>() <= 1e-5, rel << ": sorted scores differ by " << (hs - ws).abs().max().item<double>());
  auto h = have.contiguous(), w = want.contiguous();
  auto ha = h.accessor<float, 2>(), wa = w.accessor<float, 2>();
  std::vector<bool> used(k, false);
  const double cutoff = ws[k - 1].item<double>();
  int unmatched = 0, boundary = 0;
  for (int64_t i = 0; i < k; ++i) {
    bool found = false;
    for (int64_t j = 0; j < k && !found; ++j) {
      if (used[j] || ha[j][5] != wa[i][5] || std::fabs(ha[j][4] - wa[i][4]) > 1e-5) continue;
      bool ok = true;
      for (int64_t c = 0; c < C && ok; ++c) {
        if (c == 4 || c == 5) continue;
        double tol = c < 4 ? 2e-3 + 1e-5 * std::fabs(wa[i][c]) : 2e-3 + 1e-4 * std::fabs(wa[i][c]);
        ok = std::fabs(ha[j][c] - wa[i][c]) <= tol;
      }
      if (ok) used[j] = found = true;
    }
    if (!found) (std::fabs(wa[i][4] - cutoff) <= 1e-5 ? boundary : unmatched)++;
  }
  EXPECT_MSG(unmatched == 0, rel << ": " << unmatched << " reference rows without a match (" << boundary
                                 << " more at the score cut-off)");
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("unfused parameter counts of every family and scale match the official YAML figures") {
  struct Row { const char* fam; int64_t n, s, m, l, x; };
  const Row rows[] = {
      {"yolo26%c.yaml", 2572280, 10009784, 21896248, 26299704, 58993368},
      {"yolo26%c-seg.yaml", 3126280, 11505800, 27112072, 31515528, 70693800},
      {"yolo26%c-pose.yaml", 3747554, 11870498, 24344482, 28747938, 62914350},
      {"yolo26%c-obb.yaml", 2715614, 10582142, 23593918, 27997374, 62811678},
      {"yolo26%c-cls.yaml", 2812104, 6724008, 11634216, 14115624, 29637064},
  };
  const char scales[] = "nsmlx";
  for (const auto& r : rows) {
    const int64_t want[] = {r.n, r.s, r.m, r.l, r.x};
    for (int i = 0; i < 5; ++i) {
      char name[64];
      std::snprintf(name, sizeof name, r.fam, scales[i]);
      auto m = build_model(name);
      EXPECT_MSG(m->num_params() == want[i], name << ": " << m->num_params() << " params, want " << want[i]);
    }
  }
}

TEST_CASE("fused deploy parameter counts") {
  struct Row { const char* name; int64_t unfused, fused; };
  const Row rows[] = {{"yolo26n.yaml", 2572280, 2408932},    {"yolo26s.yaml", 10009784, 9496140},
                      {"yolo26n-seg.yaml", 3126280, 2722980}, {"yolo26n-pose.yaml", 3747554, 2960395},
                      {"yolo26n-obb.yaml", 2715614, 2480503}};
  for (const auto& r : rows) {
    auto m = build_model(r.name);
    m->eval();
    m->fuse();
    EXPECT_MSG(m->num_params() == r.fused, r.name << " fused: " << m->num_params() << ", want " << r.fused);
  }
}

TEST_CASE("state_dict names, order and shapes equal the official yolo26n (nc=80), shapes (nc=3) and pose") {
  auto det = build_model("yolo26n.yaml");
  EXPECT(det->state_dict().size() == 708);
  expect_keys_match(*det, "det/yolo26n-coco-random.keys.json");
  auto shapes = build_model("yolo26n.yaml", 3);
  expect_keys_match(*shapes, "det/yolo26n-shapes.keys.json");
  EXPECT(shapes->num_params() == 2504970);
  auto pose = build_model("yolo26n-pose.yaml", 1);
  expect_keys_match(*pose, "pose/yolo26n-pose-random.keys.json");
  EXPECT(pose->num_params() == 3679464);
  pose->fuse();
  EXPECT(pose->num_params() == 2926494);
  shapes->fuse();
  EXPECT(shapes->num_params() == 2375421);
}


namespace {

// A fixture checkpoint, built from its own model YAML dict, in eval mode.
std::shared_ptr<YoloModel> fixture_model(const std::string& rel_pt) {
  auto m = build_model(load_checkpoint(y26test::fixture(rel_pt)), y26test::fixture(rel_pt));
  m->eval();
  return m;
}

void check_det_case(YoloModel& m, const std::string& dir, bool fused) {
  auto out = m.forward(load_input(dir));
  if (!fused) {
    expect_raw_close(out.one2one.boxes, dir + "/one2one_boxes_ltrb.npy");
    expect_raw_close(out.one2one.scores, dir + "/one2one_scores_logits.npy");
    expect_raw_close(out.one2many.boxes, dir + "/one2many_boxes_ltrb.npy");
    expect_raw_close(out.one2many.scores, dir + "/one2many_scores_logits.npy");
    expect_e2e_close(out.end2end, dir + "/end2end_unfused.npy");
  } else {
    EXPECT(!out.one2many.defined());
    expect_e2e_close(out.end2end, dir + "/end2end_fused.npy");
  }
}

}  // namespace

TEST_CASE("shapes model (nc=3): raw outputs and end2end match the official run at 320 and 640, unfused and fused") {
  auto m = fixture_model("det/yolo26n-shapes.pt");
  const char* dirs[] = {"det/shapes_outputs/s11_val_0000/imgsz320", "det/shapes_outputs/wide_480x300/imgsz320",
                        "det/shapes_outputs/wide_480x300/imgsz640"};
  for (const char* d : dirs) check_det_case(*m, d, false);
  // The one2one decode (xyxy px + sigmoid) and the anchors behind the e2e rows.
  auto out = m->forward(load_input(dirs[2]));
  auto want = load_npy(std::string(dirs[2]) + "/one2one_decoded.npy");
  EXPECT_MSG(((out.decoded - want).abs() - (2e-3 + 1e-5 * want.abs())).max().item<double>() <= 0,
             "one2one_decoded differs by " << (out.decoded - want).abs().max().item<double>());
  auto idx = load_npy(std::string(dirs[2]) + "/topk_anchor_index.npy");
  EXPECT(out.end2end_anchor.sizes() == idx.sizes());
  EXPECT(out.end2end_anchor.slice(1, 0, 20).equal(idx.slice(1, 0, 20)));
  // Classic (non-e2e) output: xywh from one2many + sigmoid scores.
  EXPECT(out.classic.sizes() == torch::IntArrayRef({1, 7, 5460}));
  if (torch::cuda::is_available()) {
    // Same checks on the GPU, with TF32 off as the fixture tolerances require.
    at::globalContext().setAllowTF32CuBLAS(false);
    at::globalContext().setAllowTF32CuDNN(false);
    auto g = fixture_model("det/yolo26n-shapes.pt");
    g->to(torch::kCUDA);
    for (const char* d : dirs) {
      auto o = g->forward(load_input(d).to(torch::kCUDA));
      expect_raw_close(o.one2one.scores.cpu(), std::string(d) + "/one2one_scores_logits.npy");
      expect_raw_close(o.one2many.boxes.cpu(), std::string(d) + "/one2many_boxes_ltrb.npy");
      expect_e2e_close(o.end2end.cpu(), std::string(d) + "/end2end_unfused.npy");
    }
  }
  m->fuse();
  for (const char* d : dirs) check_det_case(*m, d, true);
}

TEST_CASE("coco-random model (nc=80) at 640: raw tensors strict, end2end as a set") {
  auto m = fixture_model("det/yolo26n-coco-random.pt");
  const std::string dir = "det/coco_random_outputs/wide_480x300/imgsz640";
  auto out = m->forward(load_input("det/shapes_outputs/wide_480x300/imgsz640"));
  expect_raw_close(out.one2one.boxes, dir + "/one2one_boxes_ltrb.npy");
  expect_raw_close(out.one2one.scores, dir + "/one2one_scores_logits.npy");
  expect_raw_close(out.one2many.boxes, dir + "/one2many_boxes_ltrb.npy");
  expect_raw_close(out.one2many.scores, dir + "/one2many_scores_logits.npy");
  expect_e2e_close(out.end2end, dir + "/end2end_unfused.npy");
  m->fuse();
  expect_e2e_close(m->forward(load_input("det/shapes_outputs/wide_480x300/imgsz640")).end2end, dir + "/end2end_fused.npy");
}

TEST_CASE("pose-random model: raw boxes, logits, keypoints and the (1,300,57) end2end output") {
  auto m = fixture_model("pose/yolo26n-pose-random.pt");
  const std::string dir = "pose/outputs/wide_480x300/imgsz640";
  auto x = load_input("det/shapes_outputs/wide_480x300/imgsz640");
  auto out = m->forward(x);
  expect_raw_close(out.one2one.boxes, dir + "/one2one_boxes_ltrb.npy");
  expect_raw_close(out.one2one.scores, dir + "/one2one_scores_logits.npy");
  expect_raw_close(out.one2one.kpts, dir + "/one2one_kpts_raw.npy");
  expect_raw_close(out.one2many.kpts, dir + "/one2many_kpts_raw.npy");
  expect_raw_close(out.one2many.scores, dir + "/one2many_scores_logits.npy");
  EXPECT(out.end2end.sizes() == torch::IntArrayRef({1, 300, 57}));
  expect_e2e_close(out.end2end, dir + "/end2end_unfused.npy");
  m->fuse();
  expect_e2e_close(m->forward(x).end2end, dir + "/end2end_fused.npy");
}

TEST_CASE("builtin names resolve to family files and scales; YOLO26_MODELS_DIR / set_models_dir override") {
  std::string scale;
  auto path = resolve_model_yaml("yolo26s-seg.yaml", &scale);
  EXPECT(contains(path, "/models/yolo26-seg.yaml"));
  EXPECT(scale == "s");
  auto cfg = load_model_config("yolo26x-pose.yaml");
  EXPECT(cfg.scale == "x" && cfg.task == "pose" && cfg.depth == 1.0 && cfg.width == 1.5 && cfg.max_channels == 512);
  EXPECT(cfg.kpt_shape == std::vector<int64_t>({17, 3}));
  EXPECT(cfg.end2end && cfg.reg_max == 1 && cfg.layers.size() == 24);
  EXPECT(load_model_config("yolo26m-cls.yaml").task == "classify");
  // The dict kept for checkpoints carries scale, yaml_file and channels like the official one.
  EXPECT(cfg.yaml["scale"].as<std::string>() == "x" && cfg.yaml["yaml_file"].as<std::string>() == "yolo26x-pose.yaml");
  EXPECT(cfg.yaml["channels"].as<int>() == 3 && cfg.yaml["backbone"].size() == 11);
  // A checkpoint-style dict (scale inside, args with None) round-trips into the same network.
  auto again = std::make_shared<YoloModel>(parse_model_config(YAML::Load(YAML::Dump(cfg.yaml)), "dumped"));
  EXPECT(again->config().scale == "x" && again->num_params() == 62914350);
  // A YAML without a scale letter takes the first listed scale, as the official tooling does.
  EXPECT(load_model_config(models_dir() + "/yolo26-obb.yaml").scale == "n");
  set_models_dir("/nonexistent");
  std::string err = error_of([] { load_model_config("yolo26n.yaml"); });
  EXPECT_MSG(contains(err, "/nonexistent/yolo26.yaml"), err);
  set_models_dir(y26::source_dir() + "/models");
  EXPECT(load_model_config("yolo26n.yaml").nc == 80);
}

TEST_CASE("bad model YAMLs fail with the file, line and layer named") {
  const std::string good = "nc: 2\nend2end: True\nreg_max: 1\nbackbone:\n  - [-1, 1, Conv, [16, 3, 2]]\n"
                           "  - [-1, 1, Conv, [32, 3, 2]]\nhead:\n  - [[0, 1], 1, Detect, [nc]]\n";
  auto m = build_model(write_temp("good.yaml", good));
  EXPECT(m->stride() == std::vector<double>({2.0, 4.0}));
  auto unknown = write_temp("unknown.yaml", "nc: 2\nbackbone:\n  - [-1, 1, Conv, [16, 3, 2]]\n  - [-1, 1, Foo, [32]]\nhead:\n  - [[0, 1], 1, Detect, [nc]]\n");
  std::string err = error_of([&] { load_model_config(unknown); });
  EXPECT_MSG(contains(err, unknown + ":4: layer 1") && contains(err, "unknown module 'Foo'"), err);
  auto bad_from = write_temp("from.yaml", "nc: 2\nbackbone:\n  - [-1, 1, Conv, [16, 3, 2]]\n  - [5, 1, Conv, [32]]\nhead:\n  - [[0, 1], 1, Detect, [nc]]\n");
  err = error_of([&] { load_model_config(bad_from); });
  EXPECT_MSG(contains(err, bad_from + ":4: layer 1") && contains(err, "bad 'from' index 5"), err);
  auto no_head = write_temp("nohead.yaml", "nc: 2\nbackbone:\n  - [-1, 1, Conv, [16, 3, 2]]\n");
  err = error_of([&] { load_model_config(no_head); });
  EXPECT_MSG(contains(err, no_head) && contains(err, "missing key 'head'"), err);
  auto bad_arg = write_temp("arg.yaml", "nc: 2\nreg_max: 1\nend2end: True\nbackbone:\n  - [-1, 1, Conv, [abc, 3, 2]]\nhead:\n  - [[0], 1, Detect, [nc]]\n");
  err = error_of([&] { build_model(bad_arg); });
  EXPECT_MSG(contains(err, bad_arg + ":5: layer 0 (Conv): argument 0"), err);
  err = error_of([] { load_model_config("yolo99n.yaml"); });
  EXPECT_MSG(contains(err, "yolo99.yaml") && contains(err, "YOLO26_MODELS_DIR"), err);
  auto bad_scale = write_temp("scale.yaml", "nc: 2\nscales:\n  n: [0.5, 0.25, 1024]\nbackbone:\n  - [-1, 1, Conv, [16, 3, 2]]\nhead:\n  - [[0], 1, Detect, [nc]]\n");
  err = error_of([&] { parse_model_config(YAML::LoadFile(bad_scale), bad_scale, "x"); });
  EXPECT_MSG(contains(err, "scale 'x'"), err);
}

TEST_CASE("loading weights of another task names the first mismatching key and the file") {
  auto ck = load_checkpoint(y26test::fixture("pose/yolo26n-pose-random.pt"));
  auto det = build_model("yolo26n.yaml", 1);
  std::string err = error_of([&] { det->load_state_dict(ck.state_dict, "pose.pt"); });
  EXPECT_MSG(contains(err, "pose.pt: ") && contains(err, "unexpected: model.23.cv4.0.0.conv.weight"), err);
  auto det80 = build_model("yolo26n.yaml");
  auto shapes = load_checkpoint(y26test::fixture("det/yolo26n-shapes.pt"));
  err = error_of([&] { det80->load_state_dict(shapes.state_dict, "shapes.pt"); });
  EXPECT_MSG(contains(err, "shapes.pt: ") &&
                 contains(err, "mismatches: model.23.cv3.0.0.1.conv.weight (checkpoint [64, 64, 1, 1], model [80, 64, 1, 1])"),
             err);
  StateDict partial(shapes.state_dict.begin(), shapes.state_dict.end() - 1);
  auto det3 = build_model("yolo26n.yaml", 3);
  err = error_of([&] { det3->load_state_dict(partial, "cut.pt"); });
  EXPECT_MSG(contains(err, "cut.pt: ") && contains(err, "1 missing: " + shapes.state_dict.back().first), err);
  det3->fuse();
  err = error_of([&] { det3->load_state_dict(shapes.state_dict, "late.pt"); });
  EXPECT_MSG(contains(err, "late.pt: load weights before fuse()"), err);
}

namespace {
// Gives BatchNorm non-trivial statistics so fused vs unfused comparisons mean something.
void randomize_bn(YoloModel& m, uint64_t seed) {
  torch::manual_seed(seed);
  torch::NoGradGuard ng;
  for (auto& mod : m.modules(true))
    if (auto* bn = dynamic_cast<torch::nn::BatchNorm2dImpl*>(mod.get())) {
      bn->weight.uniform_(0.5, 1.5);
      bn->bias.uniform_(-0.5, 0.5);
      bn->running_mean.uniform_(-0.2, 0.2);
      bn->running_var.uniform_(0.5, 2.0);
    }
}
}  // namespace

TEST_CASE("seg, obb and cls: output shapes, and fuse keeps the end2end output") {
  torch::manual_seed(0);
  auto x = torch::rand({1, 3, 320, 256});
  for (const char* name : {"yolo26n-seg.yaml", "yolo26n-obb.yaml"}) {
    auto m = build_model(name, 5);
    randomize_bn(*m, 1);
    m->eval();
    auto a = m->forward(x);
    const int64_t A = 40 * 32 + 20 * 16 + 10 * 8;
    EXPECT(a.one2one.scores.sizes() == torch::IntArrayRef({1, 5, A}));
    if (m->task() == "segment") {
      EXPECT(a.end2end.sizes() == torch::IntArrayRef({1, 300, 38}));
      EXPECT(a.proto.sizes() == torch::IntArrayRef({1, 32, 80, 64}));
      EXPECT(!a.semseg.defined());
    } else {
      EXPECT(a.end2end.sizes() == torch::IntArrayRef({1, 300, 7}));
      EXPECT(a.one2one.angle.sizes() == torch::IntArrayRef({1, 1, A}));
    }
    EXPECT(a.classic.size(1) == 4 + 5 + (m->task() == "segment" ? 32 : 1));
    m->fuse();
    auto b = m->forward(x);
    EXPECT(!b.one2many.defined() && !b.classic.defined());
    // Raw one2one outputs agree; the e2e rows of a random model tie too often to compare row by row.
    auto diff = [](const torch::Tensor& p, const torch::Tensor& q) { return (p - q).abs().max().item<double>(); };
    EXPECT_MSG(diff(a.one2one.scores, b.one2one.scores) < 1e-3, name << " fused logits differ");
    EXPECT_MSG(diff(a.one2one.boxes, b.one2one.boxes) < 1e-3, name << " fused boxes differ");
    EXPECT_MSG(diff(a.decoded, b.decoded) < 1e-2, name << " fused decode differs by " << diff(a.decoded, b.decoded));
    auto sa = std::get<0>(a.end2end.select(2, 4).sort(1, true)), sb = std::get<0>(b.end2end.select(2, 4).sort(1, true));
    EXPECT_MSG(diff(sa, sb) < 1e-5, name << " fused e2e scores differ");
    if (a.proto.defined()) EXPECT((a.proto - b.proto).abs().max().item<double>() < 1e-3);
  }
  auto cls = build_model("yolo26n-cls.yaml", 7);
  cls->eval();
  auto c = cls->forward(torch::rand({2, 3, 224, 224}));
  EXPECT(c.cls_logits.sizes() == torch::IntArrayRef({2, 7}));
  EXPECT_NEAR(c.cls_probs.sum(1)[0].item<double>(), 1.0, 1e-5);
}

TEST_CASE("training mode: BN batch statistics, detached one2one, seg semseg and pose sigma outputs") {
  auto m = build_model("yolo26n.yaml", 3);
  m->train();
  torch::manual_seed(0);
  auto x = torch::rand({2, 3, 128, 128});
  auto bn0 = std::dynamic_pointer_cast<Conv>(m->named_modules()["model.0"])->bn;
  auto before = bn0->running_mean.clone();
  auto out = m->forward(x);
  EXPECT(!out.end2end.defined() && !out.decoded.defined());
  EXPECT(!bn0->running_mean.equal(before));  // momentum 0.03 update from the batch
  EXPECT(bn0->num_batches_tracked.item<int64_t>() == 1);
  // The one2one loss must not reach the backbone.
  out.one2one.scores.sum().backward();
  auto w0 = std::dynamic_pointer_cast<Conv>(m->named_modules()["model.0"])->conv->weight;
  EXPECT(!w0.grad().defined() || w0.grad().abs().sum().item<double>() == 0);
  out = m->forward(x);
  out.one2many.scores.sum().backward();
  EXPECT(w0.grad().defined() && w0.grad().abs().sum().item<double>() > 0);

  auto seg = build_model("yolo26n-seg.yaml", 4);
  auto so = seg->forward(x);
  EXPECT(so.semseg.sizes() == torch::IntArrayRef({2, 4, 16, 16}));
  EXPECT(so.one2many.mask_coef.sizes() == torch::IntArrayRef({2, 32, 16 * 16 + 8 * 8 + 4 * 4}));
  auto pose = build_model("yolo26n-pose.yaml", 1);
  auto po = pose->forward(x);
  EXPECT(po.one2many.kpts_sigma.sizes() == torch::IntArrayRef({2, 34, 336}));
  EXPECT(po.one2one.kpts.sizes() == torch::IntArrayRef({2, 51, 336}));
  // RealNVP log-density of the origin: standard normal log-prob plus a near-zero log-det.
  auto flow = std::dynamic_pointer_cast<DetectHead>(pose->named_modules()["model.23"])->flow_model;
  auto lp = flow->log_prob(torch::zeros({1, 2}));
  EXPECT_NEAR(lp.item<double>(), -std::log(2 * M_PI), 0.05);
}

TEST_CASE("GFLOPs, layer counts and the info() summary") {
  auto m = build_model("yolo26n.yaml");
  double g = m->gflops(640);
  EXPECT_MSG(g > 5.6 && g < 6.6, "yolo26n unfused GFLOPs " << g << " (official 6.1)");
  EXPECT(m->is_training());  // gflops() restores the mode
  // Same count as len(list(model.modules())) of the official model (fixtures' keys.json).
  EXPECT_MSG(m->num_layers() == 454, "layers " << m->num_layers());
  auto pose = build_model("yolo26n-pose.yaml", 1);
  EXPECT_MSG(pose->num_layers() == 596, "pose layers " << pose->num_layers());
  pose->fuse();
  EXPECT_MSG(pose->num_layers() == 305, "pose fused layers " << pose->num_layers());
  auto text = m->info();
  EXPECT_MSG(contains(text, "YOLO26n summary: ") && contains(text, "2,572,280 parameters"), text);
  m->fuse();
  double gf = m->gflops(640);
  EXPECT_MSG(gf > 5.0 && gf < 5.8, "yolo26n fused GFLOPs " << gf << " (official 5.4)");
  EXPECT(contains(m->info(), "YOLO26n summary (fused)"));
  EXPECT_MSG(m->num_layers() == 284, "fused layers " << m->num_layers());
  auto verbose = build_model("yolo26n-seg.yaml")->info(true, 320);
  EXPECT_MSG(contains(verbose, "Segment26") && contains(verbose, "C2PSA"), verbose);
}

TEST_CASE("p2 and p6 variants: four levels with strides 4..32 and 8..64") {
  auto p2 = build_model("yolo26n-p2.yaml", 2);
  EXPECT(p2->stride() == std::vector<double>({4, 8, 16, 32}));
  auto p6 = build_model("yolo26s-p6.yaml", 2);
  EXPECT(p6->stride() == std::vector<double>({8, 16, 32, 64}));
  for (auto* m : {p2.get(), p6.get()}) {
    m->eval();
    auto out = m->forward(torch::rand({1, 3, 128, 128}));
    int64_t A = 0;
    for (double s : m->stride()) A += (int64_t)(128 / s) * (int64_t)(128 / s);
    EXPECT(out.one2one.scores.sizes() == torch::IntArrayRef({1, 2, A}));
    EXPECT(out.end2end.sizes() == torch::IntArrayRef({1, std::min<int64_t>(300, A), 6}));
  }
}

TEST_CASE("clone_model gives an independent copy with the same outputs") {
  auto m = build_model("yolo26n.yaml", 3);
  randomize_bn(*m, 3);
  m->eval();
  auto c = m->clone_model();
  EXPECT(!c->is_training() && c->num_params() == m->num_params());
  auto x = torch::rand({1, 3, 128, 160});
  auto a = m->forward(x), b = c->forward(x);
  EXPECT(a.one2one.scores.equal(b.one2one.scores) && a.one2many.boxes.equal(b.one2many.boxes));
  {
    torch::NoGradGuard ng;
    c->state_dict().front().second.add_(1.0);  // the copy owns its storage
  }
  EXPECT(!m->state_dict().front().second.equal(c->state_dict().front().second));
  m->fuse();
  auto f = m->clone_model();
  EXPECT(f->is_fused() && f->num_params() == m->num_params());
  EXPECT((f->forward(x).end2end - m->forward(x).end2end).abs().max().item<double>() == 0);
}

TEST_CASE("postprocess: rotated-box decode and the two-stage top-k (an anchor may appear with two classes)") {
  auto grid = anchor_grid({{2, 1}}, {8.0}, torch::kCPU, torch::kFloat32);  // anchors (0.5,0.5), (0.5,1.5)
  EXPECT(grid.points.sizes() == torch::IntArrayRef({1, 2, 2}));
  auto ltrb = torch::tensor({1.f, 0.f, 1.f, 0.f, 3.f, 0.f, 1.f, 0.f}).view({1, 4, 2});
  auto angle = torch::tensor({(float)M_PI / 2, 0.f}).view({1, 1, 2});
  auto rb = decode_rboxes(ltrb, angle, grid);
  // half-extent ((r-l)/2, (b-t)/2) = (1, 0) turned by 90 degrees -> (0, 1); size (l+r, t+b) = (4, 2); x stride 8.
  EXPECT_NEAR(rb[0][0][0].item<double>(), 4.0, 1e-5);
  EXPECT_NEAR(rb[0][1][0].item<double>(), 12.0, 1e-5);
  EXPECT_NEAR(rb[0][2][0].item<double>(), 32.0, 1e-5);
  EXPECT_NEAR(rb[0][3][0].item<double>(), 16.0, 1e-5);
  auto kp = decode_kpts(torch::tensor({0.25f, -0.5f, 0.f, 0.f, 0.f, 2.f}).view({1, 3, 2}), grid, 3);
  EXPECT_NEAR(kp[0][0][0].item<double>(), (0.25 + 0.5) * 8, 1e-5);   // x of anchor 0
  EXPECT_NEAR(kp[0][1][1].item<double>(), (0.0 + 1.5) * 8, 1e-5);    // y of anchor 1
  EXPECT_NEAR(kp[0][2][1].item<double>(), 1 / (1 + std::exp(-2.0)), 1e-6);

  // decoded (1, 4 + 2, 3): boxes = anchor index, scores per class.
  auto dec = torch::zeros({1, 6, 3});
  for (int a = 0; a < 3; ++a) dec[0].narrow(0, 0, 4).select(1, a).fill_(a);
  dec[0][4] = torch::tensor({0.9f, 0.1f, 0.85f});
  dec[0][5] = torch::tensor({0.8f, 0.2f, 0.05f});
  torch::Tensor anchor;
  auto y = topk_end2end(dec, 2, 3, &anchor)[0];
  EXPECT(y.sizes() == torch::IntArrayRef({3, 6}));
  EXPECT(anchor[0].equal(torch::tensor({0L, 2L, 0L})));
  EXPECT_NEAR(y[0][4].item<double>(), 0.9, 1e-7);
  EXPECT(y[0][5].item<float>() == 0 && y[1][5].item<float>() == 0 && y[2][5].item<float>() == 1);
  EXPECT(y[2][0].item<float>() == 0 && y[1][0].item<float>() == 2);  // boxes follow their anchors
  auto y2 = topk_end2end(dec, 2, 2)[0];
  EXPECT(y2.size(0) == 2 && y2[1][4].item<float>() == 0.85f);
}

TEST_CASE("channels-last training BatchNorm equals the contiguous kernel: output, running stats, gradients") {
  torch::manual_seed(3);
  // Activations whose mean is several times their spread: where a float one-pass variance loses digits.
  auto x0 = torch::randn({8, 24, 64, 48}) * 2 + 10;
  auto gy = torch::randn_like(x0);
  torch::nn::BatchNorm2d ref(torch::nn::BatchNorm2dOptions(24).eps(1e-3).momentum(0.03)), ours(ref->options);
  {
    torch::NoGradGuard ng;
    ref->weight.uniform_(0.5, 1.5);
    ref->bias.normal_();
    ours->weight.copy_(ref->weight);
    ours->bias.copy_(ref->bias);
  }
  auto xr = x0.clone().requires_grad_();
  auto xo = x0.contiguous(torch::MemoryFormat::ChannelsLast).requires_grad_();
  EXPECT(!nhwc_batch_norm_applies(xr, *ours));  // contiguous input: the stock kernel
  EXPECT(nhwc_batch_norm_applies(xo, *ours));
  auto yr = ref->forward(xr);
  auto yo = batch_norm_nhwc_train(xo, *ours);
  EXPECT(yo.is_contiguous(torch::MemoryFormat::ChannelsLast));
  EXPECT_NEAR((yo - yr).abs().max().item<double>(), 0.0, 5e-6);
  EXPECT_NEAR((ours->running_mean - ref->running_mean).abs().max().item<double>(), 0.0, 1e-6);
  EXPECT_NEAR((ours->running_var - ref->running_var).abs().max().item<double>(), 0.0, 1e-6);
  EXPECT_MSG(ours->running_var.sub(1).abs().max().item<double>() > 0.05, "running_var was not updated");
  EXPECT(ours->num_batches_tracked.item<int64_t>() == 1);
  yr.backward(gy);
  yo.backward(gy);
  for (auto [a, b, what] : {std::tuple{xo.grad(), xr.grad(), "x"}, {ours->weight.grad(), ref->weight.grad(), "weight"},
                            {ours->bias.grad(), ref->bias.grad(), "bias"}}) {
    const double scale = b.abs().max().item<double>();
    EXPECT_MSG((a - b).abs().max().item<double>() <= 1e-5 * scale, what << " gradient differs");
  }
  ours->eval();
  EXPECT(!nhwc_batch_norm_applies(xo, *ours));  // eval mode uses running stats: the stock kernel
}

TEST_MAIN()
