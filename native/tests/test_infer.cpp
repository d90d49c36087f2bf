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
#include <unistd.h>

#include "infer/annotate.h"
#include "infer/letterbox.h"
#include "infer/model_forward.h"
#include "infer/pipeline.h"
#include "infer/postprocess.h"
#include "infer/preprocess.h"
#include "infer/save.h"
#include "infer/segments.h"
#include "infer/source.h"
#include "testing.h"
#include "util/error.h"
#include "util/npy.h"

namespace fs = std::filesystem;
using torch::indexing::None;
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

// A fresh, empty scratch folder under /tmp for one test (per process, so parallel runs do not collide); all of
// them are removed when the test program exits.
struct ScratchCleanup {
  ~ScratchCleanup() {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(fs::temp_directory_path(), ec))
      if (e.path().filename().string().rfind("y26_infer_" + std::to_string(::getpid()) + "_", 0) == 0) fs::remove_all(e.path(), ec);
  }
} scratch_cleanup;

fs::path scratch(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("y26_infer_" + std::to_string(::getpid()) + "_" + name);
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

std::string message_of(const std::function<void()>& fn) {
  try { fn(); } catch (const y26::Error& e) { return e.what(); } catch (const std::exception& e) { return std::string("other: ") + e.what(); }
  return "";
}

// A fake end2end model on the input's device: one box (8,8)-(40,24), class 1, score from the image content.
torch::Tensor fake_forward_any_device(const torch::Tensor& x) {
  torch::Tensor y = torch::zeros({x.size(0), 300, 6}, x.options().dtype(torch::kFloat32));
  y.index_put_({Slice(), 0, Slice(0, 4)}, torch::tensor({8.f, 8.f, 40.f, 24.f}).to(x.device()));
  y.index_put_({Slice(), 0, 4}, 0.5 + 0.5 * x.index({Slice(), 2}).to(torch::kFloat32).mean({1, 2}));
  y.index_put_({Slice(), 0, 5}, 1.f);
  return y;
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

TEST_CASE("images_to_float_batch is normalize_batch of the uint8 batch, bit for bit (float32 and float16)") {
  cv::Mat a(16, 48, CV_8UC3), b(16, 48, CV_8UC3);
  for (int i = 0; i < 16 * 48 * 3; ++i) a.data[i] = static_cast<uint8_t>(i % 256);  // every value in every channel
  cv::randu(b, 0, 256);
  for (bool half : {false, true}) {
    torch::Tensor want = y26::normalize_batch(y26::images_to_uint8_batch({a, b}), torch::kCPU, half);
    torch::Tensor got = y26::images_to_float_batch({a, b}, half);
    EXPECT(got.scalar_type() == want.scalar_type() && got.sizes() == want.sizes() && torch::equal(got, want));
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

TEST_CASE("obb end2end postprocess: xywhr scaled back, enclosing box clipped") {
  // One row: centre (100, 60) in a 320x224 input of a 480x300 image (gain 2/3, pad 12 top), 60x30, angle pi/2.
  torch::Tensor rows = torch::zeros({1, 300, 7});
  rows[0][0][0] = 100; rows[0][0][1] = 60; rows[0][0][2] = 60; rows[0][0][3] = 30;
  rows[0][0][4] = 0.9; rows[0][0][5] = 4; rows[0][0][6] = static_cast<float>(M_PI / 2);
  y26::Letterboxed meta;
  meta.orig_h = 300;
  meta.orig_w = 480;
  meta.ratio_pad = {2.0 / 3.0, 2.0 / 3.0, 0, 12};
  y26::PostprocessOptions po;
  po.task = y26::Task::Obb;
  y26::Result r = y26::postprocess(rows, {meta}, po).at(0);
  EXPECT(r.size() == 1 && r.obb.defined() && r.obb.size(1) == 5);
  EXPECT_NEAR(r.obb[0][0].item<float>(), 150, 1e-4);
  EXPECT_NEAR(r.obb[0][1].item<float>(), 72, 1e-4);
  EXPECT_NEAR(r.obb[0][2].item<float>(), 90, 1e-4);
  EXPECT_NEAR(r.obb[0][3].item<float>(), 45, 1e-4);
  EXPECT_NEAR(r.obb[0][4].item<float>(), M_PI / 2, 1e-6);
  // Rotated by 90 degrees, the enclosing box is 45 wide and 90 high around (150, 72); the top clips at 0.
  EXPECT_NEAR(r.boxes[0][0].item<float>(), 127.5, 1e-3);
  EXPECT_NEAR(r.boxes[0][2].item<float>(), 172.5, 1e-3);
  EXPECT_NEAR(r.boxes[0][1].item<float>(), 27, 1e-3);
  EXPECT_NEAR(r.boxes[0][3].item<float>(), 117, 1e-3);
  EXPECT(r.cls[0].item<int64_t>() == 4);
}

TEST_CASE("mask_polygon: a square's corners; two pieces joined into one closed walk; empty -> (0,2)") {
  torch::Tensor m = torch::zeros({20, 30}, torch::kUInt8);
  m.index_put_({Slice(5, 10), Slice(2, 8)}, 1);
  torch::Tensor p = y26::mask_polygon(m);
  EXPECT_MSG(p.sizes() == torch::IntArrayRef({4, 2}), p.sizes());
  if (p.size(0) == 4) {
    torch::Tensor lo = std::get<0>(p.min(0)), hi = std::get<0>(p.max(0));
    EXPECT(lo[0].item<float>() == 2 && hi[0].item<float>() == 7 && lo[1].item<float>() == 5 && hi[1].item<float>() == 9);
  }
  // A second piece: both squares' corners are on the joined walk, each piece closed on itself.
  m.index_put_({Slice(12, 16), Slice(20, 26)}, 1);
  torch::Tensor q = y26::mask_polygon(m);
  EXPECT_MSG(q.size(0) == 4 + 1 + 4 + 1, q.sizes());
  auto has = [&](float x, float y) { return ((q.select(1, 0) == x) & (q.select(1, 1) == y)).any().item<bool>(); };
  EXPECT(has(2, 5) && has(7, 9) && has(20, 12) && has(25, 15));
  EXPECT(y26::mask_polygon(torch::zeros({8, 8}, torch::kUInt8)).sizes() == torch::IntArrayRef({0, 2}));
  EXPECT(y26::mask_polygons(torch::stack({m, torch::zeros_like(m)})).size() == 2);
}

TEST_CASE("obb_corners: the official corner order; save_txt writes them normalised") {
  torch::Tensor c = y26::obb_corners(torch::tensor({{50.f, 40.f, 20.f, 10.f, 0.f}, {50.f, 40.f, 20.f, 10.f, static_cast<float>(M_PI / 2)}}));
  EXPECT(c.sizes() == torch::IntArrayRef({2, 4, 2}));
  EXPECT(torch::allclose(c[0], torch::tensor({{60.f, 45.f}, {60.f, 35.f}, {40.f, 35.f}, {40.f, 45.f}})));
  EXPECT(torch::allclose(c[1], torch::tensor({{45.f, 50.f}, {55.f, 50.f}, {55.f, 30.f}, {45.f, 30.f}}), 1e-5, 1e-4));
  y26::Result r;
  r.orig_h = 80;
  r.orig_w = 100;
  r.obb = torch::tensor({{50.f, 40.f, 20.f, 10.f, 0.f}});
  r.boxes = torch::tensor({{40.f, 35.f, 60.f, 45.f}});
  r.conf = torch::tensor({0.5f});
  r.cls = torch::tensor({3}, torch::kInt64);
  EXPECT_MSG(y26::format_yolo_txt(r, true) == "3 0.6 0.5625 0.6 0.4375 0.4 0.4375 0.4 0.5625 0.5\n", y26::format_yolo_txt(r, true));
}

TEST_CASE("segment: process_masks crops to the box, scale_masks removes the padding, pipeline drops empty masks") {
  // Channel 0 is +1 everywhere, channel 1 is -1: coef (1,0) gives a mask that is the box itself.
  torch::Tensor proto = torch::stack({torch::ones({16, 16}), -torch::ones({16, 16})});
  torch::Tensor coef = torch::tensor({{1.f, 0.f}, {0.f, 1.f}});
  torch::Tensor boxes = torch::tensor({{0.f, 16.f, 32.f, 48.f}, {0.f, 0.f, 64.f, 64.f}});
  torch::Tensor m = y26::process_masks(proto, coef, boxes, 64, 64);
  EXPECT(m.sizes() == torch::IntArrayRef({2, 64, 64}) && m.scalar_type() == torch::kUInt8);
  EXPECT(m[0][30][10].item<int>() == 1 && m[0][10][10].item<int>() == 0 && m[0][30][40].item<int>() == 0);
  EXPECT(m[1].sum().item<int64_t>() == 0);  // negative everywhere
  // Bilinear upsampling of the cropped 4x-coarser mask, then > 0, bleeds up to 2 px past the box edges.
  const int64_t area = m[0].sum().item<int64_t>();
  EXPECT_MSG(area >= 32 * 32 && area <= 36 * 36, area);
  // 64x64 input of a 96x128 original: gain 0.5, pad 8 top/bottom; the content rows 8..55 map to the whole image.
  y26::RatioPad rp{0.5, 0.5, 0, 8};
  torch::Tensor in = torch::zeros({1, 64, 64}, torch::kUInt8);
  in.index_put_({0, Slice(8, 56), Slice(0, 32)}, 1);
  torch::Tensor o = y26::scale_masks(in, rp, 96, 128);
  EXPECT(o.sizes() == torch::IntArrayRef({1, 96, 128}));
  EXPECT(o[0][0][10].item<int>() == 1 && o[0][95][60].item<int>() == 1 && o[0][50][70].item<int>() == 0);
  EXPECT_NEAR(o.sum().item<double>(), 96 * 64, 96 * 2);

  // A fake segment model through the pipeline: row 0 has a real mask, row 1's mask is empty and is dropped.
  auto seg_forward = [](const torch::Tensor& x) {
    const int64_t b = x.size(0);
    torch::Tensor y = torch::zeros({b, 300, 8});
    y.index_put_({Slice(), 0, Slice(0, 8)}, torch::tensor({8.f, 8.f, 40.f, 40.f, 0.9f, 2.f, 1.f, 0.f}));
    y.index_put_({Slice(), 1, Slice(0, 8)}, torch::tensor({8.f, 8.f, 40.f, 40.f, 0.8f, 1.f, 0.f, 1.f}));
    torch::Tensor p = torch::stack({torch::ones({16, 16}), -torch::ones({16, 16})}).unsqueeze(0).expand({b, 2, 16, 16});
    return std::vector<torch::Tensor>{y, p};
  };
  y26::PipelineOptions po;
  po.imgsz_h = po.imgsz_w = 64;
  po.post.task = y26::Task::Segment;
  po.keep_images = true;
  cv::Mat im(64, 64, CV_8UC3, cv::Scalar(0, 0, 0));
  auto rs = y26::predict_all(y26::open_mat_source({im}), y26::ForwardOutputsFn(seg_forward), po);
  EXPECT(rs.size() == 1 && rs[0].size() == 1 && rs[0].masks.defined());
  if (rs.size() == 1 && rs[0].size() == 1) {
    EXPECT(rs[0].masks.sizes() == torch::IntArrayRef({1, 64, 64}));
    EXPECT(rs[0].cls[0].item<int64_t>() == 2);
    EXPECT(rs[0].masks[0][20][20].item<int>() == 1 && rs[0].masks[0][50][50].item<int>() == 0);
    cv::Mat drawn = y26::annotate(rs[0].orig_image, rs[0], {});
    EXPECT(drawn.at<cv::Vec3b>(20, 20) != cv::Vec3b(0, 0, 0) && drawn.at<cv::Vec3b>(55, 55) == cv::Vec3b(0, 0, 0));
    // save_txt writes the outline polygon: class, then x y pairs in [0, 1].
    std::istringstream line(y26::format_yolo_txt(rs[0], false));
    std::vector<double> v;
    double x;
    while (line >> x) v.push_back(x);
    EXPECT(v.size() >= 9 && v.size() % 2 == 1 && v[0] == 2);
    for (size_t i = 1; i < v.size(); ++i) EXPECT(v[i] >= 0 && v[i] <= 1);
  }
  po.post.task = y26::Task::Segment;
  std::string msg = message_of([&] { y26::predict_all(y26::open_mat_source({im}), fake_forward_any_device, po); });
  EXPECT_MSG(msg.find("proto") != std::string::npos, msg);
}

TEST_CASE("preprocess on CUDA (pinned, non_blocking) equals CPU; without CUDA the device is refused clearly") {
  cv::Mat im = cv::imread(image_path("wide_480x300"));
  y26::LetterboxOptions lo;
  lo.height = lo.width = 320;
  cv::Mat boxed = y26::letterbox(im, lo).image;
  torch::Tensor cpu = y26::preprocess_batch({boxed, boxed}, torch::kCPU);
  EXPECT(cpu.sizes() == torch::IntArrayRef({2, 3, 224, 320}));
  torch::Tensor ref = npy_tensor(std::string(kOutputs) + "wide_480x300/imgsz320/input_u8.npy").to(torch::kFloat32) / 255;
  EXPECT(torch::equal(cpu[1], ref[0]));
  y26::PipelineOptions po;
  po.device = "cuda:0";
  if (torch::cuda::is_available()) {
    torch::Tensor gpu = y26::preprocess_batch({boxed, boxed}, torch::Device("cuda:0"));
    EXPECT(gpu.is_cuda() && torch::equal(gpu.cpu(), cpu));
    torch::Tensor half = y26::preprocess_batch({boxed}, torch::Device("cuda:0"), true);
    EXPECT(half.scalar_type() == torch::kFloat16);
    auto rs = y26::predict_all(y26::open_mat_source({im, im, im}), fake_forward_any_device, po);
    EXPECT(rs.size() == 3 && rs[2].size() == 1);
  } else {
    std::string m = message_of([&] { y26::Pipeline(y26::open_mat_source({im}), fake_forward_any_device, po); });
    EXPECT_MSG(m.find("cuda:0") != std::string::npos && m.find("cpu") != std::string::npos, m);
  }
}

TEST_CASE("predict end to end: PNG -> pipeline -> fused yolo26n-shapes.pt reproduces the official predict() results") {
  auto model = y26::load_model(y26test::fixture("det/yolo26n-shapes.pt")).model;
  model->eval();
  model->fuse();
  int compared = 0;
  for (const auto& [name, size] : std::vector<std::pair<std::string, int>>{{"s11_val_0000", 320}, {"wide_480x300", 320}, {"s11_val_0000", 640}}) {
    YAML::Node meta = YAML::LoadFile(y26test::fixture(std::string(kOutputs) + name + "/imgsz" + std::to_string(size) + "/meta.json"));
    for (const std::string conf : {"0.25", "0.001"}) {
      y26::PipelineOptions po;
      po.imgsz_h = po.imgsz_w = size;
      po.post.conf = std::stof(conf);
      po = y26::model_pipeline_options(*model, po);
      EXPECT(po.stride == 32 && po.post.nc == 3 && po.post.task == y26::Task::Detect);
      auto rs = y26::predict_all(y26::open_path_source(image_path(name)), y26::model_forward(model), po);
      YAML::Node want = meta["predict_results_original_coords"]["conf_" + conf];
      const size_t n = want["conf"].size();
      EXPECT(rs.size() == 1);
      if (rs.size() != 1) continue;
      const y26::Result& r = rs[0];
      // A score within 1e-5 of the threshold may fall on either side (README tolerances): then the lists differ by
      // that last row only.
      bool count_ok = r.size() == n;
      if (!count_ok && std::max(r.size(), n) - std::min(r.size(), n) == 1) {
        const double edge = r.size() > n ? r.conf[n].item<double>() : want["conf"][r.size()].as<double>();
        count_ok = std::fabs(edge - po.post.conf) <= 1e-5;
      }
      EXPECT_MSG(count_ok, name << "@" << size << " conf " << conf << ": " << r.size() << " vs " << n);
      double box_err = 0, conf_err = 0;
      for (size_t i = 0; i < std::min(n, r.size()); ++i) {
        EXPECT(r.cls[i].item<int64_t>() == want["cls"][i].as<int64_t>());
        conf_err = std::max(conf_err, std::fabs(r.conf[i].item<double>() - static_cast<float>(want["conf"][i].as<double>())));
        // README tolerance for model boxes: 2e-3 px + 1e-5 relative.
        for (int j = 0; j < 4; ++j) {
          const double w = static_cast<float>(want["xyxy"][i][j].as<double>());
          box_err = std::max(box_err, std::fabs(r.boxes[i][j].item<double>() - w) - 1e-5 * std::fabs(w));
        }
      }
      EXPECT_MSG(box_err <= 2e-3, name << "@" << size << " conf " << conf << ": box error beyond the relative part " << box_err);
      EXPECT_MSG(conf_err <= 1e-5, name << "@" << size << " conf " << conf << ": conf error " << conf_err);
      compared += static_cast<int>(std::min(n, r.size()));
    }
  }
  EXPECT_MSG(compared > 600, compared << " detections compared");
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

TEST_CASE("classic NMS on the real one2many output is exactly greedy NMS (independent check)") {
  torch::Tensor dec = npy_tensor(std::string(kOutputs) + "s11_val_0000/imgsz640/one2many_decoded.npy");  // xyxy
  y26::PostprocessOptions po;
  po.end2end = false;
  po.classic_xywh = false;
  po.conf = 0.01f;
  po.max_det = 100000;
  torch::Tensor kept = y26::non_max_suppression(dec, po).at(0);
  // Candidates as the NMS saw them: best class per anchor above conf.
  torch::Tensor boxes = dec[0].index({Slice(0, 4)}).t();
  auto [score, cls] = dec[0].index({Slice(4, None)}).max(0);
  torch::Tensor cand = score > po.conf;
  boxes = boxes.index({cand});
  score = score.index({cand});
  cls = cls.index({cand});
  EXPECT_MSG(kept.size(0) > 20 && kept.size(0) < boxes.size(0), kept.size(0) << " kept of " << boxes.size(0));
  auto iou = [](const torch::Tensor& a, const torch::Tensor& b) {  // (N,4) x (M,4) -> (N,M)
    torch::Tensor lt = torch::max(a.index({Slice(), None, Slice(0, 2)}), b.index({None, Slice(), Slice(0, 2)}));
    torch::Tensor rb = torch::min(a.index({Slice(), None, Slice(2, 4)}), b.index({None, Slice(), Slice(2, 4)}));
    torch::Tensor inter = (rb - lt).clamp_min(0).prod(2);
    torch::Tensor area_a = (a.select(1, 2) - a.select(1, 0)) * (a.select(1, 3) - a.select(1, 1));
    torch::Tensor area_b = (b.select(1, 2) - b.select(1, 0)) * (b.select(1, 3) - b.select(1, 1));
    return inter / (area_a.unsqueeze(1) + area_b.unsqueeze(0) - inter);
  };
  torch::Tensor kb = kept.index({Slice(), Slice(0, 4)}), ks = kept.select(1, 4), kc = kept.select(1, 5).to(torch::kInt64);
  EXPECT((ks.index({Slice(1, None)}) <= ks.index({Slice(0, -1)})).all().item<bool>());  // sorted by score
  // 1) no two kept boxes of one class overlap above the threshold;
  torch::Tensor same = kc.unsqueeze(1) == kc.unsqueeze(0);
  torch::Tensor kk = iou(kb, kb) * same.to(torch::kFloat32);
  kk.fill_diagonal_(0);
  EXPECT_MSG(kk.max().item<float>() <= po.iou, "kept boxes overlap: " << kk.max().item<float>());
  // 2) every candidate is either kept (found verbatim in the output) or overlaps a kept box of its class that
  //    scores at least as high, never both.
  torch::Tensor cls_match = cls.unsqueeze(1) == kc.unsqueeze(0);
  torch::Tensor identical = (boxes.unsqueeze(1) == kb.unsqueeze(0)).all(2) & cls_match;
  torch::Tensor is_kept = identical.any(1);
  EXPECT(is_kept.sum().item<int64_t>() == kept.size(0));
  torch::Tensor suppressor = (iou(boxes, kb) > po.iou) & cls_match & (ks.unsqueeze(0) >= score.unsqueeze(1)) & ~identical;
  torch::Tensor covered = suppressor.any(1);
  EXPECT_MSG((covered ^ is_kept).all().item<bool>(), (covered & is_kept).sum().item<int64_t>() << " kept but covered, "
             << (~covered & ~is_kept).sum().item<int64_t>() << " dropped without cause");
  // The top detection agrees with the one2one head's top row (same object, same class).
  torch::Tensor e2e = npy_tensor(std::string(kOutputs) + "s11_val_0000/imgsz640/end2end_fused.npy")[0];
  EXPECT(iou(kb.index({Slice(0, 1)}), e2e.index({Slice(0, 1), Slice(0, 4)})).item<float>() > 0.5f);
  EXPECT(kc[0].item<int64_t>() == static_cast<int64_t>(e2e[0][5].item<float>()));
}

// ---- sources ---------------------------------------------------------------------------------------------------

namespace {

// Writes n small solid images named img_<i>.png with blue = 10 * i, so their order is checkable.
void write_images(const fs::path& dir, int n, int w = 64, int h = 48) {
  for (int i = 0; i < n; ++i) {
    char name[32];
    std::snprintf(name, sizeof(name), "img_%02d.png", i);
    cv::imwrite((dir / name).string(), cv::Mat(h, w, CV_8UC3, cv::Scalar(10 * i, 100, 200)));
  }
}

std::vector<y26::Frame> drain(y26::Source& s) {
  std::vector<y26::Frame> out;
  y26::Frame f;
  while (s.next(f)) out.push_back(f);
  return out;
}

}  // namespace

TEST_CASE("directory source: sorted images, corrupt file yields an error item, non-media ignored") {
  fs::path d = scratch("dir");
  write_images(d, 3);
  std::ofstream(d / "img_01b.jpg") << "not a jpeg";
  std::ofstream(d / "notes.md") << "ignored";
  auto src = y26::open_path_source(d.string());
  auto frames = drain(*src);
  EXPECT(frames.size() == 4);
  if (frames.size() == 4) {
    EXPECT(fs::path(frames[0].path).filename() == "img_00.png" && frames[0].image.at<cv::Vec3b>(0, 0)[0] == 0);
    EXPECT(fs::path(frames[1].path).filename() == "img_01.png" && frames[1].image.at<cv::Vec3b>(0, 0)[0] == 10);
    EXPECT(fs::path(frames[2].path).filename() == "img_01b.jpg" && frames[2].image.empty());
    EXPECT_MSG(frames[2].error.find("img_01b.jpg") != std::string::npos, frames[2].error);
    EXPECT(frames[3].image.type() == CV_8UC3 && frames[3].error.empty() && frames[3].frame == -1);
  }
}

TEST_CASE("sources fail clearly: missing path, empty directory, unknown extension, bad glob, bad video") {
  fs::path d = scratch("errors");
  std::string m = message_of([&] { y26::open_path_source((d / "nope.jpg").string()); });
  EXPECT_MSG(m.find("nope.jpg") != std::string::npos && m.find("does not exist") != std::string::npos, m);
  fs::create_directories(d / "empty");
  m = message_of([&] { y26::open_path_source((d / "empty").string()); });
  EXPECT_MSG(m.find("empty") != std::string::npos && m.find("no image or video") != std::string::npos, m);
  std::ofstream(d / "a.xyz") << "x";
  m = message_of([&] { y26::open_path_source((d / "a.xyz").string()); });
  EXPECT_MSG(m.find("a.xyz") != std::string::npos, m);
  m = message_of([&] { y26::open_path_source((d / "*.png").string()); });
  EXPECT_MSG(m.find("*.png") != std::string::npos && m.find("matches no") != std::string::npos, m);
  std::ofstream(d / "broken.mp4") << "definitely not a video";
  m = message_of([&] { y26::open_path_source((d / "broken.mp4").string()); });
  EXPECT_MSG(m.find("broken.mp4") != std::string::npos && m.find("will not open") != std::string::npos, m);
  m = message_of([&] { y26::open_camera_source(-1); });
  EXPECT_MSG(m.find("camera") != std::string::npos, m);
  m = message_of([&] { y26::open_path_source(""); });
  EXPECT(!m.empty());
}

TEST_CASE("glob, list of paths and .txt list sources") {
  fs::path d = scratch("lists");
  write_images(d, 4);
  auto frames = drain(*y26::open_path_source((d / "img_0[12].png").string()));
  EXPECT(frames.size() == 2 && fs::path(frames[0].path).filename() == "img_01.png");
  frames = drain(*y26::open_path_list_source({(d / "img_03.png").string(), (d / "img_00.png").string()}));
  EXPECT(frames.size() == 2 && fs::path(frames[0].path).filename() == "img_03.png" && frames[1].image.at<cv::Vec3b>(0, 0)[0] == 0);
  // Relative entries resolve against the list's folder; blank lines and comments are skipped.
  std::ofstream(d / "list.txt") << "img_02.png\n\n# comment\n" << (d / "img_00.png").string() << "\n";
  frames = drain(*y26::open_path_source((d / "list.txt").string()));
  EXPECT(frames.size() == 2 && fs::path(frames[0].path).filename() == "img_02.png");
  std::ofstream(d / "bad.txt") << "img_00.png\nmissing.png\n";
  std::string m = message_of([&] { y26::open_path_source((d / "bad.txt").string()); });
  EXPECT_MSG(m.find("bad.txt:2") != std::string::npos && m.find("missing.png") != std::string::npos, m);
}

TEST_CASE("encoded bytes and raw pixels sources") {
  cv::Mat im(20, 30, CV_8UC3, cv::Scalar(1, 2, 3));
  std::vector<uint8_t> png;
  cv::imencode(".png", im, png);
  auto frames = drain(*y26::open_encoded_source({png, {1, 2, 3}}));
  EXPECT(frames.size() == 2);
  if (frames.size() == 2) {
    EXPECT(frames[0].image.cols == 30 && frames[0].image.at<cv::Vec3b>(5, 5) == cv::Vec3b(1, 2, 3));
    EXPECT(frames[1].image.empty() && frames[1].error.find("memory:1") != std::string::npos);
  }
  std::vector<uint8_t> rgb = {255, 0, 0, 0, 255, 0};  // 2x1 RGB: red, green
  std::vector<uint8_t> rgba(2 * 2 * 4, 7);
  std::vector<uint8_t> gray = {9, 9, 9, 9};
  frames = drain(*y26::open_pixels_source({{rgb.data(), 2, 1, 3}, {rgba.data(), 2, 2, 4}, {gray.data(), 2, 2, 1}}));
  EXPECT(frames.size() == 3);
  if (frames.size() == 3) {
    EXPECT(frames[0].image.at<cv::Vec3b>(0, 0) == cv::Vec3b(0, 0, 255));  // BGR red
    EXPECT(frames[0].image.at<cv::Vec3b>(0, 1) == cv::Vec3b(0, 255, 0));
    EXPECT(frames[1].image.type() == CV_8UC3 && frames[1].image.at<cv::Vec3b>(1, 1) == cv::Vec3b(7, 7, 7));
    EXPECT(frames[2].image.type() == CV_8UC3 && frames[2].image.at<cv::Vec3b>(0, 0) == cv::Vec3b(9, 9, 9));
  }
  y26::RawPixels bad{rgb.data(), 2, 1, 2};
  EXPECT_THROWS(y26::pixels_to_bgr(bad));
  bad = {nullptr, 2, 1, 3};
  EXPECT_THROWS(y26::pixels_to_bgr(bad));
}

TEST_CASE("video source reads a written video back frame by frame with vid_stride") {
  fs::path d = scratch("video");
  const std::string file = (d / "clip.avi").string();
  {
    cv::VideoWriter w(file, cv::VideoWriter::fourcc('M', 'J', 'P', 'G'), 10.0, cv::Size(64, 48));
    EXPECT_MSG(w.isOpened(), "VideoWriter MJPG cannot open " << file);
    for (int i = 0; i < 9; ++i) w.write(cv::Mat(48, 64, CV_8UC3, cv::Scalar(i * 25, 128, 64)));
  }
  auto frames = drain(*y26::open_path_source(file));
  EXPECT_MSG(frames.size() == 9, frames.size() << " frames");
  y26::SourceOptions so;
  so.vid_stride = 3;
  frames = drain(*y26::open_path_source(file, so));
  EXPECT_MSG(frames.size() == 3, frames.size() << " frames at stride 3");
  if (frames.size() == 3) {
    for (int k = 0; k < 3; ++k) {
      const int idx = 3 * k + 2;  // frames 2, 5, 8 (the last of each stride)
      EXPECT(frames[k].frame == idx && frames[k].is_video && frames[k].video_frames == 3);
      EXPECT_NEAR(frames[k].image.at<cv::Vec3b>(24, 32)[0], idx * 25, 6);
      EXPECT_NEAR(frames[k].fps, 10.0, 1e-6);
    }
  }
  so.vid_stride = 0;
  EXPECT_THROWS(y26::open_path_source(file, so));
}

// ---- pipeline --------------------------------------------------------------------------------------------------

namespace {

// Endless (or n-frame) source that counts what it hands out; frame i is a solid image with blue = i % 256.
class CountingSource : public y26::Source {
 public:
  explicit CountingSource(int64_t n, int w = 96, int h = 64) : n_(n), w_(w), h_(h) {}
  bool next(y26::Frame& out) override {
    if (n_ >= 0 && produced >= n_) return false;
    out = y26::Frame{};
    out.path = "gen:" + std::to_string(produced.load());
    out.image = cv::Mat(h_, w_, CV_8UC3, cv::Scalar(static_cast<double>(produced % 256), 50, 60));
    ++produced;
    return true;
  }
  std::string describe() const override { return "generated"; }
  std::atomic<int64_t> produced{0};

 private:
  int64_t n_;
  int w_, h_;
};

torch::Tensor fake_forward(const torch::Tensor& x) { return fake_forward_any_device(x); }

}  // namespace

TEST_CASE("pipeline: results in source order, scaled back, timings, batches of mixed shapes") {
  fs::path d = scratch("pipe");
  write_images(d, 5, 64, 48);
  cv::imwrite((d / "img_05.png").string(), cv::Mat(32, 32, CV_8UC3, cv::Scalar(0, 0, 0)));  // another shape
  std::ofstream(d / "img_02x.jpg") << "corrupt";
  y26::PipelineOptions po;
  po.imgsz_h = po.imgsz_w = 64;
  po.batch = 4;
  po.post.conf = 0.25f;
  std::vector<int64_t> shapes;
  auto fwd = [&](const torch::Tensor& x) { shapes.push_back(x.size(2)); return fake_forward(x); };
  y26::Pipeline p(y26::open_path_source(d.string()), fwd, po);
  std::vector<y26::Result> rs;
  y26::Result r;
  while (p.next(r)) rs.push_back(r);
  EXPECT_MSG(rs.size() == 7, rs.size() << " results");
  if (rs.size() == 7) {
    // Good results keep their order; the corrupt file's error item comes last.
    EXPECT(fs::path(rs[0].path).filename() == "img_00.png" && rs[0].index == 0);
    EXPECT(fs::path(rs[5].path).filename() == "img_05.png");
    EXPECT(fs::path(rs[6].path).filename() == "img_02x.jpg" && !rs[6].error.empty() && rs[6].index == 3);
    // 64x48 at imgsz 64: gain 1, auto pad -> 64x64 with pad 8 top; batch 1 has 4 same-shape images.
    EXPECT(rs[0].size() == 1 && rs[0].cls[0].item<int64_t>() == 1);
    EXPECT_NEAR(rs[0].boxes[0][1].item<float>(), 0, 1e-6);   // y 8 - pad 8
    EXPECT_NEAR(rs[0].boxes[0][3].item<float>(), 16, 1e-6);
    EXPECT_NEAR(rs[0].boxes[0][2].item<float>(), 40, 1e-6);
    EXPECT(rs[0].orig_h == 48 && rs[0].orig_w == 64);
    EXPECT(rs[0].speed.inference >= 0 && rs[0].speed.preprocess > 0 && rs[0].speed.postprocess > 0);
    EXPECT(rs[1].conf[0].item<float>() > rs[0].conf[0].item<float>());  // image-dependent score
    // 32x32 image, gain 2 -> 64x64 no pad: box (8,8)-(40,24) -> (4,4)-(20,12).
    EXPECT_NEAR(rs[5].boxes[0][0].item<float>(), 4, 1e-6);
    EXPECT_NEAR(rs[5].boxes[0][3].item<float>(), 12, 1e-6);
  }
  // Batch 1: 4 images 64x48; batch 2: 64x48 + 32x32 mixed shapes -> full 64x64 square.
  EXPECT(shapes.size() == 2 && shapes[0] == 64 && shapes[1] == 64);
  EXPECT(p.warnings().empty());
}

TEST_CASE("pipeline: parallel decoders keep source order and give the same results") {
  fs::path d = scratch("pipe_workers");
  write_images(d, 23, 64, 48);
  std::ofstream(d / "img_07x.png") << "corrupt";
  std::vector<std::vector<uint8_t>> encoded;
  for (int i = 0; i < 9; ++i) {
    std::vector<uint8_t> buf;
    cv::imencode(".png", cv::Mat(40, 40, CV_8UC3, cv::Scalar(20 * i, 0, 0)), buf);
    encoded.push_back(buf);
  }
  auto collect = [&](std::unique_ptr<y26::Source> src, int workers, int batch) {
    y26::PipelineOptions po;
    po.imgsz_h = po.imgsz_w = 64;
    po.workers = workers;
    po.batch = batch;
    y26::Pipeline p(std::move(src), fake_forward, po);
    std::vector<y26::Result> out;
    y26::Result r;
    while (p.next(r)) out.push_back(r);
    return out;
  };
  auto one = collect(y26::open_path_source(d.string()), 1, 1);
  auto many = collect(y26::open_path_source(d.string()), 4, 3);
  EXPECT(one.size() == 24 && many.size() == 24);
  if (one.size() == 24 && many.size() == 24) {
    for (size_t i = 0; i < 24; ++i) {
      EXPECT(one[i].path == many[i].path && one[i].index == many[i].index && one[i].error.empty() == many[i].error.empty());
      if (one[i].size() && many[i].size()) EXPECT(torch::equal(one[i].conf, many[i].conf) && torch::equal(one[i].boxes, many[i].boxes));
    }
    for (size_t i = 0; i + 1 < 23; ++i) EXPECT(many[i].index < many[i + 1].index);
    EXPECT(!many[23].error.empty() && many[23].path.find("img_07x.png") != std::string::npos);
  }
  auto mem = collect(y26::open_encoded_source(encoded), 3, 2);
  EXPECT(mem.size() == 9);
  for (size_t i = 0; i < mem.size(); ++i) {
    EXPECT(mem[i].path == "memory:" + std::to_string(i));
    if (i > 0 && mem[i].size() && mem[i - 1].size()) EXPECT(mem[i].conf[0].item<float>() > mem[i - 1].conf[0].item<float>());
  }
}

TEST_CASE("pipeline: skip_errors warns instead of yielding the error item") {
  fs::path d = scratch("pipe_skip");
  write_images(d, 2);
  std::ofstream(d / "img_00b.png") << "corrupt";
  y26::PipelineOptions po;
  po.imgsz_h = po.imgsz_w = 64;
  po.skip_errors = true;
  y26::Pipeline p(y26::open_path_source(d.string()), fake_forward, po);
  int n = 0;
  y26::Result r;
  while (p.next(r)) { EXPECT(r.error.empty()); ++n; }
  EXPECT(n == 2);
  EXPECT(p.warnings().size() == 1 && p.warnings()[0].find("img_00b.png") != std::string::npos);
}

TEST_CASE("pipeline: a slow consumer keeps decoding bounded (backpressure)") {
  auto src = std::make_unique<CountingSource>(-1);
  CountingSource* counter = src.get();
  y26::PipelineOptions po;
  po.imgsz_h = po.imgsz_w = 96;
  po.batch = 2;
  po.queue_batches = 2;
  y26::Pipeline p(std::move(src), fake_forward, po);
  y26::Result r;
  int64_t consumed = 0;
  for (int i = 0; i < 6; ++i) {
    EXPECT(p.next(r));
    ++consumed;
    std::this_thread::sleep_for(std::chrono::milliseconds(40));  // the worker is far faster than this consumer
  }
  // Ahead of the consumer: the decode window, the queue (2 batches), the batch being handed out and the one the
  // batcher holds.
  const int64_t ahead = counter->produced - consumed;
  const int64_t bound = p.decode_window() + po.workers - 1 + po.batch * (po.queue_batches + 2);
  EXPECT_MSG(ahead <= bound, ahead << " frames decoded ahead of the consumer (bound " << bound << ")");
  EXPECT(ahead >= po.batch);  // and it did read ahead
  EXPECT(p.max_queue_depth() <= 2);
  EXPECT(p.max_queue_depth() >= 1);
  EXPECT(p.frames_read() == counter->produced);
  // Results keep the source order across batches.
  EXPECT(r.path == "gen:5");
}

TEST_CASE("pipeline: cancel stops an endless stream and a forward error names the batch") {
  auto src = std::make_unique<CountingSource>(-1);
  y26::PipelineOptions po;
  po.imgsz_h = po.imgsz_w = 96;
  auto p = std::make_unique<y26::Pipeline>(std::move(src), fake_forward, po);
  y26::Result r;
  for (int i = 0; i < 3; ++i) EXPECT(p->next(r));
  std::thread canceller([&] { p->cancel(); });
  canceller.join();
  EXPECT(!p->next(r));
  EXPECT(p->cancelled());
  const auto t0 = std::chrono::steady_clock::now();
  p.reset();  // joins the worker
  EXPECT(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(2));

  // A source that breaks mid-stream: the good results come first, then next() throws a y26::Error naming it.
  struct BrokenSource : CountingSource {
    BrokenSource() : CountingSource(-1) {}
    bool next(y26::Frame& out) override {
      if (produced >= 3) throw std::runtime_error("disk went away");
      return CountingSource::next(out);
    }
    std::string describe() const override { return "broken test source"; }
  };
  y26::Pipeline b(std::make_unique<BrokenSource>(), fake_forward, po);
  int good = 0;
  std::string err = message_of([&] { while (b.next(r)) ++good; });
  EXPECT(good == 3);
  EXPECT_MSG(err.find("broken test source") != std::string::npos && err.find("disk went away") != std::string::npos, err);

  auto bad = [](const torch::Tensor& x) -> torch::Tensor { return torch::matmul(x, torch::zeros({7, 7})); };
  y26::Pipeline q(std::make_unique<CountingSource>(3), bad, po);
  std::string m = message_of([&] { q.next(r); });
  EXPECT_MSG(m.find("gen:0") != std::string::npos && m.find("forward") != std::string::npos, m);
  EXPECT_THROWS(y26::Pipeline(std::make_unique<CountingSource>(1), fake_forward, [] { y26::PipelineOptions o; o.imgsz_h = 100; return o; }()));
}

TEST_CASE("pipeline: forward_thread gives the same results in order; a forward error comes after the earlier results") {
  fs::path d = scratch("pipe_forward_thread");
  write_images(d, 11, 64, 48);
  std::ofstream(d / "img_03x.png") << "corrupt";
  y26::PipelineOptions po;
  po.imgsz_h = po.imgsz_w = 64;
  po.batch = 2;
  auto collect = [&](bool thread) {
    po.forward_thread = thread;
    y26::Pipeline p(y26::open_path_source(d.string()), fake_forward, po);
    std::vector<y26::Result> out;
    y26::Result r;
    while (p.next(r)) out.push_back(r);
    return out;
  };
  const auto inline_results = collect(false);
  const auto ahead = collect(true);
  EXPECT(inline_results.size() == 12 && ahead.size() == 12);
  for (size_t i = 0; i < std::min(inline_results.size(), ahead.size()); ++i) {
    const auto &x = inline_results[i], &y = ahead[i];
    EXPECT(x.path == y.path && x.index == y.index && x.error == y.error);
    if (x.size() && y.size()) EXPECT(torch::equal(x.conf, y.conf) && torch::equal(x.boxes, y.boxes));
  }
  if (ahead.size() == 12) EXPECT(!ahead[11].error.empty());  // the corrupt file's error item still comes last

  po.batch = 1;
  po.forward_thread = true;
  int calls = 0;  // only the forward thread calls it
  auto flaky = [&](const torch::Tensor& x) -> torch::Tensor {
    if (++calls == 3) throw std::runtime_error("boom");
    return fake_forward(x);
  };
  y26::Pipeline q(std::make_unique<CountingSource>(6), flaky, po);
  y26::Result r;
  int good = 0;
  const std::string m = message_of([&] { while (q.next(r)) ++good; });
  EXPECT_MSG(good == 2 && m.find("boom") != std::string::npos && m.find("gen:2") != std::string::npos, good << " " << m);

  // An endless source with an idle caller: the forward thread waits on its bound and stops on cancel.
  auto e = std::make_unique<y26::Pipeline>(std::make_unique<CountingSource>(-1), fake_forward, po);
  EXPECT(e->next(r) && e->next(r));
  const auto t0 = std::chrono::steady_clock::now();
  e.reset();
  EXPECT(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(2));
}

// ---- annotate and save -----------------------------------------------------------------------------------------

namespace {
y26::Result sample_result(bool pose) {
  y26::Result r;
  r.path = "/data/pic.png";
  r.orig_h = 200;
  r.orig_w = 400;
  r.boxes = torch::tensor({{100.f, 50.f, 300.f, 150.f}, {0.f, 0.f, 40.f, 20.f}});
  r.conf = torch::tensor({0.875f, 0.5f});
  r.cls = torch::tensor({2, 0}, torch::kInt64);
  if (pose) {
    r.keypoints = torch::zeros({2, 17, 3});
    for (int k = 0; k < 17; ++k) {
      r.keypoints[0][k][0] = 120 + 10 * k;
      r.keypoints[0][k][1] = 60 + 5 * k;
      r.keypoints[0][k][2] = 0.9;
    }
  }
  r.orig_image = cv::Mat(200, 400, CV_8UC3, cv::Scalar(30, 30, 30));
  return r;
}
}  // namespace

TEST_CASE("save_txt format: normalised xywh, pose keypoints, conf last") {
  y26::Result r = sample_result(false);
  EXPECT_MSG(y26::format_yolo_txt(r, false) == "2 0.5 0.5 0.5 0.5\n0 0.05 0.05 0.1 0.1\n", y26::format_yolo_txt(r, false));
  EXPECT_MSG(y26::format_yolo_txt(r, true) == "2 0.5 0.5 0.5 0.5 0.875\n0 0.05 0.05 0.1 0.1 0.5\n", y26::format_yolo_txt(r, true));
  y26::Result p = sample_result(true);
  std::string line = y26::format_yolo_txt(p, true);
  line = line.substr(0, line.find('\n'));
  std::istringstream ss(line);
  std::vector<double> v;
  double x;
  while (ss >> x) v.push_back(x);
  EXPECT(v.size() == 5 + 51 + 1);
  if (v.size() == 57) {
    EXPECT_NEAR(v[5], 0.3, 1e-6);   // 120 / 400
    EXPECT_NEAR(v[6], 0.3, 1e-6);   // 60 / 200
    EXPECT_NEAR(v[7], 0.9, 1e-6);
    EXPECT_NEAR(v[56], 0.875, 1e-6);
  }
}

TEST_CASE("annotate draws boxes, labels and skeletons; plot encodes JPEG/PNG") {
  y26::Result r = sample_result(true);
  cv::Mat out = y26::annotate(r.orig_image, r, {"rectangle", "ellipse", "triangle"});
  EXPECT(out.size() == r.orig_image.size() && out.type() == CV_8UC3);
  cv::Mat diff;
  cv::absdiff(out, r.orig_image, diff);
  const int changed = cv::countNonZero(diff.reshape(1));
  EXPECT_MSG(changed > 1000, changed << " channel values changed");
  // The box edge carries class 2's palette colour (0xF3F3F3); the input stays untouched.
  EXPECT(out.at<cv::Vec3b>(100, 100) == cv::Vec3b(243, 243, 243));
  EXPECT(r.orig_image.at<cv::Vec3b>(100, 100) == cv::Vec3b(30, 30, 30));
  EXPECT(y26::class_color(0) == cv::Scalar(0xFF, 0x2A, 0x04));
  std::vector<uint8_t> jpg = y26::plot(r, {"rectangle", "ellipse", "triangle"}), png = y26::encode_image(out, "png");
  EXPECT(jpg.size() > 100 && jpg[0] == 0xFF && jpg[1] == 0xD8);
  EXPECT(png.size() > 100 && png[1] == 'P' && png[2] == 'N' && png[3] == 'G');
  cv::Mat back = cv::imdecode(png, cv::IMREAD_COLOR);
  EXPECT(back.size() == out.size() && cv::norm(back, out, cv::NORM_INF) == 0);
  EXPECT_THROWS(y26::encode_image(out, ".gif"));
  y26::Result wrong = r;
  wrong.orig_w = 10;
  EXPECT_THROWS(y26::annotate(r.orig_image, wrong, {}));
}

TEST_CASE("ResultSaver: runs/<task>/predict, predict2, labels, crops and video") {
  fs::path root = scratch("save");
  y26::SaveOptions so;
  so.project = root.string();
  so.save_txt = true;
  so.save_conf = true;
  so.save_crop = true;
  so.names = {"rectangle", "ellipse", "triangle"};
  std::string first, image_file;
  {
    y26::ResultSaver s(so);
    first = s.save_dir();
    image_file = s.save(sample_result(false));
  }
  EXPECT(first == (root / "detect" / "predict").string());
  EXPECT(image_file == (root / "detect" / "predict" / "pic.png").string());
  cv::Mat saved = cv::imread(image_file);
  EXPECT(saved.rows == 200 && saved.cols == 400);
  std::ifstream txt(root / "detect" / "predict" / "labels" / "pic.txt");
  std::string line;
  std::getline(txt, line);
  EXPECT_MSG(line == "2 0.5 0.5 0.5 0.5 0.875", line);
  // save_one_box grows the 200x100 box to 214x112.
  cv::Mat crop = cv::imread((root / "detect" / "predict" / "crops" / "triangle" / "pic.jpg").string());
  EXPECT_MSG(crop.cols == 214 && crop.rows == 112, crop.cols << "x" << crop.rows);
  EXPECT(fs::exists(root / "detect" / "predict" / "crops" / "rectangle" / "pic.jpg"));
  {
    y26::ResultSaver s2(so);
    EXPECT(s2.save_dir() == (root / "detect" / "predict2").string());
    so.exist_ok = true;
    y26::ResultSaver s3(so);
    EXPECT(s3.save_dir() == (root / "detect" / "predict").string());
    // Video frames go to one mp4 and per-frame label files.
    std::string video;
    for (int i = 0; i < 3; ++i) {
      y26::Result r = sample_result(false);
      r.path = "/data/clip.avi";
      r.is_video = true;
      r.frame = i;
      r.fps = 10;
      video = s3.save(r);
    }
    s3.close();
    cv::VideoCapture cap(video);
    EXPECT_MSG(cap.isOpened(), "cannot reopen " << video);
    EXPECT_NEAR(cap.get(cv::CAP_PROP_FRAME_COUNT), 3, 0);
    EXPECT(fs::exists(root / "detect" / "predict" / "labels" / "clip_2.txt"));
  }
  so.task = y26::Task::Pose;
  so.exist_ok = false;
  EXPECT(y26::ResultSaver(so).save_dir() == (root / "pose" / "predict").string());
  EXPECT(y26::increment_path((root / "detect" / "predict" / "pic.png").string()) == (root / "detect" / "predict" / "pic2.png").string());
}


TEST_CASE("rotated NMS (probiou) for OBB classic outputs") {
  using torch::indexing::Slice;
  // probiou: identical boxes give 1, far boxes give ~0, and it is symmetric.
  torch::Tensor r = torch::tensor({{50.f, 50.f, 40.f, 20.f, 0.3f}, {52.f, 51.f, 40.f, 20.f, 0.35f}, {300.f, 300.f, 30.f, 30.f, 0.f}});
  torch::Tensor m = y26::probiou_matrix(r, r);
  EXPECT_NEAR(m[0][0].item<double>(), 1.0, 1e-3);
  EXPECT(m[0][2].item<double>() < 1e-3);
  EXPECT_NEAR(m[0][1].item<double>(), m[1][0].item<double>(), 1e-6);
  EXPECT(m[0][1].item<double>() > 0.8);
  // The 90-degree turn of a box with swapped sides is the same box.
  torch::Tensor turned = torch::tensor({{50.f, 50.f, 20.f, 40.f, 0.3f + 1.5707963f}});
  EXPECT_NEAR(y26::probiou_matrix(r.index({Slice(0, 1)}), turned)[0][0].item<double>(), 1.0, 1e-3);
  // Overlapping pair: the higher score survives; the far box stays.
  torch::Tensor keep = y26::nms_rotated(r, torch::tensor({0.6f, 0.9f, 0.5f}), 0.7);
  EXPECT(keep.numel() == 2 && keep[0].item<int64_t>() == 1 && keep[1].item<int64_t>() == 2);

  // Through the classic path: (1, 4+nc+1, A) rows [cx,cy,w,h, 2 class scores, angle]; class-aware by default.
  torch::Tensor preds = torch::zeros({1, 7, 3});
  auto put = [&](int a, std::vector<float> v) { for (int k = 0; k < 7; ++k) preds[0][k][a] = v[k]; };
  put(0, {50, 50, 40, 20, 0.6f, 0.0f, 0.3f});
  put(1, {52, 51, 40, 20, 0.9f, 0.0f, 0.35f});
  put(2, {51, 50, 40, 20, 0.0f, 0.8f, 0.3f});  // same place, other class: kept unless agnostic
  y26::PostprocessOptions opt;
  opt.task = y26::Task::Obb;
  opt.end2end = false;
  opt.nc = 2;
  opt.conf = 0.25f;
  auto det = y26::non_max_suppression(preds, opt);
  EXPECT(det.size() == 1 && det[0].size(0) == 2 && det[0].size(1) == 7);
  EXPECT_NEAR(det[0][0][4].item<double>(), 0.9, 1e-6);
  EXPECT_NEAR(det[0][0][0].item<double>(), 52.0, 1e-6);  // cx kept (no xyxy conversion for rotated boxes)
  EXPECT_NEAR(det[0][0][6].item<double>(), 0.35, 1e-6);   // angle carried
  opt.agnostic_nms = true;
  EXPECT(y26::non_max_suppression(preds, opt)[0].size(0) == 1);
}
TEST_MAIN()
