// Inference pipeline: letterbox parity, postprocess vs the official predict() results, NMS, sources, the
// streaming pipeline, annotate and save.
#include <yaml-cpp/yaml.h>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "infer/letterbox.h"
#include "infer/postprocess.h"
#include "infer/preprocess.h"
#include "infer/source.h"
#include "testing.h"
#include "util/npy.h"

namespace fs = std::filesystem;
using torch::indexing::Slice;

namespace {

const char* kOutputs = "det/shapes_outputs/";

std::string image_path(const std::string& name) {
  return y26test::fixture(name.rfind("wide", 0) == 0 ? "images/extra/" + name + ".png" : "images/val/" + name + ".png");
}

torch::Tensor npy_tensor(const std::string& rel) {
  y26::NpyArray a = y26::read_npy(y26test::fixture(rel));
  if (a.dtype == "u1")
    return torch::from_blob(a.bytes.data(), a.shape, torch::kUInt8).clone();
  std::vector<float> v = a.as_float();
  return torch::from_blob(v.data(), a.shape, torch::kFloat32).clone();
}

// A fresh, empty scratch folder under /tmp for one test.
fs::path scratch(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("y26_infer_" + name);
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

y26::Letterboxed letterbox_png(const std::string& name, int imgsz) {
  cv::Mat im = cv::imread(image_path(name), cv::IMREAD_COLOR);
  y26::LetterboxOptions lo;
  lo.height = lo.width = imgsz;
  lo.auto_pad = true;
  return y26::letterbox(im, lo);
}

}  // namespace

// ---- letterbox -------------------------------------------------------------------------------------------------

TEST_CASE("letterbox + preprocess reproduce input_u8 bit-exactly") {
  const std::vector<std::pair<std::string, int>> cases = {
      {"s11_val_0000", 320}, {"s11_val_0001", 320}, {"wide_480x300", 320}, {"wide_480x300", 640}};
  for (const auto& [name, size] : cases) {
    y26::Letterboxed lb = letterbox_png(name, size);
    torch::Tensor got = y26::images_to_uint8_batch({lb.image});
    torch::Tensor want = npy_tensor(std::string(kOutputs) + name + "/imgsz" + std::to_string(size) + "/input_u8.npy");
    EXPECT_MSG(got.sizes() == want.sizes(), name << "@" << size << ": shape " << got.sizes() << " vs " << want.sizes());
    if (got.sizes() == want.sizes())
      EXPECT_MSG(torch::equal(got, want), name << "@" << size << ": " << got.ne(want).sum().item<int64_t>() << " bytes differ");
  }
}

TEST_CASE("letterbox at 640 matches the stored checksum of s11_val_0000 and the ratio/pad in meta.json") {
  for (const auto& [name, size] : std::vector<std::pair<std::string, int>>{{"s11_val_0000", 640}, {"wide_480x300", 320}, {"wide_480x300", 640}}) {
    YAML::Node meta = YAML::LoadFile(y26test::fixture(std::string(kOutputs) + name + "/imgsz" + std::to_string(size) + "/meta.json"));
    y26::Letterboxed lb = letterbox_png(name, size);
    torch::Tensor x = y26::preprocess_batch({lb.image}, torch::kCPU);
    EXPECT(x.scalar_type() == torch::kFloat32);
    EXPECT(x.size(2) == meta["input_shape"][2].as<int>() && x.size(3) == meta["input_shape"][3].as<int>());
    EXPECT_NEAR(x.to(torch::kFloat64).sum().item<double>(), meta["input_checksum"]["sum_f64"].as<double>(), 1e-6);
    for (int c = 0; c < 3; ++c)
      EXPECT_NEAR(x[0][c].to(torch::kFloat64).mean().item<double>(), meta["input_checksum"]["mean_per_channel_rgb"][c].as<double>(), 1e-12);
    EXPECT_NEAR(lb.ratio_pad.gain_x, meta["letterbox"]["ratio"].as<double>(), 1e-15);
    EXPECT_NEAR(lb.ratio_pad.pad_y, meta["letterbox"]["pad_top"].as<double>(), 0);
    EXPECT_NEAR(lb.ratio_pad.pad_x, meta["letterbox"]["pad_left"].as<double>(), 0);
  }
}

TEST_CASE("letterbox fixed size, scaleup=false and odd padding") {
  cv::Mat im(300, 480, CV_8UC3, cv::Scalar(10, 20, 30));
  y26::LetterboxOptions lo;
  lo.height = lo.width = 320;
  lo.auto_pad = false;
  y26::Letterboxed lb = y26::letterbox(im, lo);
  EXPECT(lb.image.rows == 320 && lb.image.cols == 320);
  EXPECT_NEAR(lb.ratio_pad.pad_y, 60, 0);  // (320-200)/2
  EXPECT(lb.image.at<cv::Vec3b>(0, 0) == cv::Vec3b(114, 114, 114));
  EXPECT(lb.image.at<cv::Vec3b>(160, 160) == cv::Vec3b(10, 20, 30));
  // Odd padding: 5 px splits 2 top / 3 bottom (dh=2.5 -> round(2.4)=2, round(2.6)=3).
  cv::Mat odd(315, 320, CV_8UC3, cv::Scalar(1, 2, 3));
  lb = y26::letterbox(odd, lo);
  EXPECT(lb.image.rows == 320);
  EXPECT_NEAR(lb.ratio_pad.pad_y, 2, 0);
  EXPECT(lb.image.at<cv::Vec3b>(1, 5) == cv::Vec3b(114, 114, 114));
  EXPECT(lb.image.at<cv::Vec3b>(2, 5) == cv::Vec3b(1, 2, 3));
  EXPECT(lb.image.at<cv::Vec3b>(316, 5) == cv::Vec3b(1, 2, 3));
  EXPECT(lb.image.at<cv::Vec3b>(317, 5) == cv::Vec3b(114, 114, 114));
  // scaleup=false keeps a small image at its size and centres it.
  cv::Mat small(100, 50, CV_8UC3, cv::Scalar(7, 7, 7));
  lo.scaleup = false;
  lb = y26::letterbox(small, lo);
  EXPECT_NEAR(lb.ratio_pad.gain_x, 1.0, 0);
  EXPECT_NEAR(lb.ratio_pad.pad_x, 135, 0);
  EXPECT_NEAR(lb.ratio_pad.pad_y, 110, 0);
  EXPECT_THROWS(y26::letterbox(cv::Mat(), lo));
}

TEST_CASE("scale_boxes and scale_coords invert the letterbox and clip") {
  y26::RatioPad rp{0.5, 0.5, 10, 20};
  torch::Tensor b = torch::tensor({{10.f, 20.f, 60.f, 70.f}, {0.f, 0.f, 500.f, 500.f}});
  torch::Tensor o = y26::scale_boxes(b, rp, 200, 300);
  EXPECT_NEAR(o[0][0].item<float>(), 0, 1e-6);
  EXPECT_NEAR(o[0][2].item<float>(), 100, 1e-6);
  EXPECT_NEAR(o[0][3].item<float>(), 100, 1e-6);
  EXPECT_NEAR(o[1][2].item<float>(), 300, 0);  // clipped to width
  EXPECT_NEAR(o[1][3].item<float>(), 200, 0);  // clipped to height
  torch::Tensor k = torch::tensor({{{30.f, 40.f, 0.9f}, {1000.f, -5.f, 0.1f}}});
  torch::Tensor ko = y26::scale_coords(k, rp, 200, 300);
  EXPECT_NEAR(ko[0][0][0].item<float>(), 40, 1e-6);
  EXPECT_NEAR(ko[0][0][1].item<float>(), 40, 1e-6);
  EXPECT_NEAR(ko[0][0][2].item<float>(), 0.9, 1e-7);
  EXPECT_NEAR(ko[0][1][0].item<float>(), 300, 0);
  EXPECT_NEAR(ko[0][1][1].item<float>(), 0, 0);
  y26::RatioPad from_shapes = y26::ratio_pad_from_shapes(224, 320, 300, 480);
  EXPECT_NEAR(from_shapes.gain_x, 320.0 / 480.0, 1e-15);
  EXPECT_NEAR(from_shapes.pad_y, 12, 0);
  EXPECT_NEAR(from_shapes.pad_x, 0, 0);
}

// ---- postprocess vs official predict() -------------------------------------------------------------------------

TEST_CASE("end2end postprocess reproduces predict() results in original pixels") {
  int checked = 0;
  for (const auto& [name, size] : std::vector<std::pair<std::string, int>>{
           {"s11_val_0000", 320}, {"s11_val_0000", 640}, {"wide_480x300", 320}, {"wide_480x300", 640}}) {
    const std::string dir = std::string(kOutputs) + name + "/imgsz" + std::to_string(size) + "/";
    YAML::Node meta = YAML::LoadFile(y26test::fixture(dir + "meta.json"));
    torch::Tensor e2e = npy_tensor(dir + "end2end_fused.npy");
    y26::Letterboxed lb = letterbox_png(name, size);
    lb.image.release();
    for (const std::string conf : {"0.25", "0.001"}) {
      y26::PostprocessOptions po;
      po.conf = std::stof(conf);
      y26::Result r = y26::postprocess(e2e, {lb}, po).at(0);
      YAML::Node want = meta["predict_results_original_coords"]["conf_" + conf];
      const size_t n = want["conf"].size();
      EXPECT_MSG(r.size() == n, name << "@" << size << " conf " << conf << ": " << r.size() << " detections vs " << n);
      EXPECT(r.orig_h == meta["orig_shape_hw"][0].as<int>() && r.orig_w == meta["orig_shape_hw"][1].as<int>());
      if (r.size() != n) continue;
      double worst = 0;
      for (size_t i = 0; i < n; ++i) {
        EXPECT_NEAR(r.conf[i].item<float>(), static_cast<float>(want["conf"][i].as<double>()), 1e-7);
        EXPECT(r.cls[i].item<int64_t>() == want["cls"][i].as<int64_t>());
        for (int j = 0; j < 4; ++j)
          worst = std::max(worst, std::fabs(r.boxes[i][j].item<double>() - static_cast<float>(want["xyxy"][i][j].as<double>())));
      }
      EXPECT_MSG(worst <= 2e-3, name << "@" << size << " conf " << conf << ": box error " << worst << " px");
      checked += n;
    }
  }
  EXPECT_MSG(checked > 800, "only " << checked << " detections compared");
}

TEST_CASE("end2end postprocess: class filter and max_det") {
  torch::Tensor e2e = npy_tensor(std::string(kOutputs) + "s11_val_0000/imgsz320/end2end_fused.npy");
  y26::Letterboxed lb = letterbox_png("s11_val_0000", 320);
  y26::PostprocessOptions po;
  po.conf = 0.001f;
  po.max_det = 10;
  y26::Result r = y26::postprocess(e2e, {lb}, po).at(0);
  EXPECT(r.size() == 10);
  po.max_det = 300;
  po.classes = {1};
  r = y26::postprocess(e2e, {lb}, po).at(0);
  EXPECT(r.size() > 0);
  EXPECT((r.cls == 1).all().item<bool>());
  const int64_t ones = (e2e[0].select(1, 5) == 1).logical_and(e2e[0].select(1, 4) > 0.001f).sum().item<int64_t>();
  EXPECT(static_cast<int64_t>(r.size()) == ones);
}

TEST_CASE("pose end2end postprocess: boxes match predict(), keypoints scaled like scale_coords") {
  const std::string dir = "pose/outputs/wide_480x300/imgsz640/";
  YAML::Node meta = YAML::LoadFile(y26test::fixture(dir + "meta.json"));
  torch::Tensor e2e = npy_tensor(dir + "end2end_fused.npy");
  y26::Letterboxed lb = letterbox_png("wide_480x300", 640);
  y26::PostprocessOptions po;
  po.task = y26::Task::Pose;
  po.conf = 0.001f;
  y26::Result r = y26::postprocess(e2e, {lb}, po).at(0);
  YAML::Node want = meta["predict_results_original_coords"]["conf_0.001"];
  EXPECT_MSG(r.size() == want["conf"].size(), r.size() << " vs " << want["conf"].size());
  EXPECT(r.keypoints.dim() == 3 && r.keypoints.size(1) == 17 && r.keypoints.size(2) == 3);
  if (r.size() == want["conf"].size() && r.size() > 0) {
    double worst = 0;
    for (size_t i = 0; i < r.size(); ++i)
      for (int j = 0; j < 4; ++j)
        worst = std::max(worst, std::fabs(r.boxes[i][j].item<double>() - static_cast<float>(want["xyxy"][i][j].as<double>())));
    EXPECT_MSG(worst <= 2e-3, "pose box error " << worst);
    // Keypoint 0 of the top row by hand: (x - pad_x) / gain, clipped; visibility unchanged.
    const double gain = lb.ratio_pad.gain_x;
    const float rx = e2e[0][0][6].item<float>(), ry = e2e[0][0][7].item<float>(), rv = e2e[0][0][8].item<float>();
    EXPECT_NEAR(r.keypoints[0][0][0].item<double>(), std::clamp((rx - lb.ratio_pad.pad_x) / gain, 0.0, 480.0), 2e-3);
    EXPECT_NEAR(r.keypoints[0][0][1].item<double>(), std::clamp((ry - lb.ratio_pad.pad_y) / gain, 0.0, 300.0), 2e-3);
    EXPECT_NEAR(r.keypoints[0][0][2].item<double>(), rv, 0);
    EXPECT((r.keypoints.select(2, 0) <= 480).all().item<bool>() && (r.keypoints.select(2, 1) >= 0).all().item<bool>());
  }
}

// ---- NMS -------------------------------------------------------------------------------------------------------

TEST_CASE("nms keeps the best of overlapping boxes and all disjoint ones") {
  torch::Tensor boxes = torch::tensor({{0.f, 0.f, 10.f, 10.f}, {1.f, 1.f, 11.f, 11.f}, {20.f, 20.f, 30.f, 30.f}, {0.f, 0.f, 10.f, 9.f}});
  torch::Tensor scores = torch::tensor({0.8f, 0.9f, 0.5f, 0.7f});
  torch::Tensor keep = y26::nms(boxes, scores, 0.7);
  // IoU(1,0) = 81/119 = 0.68 (kept), IoU(0,3) = 0.9 (3 dropped), IoU(1,3) = 72/118 = 0.61 (kept by 1, dropped by 0).
  EXPECT(keep.numel() == 3);
  if (keep.numel() == 3) {
    EXPECT(keep[0].item<int64_t>() == 1);
    EXPECT(keep[1].item<int64_t>() == 0);
    EXPECT(keep[2].item<int64_t>() == 2);
  }
  keep = y26::nms(boxes, scores, 0.5);
  EXPECT(keep.numel() == 2);
  EXPECT(y26::nms(torch::zeros({0, 4}), torch::zeros({0}), 0.7).numel() == 0);
  EXPECT_THROWS(y26::nms(torch::zeros({3, 5}), torch::zeros({3}), 0.7));
}

TEST_CASE("classic non_max_suppression: conf, class-aware vs agnostic, multi-label, max_det, classes") {
  // 3 anchors, 2 classes, xywh. Anchors 0 and 1 overlap heavily (IoU 0.82); anchor 1 is class 1, anchor 0 class 0.
  torch::Tensor p = torch::zeros({1, 6, 3});
  auto set = [&](int a, float x, float y, float w, float h, float c0, float c1) {
    p[0][0][a] = x; p[0][1][a] = y; p[0][2][a] = w; p[0][3][a] = h; p[0][4][a] = c0; p[0][5][a] = c1;
  };
  set(0, 50, 50, 20, 20, 0.9f, 0.6f);
  set(1, 51, 51, 20, 20, 0.1f, 0.8f);
  set(2, 150, 150, 10, 10, 0.2f, 0.1f);
  y26::PostprocessOptions po;
  po.end2end = false;
  po.conf = 0.25f;
  auto out = y26::non_max_suppression(p, po);
  EXPECT(out.size() == 1 && out[0].size(0) == 2);  // different classes survive class-aware NMS; anchor 2 under conf
  EXPECT_NEAR(out[0][0][0].item<float>(), 40, 1e-5);  // xywh -> xyxy
  EXPECT_NEAR(out[0][0][4].item<float>(), 0.9, 1e-6);
  EXPECT_NEAR(out[0][1][5].item<float>(), 1, 0);
  po.agnostic_nms = true;
  out = y26::non_max_suppression(p, po);
  EXPECT(out[0].size(0) == 1);
  po.agnostic_nms = false;
  po.multi_label = true;  // anchor 0 gives (0.9, cls 0) and (0.6, cls 1); the latter is suppressed by anchor 1's 0.8
  out = y26::non_max_suppression(p, po);
  EXPECT(out[0].size(0) == 2);
  po.conf = 0.05f;
  out = y26::non_max_suppression(p, po);
  EXPECT(out[0].size(0) == 4);  // + anchor 2 as class 0 (0.2) and class 1 (0.1); anchor 1's class 0 (0.1) suppressed
  po.multi_label = false;
  out = y26::non_max_suppression(p, po);
  EXPECT(out[0].size(0) == 3);
  po.max_det = 2;
  out = y26::non_max_suppression(p, po);
  EXPECT(out[0].size(0) == 2);
  po.max_det = 300;
  po.classes = {1};
  out = y26::non_max_suppression(p, po);
  EXPECT(out[0].size(0) == 1 && out[0][0][5].item<float>() == 1.f);
}

TEST_MAIN()
