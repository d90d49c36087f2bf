// Task-generic training: the criterion interface (detect and pose), the synthetic pose set, a pose loss that
// falls on a fixed batch (the wiring back-propagates into the keypoint head and the RLE flow), and a short pose
// training run end to end (files, pose columns, events, reload as a pose model, standalone val).
#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "data/dataset.h"
#include "data/loader.h"
#include "data/synthetic.h"
#include "eval/validator.h"
#include "io/checkpoint.h"
#include "model/config.h"
#include "model/loader.h"
#include "model/yolo.h"
#include "testing.h"
#include "train/criterion.h"
#include "train/trainer.h"
#include "util/error.h"

using namespace y26;
namespace fs = std::filesystem;

namespace {

std::string temp_dir(const std::string& name) {
  auto d = fs::temp_directory_path() / ("y26_test_train_tasks_" + std::to_string(::getpid())) / name;
  fs::create_directories(d);
  return d.string();
}

// 8 train / 4 val images of 96 px with large shapes and 5 keypoints each.
std::string tiny_pose_dataset() {
  static std::string yaml;
  if (yaml.empty()) {
    SyntheticOptions o;
    o.train_images = 8;
    o.val_images = 4;
    o.width = o.height = 96;
    o.min_size = 0.3f;
    o.max_size = 0.6f;
    o.max_objects = 2;
    o.pose = true;
    yaml = write_synthetic_dataset(temp_dir("pose_data"), o);
  }
  return yaml;
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

TEST_CASE("criterion: official loss names per task, refusal of tasks without a loss") {
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
  auto obb = y26::build_model("yolo26n-obb.yaml", 3);
  EXPECT_THROWS(make_criterion(*obb, 3, 10, YAML::Node()));
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

TEST_CASE("pose training: weights reload as a pose model, results.csv has the pose columns, val() works") {
  const std::string project = temp_dir("runs");
  std::atomic<bool> stop{false};
  std::vector<TrainEvent> events;
  TrainCallbacks cb{[&](const TrainEvent& e) { events.push_back(e); }};
  YAML::Node a;
  a["model"] = "yolo26n-pose.yaml";
  a["data"] = tiny_pose_dataset();
  a["epochs"] = 2;
  a["imgsz"] = 64;
  a["batch"] = 4;
  a["workers"] = 1;
  a["project"] = project;
  a["name"] = "p";
  a["close_mosaic"] = 1;
  a["plots"] = false;
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
  auto v = run_validation(va, [&](const std::string& s) { printed += s + "\n"; });
  EXPECT(v.task == "pose" && v.images == 4);
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

TEST_MAIN()
