// Run-folder plots (the `plots` argument): the confusion matrix counts on hand-made detections, results.png from a
// small results.csv, the image grid layout, and a short training run that writes every official plot file.
#include <atomic>
#include <filesystem>
#include <fstream>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "data/synthetic.h"
#include "eval/metrics.h"
#include "eval/plots.h"
#include "scratch.h"
#include "testing.h"
#include "train/trainer.h"

using namespace y26;
namespace fs = std::filesystem;

namespace {

std::string temp_dir(const std::string& name) { return y26test::scratch_dir("test_plots", name); }

torch::Tensor boxes(std::vector<std::array<float, 4>> b) {
  auto t = torch::zeros({(int64_t)b.size(), 4});
  for (size_t i = 0; i < b.size(); ++i)
    for (int k = 0; k < 4; ++k) t[i][k] = b[i][k];
  return t;
}

// The image decodes and is at least min_w x min_h.
bool decodes(const std::string& path, int min_w = 100, int min_h = 100) {
  cv::Mat im = cv::imread(path, cv::IMREAD_COLOR);
  return !im.empty() && im.cols >= min_w && im.rows >= min_h;
}

}  // namespace

TEST_CASE("confusion matrix: TP on the diagonal, a class mix-up, a missed label, a false positive, low conf ignored") {
  ConfusionMatrix cm({"a", "b"});
  // GT: a at A, b at B, a at C. Predictions: a on A (TP), a on B (predicted a, true b), b far away (FP),
  // a on C below the 0.25 confidence (ignored, so C is missed).
  auto gt = boxes({{0, 0, 10, 10}, {20, 20, 30, 30}, {40, 40, 50, 50}});
  auto gt_cls = torch::tensor({0, 1, 0});
  auto pred = boxes({{0, 0, 10, 10.5f}, {20, 20, 30, 31}, {80, 80, 90, 90}, {40, 40, 50, 50}});
  auto conf = torch::tensor({0.9f, 0.8f, 0.7f, 0.1f});
  auto pred_cls = torch::tensor({0, 0, 1, 0});
  cm.process_boxes(pred, conf, pred_cls, gt, gt_cls);
  const auto& m = cm.matrix();  // rows predicted (a, b, background), columns true
  EXPECT(m.size() == 3 && m[0].size() == 3);
  const std::vector<std::vector<double>> want = {{1, 1, 0}, {0, 0, 1}, {1, 0, 0}};
  EXPECT_MSG(m == want, "matrix [[" << m[0][0] << "," << m[0][1] << "," << m[0][2] << "],[" << m[1][0] << ","
                                    << m[1][1] << "," << m[1][2] << "],[" << m[2][0] << "," << m[2][1] << ","
                                    << m[2][2] << "]]");
  // An image without labels: confident predictions are false positives; one without predictions: all missed.
  cm.process_boxes(boxes({{0, 0, 5, 5}, {1, 1, 4, 4}}), torch::tensor({0.5f, 0.2f}), torch::tensor({1, 1}),
                   torch::zeros({0, 4}), torch::zeros({0}));
  cm.process_boxes(torch::zeros({0, 4}), torch::zeros({0}), torch::zeros({0}), boxes({{0, 0, 5, 5}}), torch::tensor({1}));
  EXPECT(cm.matrix()[1][2] == 2 && cm.matrix()[2][1] == 1);
  // Two predictions on one label: the better IoU pairs, the other is a false positive (IoU > 0.45 needed).
  ConfusionMatrix one({"a"});
  one.process_boxes(boxes({{0, 0, 10, 8}, {0, 0, 10, 10}}), torch::tensor({0.9f, 0.6f}), torch::tensor({0, 0}),
                    boxes({{0, 0, 10, 10}}), torch::tensor({0}));
  EXPECT(one.matrix()[0][0] == 1 && one.matrix()[0][1] == 1 && one.matrix()[1][0] == 0);
  // Normalised: every non-empty column sums to 1.
  const auto n = cm.normalized();
  for (size_t c = 0; c < 3; ++c) {
    double s = 0;
    for (size_t r = 0; r < 3; ++r) s += n[r][c];
    EXPECT_NEAR(s, 1.0, 1e-6);
  }
  ConfusionMatrix cls({"x", "y", "z"}, /*classify=*/true);
  cls.process_classes({0, 1, 1, 2}, {0, 1, 2, 2});
  EXPECT(cls.matrix().size() == 3 && cls.matrix()[1][2] == 1 && cls.matrix()[2][2] == 1 && cls.matrix()[0][0] == 1);

  const std::string dir = temp_dir("cm");
  plot_confusion_matrix(cm, true, dir);
  plot_confusion_matrix(cm, false, dir);
  EXPECT(decodes(dir + "/confusion_matrix.png", 400, 400) && decodes(dir + "/confusion_matrix_normalized.png", 400, 400));
}

TEST_CASE("results.png: one chart per loss/metric column from results.csv, written atomically") {
  const std::string dir = temp_dir("results");
  {
    std::ofstream f(dir + "/results.csv");
    f << "epoch,time,train/box_loss,train/cls_loss,metrics/precision(B),metrics/mAP50(B),val/box_loss,val/cls_loss,"
         "lr/pg0\n";
    for (int e = 1; e <= 5; ++e)
      f << e << "," << e * 3 << "," << 2.0 / e << "," << 3.0 / e << "," << 0.1 * e << "," << 0.05 * e << ","
        << 2.5 / e << "," << 3.5 / e << ",0.01\n";
  }
  cv::Mat im = plot_results(dir + "/results.csv");
  // Six plotted columns (not epoch, time or lr) in two rows of three charts.
  cv::Mat read = cv::imread(dir + "/results.png", cv::IMREAD_COLOR);
  EXPECT(!read.empty() && read.cols == im.cols && read.rows == im.rows);
  EXPECT(im.cols == 3 * 380 && im.rows == 2 * 320);
  EXPECT(!fs::exists(dir + "/results.png.tmp"));
  // Something was drawn in every chart: each has non-white pixels.
  for (int r = 0; r < 2; ++r)
    for (int c = 0; c < 3; ++c) {
      cv::Mat cell = im(cv::Rect(c * 380, r * 320, 380, 320)), grey;
      cv::cvtColor(cell, grey, cv::COLOR_BGR2GRAY);
      EXPECT_MSG(cv::countNonZero(grey < 200) > 500, "chart " << r << "," << c << " is empty");
    }
  // One epoch only (a single point per series) still renders.
  std::ofstream(dir + "/one.csv") << "epoch,train/box_loss,metrics/mAP50(B)\n1,1.5,0.2\n";
  EXPECT(!plot_results(dir + "/one.csv", dir + "/one.png").empty() && decodes(dir + "/one.png"));
  EXPECT_THROWS(plot_results(dir + "/missing.csv"));
}

TEST_CASE("image grid: square grid filled column by column, labels drawn, predictions below conf 0.25 left out") {
  std::vector<cv::Mat> ims(3, cv::Mat(64, 96, CV_8UC3, cv::Scalar(40, 40, 40)));
  std::vector<TileLabels> labels(3);
  labels[1].cls = torch::tensor({0L});
  labels[1].boxes = boxes({{10, 10, 60, 50}});
  labels[2].cls = torch::tensor({1L, 1L});
  labels[2].boxes = boxes({{10, 10, 60, 50}, {10, 10, 60, 50}});
  labels[2].conf = torch::tensor({0.1f, 0.2f});  // both under the threshold: nothing drawn
  cv::Mat g = image_grid(ims, labels, {"a", "b"});
  EXPECT(g.cols == 2 * 96 && g.rows == 2 * 64);
  auto changed = [&](int x, int y) {  // pixels of the tile's interior that differ from the plain image
    cv::Mat t = g(cv::Rect(x + 4, y + 20, 96 - 8, 64 - 24)), diff;
    cv::absdiff(t, cv::Scalar(40, 40, 40), diff);
    cv::cvtColor(diff, diff, cv::COLOR_BGR2GRAY);
    return cv::countNonZero(diff > 30);
  };
  // Tile 1 is below tile 0 (column-major); tile 2 starts the second column.
  EXPECT(changed(0, 64) > 50);
  EXPECT(changed(0, 0) == 0 && changed(96, 0) == 0);
  // The empty fourth cell stays white.
  EXPECT(g.at<cv::Vec3b>(64 + 32, 96 + 48) == cv::Vec3b(255, 255, 255));
}

TEST_CASE("a short training run with plots writes the official plot files; each decodes") {
  const std::string data = y26test::write_tiny_set(temp_dir("data"));
  YAML::Node a;
  a["model"] = "yolo26n.yaml";
  a["data"] = data;
  a["epochs"] = 1;
  a["imgsz"] = 64;
  a["batch"] = 4;
  a["workers"] = 1;
  a["project"] = temp_dir("runs");
  a["name"] = "p";
  a["close_mosaic"] = 0;
  std::vector<std::string> warnings;
  TrainCallbacks cb{[&](const TrainEvent& e) {
    if (e.type == "log" && e.str.at("text").find("WARNING") != std::string::npos) warnings.push_back(e.str.at("text"));
  }};
  std::atomic<bool> stop{false};
  auto r = run_training(a, cb, stop);
  EXPECT(r.epochs_completed == 1);
  EXPECT_MSG(warnings.empty(), (warnings.empty() ? "" : warnings[0]));
  for (const char* f : {"results.png", "train_batch0.jpg", "train_batch1.jpg", "train_batch2.jpg", "val_batch0_labels.jpg",
                        "val_batch0_pred.jpg", "confusion_matrix.png", "confusion_matrix_normalized.png",
                        "BoxPR_curve.png", "BoxF1_curve.png", "BoxP_curve.png", "BoxR_curve.png"})
    EXPECT_MSG(decodes(r.save_dir + "/" + f, 64, 64), f << " missing or not an image");
  EXPECT(!fs::exists(r.save_dir + "/train_batch3.jpg"));
  for (const auto& e : fs::directory_iterator(r.save_dir))
    EXPECT_MSG(e.path().extension() != ".tmp", "left over " << e.path());
}

TEST_MAIN()
