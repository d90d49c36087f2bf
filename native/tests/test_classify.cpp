// Classify inference: the classify_transforms preprocessing against PIL (fixtures made with Pillow's
// Image.resize(BILINEAR) and the torchvision Resize/CenterCrop size rules), top-5 and the Probs view, the
// predict pipeline on a tiny random classify model, save_txt lines and the annotated image. Training side: the
// auto_augment ops against hand-computed results, the three policies, RandomErasing and the head's dropout.
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <tuple>
#include <unistd.h>

#include "data/auto_augment.h"
#include "data/classify_loader.h"
#include "infer/annotate.h"
#include "infer/classify.h"
#include "infer/model_forward.h"
#include "infer/pipeline.h"
#include "infer/preprocess.h"
#include "infer/save.h"
#include "infer/source.h"
#include "model/yolo.h"
#include "testing.h"
#include "util/error.h"
#include "util/npy.h"

namespace fs = std::filesystem;

namespace {

fs::path scratch(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("y26_classify_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

cv::Mat read_bgr(const std::string& rel) {
  cv::Mat im = cv::imread(y26test::fixture(rel), cv::IMREAD_COLOR);
  if (im.empty()) y26::fail("cannot read fixture " + rel);
  return im;
}

// The PIL reference (HWC RGB) against our transform (HWC BGR): largest absolute difference.
int max_diff_vs_pil(const cv::Mat& bgr, const std::string& npy) {
  y26::NpyArray ref = y26::read_npy(y26test::fixture("classify/" + npy));
  if (ref.shape.size() != 3 || ref.shape[0] != bgr.rows || ref.shape[1] != bgr.cols) return 999;
  int worst = 0;
  for (int y = 0; y < bgr.rows; ++y)
    for (int x = 0; x < bgr.cols; ++x)
      for (int c = 0; c < 3; ++c) {
        const int want = ref.bytes[(static_cast<size_t>(y) * bgr.cols + x) * 3 + c];
        const int got = bgr.at<cv::Vec3b>(y, x)[2 - c];
        worst = std::max(worst, std::abs(want - got));
      }
  return worst;
}

// A random yolo26n-cls with BatchNorm calibrated on noise, so that its outputs depend on the image.
std::shared_ptr<y26::YoloModel> tiny_classifier(int nc) {
  torch::manual_seed(3);
  auto m = y26::build_model("yolo26n-cls.yaml", nc);
  y26::calibrate_batchnorm(*m, torch::rand({8, 3, 48, 48}));
  return m;
}

}  // namespace

TEST_CASE("classify_transform equals PIL: downscale + centre crop (tie rounds to even), upscale, non-square") {
  cv::Mat wide = read_bgr("images/extra/wide_480x300.png");
  cv::Mat t = y26::classify_transform(wide, 32, 32);  // 480x300 -> 51x32, crop left round(9.5) = 10
  EXPECT(t.rows == 32 && t.cols == 32);
  EXPECT_NEAR(max_diff_vs_pil(t, "transform_wide_32.npy"), 0, 0);

  cv::Mat small = wide(cv::Rect(100, 50, 37, 23)).clone();  // 37x23 -> 102x64 (upscaling), crop left 19
  t = y26::classify_transform(small, 64, 64);
  EXPECT(t.rows == 64 && t.cols == 64);
  EXPECT_NEAR(max_diff_vs_pil(t, "transform_wide_crop_up_64.npy"), 0, 0);

  cv::Mat sq = read_bgr("images/val/s11_val_0000.png");
  t = y26::classify_transform(sq, 40, 56);  // non-square imgsz: exact resize, aspect not kept
  EXPECT(t.rows == 40 && t.cols == 56);
  EXPECT_NEAR(max_diff_vs_pil(t, "transform_s11_0000_40x56.npy"), 0, 0);

  // Same size: untouched pixels.
  cv::Mat same = y26::classify_transform(sq, 320, 320);
  EXPECT(cv::norm(same, sq, cv::NORM_INF) == 0);
}

TEST_CASE("top-5 classes, the Probs result, save_txt lines and the summary") {
  torch::Tensor p = torch::tensor({0.05f, 0.4f, 0.1f, 0.3f, 0.02f, 0.13f});
  auto top = y26::topk_classes(p);
  EXPECT((top == std::vector<int64_t>{1, 3, 5, 2, 0}));
  EXPECT((y26::topk_classes(p.slice(0, 0, 3)) == std::vector<int64_t>{1, 2, 0}));  // fewer than 5 classes
  auto r = y26::make_classify_result(p, 30, 40);
  EXPECT(r.size() == 0 && r.probs.numel() == 6 && r.orig_h == 30 && r.orig_w == 40);
  std::vector<std::string> names{"a", "b", "c", "d", "e", "f"};
  EXPECT(y26::format_classify_txt(r, names) == "0.40 b\n0.30 d\n0.13 f\n0.10 c\n0.05 a\n");
  EXPECT(y26::classify_summary(r, names) == "b 0.40, d 0.30, f 0.13, c 0.10, a 0.05");

  y26::PostprocessOptions po;
  po.task = y26::Task::Classify;
  std::vector<y26::Letterboxed> metas(2);
  metas[0].orig_h = 10, metas[0].orig_w = 20, metas[1].orig_h = 5, metas[1].orig_w = 6;
  auto res = y26::postprocess(torch::stack({p, p.flip(0)}), metas, po);
  EXPECT(res.size() == 2 && res[1].orig_w == 6 && y26::topk_classes(res[1].probs)[0] == 4);
  EXPECT_THROWS(y26::postprocess(torch::zeros({2, 6, 1}), metas, po));
  EXPECT(y26::parse_task("classify") == y26::Task::Classify && y26::task_name(y26::Task::Classify) == "classify");
}

TEST_CASE("predict pipeline on a tiny classify model: probs sum to 1, top1 is the argmax of the forward") {
  auto model = tiny_classifier(7);
  y26::PipelineOptions po = y26::model_pipeline_options(*model);
  EXPECT(po.post.task == y26::Task::Classify && po.stride == 1 && !po.post.end2end);
  po.imgsz_h = po.imgsz_w = 48;
  po.batch = 2;
  po.keep_images = true;
  const std::vector<std::string> files{"images/extra/wide_480x300.png", "images/val/s11_val_0000.png",
                                       "images/val/s11_val_0001.png"};
  std::vector<std::string> paths;
  for (const auto& f : files) paths.push_back(y26test::fixture(f));
  auto results = y26::predict_all(y26::open_path_list_source(paths), y26::model_forward(model), po);
  EXPECT(results.size() == 3);
  for (size_t i = 0; i < results.size(); ++i) {
    const auto& r = results[i];
    EXPECT_MSG(r.error.empty(), r.error);
    EXPECT(r.probs.defined() && r.probs.numel() == 7 && r.size() == 0);
    EXPECT_NEAR(r.probs.sum().item<double>(), 1.0, 1e-5);
    // The same preprocessing by hand, then the model: the pipeline's top-1 must be this argmax.
    cv::Mat im = read_bgr(files[i]);
    EXPECT(r.orig_h == im.rows && r.orig_w == im.cols);
    torch::Tensor x = y26::preprocess_batch({y26::classify_transform(im, 48, 48)}, torch::kCPU);
    torch::Tensor want = model->forward(x).cls_probs[0];
    EXPECT(y26::topk_classes(r.probs)[0] == want.argmax().item<int64_t>());
    EXPECT_NEAR((r.probs - want).abs().max().item<double>(), 0.0, 1e-5);
    auto top = y26::topk_classes(r.probs);
    for (size_t k = 1; k < top.size(); ++k) EXPECT(r.probs[top[k - 1]].item<float>() >= r.probs[top[k]].item<float>());
  }
  // Different images give different outputs (the random model is not constant).
  EXPECT((results[0].probs - results[1].probs).abs().max().item<double>() > 1e-3);

  // Saving: runs/classify/predict with the annotated image and the top-5 label lines.
  fs::path dir = scratch("save");
  y26::SaveOptions so;
  so.project = dir.string();
  so.task = y26::Task::Classify;
  so.save_txt = true;
  so.names = {"zero", "one", "two", "three", "four", "five", "six"};
  {
    y26::ResultSaver saver(so);
    EXPECT(saver.save_dir() == (dir / "classify" / "predict").string());
    const std::string img = saver.save(results[0]);
    cv::Mat plotted = cv::imread(img);
    EXPECT(plotted.rows == 300 && plotted.cols == 480);
    // The text tags are drawn in the top-left corner; the rest of the image is untouched.
    cv::Mat orig = results[0].orig_image;
    EXPECT(cv::norm(plotted(cv::Rect(0, 0, 120, 60)), orig(cv::Rect(0, 0, 120, 60)), cv::NORM_L1) > 1000);
  }
  std::ifstream f(dir / "classify" / "predict" / "labels" / "wide_480x300.txt");
  std::stringstream ss;
  ss << f.rdbuf();
  EXPECT(ss.str() == y26::format_classify_txt(results[0], so.names));
  int lines = 0;
  for (char c : ss.str()) lines += c == '\n';
  EXPECT(lines == 5);
  fs::remove_all(dir);
}

namespace {

// A 3-channel image whose pixels (one row) are the given grey values.
cv::Mat grey_row(const std::vector<int>& v) {
  cv::Mat m(1, (int)v.size(), CV_8UC3);
  for (size_t i = 0; i < v.size(); ++i) m.at<cv::Vec3b>(0, (int)i) = cv::Vec3b(v[i], v[i], v[i]);
  return m;
}
std::vector<int> channel_row(const cv::Mat& m, int c, int row = 0) {
  std::vector<int> out;
  for (int x = 0; x < m.cols; ++x) out.push_back(m.at<cv::Vec3b>(row, x)[c]);
  return out;
}
using y26::AugOp;
cv::Mat op(const cv::Mat& m, AugOp o, double mag) { return y26::apply_augment_op(m, o, mag); }

cv::Mat noise_image(int h, int w, int seed) {
  cv::Mat im(h, w, CV_8UC3);
  cv::RNG rng(seed);
  rng.fill(im, cv::RNG::UNIFORM, 0, 256);
  cv::rectangle(im, cv::Rect(w / 4, h / 4, w / 2, h / 3), cv::Scalar(20, 200, 90), cv::FILLED);
  return im;
}

}  // namespace

TEST_CASE("auto_augment names: the three policies, off values, and an unknown name lists the valid ones") {
  EXPECT(y26::parse_auto_augment("randaugment") == y26::AugPolicy::RandAugment);
  EXPECT(y26::parse_auto_augment("autoaugment") == y26::AugPolicy::AutoAugment);
  EXPECT(y26::parse_auto_augment("AugMix") == y26::AugPolicy::AugMix);
  for (const char* off : {"", "none", "null", "false"}) EXPECT(y26::parse_auto_augment(off) == y26::AugPolicy::None);
  std::string msg;
  try {
    y26::parse_auto_augment("trivialaugment");
  } catch (const std::exception& e) {
    msg = e.what();
  }
  EXPECT_MSG(msg.find("trivialaugment") != std::string::npos && msg.find("randaugment") != std::string::npos &&
                 msg.find("autoaugment") != std::string::npos && msg.find("augmix") != std::string::npos,
             "message: " << msg);
}

TEST_CASE("auto_augment pixel ops against hand-computed values (PIL rules)") {
  const cv::Mat px = grey_row({10, 127, 128, 200});
  EXPECT((channel_row(op(px, AugOp::Solarize, 128), 1) == std::vector<int>{10, 127, 127, 55}));
  EXPECT((channel_row(op(px, AugOp::Solarize, 178.5), 0) == std::vector<int>{10, 127, 128, 55}));
  EXPECT((channel_row(op(px, AugOp::Posterize, 3), 2) == std::vector<int>{0, 96, 128, 192}));  // keep the top 3 bits
  EXPECT(cv::norm(op(px, AugOp::Posterize, 8), px, cv::NORM_INF) == 0);
  EXPECT((channel_row(op(px, AugOp::Invert, 0), 0) == std::vector<int>{245, 128, 127, 55}));
  // Brightness factor 1 + m: 1.5 * v truncated, clamped at 255.
  EXPECT((channel_row(op(grey_row({100, 101, 200}), AugOp::Brightness, 0.5), 1) == std::vector<int>{150, 151, 255}));
  // Contrast factor 0.5 towards the grey mean 150 (grey pixels: PIL's L equals the value).
  EXPECT((channel_row(op(grey_row({100, 200, 100, 200}), AugOp::Contrast, -0.5), 2) ==
          std::vector<int>{125, 175, 125, 175}));
  // Color factor 0: PIL's L of pure red (BGR 0,0,255) = (255 * 19595 + 32768) >> 16 = 76 in every channel.
  cv::Mat red(1, 1, CV_8UC3, cv::Scalar(0, 0, 255));
  EXPECT(op(red, AugOp::Color, -1.0).at<cv::Vec3b>(0, 0) == cv::Vec3b(76, 76, 76));
  EXPECT(cv::norm(op(grey_row({30, 90}), AugOp::Color, 0.8), grey_row({30, 90}), cv::NORM_INF) == 0);

  // AutoContrast per channel: B in {50, 100, 150} -> {0, 127, 255}; a constant channel is left as it is.
  cv::Mat ac(1, 3, CV_8UC3);
  for (int i = 0; i < 3; ++i) ac.at<cv::Vec3b>(0, i) = cv::Vec3b(50 + 50 * i, 77, 0 + 10 * i);
  cv::Mat a = op(ac, AugOp::AutoContrast, 0);
  EXPECT((channel_row(a, 0) == std::vector<int>{0, 127, 255}));
  EXPECT((channel_row(a, 1) == std::vector<int>{77, 77, 77}));
  EXPECT((channel_row(a, 2) == std::vector<int>{0, 127, 255}));  // 0, 10, 20: scale 12.75

  // Equalize on 32x32: B has 512 px of 10, 256 of 50, 256 of 90 -> step (1024 - 256) // 255 = 3,
  // lut = (1 + pixels below) // 3: 10 -> 0, 50 -> 171, 90 -> 256 clamped to 255. G is one value: unchanged.
  cv::Mat eq(32, 32, CV_8UC3, cv::Scalar(10, 77, 10));
  eq(cv::Rect(0, 16, 16, 16)).setTo(cv::Scalar(50, 77, 50));
  eq(cv::Rect(16, 16, 16, 16)).setTo(cv::Scalar(90, 77, 90));
  cv::Mat e = op(eq, AugOp::Equalize, 0);
  EXPECT(e.at<cv::Vec3b>(0, 0) == cv::Vec3b(0, 77, 0));
  EXPECT(e.at<cv::Vec3b>(20, 3) == cv::Vec3b(171, 77, 171));
  EXPECT(e.at<cv::Vec3b>(20, 30) == cv::Vec3b(255, 77, 255));

  // Sharpness: factor 0 is PIL's SMOOTH blur (centre 5/13, neighbours 1/13, border kept), factor 2 extrapolates.
  cv::Mat dot(5, 5, CV_8UC3, cv::Scalar::all(0));
  dot.at<cv::Vec3b>(1, 2) = cv::Vec3b(130, 130, 130);
  cv::Mat blur = op(dot, AugOp::Sharpness, -1.0), sharp = op(dot, AugOp::Sharpness, 1.0);
  EXPECT(blur.at<cv::Vec3b>(1, 2)[0] == 50 && blur.at<cv::Vec3b>(2, 1)[1] == 10 && blur.at<cv::Vec3b>(1, 3)[2] == 10);
  EXPECT(blur.at<cv::Vec3b>(0, 2)[0] == 0);  // border row kept (a blur there would give 10)
  EXPECT(sharp.at<cv::Vec3b>(1, 2)[0] == 210 && sharp.at<cv::Vec3b>(2, 2)[0] == 0);
}

TEST_CASE("auto_augment geometry: shear direction, integer translation, counter-clockwise rotation, black fill") {
  // A vertical line at column 10: ShearX(m) reads x + m * y (pixel centres), so row r moves left by m * (r + 0.5).
  cv::Mat vline(16, 16, CV_8UC3, cv::Scalar::all(0));
  vline.col(10).setTo(cv::Scalar::all(255));
  cv::Mat sx = op(vline, AugOp::ShearX, 0.4);
  EXPECT(sx.at<cv::Vec3b>(2, 9)[0] == 255 && sx.at<cv::Vec3b>(2, 10)[0] == 0);   // shift 0.4 * 2.5 = 1
  EXPECT(sx.at<cv::Vec3b>(7, 7)[1] == 255 && sx.at<cv::Vec3b>(7, 10)[1] == 0);   // shift 0.4 * 7.5 = 3
  cv::Mat sxn = op(vline, AugOp::ShearX, -0.4);
  EXPECT(sxn.at<cv::Vec3b>(7, 13)[2] == 255);                                     // negative: to the right
  cv::Mat hline(16, 16, CV_8UC3, cv::Scalar::all(0));
  hline.row(10).setTo(cv::Scalar::all(255));
  cv::Mat sy = op(hline, AugOp::ShearY, 0.4);
  EXPECT(sy.at<cv::Vec3b>(9, 2)[0] == 255 && sy.at<cv::Vec3b>(7, 7)[0] == 255 && sy.at<cv::Vec3b>(10, 7)[0] == 0);

  // TranslateX 3.7 -> int 3: content moves right by 3, black enters on the left.
  cv::Mat im = noise_image(8, 12, 5);
  cv::Mat tx = op(im, AugOp::TranslateX, 3.7);
  EXPECT(cv::norm(tx(cv::Rect(3, 0, 9, 8)), im(cv::Rect(0, 0, 9, 8)), cv::NORM_INF) == 0);
  EXPECT(cv::countNonZero(tx(cv::Rect(0, 0, 3, 8)).reshape(1)) == 0);
  cv::Mat ty = op(im, AugOp::TranslateY, -2.2);  // up by 2
  EXPECT(cv::norm(ty(cv::Rect(0, 0, 12, 6)), im(cv::Rect(0, 2, 12, 6)), cv::NORM_INF) == 0);

  // Rotate 90 (degrees, counter-clockwise about the centre): the top-right pixel goes to the top-left.
  cv::Mat sq = noise_image(6, 6, 9);
  cv::Mat rot = op(sq, AugOp::Rotate, 90);
  cv::Mat want;
  cv::rotate(sq, want, cv::ROTATE_90_COUNTERCLOCKWISE);
  EXPECT(cv::norm(rot, want, cv::NORM_INF) == 0);
  EXPECT(cv::norm(op(sq, AugOp::Rotate, 0), sq, cv::NORM_INF) == 0);
}

TEST_CASE("auto_augment ops match torchvision 0.14 on PIL (stored outputs): exact, the affine ones within 1 level") {
  const std::string dir = y26test::fixture("auto_augment");
  cv::Mat in = cv::imread(dir + "/in.png", cv::IMREAD_COLOR);
  EXPECT(!in.empty());
  const std::vector<std::tuple<std::string, AugOp, double>> cases = {
      {"ShearX_0.2", AugOp::ShearX, 0.2},          {"ShearY_-0.15", AugOp::ShearY, -0.15},
      {"TranslateX_5.6", AugOp::TranslateX, 5.6},  {"Rotate_17", AugOp::Rotate, 17},
      {"Brightness_0.5", AugOp::Brightness, 0.5},  {"Color_-0.5", AugOp::Color, -0.5},
      {"Contrast_0.45", AugOp::Contrast, 0.45},    {"Sharpness_0.8", AugOp::Sharpness, 0.8},
      {"Posterize_5", AugOp::Posterize, 5},        {"Solarize_100", AugOp::Solarize, 100},
      {"AutoContrast_0", AugOp::AutoContrast, 0},  {"Equalize_0", AugOp::Equalize, 0}};
  for (const auto& [name, o, m] : cases) {
    cv::Mat want = cv::imread(dir + "/" + name + ".png", cv::IMREAD_COLOR);
    cv::Mat got = op(in, o, m), diff;
    cv::absdiff(got, want, diff);
    const double worst = cv::norm(diff, cv::NORM_INF);
    const int off = cv::countNonZero(diff.reshape(1));
    // torchvision builds the affine matrix in float: a pixel in a few hundred may land one level apart.
    const bool affine = o == AugOp::ShearX || o == AugOp::ShearY || o == AugOp::Rotate || o == AugOp::TranslateX;
    EXPECT_MSG(affine ? worst <= 1 && off * 100 <= (int)diff.total() * 3 : worst == 0,
               name << ": max difference " << worst << ", " << off << " values differ");
  }
}

TEST_CASE("auto_augment policies change images, repeat from the seed, and replace ColorJitter") {
  const cv::Mat im = noise_image(24, 24, 1);
  for (auto p : {y26::AugPolicy::RandAugment, y26::AugPolicy::AutoAugment, y26::AugPolicy::AugMix}) {
    int changed = 0, differ = 0;
    for (uint64_t seed = 0; seed < 10; ++seed) {
      std::mt19937_64 r1(seed), r2(seed), r3(seed + 100);
      cv::Mat a = y26::apply_auto_augment(im, p, r1), b = y26::apply_auto_augment(im, p, r2);
      cv::Mat c = y26::apply_auto_augment(im, p, r3);
      EXPECT(a.size() == im.size() && a.type() == im.type());
      EXPECT_MSG(cv::norm(a, b, cv::NORM_INF) == 0, y26::auto_augment_name(p) << " not reproducible, seed " << seed);
      changed += cv::norm(a, im, cv::NORM_INF) > 0;
      differ += cv::norm(a, c, cv::NORM_INF) > 0;
    }
    // RandAugment may draw Identity twice and AutoAugment may skip both steps, so not every seed must change.
    EXPECT_MSG(changed >= 6 && differ >= 6, y26::auto_augment_name(p) << ": changed " << changed << ", differ " << differ);
  }
  std::mt19937_64 r0(1);
  EXPECT(cv::norm(y26::apply_auto_augment(im, y26::AugPolicy::None, r0), im, cv::NORM_INF) == 0);

  // In the train transform a policy switches ColorJitter off: the hsv values then change nothing.
  y26::ClassifyAugment a;
  a.scale = 0;
  a.fliplr = 0;
  a.auto_augment = y26::AugPolicy::RandAugment;
  y26::ClassifyAugment b = a;
  b.hsv_h = b.hsv_s = b.hsv_v = 0;
  for (uint64_t seed = 0; seed < 4; ++seed) {
    cv::Mat x = y26::classify_train_transform(im, 16, a, seed), y = y26::classify_train_transform(im, 16, b, seed);
    EXPECT(cv::norm(x, y, cv::NORM_INF) == 0);
  }
  a.auto_augment = b.auto_augment = y26::AugPolicy::None;  // without one ColorJitter runs
  bool jitter = false;
  for (uint64_t seed = 0; seed < 4; ++seed)
    jitter = jitter || cv::norm(y26::classify_train_transform(im, 16, a, seed),
                                y26::classify_train_transform(im, 16, b, seed), cv::NORM_INF) > 0;
  EXPECT(jitter);
}

TEST_CASE("random erasing: p=0 leaves the image, p=1 fills one rectangle within torchvision's area/aspect ranges") {
  const cv::Mat base(40, 40, CV_8UC3, cv::Scalar::all(200));
  for (uint64_t seed = 0; seed < 12; ++seed) {
    std::mt19937_64 rng(seed);
    cv::Mat im = base.clone();
    EXPECT(y26::random_erasing(im, 0.0, 0, rng).empty() && cv::norm(im, base, cv::NORM_INF) == 0);
    const cv::Rect r = y26::random_erasing(im, 1.0, 0, rng);
    EXPECT(!r.empty());
    if (r.empty()) continue;
    const double frac = (double)r.area() / (40 * 40), ar = (double)r.height / r.width;
    EXPECT_MSG(frac > 0.01 && frac < 0.37 && ar > 0.25 && ar < 4.0, "rect " << r << " frac " << frac << " ar " << ar);
    cv::Mat erased = im(r), outside = im.clone();
    outside(r).setTo(cv::Scalar::all(200));
    EXPECT(cv::countNonZero(erased.reshape(1)) == 0);             // value 0 in every channel
    EXPECT(cv::norm(outside, base, cv::NORM_INF) == 0);           // nothing else touched
  }
  // The train transform erases with the official classify value 0 (mean 0, std 1 normalisation) = black.
  EXPECT(y26::kClassifyEraseValue == 0);
  y26::ClassifyAugment a;
  a.scale = 0;
  a.fliplr = a.hsv_h = a.hsv_s = a.hsv_v = 0;
  a.erasing = 1.0;
  int black = 0;
  for (uint64_t seed = 0; seed < 4; ++seed) {
    cv::Mat t = y26::classify_train_transform(base, 32, a, seed);
    std::vector<cv::Mat> ch;
    cv::split(t, ch);
    black += cv::countNonZero(ch[0] == 0) > 0;
  }
  EXPECT(black == 4);
}

TEST_CASE("classify head dropout: active in train mode only, p=0 changes nothing, clone keeps it") {
  auto model = tiny_classifier(5);
  auto* head = model->classify_head();
  EXPECT(head != nullptr && head->dropout == 0.0);
  const torch::Tensor x = torch::rand({2, 3, 32, 32});
  torch::NoGradGuard ng;
  model->eval();
  const torch::Tensor e0 = model->forward(x).cls_logits;
  head->dropout = 0.5;
  EXPECT(torch::equal(model->forward(x).cls_logits, e0));  // eval: no dropout
  auto copy = model->clone_model();
  EXPECT(copy->classify_head()->dropout == 0.5);
  head->dropout = 0.0;
  model->train();
  const torch::Tensor t0 = model->forward(x).cls_logits, t1 = model->forward(x).cls_logits;
  EXPECT(torch::equal(t0, t1));  // p=0: deterministic in train mode too
  head->dropout = 0.5;
  const torch::Tensor d0 = model->forward(x).cls_logits, d1 = model->forward(x).cls_logits;
  EXPECT((d0 - t0).abs().max().item<double>() > 1e-4 && (d0 - d1).abs().max().item<double>() > 1e-4);
  EXPECT(y26::build_model("yolo26n.yaml", 3)->classify_head() == nullptr);
}

TEST_MAIN()
