// The predictor both backends share (infer/predictor): predict args under the official names, the libtorch plan
// (fuse and end2end policy, segment prototypes fed to the masks), the ONNX metadata rules, and saving.
#include <opencv2/core.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "export/onnx_export.h"
#include "infer/ort_runtime.h"
#include "infer/predictor.h"
#include "infer/segments.h"
#include "model/loader.h"
#include "model/yolo.h"
#include "scratch.h"
#include "testing.h"
#include "util/error.h"
#include "util/source_dir.h"

namespace fs = std::filesystem;

namespace {

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// Metadata of an exported detect file: output0 (1,300,6) end2end rows unless classic.
y26::OnnxMetadata detect_metadata(int64_t h, int64_t w, bool classic = false) {
  y26::OnnxMetadata md;
  md.task = "detect";
  md.names = {"a", "b", "c"};
  md.stride = 32;
  md.inputs = {{"images", 1, {1, 3, h, w}}};
  md.outputs = {{"output0", 1, classic ? std::vector<int64_t>{1, 7, 2100} : std::vector<int64_t>{1, 300, 6}}};
  return md;
}

cv::Mat noise_image(int h, int w) {
  cv::Mat im(h, w, CV_8UC3);
  cv::randu(im, 0, 255);
  return im;
}

// The ONNX Runtime library onnxruntime-node ships (a devDependency), or $YOLO26_ORT_LIB.
std::string ort_library() {
  const std::string lib = y26::find_ort_library(y26::source_dir());
  if (lib.empty()) std::cerr << "no libonnxruntime.so under node_modules/onnxruntime-node: run npm ci (onnxruntime-node is a devDependency)\n";
  return lib;
}

}  // namespace

TEST_CASE("parse_predict_args: official names, imgsz as a number or [h, w], null keeps the default") {
  y26::PredictArgs d = y26::parse_predict_args(YAML::Node());
  EXPECT(d.imgsz_h == 640 && !d.imgsz_given && !d.end2end && d.conf == 0.25f && d.project == "runs");
  YAML::Node a = YAML::Load("{imgsz: [320, 256], conf: 0.1, max_det: 7, classes: [1, 2], end2end: false, save_txt: true, "
                            "name: '123', project: null, line_width: 3, vid_stride: 2}");
  y26::PredictArgs p = y26::parse_predict_args(a);
  EXPECT(p.imgsz_h == 320 && p.imgsz_w == 256 && p.imgsz_given);
  EXPECT(p.end2end.has_value() && !*p.end2end);
  EXPECT(p.max_det == 7 && p.classes == std::vector<int64_t>({1, 2}) && p.save_txt && p.name == "123");
  EXPECT(p.project == "runs" && p.line_width == 3 && p.vid_stride == 2);
  EXPECT(y26::parse_predict_args(YAML::Load("{imgsz: 96}")).imgsz_w == 96);
  std::string msg = message_of([] { y26::parse_predict_args(YAML::Load("{imgsz: {a: 1}}")); });
  EXPECT_MSG(contains(msg, "imgsz"), msg);
  msg = message_of([] { y26::parse_predict_args(YAML::Load("{max_det: [1, 2]}")); });
  EXPECT_MSG(contains(msg, "'max_det'"), msg);
}

TEST_CASE("plan_onnx: metadata to options; a fixed size wins over imgsz (warned); end2end contradictions fail") {
  y26::PredictArgs args;
  args.imgsz_h = args.imgsz_w = 640;
  args.imgsz_given = true;
  args.conf = 0.4f;
  y26::PredictPlan p = y26::plan_onnx(detect_metadata(320, 320), "m.onnx", &args);
  EXPECT(p.fixed_size && p.po.imgsz_h == 320 && !p.po.rect && p.fixed_batch == 1 && p.po.batch == 1);
  EXPECT(p.po.post.end2end && p.po.post.conf == 0.4f && p.names.size() == 3 && p.po.post.nc == 3);
  EXPECT_MSG(p.warnings.size() == 1 && contains(p.warnings[0], "fixed input of 320x320"), p.warnings.size());
  // Dynamic input: imgsz applies; output0 (1,7,2100) without the end2end key is the classic output.
  y26::PredictPlan d = y26::plan_onnx(detect_metadata(-1, -1, true), "c.onnx", &args);
  EXPECT(!d.fixed_size && d.po.imgsz_h == 640 && d.po.rect && !d.po.post.end2end && d.warnings.empty());
  args.end2end = true;
  std::string msg = message_of([&] { y26::plan_onnx(detect_metadata(-1, -1, true), "c.onnx", &args); });
  EXPECT_MSG(contains(msg, "c.onnx was exported with end2end=false"), msg);
  args.end2end.reset();
  args.half = true;
  EXPECT(contains(y26::plan_onnx(detect_metadata(-1, -1), "h.onnx", &args).warnings.at(0), "half is fixed by h.onnx"));
  // Without args: the file alone (what onnxInfo reports).
  EXPECT(y26::plan_onnx(detect_metadata(320, 320), "m.onnx").warnings.empty());
  y26::OnnxMetadata bare = detect_metadata(320, 320);
  bare.names.clear();
  msg = message_of([&] { y26::plan_onnx(bare, "bare.onnx", &args); });
  EXPECT_MSG(contains(msg, "bare.onnx has no YOLO metadata"), msg);
  y26::OnnxMetadata seg = detect_metadata(320, 320);
  seg.task = "segment";
  msg = message_of([&] { y26::plan_onnx(seg, "seg.onnx", &args); });
  EXPECT_MSG(contains(msg, "without its mask prototypes"), msg);
}

TEST_CASE("plan_torch: end2end as the model has it, fused; end2end=false after fuse fails; classify has no end2end") {
  auto lm = y26::load_model("yolo26n.yaml", "cpu", 3);
  y26::PredictArgs args;
  args.imgsz_h = args.imgsz_w = 64;
  auto mu = std::make_shared<std::mutex>();
  y26::PredictPlan p = y26::plan_torch(lm, "cpu", args, mu);
  EXPECT(p.po.post.end2end && lm.model->is_fused() && p.po.post.task == y26::Task::Detect && p.po.imgsz_h == 64);
  EXPECT(p.forward && p.names.size() == 3 && p.po.stride == 32);
  args.end2end = false;
  std::string msg = message_of([&] { y26::plan_torch(lm, "cpu", args, mu); });
  EXPECT_MSG(contains(msg, "fuse() removed"), msg);
  // A fresh model with end2end=false keeps the one-to-many head for NMS.
  auto classic = y26::load_model("yolo26n.yaml", "cpu", 3);
  y26::PredictPlan c = y26::plan_torch(classic, "cpu", args, mu);
  EXPECT(!c.po.post.end2end && !classic.model->is_fused());
  auto cls = y26::load_model("yolo26n-cls.yaml", "cpu", 4);
  args.end2end.reset();
  y26::PredictPlan k = y26::plan_torch(cls, "cpu", args, mu);
  EXPECT(k.po.post.task == y26::Task::Classify && !k.po.post.end2end && cls.model->is_fused());
}

TEST_CASE("Predictor: a segment model's prototypes reach the masks; save_txt writes outlines; names and save dir") {
  // Most instances of a random segment model have empty masks (dropped): the first of a few seeded models that keeps
  // some on this image.
  y26::PredictArgs args = y26::parse_predict_args(YAML::Load("{imgsz: 64, conf: 0.000001, save_txt: true, exist_ok: true}"));
  args.project = y26test::scratch_dir("test_predictor", "runs");
  std::unique_ptr<y26::Predictor> kept;
  y26::Result r;
  for (int seed = 0; seed < 8 && !kept; ++seed) {
    torch::manual_seed(seed);
    auto lm = y26::load_model("yolo26n-seg.yaml", "cpu", 2);
    y26::calibrate_batchnorm(*lm.model, torch::rand({2, 3, 64, 64}));  // else every output is the head bias
    y26::PredictPlan plan = y26::plan_torch(lm, "cpu", args, std::make_shared<std::mutex>());
    auto pred = std::make_unique<y26::Predictor>(y26::open_mat_source({noise_image(48, 80)}, "noise"), std::move(plan), args);
    EXPECT(pred->next(r));
    EXPECT_MSG(r.error.empty(), r.error);
    if (r.size() > 0) kept = std::move(pred);
  }
  EXPECT_MSG(kept, "no seeded segment model kept an instance");
  if (!kept) return;
  y26::Predictor& pred = *kept;
  EXPECT(pred.names().size() == 2 && contains(pred.save_dir(), "segment"));
  EXPECT(r.masks.defined() && r.masks.sizes() == torch::IntArrayRef({static_cast<int64_t>(r.size()), 48, 80}));
  EXPECT(!pred.next(r));
  pred.close();
  // One label line per outline of 3 or more points, each "cls x y x y ...".
  size_t polygons = 0;
  for (const auto& poly : y26::mask_polygons(r.masks)) polygons += poly.size(0) >= 3;
  std::ifstream txt(fs::path(pred.save_dir()) / "labels" / "noise_0.txt");  // "noise:0" made a file name
  std::string line;
  size_t lines = 0;
  while (std::getline(txt, line)) {
    ++lines;
    EXPECT_MSG(line.rfind("0 ", 0) == 0 || line.rfind("1 ", 0) == 0, line);
  }
  EXPECT_MSG(lines == polygons, lines << " label lines for " << polygons << " outlines");
}

TEST_CASE("OrtModel: the C API forward in the pipeline gives the libtorch detections; a missing library is named") {
  const std::string missing = "/nonexistent/libonnxruntime.so.1";
  const std::string why = message_of([&] { y26::OrtModel(missing, "x.onnx"); });
  EXPECT_MSG(contains(why, "cannot load the ONNX Runtime library " + missing) && contains(why, "YOLO26_ORT_LIB"), why);

  const std::string lib = ort_library();
  EXPECT(!lib.empty());
  if (lib.empty()) return;
  EXPECT(!y26::ort_library_version(lib).empty());
  const std::string pt = y26test::fixture("det/yolo26n-shapes.pt");
  const std::string onnx = y26test::scratch_dir("test_predictor", "ort") + "/shapes-dyn.onnx";
  y26::ExportOptions eo;
  eo.imgsz_h = eo.imgsz_w = 320;
  eo.dynamic = true;
  y26::export_model(pt, eo, onnx);
  auto model = std::make_shared<y26::OrtModel>(lib, onnx, 1);
  EXPECT(model->input_names().size() == 1 && !model->half_input() && model->output_names().size() == 1);
  const std::string bad = message_of([&] { y26::OrtModel(lib, pt); });  // a checkpoint is no ONNX file
  EXPECT_MSG(contains(bad, "cannot open " + pt), bad);

  const y26::PredictArgs args = y26::parse_predict_args(YAML::Load("{imgsz: 320, conf: 0.05, batch: 2}"));
  const std::vector<std::string> images = {y26test::fixture("images/val/s11_val_0000.png"), y26test::fixture("images/extra/wide_480x300.png"),
                                           y26test::fixture("images/val/s11_val_0001.png")};
  auto run = [&](y26::PredictPlan plan) {
    y26::Predictor pred(y26::open_path_list_source(images, {}), std::move(plan), args);
    std::vector<y26::Result> out;
    y26::Result r;
    while (pred.next(r)) out.push_back(r);
    return out;
  };
  y26::PredictPlan ort_plan = y26::plan_onnx(y26::read_onnx_metadata(onnx), onnx, &args);
  y26::use_ort_model(ort_plan, model);
  const auto got = run(std::move(ort_plan));
  const auto ref = run(y26::plan_torch(y26::load_model(pt, "cpu"), "cpu", args, std::make_shared<std::mutex>()));
  EXPECT(got.size() == images.size() && ref.size() == images.size());
  // Every libtorch row has a partner among the ONNX Runtime rows (near-tied scores may swap places).
  size_t compared = 0;
  for (size_t i = 0; i < std::min(got.size(), ref.size()); ++i) {
    const auto& a = got[i];
    const auto& b = ref[i];
    EXPECT_MSG(a.size() == b.size(), images[i] << ": " << a.size() << " vs " << b.size());
    if (a.size() != b.size()) continue;
    compared += b.size();
    std::vector<bool> used(a.size(), false);
    for (int64_t k = 0; k < (int64_t)b.size(); ++k) {
      bool found = false;
      for (int64_t j = 0; j < (int64_t)a.size() && !found; ++j) {
        if (used[j] || a.cls[j].item<float>() != b.cls[k].item<float>()) continue;
        if (std::abs(a.conf[j].item<float>() - b.conf[k].item<float>()) > 1e-4f) continue;
        if ((a.boxes[j] - b.boxes[k]).abs().max().item<float>() > 2e-2f) continue;
        used[j] = found = true;
      }
      EXPECT_MSG(found, images[i] << ": row " << k << " has no partner");
    }
  }
  EXPECT_MSG(compared >= 3, compared << " detections compared");
}

TEST_MAIN()
