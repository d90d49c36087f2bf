// Task-generic training: the criterion interface (detect, segment, pose, obb, classify), the synthetic task sets,
// losses that fall on a fixed batch (the wiring back-propagates, for pose into the keypoint head and the RLE flow), short
// training runs end to end (files, task columns, events, reload as the task's model, standalone val).
#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "data/classify_loader.h"
#include "data/dataset.h"
#include "data/obb_labels.h"
#include "data/loader.h"
#include "data/synthetic.h"
#include "eval/validator.h"
#include "io/checkpoint.h"
#include "model/config.h"
#include "model/loader.h"
#include "model/yolo.h"
#include "scratch.h"
#include "testing.h"
#include "train/criterion.h"
#include "train/trainer.h"
#include "util/error.h"

using namespace y26;
namespace fs = std::filesystem;

namespace {

std::string temp_dir(const std::string& name) { return y26test::scratch_dir("test_train_tasks", name); }

// 8 train / 4 val images of 96 px with large shapes and 5 keypoints each.
std::string tiny_pose_dataset() {
  static std::string yaml;
  if (yaml.empty()) yaml = y26test::write_tiny_set(temp_dir("pose_data"), "pose", 8, 4);
  return yaml;
}

// Small synthetic set of another task (segment / obb), 6 train / 2 val images of 96 px.
std::string tiny_task_dataset(const std::string& task) {
  return y26test::write_tiny_set(temp_dir(task + "_data"), task, 6, 2, 0.35f);
}

// First batch (no augmentation) of a data set's train split at imgsz 64.
Batch first_batch(const std::string& yaml, int batch) {
  DataConfig dc = load_data_yaml(yaml);
  DatasetOptions dso;
  dso.imgsz = 64;
  auto ds = Dataset::open(dc, "train", dso, IndexOptions{});
  LoaderOptions lo;
  lo.batch = batch;
  lo.workers = 1;
  lo.shuffle = false;
  lo.augment = false;
  DataLoader loader(ds, lo);
  Batch b;
  if (!loader.next(b)) fail("no batch in " + yaml);
  return b;
}

// Adam steps on one fixed batch: the criterion's total after each step (before the update).
std::vector<double> fixed_batch_totals(YoloModel& model, TrainCriterion& crit, const Batch& b, int steps) {
  model.train();
  auto img = b.img.to(torch::kFloat32).div(255.0);
  torch::optim::Adam opt(model.parameters(), torch::optim::AdamOptions(1e-3));
  std::vector<double> totals;
  for (int step = 0; step < steps; ++step) {
    opt.zero_grad();
    auto r = crit.compute(model.forward(img), b, torch::Device(torch::kCPU), false);
    EXPECT(r.items.numel() == (int64_t)crit.loss_names().size() && torch::isfinite(r.items).all().item<bool>());
    r.total.backward();
    opt.step();
    totals.push_back(r.total.item<double>());
  }
  return totals;
}

std::vector<std::string> csv_header(const std::string& path) {
  std::ifstream f(path);
  std::string line, cell;
  std::getline(f, line);
  std::vector<std::string> out;
  std::stringstream ss(line);
  while (std::getline(ss, cell, ',')) out.push_back(cell);
  return out;
}

std::vector<std::vector<double>> csv_rows(const std::string& path) {
  std::ifstream f(path);
  std::string line, cell;
  std::getline(f, line);
  std::vector<std::vector<double>> rows;
  while (std::getline(f, line)) {
    if (line.empty()) continue;
    std::vector<double> r;
    std::stringstream ss(line);
    while (std::getline(ss, cell, ',')) r.push_back(std::stod(cell));
    rows.push_back(r);
  }
  return rows;
}

size_t column(const std::vector<std::string>& header, const std::string& name) {
  for (size_t i = 0; i < header.size(); ++i)
    if (header[i] == name) return i;
  return header.size();
}

std::shared_ptr<YoloModel> pose_model(int nc, std::vector<int64_t> kpt_shape) {
  auto cfg = load_model_config("yolo26n-pose.yaml");
  set_num_classes(cfg, nc);
  set_kpt_shape(cfg, kpt_shape);
  return std::make_shared<YoloModel>(cfg);
}


// A short training run's arguments (no plots), as the per-task tests use them.
YAML::Node run_args(const std::string& model, const std::string& data, int epochs, int imgsz, int batch, int workers,
                    const std::string& project, const std::string& name) {
  YAML::Node a;
  a["model"] = model;
  a["data"] = data;
  a["epochs"] = epochs;
  a["imgsz"] = imgsz;
  a["batch"] = batch;
  a["workers"] = workers;
  a["project"] = project;
  a["name"] = name;
  a["plots"] = false;
  return a;
}

}  // namespace

TEST_CASE("synthetic pose set: kpt_shape, flip_idx and keypoints at the corners and centre of each box") {
  DataConfig dc = load_data_yaml(tiny_pose_dataset());
  EXPECT(dc.kpt_count == 5 && dc.kpt_dims == 3);
  EXPECT(dc.flip_idx == std::vector<int>({1, 0, 3, 2, 4}));
  DatasetOptions dso;
  dso.imgsz = 64;
  auto ds = Dataset::open(dc, "train", dso, IndexOptions{});
  LoaderOptions lo;
  lo.batch = 8;
  lo.workers = 1;
  lo.shuffle = false;
  lo.augment = false;
  DataLoader loader(ds, lo);
  Batch b;
  EXPECT(loader.next(b));
  EXPECT(b.keypoints.defined() && b.keypoints.dim() == 3);
  if (!b.keypoints.defined()) return;
  EXPECT(b.keypoints.size(0) == b.bboxes.size(0) && b.keypoints.size(1) == 5 && b.keypoints.size(2) == 3);
  // Keypoint 0 is the top-left corner, 2 the bottom-right, 4 the centre of the (normalised xywh) box.
  auto xy = b.bboxes;
  auto tl = xy.narrow(1, 0, 2) - xy.narrow(1, 2, 2) / 2, br = xy.narrow(1, 0, 2) + xy.narrow(1, 2, 2) / 2;
  auto k = b.keypoints;
  EXPECT(torch::allclose(k.select(1, 0).narrow(1, 0, 2), tl, 0, 2e-2));
  EXPECT(torch::allclose(k.select(1, 2).narrow(1, 0, 2), br, 0, 2e-2));
  EXPECT(torch::allclose(k.select(1, 4).narrow(1, 0, 2), xy.narrow(1, 0, 2), 0, 2e-2));
  EXPECT((k.select(2, 2) == 2).all().item<bool>());
}

TEST_CASE("criterion: official loss names per task (classify: the single item 'loss')") {
  auto det = y26::build_model("yolo26n.yaml", 3);
  auto dc = make_criterion(*det, 3, 10, resolve_train_args(YAML::Node()));
  EXPECT(dc->loss_names() == std::vector<std::string>({"box", "cls", "dfl"}));
  EXPECT(loss_columns(*dc, "train/") ==
         std::vector<std::string>({"train/box_loss", "train/cls_loss", "train/dfl_loss"}));
  auto pose = pose_model(3, {5, 3});
  auto pc = make_criterion(*pose, 3, 10, resolve_train_args(YAML::Node()));
  EXPECT(pc->loss_names() == std::vector<std::string>({"box", "pose", "kobj", "cls", "dfl", "rle"}));
  pc->set_updates(4);
  EXPECT(pc->updates() == 4);
  pc->update();
  EXPECT(pc->updates() == 5);
  EXPECT(metric_keys("pose").size() == 8 && metric_keys("pose")[4] == "metrics/precision(P)");
  EXPECT(metric_keys("detect").size() == 4);
  auto seg = y26::build_model("yolo26n-seg.yaml", 3);
  EXPECT(make_criterion(*seg, 3, 10, YAML::Node())->loss_names() ==
         std::vector<std::string>({"box", "seg", "cls", "dfl", "sem"}));
  auto obb = y26::build_model("yolo26n-obb.yaml", 3);
  EXPECT(make_criterion(*obb, 3, 10, YAML::Node())->loss_names() ==
         std::vector<std::string>({"box", "cls", "dfl", "angle"}));
  EXPECT(metric_keys("segment").size() == 8 && metric_keys("segment")[7] == "metrics/mAP50-95(M)");
  EXPECT(metric_keys("obb") == metric_keys("detect"));
  auto cls = y26::build_model("yolo26n-cls.yaml", 3);
  auto cc = make_criterion(*cls, 3, 10, YAML::Node());
  EXPECT(cc->loss_names() == std::vector<std::string>({"loss"}));
  EXPECT(loss_columns(*cc, "train/") == std::vector<std::string>({"train/loss"}));
  EXPECT(metric_keys("classify") == std::vector<std::string>({"metrics/accuracy_top1", "metrics/accuracy_top5"}));
}

TEST_CASE("classify loss: mean cross-entropy of the logits (official v8ClassificationLoss, no batch factor)") {
  auto cls = y26::build_model("yolo26n-cls.yaml", 3);
  auto cc = make_criterion(*cls, 3, 10, YAML::Node());
  ModelOutput out;
  out.cls_logits = torch::tensor({2.0f, 0.0f, -1.0f, 0.5f, 0.5f, 3.0f}).view({2, 3});
  Batch b;
  b.img = torch::zeros({2, 3, 32, 32}, torch::kUInt8);
  b.cls = torch::tensor({0.0f, 1.0f}).view({2, 1});
  auto r = cc->compute(out, b, torch::kCPU, false);
  // by hand: -log softmax picks, averaged
  auto ls = torch::log_softmax(out.cls_logits, 1);
  const double want = -(ls[0][0].item<double>() + ls[1][1].item<double>()) / 2;
  EXPECT_NEAR(r.total.item<double>(), want, 1e-6);
  EXPECT(r.items.numel() == 1);
  EXPECT_NEAR(r.items[0].item<double>(), want, 1e-6);
  auto r1 = cc->compute(out, b, torch::kCPU, true);  // single_cls: every target is class 0
  EXPECT_NEAR(r1.total.item<double>(), -(ls[0][0].item<double>() + ls[1][0].item<double>()) / 2, 1e-6);
}

TEST_CASE("classify train transform: imgsz square output, reproducible from the seed, flips follow fliplr") {
  cv::Mat im(40, 60, CV_8UC3);
  cv::randu(im, 0, 255);
  ClassifyAugment aug;
  auto a = classify_train_transform(im, 32, aug, 7), b = classify_train_transform(im, 32, aug, 7);
  EXPECT(a.rows == 32 && a.cols == 32 && a.type() == CV_8UC3);
  EXPECT(cv::norm(a, b, cv::NORM_INF) == 0);
  auto c = classify_train_transform(im, 32, aug, 8);
  EXPECT(cv::norm(a, c, cv::NORM_INF) > 0);
  // No randomness left: full-image crop (scale 0), no flips, no jitter = a plain resize of a 4:3 image.
  ClassifyAugment none;
  none.scale = 0;
  none.fliplr = none.flipud = none.hsv_h = none.hsv_s = none.hsv_v = 0;
  cv::Mat sq(48, 48, CV_8UC3);
  cv::randu(sq, 0, 255);
  cv::Mat want;
  cv::resize(sq, want, cv::Size(32, 32), 0, 0, cv::INTER_LINEAR);
  EXPECT(cv::norm(classify_train_transform(sq, 32, none, 3), want, cv::NORM_INF) == 0);
  none.fliplr = 1.0;
  cv::Mat flipped;
  cv::flip(want, flipped, 1);
  EXPECT(cv::norm(classify_train_transform(sq, 32, none, 3), flipped, cv::NORM_INF) == 0);
  // Brightness/contrast/saturation jitter keeps a grey image grey (every channel changes alike).
  ClassifyAugment jit = none;
  jit.fliplr = 0;
  jit.hsv_v = 0.4;
  jit.hsv_s = 0.7;
  cv::Mat grey(48, 48, CV_8UC3, cv::Scalar(100, 100, 100));
  grey(cv::Rect(0, 0, 24, 48)).setTo(cv::Scalar(60, 60, 60));
  bool changed = false;
  for (uint64_t seed = 0; seed < 8; ++seed) {
    auto j = classify_train_transform(grey, 32, jit, seed);
    std::vector<cv::Mat> ch;
    cv::split(j, ch);
    EXPECT(cv::norm(ch[0], ch[1], cv::NORM_INF) <= 1 && cv::norm(ch[0], ch[2], cv::NORM_INF) <= 1);
    changed = changed || cv::norm(j, classify_train_transform(grey, 32, none, 0), cv::NORM_INF) > 0;
  }
  EXPECT(changed);
}

// root/{train,val}/<class>/*.png: 3 classes of 32 px images, 8 train / 3 val each.
std::string tiny_classify_dataset() {
  static std::string root;
  if (root.empty()) root = y26test::write_tiny_classify_set(temp_dir("cls_data"));
  return root;
}

TEST_CASE("classify training: train/loss + accuracy columns, reload as classify, val() works") {
  const std::string project = temp_dir("runs");
  std::atomic<bool> stop{false};
  std::vector<TrainEvent> events;
  TrainCallbacks cb{[&](const TrainEvent& e) { events.push_back(e); }};
  YAML::Node a = run_args("yolo26n-cls.yaml", tiny_classify_dataset(), 2, 32, 8, 2, project, "c");
  auto r = run_training(a, cb, stop);
  EXPECT(r.epochs_completed == 2);
  EXPECT(fs::exists(r.save_dir + "/weights/last.pt") && fs::exists(r.save_dir + "/weights/best.pt"));
  EXPECT(r.args["imgsz"].as<int>() == 32);
  const auto header = csv_header(r.save_dir + "/results.csv");
  const std::vector<std::string> want = {"epoch", "time", "train/loss", "metrics/accuracy_top1",
                                         "metrics/accuracy_top5", "val/loss", "lr/pg0", "lr/pg1", "lr/pg2"};
  EXPECT_MSG(header.size() > want.size() && std::equal(want.begin(), want.end(), header.begin()),
             "results.csv header: " << (header.size() > 2 ? header[2] : std::string("?")));
  const auto rows = csv_rows(r.save_dir + "/results.csv");
  EXPECT(rows.size() == 2);
  for (const auto& row : rows) {
    EXPECT(row.size() == header.size());
    const double tl = row[column(header, "train/loss")], vl = row[column(header, "val/loss")];
    EXPECT_MSG(std::isfinite(tl) && tl > 0 && std::isfinite(vl) && vl > 0, "train/loss " << tl << " val/loss " << vl);
    const double t1 = row[column(header, "metrics/accuracy_top1")], t5 = row[column(header, "metrics/accuracy_top5")];
    EXPECT(t1 >= 0 && t1 <= 1 && t5 >= t1 && t5 <= 1);
  }
  EXPECT_NEAR(rows.back()[column(header, "metrics/accuracy_top5")], 1.0, 1e-9);  // 3 classes: top-5 holds all
  bool saw_batch = false, saw_end = false;
  for (const auto& e : events) {
    if (e.type == "epoch_start") EXPECT(e.str.count("loss_names") && e.str.at("loss_names") == "loss");
    if (e.type == "batch") saw_batch = saw_batch || (e.num.count("loss") && std::isfinite(e.num.at("loss")));
    if (e.type == "epoch_end") {
      saw_end = true;
      EXPECT(e.num.count("train/loss") && e.num.count("val/loss") && e.num.count("metrics/accuracy_top1"));
      EXPECT_NEAR(e.num.at("fitness"),
                  (e.num.at("metrics/accuracy_top1") + e.num.at("metrics/accuracy_top5")) / 2, 1e-9);
    }
  }
  EXPECT(saw_batch && saw_end);

  auto ck = load_checkpoint(r.best);
  EXPECT(ck.task == "classify" && ck.nc == 3 && ck.names == std::vector<std::string>({"green", "red", "stripes"}));
  auto lm = y26::load_model(r.best, "cpu");
  EXPECT(lm.model->task() == "classify" && lm.model->nc() == 3);

  YAML::Node va;
  va["model"] = r.best;
  va["data"] = tiny_classify_dataset();
  va["imgsz"] = 32;
  va["batch"] = 4;
  va["project"] = temp_dir("cls_val");
  auto v = run_validation(va);
  EXPECT(v.task == "classify" && v.images == 9);
  for (const char* f : {"val_batch0_labels.jpg", "val_batch0_pred.jpg", "confusion_matrix.png", "confusion_matrix_normalized.png"})
    EXPECT_MSG(fs::exists(v.save_dir + "/" + f), "classify val plots: " << f);
  EXPECT(v.confusion_matrix.size() == 3);
  EXPECT(v.metrics.count("metrics/accuracy_top1") && std::isfinite(v.metrics.at("metrics/accuracy_top1")));

  // Stop after the first epoch, then resume from last.pt: the run finishes both epochs in the same folder.
  std::atomic<bool> stop1{false};
  TrainCallbacks scb{[&](const TrainEvent& e) {
    if (e.type == "epoch_end") stop1 = true;
  }};
  YAML::Node sa = YAML::Clone(a);
  sa["name"] = "cs";
  auto rs = run_training(sa, scb, stop1);
  EXPECT(rs.stopped && rs.epochs_completed == 1);
  YAML::Node ra;
  ra["resume"] = rs.last;
  std::atomic<bool> no_stop{false};
  auto rr = run_training(ra, TrainCallbacks{}, no_stop);
  EXPECT(rr.epochs_completed == 2 && !rr.stopped && rr.save_dir == rs.save_dir);
  EXPECT(csv_rows(rr.save_dir + "/results.csv").size() == 2);
  EXPECT(rr.args["imgsz"].as<int>() == 32);

  // No imgsz given: the official classify default 224 (not default.yaml's 640); stopped after the first batch.
  std::atomic<bool> stop2{false};
  TrainCallbacks bcb{[&](const TrainEvent& e) {
    if (e.type == "batch") stop2 = true;
  }};
  YAML::Node da = YAML::Clone(a);
  da.remove("imgsz");
  da["name"] = "c224";
  da["epochs"] = 1;
  auto rd = run_training(da, bcb, stop2);
  EXPECT(rd.stopped && rd.args["imgsz"].as<int>() == 224);

  // A classification folder with a detect model is refused, naming the mismatch.
  YAML::Node bad = YAML::Clone(a);
  bad["model"] = "yolo26n.yaml";
  bad["name"] = "bad";
  EXPECT_THROWS(run_training(bad, cb, stop));
}

TEST_CASE("classify training with augmix, erasing and dropout runs; bad policy / dropout values are refused") {
  const std::string project = temp_dir("runs_aug");
  std::atomic<bool> stop{false};
  YAML::Node a = run_args("yolo26n-cls.yaml", tiny_classify_dataset(), 1, 32, 8, 2, project, "aug");
  a["auto_augment"] = "augmix";
  a["erasing"] = 1.0;
  a["dropout"] = 0.3;
  auto r = run_training(a, TrainCallbacks{}, stop);
  EXPECT(r.epochs_completed == 1);
  const auto rows = csv_rows(r.save_dir + "/results.csv");
  const auto header = csv_header(r.save_dir + "/results.csv");
  EXPECT(rows.size() == 1 && std::isfinite(rows[0][column(header, "train/loss")]));
  for (const char* policy : {"autoaugment", "randaugment"}) {  // the other two run for a first batch
    std::atomic<bool> stop1{false};
    TrainCallbacks cb{[&](const TrainEvent& e) {
      if (e.type == "batch") stop1 = true;
    }};
    YAML::Node b = YAML::Clone(a);
    b["auto_augment"] = policy;
    b["name"] = std::string("aug_") + policy;
    EXPECT(run_training(b, cb, stop1).stopped);
  }
  std::string msg;
  YAML::Node bad = YAML::Clone(a);
  bad["auto_augment"] = "randaugmnet";
  bad["name"] = "bad_aug";
  try {
    run_training(bad, TrainCallbacks{}, stop);
  } catch (const std::exception& e) {
    msg = e.what();
  }
  EXPECT_MSG(msg.find("randaugmnet") != std::string::npos && msg.find("augmix") != std::string::npos, "got: " << msg);
  YAML::Node bad_p = YAML::Clone(a);
  bad_p["dropout"] = 1.5;
  bad_p["name"] = "bad_p";
  EXPECT_THROWS(run_training(bad_p, TrainCallbacks{}, stop));
}

TEST_CASE("pose loss on a fixed batch falls over a few optimiser steps and reaches the keypoint head and flow") {
  torch::manual_seed(0);
  DataConfig dc = load_data_yaml(tiny_pose_dataset());
  DatasetOptions dso;
  dso.imgsz = 64;
  auto ds = Dataset::open(dc, "train", dso, IndexOptions{});
  LoaderOptions lo;
  lo.batch = 4;
  lo.workers = 1;
  lo.shuffle = false;
  lo.augment = false;
  DataLoader loader(ds, lo);
  Batch b;
  EXPECT(loader.next(b));
  auto model = pose_model(3, {5, 3});
  model->train();
  auto crit = make_criterion(*model, 3, 10, resolve_train_args(YAML::Node()));
  auto img = b.img.to(torch::kFloat32).div(255.0);
  const torch::Device cpu(torch::kCPU);
  torch::optim::Adam opt(model->parameters(), torch::optim::AdamOptions(1e-3));
  std::vector<double> totals, pose_items;
  for (int step = 0; step < 8; ++step) {
    opt.zero_grad();
    auto r = crit->compute(model->forward(img), b, cpu, false);
    EXPECT(r.items.numel() == 6 && torch::isfinite(r.items).all().item<bool>());
    r.total.backward();
    if (step == 0) {
      auto params = model->named_parameters(true);
      for (const char* name : {"model.23.cv4_kpts.0.weight", "model.23.one2one_cv4_kpts.0.weight",
                               "model.23.cv4_sigma.0.weight", "model.23.flow_model.s.0.0.weight"}) {
        auto* p = params.find(name);
        EXPECT_MSG(p && p->grad().defined() && p->grad().abs().sum().item<double>() > 0, name << " has no gradient");
      }
    }
    opt.step();
    totals.push_back(r.total.item<double>());
    pose_items.push_back(r.items[1].item<double>());
  }
  EXPECT_MSG(totals.back() < 0.8 * totals.front(), "total loss " << totals.front() << " -> " << totals.back());
  EXPECT_MSG(pose_items.back() < pose_items.front(), "pose loss " << pose_items.front() << " -> " << pose_items.back());
}

TEST_CASE("pose kpt_oks_sigmas reach the loss (equal to the defaults: same items; smaller: larger pose loss)") {
  torch::manual_seed(0);
  Batch b = first_batch(tiny_pose_dataset(), 2);
  auto model = pose_model(3, {5, 3});
  model->train();
  auto args = resolve_train_args(YAML::Node());
  auto out = model->forward(b.img.to(torch::kFloat32).div(255.0));
  const torch::Device cpu(torch::kCPU);
  auto item = [&](const std::vector<double>& sig) { return make_criterion(*model, 3, 10, args, sig)->compute(out, b, cpu, false).items; };
  auto def = item({}), same = item(std::vector<double>(5, 0.2)), tight = item(std::vector<double>(5, 0.02));
  EXPECT_MSG(torch::allclose(def, same), def << " vs " << same);  // 1/K is the default for K != 17
  EXPECT_MSG(tight[1].item<double>() > def[1].item<double>() + 1e-4, "pose loss " << def[1].item<double>() << " -> " << tight[1].item<double>());
  EXPECT_NEAR(tight[0].item<double>(), def[0].item<double>(), 1e-6);  // the box loss does not use them
  EXPECT_THROWS(make_criterion(*model, 3, 10, args, {0.1, 0.1}));  // one per keypoint
  ValOptions vo;
  vo.kpt_sigmas = {0.1, 0.1};
  EXPECT_THROWS(ValMatcher("pose", {"a", "b", "c"}, {5, 3}, vo));  // the validator's OKS uses them too
}

TEST_CASE("pose training: weights reload as a pose model, results.csv has the pose columns, val() works") {
  const std::string project = temp_dir("runs");
  std::atomic<bool> stop{false};
  std::vector<TrainEvent> events;
  TrainCallbacks cb{[&](const TrainEvent& e) { events.push_back(e); }};
  YAML::Node a = run_args("yolo26n-pose.yaml", tiny_pose_dataset(), 2, 64, 4, 1, project, "p");
  a["close_mosaic"] = 1;
  auto r = run_training(a, cb, stop);
  EXPECT(r.epochs_completed == 2);
  EXPECT(fs::exists(r.save_dir + "/weights/last.pt") && fs::exists(r.save_dir + "/weights/best.pt"));
  EXPECT(r.save_dir == fs::absolute(fs::path(project) / "p").string());

  const auto header = csv_header(r.save_dir + "/results.csv");
  const std::vector<std::string> want = {
      "epoch", "time", "train/box_loss", "train/pose_loss", "train/kobj_loss", "train/cls_loss", "train/dfl_loss",
      "train/rle_loss", "metrics/precision(B)", "metrics/recall(B)", "metrics/mAP50(B)", "metrics/mAP50-95(B)",
      "metrics/precision(P)", "metrics/recall(P)", "metrics/mAP50(P)", "metrics/mAP50-95(P)", "val/box_loss",
      "val/pose_loss", "val/kobj_loss", "val/cls_loss", "val/dfl_loss", "val/rle_loss", "lr/pg0"};
  EXPECT_MSG(header.size() > want.size() && std::equal(want.begin(), want.end(), header.begin()),
             "results.csv header starts " << (header.size() > 3 ? header[3] : std::string("?")));
  const auto rows = csv_rows(r.save_dir + "/results.csv");
  EXPECT(rows.size() == 2);
  for (const auto& row : rows) {
    EXPECT(row.size() == header.size());
    for (const char* c : {"train/box_loss", "train/pose_loss", "train/kobj_loss", "train/rle_loss", "val/pose_loss"}) {
      size_t i = column(header, c);
      EXPECT_MSG(i < row.size() && std::isfinite(row[i]), c << " not finite");
    }
    size_t i = column(header, "train/pose_loss");
    EXPECT_MSG(i < row.size() && row[i] > 0, "train/pose_loss is " << row[i]);
  }
  bool saw_batch = false, saw_end = false, saw_header = false;
  for (const auto& e : events) {
    if (e.type == "epoch_start")  // the official order, for the progress bar
      EXPECT_MSG(e.str.count("loss_names") && e.str.at("loss_names") == "box_loss,pose_loss,kobj_loss,cls_loss,dfl_loss,rle_loss",
                 "epoch_start loss_names: " << (e.str.count("loss_names") ? e.str.at("loss_names") : "(none)"));
    if (e.type == "batch") {
      saw_batch = true;
      for (const char* k : {"box_loss", "pose_loss", "kobj_loss", "cls_loss", "dfl_loss", "rle_loss"})
        EXPECT_MSG(e.num.count(k) && std::isfinite(e.num.at(k)), "batch event lacks " << k);
    }
    if (e.type == "epoch_end") {
      saw_end = true;
      for (const char* k : {"metrics/mAP50-95(P)", "metrics/mAP50(B)", "fitness", "train/rle_loss", "val/kobj_loss"})
        EXPECT_MSG(e.num.count(k), "epoch_end lacks " << k);
      EXPECT(std::fabs(e.num.at("fitness") - e.num.at("metrics/mAP50-95(B)") - e.num.at("metrics/mAP50-95(P)")) < 1e-9);
    }
    if (e.type == "log" && e.str.at("text").find("pose_loss  kobj_loss") != std::string::npos) saw_header = true;
  }
  EXPECT(saw_batch && saw_end && saw_header);

  auto ck = load_checkpoint(r.best);
  EXPECT(ck.task == "pose" && ck.kpt_shape == std::vector<int64_t>({5, 3}) && ck.nc == 3);
  auto lm = y26::load_model(r.best, "cpu");
  EXPECT(lm.model->task() == "pose" && lm.model->config().kpt_shape == std::vector<int64_t>({5, 3}));

  YAML::Node va;
  va["model"] = r.best;
  va["data"] = tiny_pose_dataset();
  va["imgsz"] = 64;
  va["batch"] = 4;
  va["workers"] = 1;
  std::string printed;
  va["project"] = project;  // plots (the default) go to project/val
  auto v = run_validation(va, [&](const std::string& s) { printed += s + "\n"; });
  EXPECT(v.task == "pose" && v.images == 4);
  for (const char* f : {"val_batch0_labels.jpg", "val_batch0_pred.jpg", "BoxPR_curve.png", "PosePR_curve.png", "PoseF1_curve.png"})
    EXPECT_MSG(fs::exists(v.save_dir + "/" + f), "pose val plots: " << f);
  va["plots"] = false;
  for (const auto& k : metric_keys("pose")) EXPECT_MSG(v.metrics.count(k) && std::isfinite(v.metrics.at(k)), k);
  EXPECT(printed.find("Pose(P") != std::string::npos && printed.find("Box(P") != std::string::npos);
  va["end2end"] = false;  // the one2many head + NMS keeps the keypoint columns too
  auto c = run_validation(va);
  EXPECT(c.metrics.count("metrics/mAP50-95(P)"));

  // A pose model needs keypoints in the data; a detect data set is refused with a clear error.
  SyntheticOptions o;
  o.train_images = 4;
  o.val_images = 2;
  o.width = o.height = 64;
  YAML::Node bad = a;
  bad["data"] = write_synthetic_dataset(temp_dir("det_data"), o);
  bad["name"] = "bad";
  try {
    run_training(bad, {}, stop);
    EXPECT_MSG(false, "pose model trained on a data set without kpt_shape");
  } catch (const Error& e) {
    EXPECT_MSG(std::string(e.what()).find("kpt_shape") != std::string::npos, e.what());
  }
}

// One short run per task: weights reload as the task's model, the loss columns and metric keys follow the task.
void check_task_run(const std::string& task, const std::string& model_yaml, const std::vector<std::string>& losses,
                    const std::string& table_word) {
  const std::string data = tiny_task_dataset(task);
  const std::string project = temp_dir("runs_" + task);
  std::atomic<bool> stop{false};
  std::vector<TrainEvent> events;
  TrainCallbacks cb{[&](const TrainEvent& e) { events.push_back(e); }};
  YAML::Node a = run_args(model_yaml, data, 1, 64, 3, 1, project, "t");
  auto r = run_training(a, cb, stop);
  EXPECT(r.epochs_completed == 1 && fs::exists(r.best) && fs::exists(r.last));
  const auto header = csv_header(r.save_dir + "/results.csv");
  std::vector<std::string> want = {"epoch", "time"};
  for (const auto& l : losses) want.push_back("train/" + l + "_loss");
  for (const auto& k : metric_keys(task)) want.push_back(k);
  for (const auto& l : losses) want.push_back("val/" + l + "_loss");
  EXPECT_MSG(header.size() > want.size() && std::equal(want.begin(), want.end(), header.begin()),
             task << ": results.csv header does not follow the task's losses and metrics");
  const auto rows = csv_rows(r.save_dir + "/results.csv");
  EXPECT(rows.size() == 1);
  for (const auto& l : losses) {
    size_t i = column(header, "train/" + l + "_loss");
    EXPECT_MSG(!rows.empty() && i < rows[0].size() && std::isfinite(rows[0][i]), task << " train/" << l << "_loss");
  }
  size_t batches = 0;
  for (const auto& e : events)
    if (e.type == "batch") {
      ++batches;
      for (const auto& l : losses) EXPECT_MSG(e.num.count(l + "_loss"), task << " batch event lacks " << l);
    }
  EXPECT(batches == 2);
  auto lm = y26::load_model(r.best, "cpu");
  EXPECT(lm.model->task() == task && lm.model->nc() == 3);
  YAML::Node va;
  va["model"] = r.best;
  va["data"] = data;
  va["imgsz"] = 64;
  va["batch"] = 2;
  va["workers"] = 1;
  std::string printed;
  va["project"] = project;
  auto v = run_validation(va, [&](const std::string& s) { printed += s + "\n"; });
  EXPECT(v.task == task && v.images == 2);
  EXPECT_MSG(fs::exists(v.save_dir + "/val_batch0_labels.jpg") && fs::exists(v.save_dir + "/val_batch0_pred.jpg") &&
                 fs::exists(v.save_dir + "/confusion_matrix.png") &&
                 (task != "segment" || fs::exists(v.save_dir + "/MaskPR_curve.png")),
             task << ": validation plots missing in " << v.save_dir);
  va["plots"] = false;
  for (const auto& k : metric_keys(task)) EXPECT_MSG(v.metrics.count(k) && std::isfinite(v.metrics.at(k)), k);
  EXPECT_MSG(printed.find(table_word) != std::string::npos, printed);
  va["end2end"] = false;  // one2many head + NMS (rotated for OBB)
  EXPECT(run_validation(va).metrics.count("fitness"));
}

// Predictions made from the ORIGINAL labels (normalised to the original image) through each image's letterbox
// (input = original pixel * gain + pad) must match the validator's ground truth perfectly: the matcher works in
// the letterboxed input space the model predicts in. Wide images (96 x 64) make the rect batches non-square.
struct LetterboxedTruth {
  std::vector<torch::Tensor> rows;  // per image (n, 6 + extra)
};

std::shared_ptr<Dataset> wide_val_set(const std::string& task) {
  SyntheticOptions o;
  o.train_images = 1;
  o.val_images = 4;
  o.width = 96;
  o.height = 64;
  o.min_size = 0.35f;
  o.max_size = 0.6f;
  o.max_objects = 2;
  o.task = task;
  DataConfig dc = load_data_yaml(write_synthetic_dataset(temp_dir("wide_" + task), o));
  DatasetOptions dso;
  dso.imgsz = 96;
  return Dataset::open(dc, "val", dso, IndexOptions{});
}

TEST_CASE("validator matching space: predictions from the original labels through the letterbox match exactly") {
  for (const std::string task : {"pose", "obb"}) {
    auto ds = wide_val_set(task);
    auto loader = make_val_loader(ds, 4, 1, 32, "cpu");
    ValOptions vo;
    ValMatcher good(task, {"rectangle", "ellipse", "triangle"}, task == "pose" ? std::vector<int64_t>{5, 3}
                                                                                : std::vector<int64_t>{}, vo);
    ValMatcher swapped(task, {"rectangle", "ellipse", "triangle"}, task == "pose" ? std::vector<int64_t>{5, 3}
                                                                                   : std::vector<int64_t>{}, vo);
    Batch b;
    bool non_square = false;
    while (loader->next(b)) {
      non_square |= b.img.size(2) != b.img.size(3);
      std::vector<torch::Tensor> dets, dets_swapped;
      for (int64_t i = 0; i < b.size(); ++i) {
        const ImageLabels& L = ds->labels((size_t)b.indices[i]);
        const auto& rp = b.ratio_pad[i];  // gain_h, gain_w, pad_left, pad_top
        auto to_in_x = [&](float xn) { return xn * L.width * rp[1] + rp[2]; };
        auto to_in_y = [&](float yn) { return yn * L.height * rp[0] + rp[3]; };
        std::vector<torch::Tensor> rows, rows_sw;
        for (size_t k = 0; k < L.count(); ++k) {
          const float* bx = &L.boxes[4 * k];
          const float cls = L.cls[k];
          if (task == "pose") {
            std::vector<float> r = {to_in_x(bx[0] - bx[2] / 2), to_in_y(bx[1] - bx[3] / 2), to_in_x(bx[0] + bx[2] / 2),
                                    to_in_y(bx[1] + bx[3] / 2), 0.9f, cls};
            std::vector<float> sw = r;
            for (int j = 0; j < 5; ++j) {
              const float* kp = &L.keypoints[(k * 5 + j) * 3];
              r.insert(r.end(), {to_in_x(kp[0]), to_in_y(kp[1]), 1.0f});
              // Keypoints listed in the wrong order (TL<->BR, TR<->BL): right boxes, wrong keypoints.
              const float* kq = &L.keypoints[(k * 5 + (j < 4 ? (j + 2) % 4 : 4)) * 3];
              sw.insert(sw.end(), {to_in_x(kq[0]), to_in_y(kq[1]), 1.0f});
            }
            rows.push_back(torch::tensor(r).view({1, -1}));
            rows_sw.push_back(torch::tensor(sw).view({1, -1}));
          } else {
            std::vector<cv::Point2f> poly;
            for (size_t j = 0; j + 1 < L.segments[k].size(); j += 2)
              poly.emplace_back(to_in_x(L.segments[k][j]), to_in_y(L.segments[k][j + 1]));
            auto rb = min_area_rbox(poly);
            rows.push_back(torch::tensor({rb[0], rb[1], rb[2], rb[3], 0.9f, cls, rb[4]}).view({1, -1}));
            // The same box shifted sideways by 0.6 of its width.
            rows_sw.push_back(torch::tensor({rb[0] + 0.6f * rb[2], rb[1], rb[2], rb[3], 0.9f, cls, rb[4]}).view({1, -1}));
          }
        }
        const int64_t cols = task == "pose" ? 21 : 7;
        dets.push_back(rows.empty() ? torch::zeros({0, cols}) : torch::cat(rows));
        dets_swapped.push_back(rows_sw.empty() ? torch::zeros({0, cols}) : torch::cat(rows_sw));
      }
      good.add_batch(b, dets);
      swapped.add_batch(b, dets_swapped);
    }
    EXPECT_MSG(non_square, task << ": expected non-square rect batches");
    ValResult r, rs;
    good.finish(r);
    swapped.finish(rs);
    EXPECT_MSG(std::fabs(r.metrics.at("metrics/mAP50(B)") - 0.995) < 1e-6, task << " mAP50(B) " << r.metrics.at("metrics/mAP50(B)"));
    EXPECT_MSG(r.metrics.at("metrics/mAP50-95(B)") > 0.9, task << " mAP50-95(B) " << r.metrics.at("metrics/mAP50-95(B)"));
    if (task == "pose") {
      EXPECT_MSG(r.metrics.at("metrics/mAP50-95(P)") > 0.98, "mAP50-95(P) " << r.metrics.at("metrics/mAP50-95(P)"));
      EXPECT(std::fabs(rs.metrics.at("metrics/mAP50(B)") - 0.995) < 1e-6);  // boxes still right
      EXPECT_MSG(rs.metrics.at("metrics/mAP50(P)") < 0.2, "swapped keypoints score " << rs.metrics.at("metrics/mAP50(P)"));
    } else {
      EXPECT_MSG(rs.metrics.at("metrics/mAP50(B)") < 0.5, "shifted boxes score " << rs.metrics.at("metrics/mAP50(B)"));
    }
  }
}

TEST_CASE("segment and obb losses fall on a fixed batch") {
  torch::manual_seed(0);
  for (const std::string task : {"segment", "obb"}) {
    auto b = first_batch(tiny_task_dataset(task), 3);
    EXPECT_MSG(!b.segments.empty(), task << " batch has no polygons");
    auto model = y26::build_model(task == "segment" ? "yolo26n-seg.yaml" : "yolo26n-obb.yaml", 3);
    auto crit = make_criterion(*model, 3, 10, resolve_train_args(YAML::Node()));
    auto t = fixed_batch_totals(*model, *crit, b, 6);
    EXPECT_MSG(t.back() < 0.9 * t.front(), task << " total loss " << t.front() << " -> " << t.back());
  }
}

TEST_CASE("segment training: seg/sem losses, (M) metrics, reload as a segment model, val() works") {
  check_task_run("segment", "yolo26n-seg.yaml", {"box", "seg", "cls", "dfl", "sem"}, "Mask(P");
}

TEST_CASE("obb training: angle loss, probiou box metrics, reload as an obb model, val() works") {
  check_task_run("obb", "yolo26n-obb.yaml", {"box", "cls", "dfl", "angle"}, "Box(P");
}

TEST_MAIN()
