// Classify inference: the classify_transforms preprocessing against PIL (fixtures made with Pillow's
// Image.resize(BILINEAR) and the torchvision Resize/CenterCrop size rules), top-5 and the Probs view, the
// predict pipeline on a tiny random classify model, save_txt lines and the annotated image.
#include <opencv2/imgcodecs.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <unistd.h>

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

TEST_MAIN()
