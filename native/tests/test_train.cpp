// Training engine and validator: gradient parity with the official loss fixture, validator parity with the
// official metrics fixture, and short end-to-end runs on a tiny synthetic set (files, events, stop, resume, NaN).
#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "data/synthetic.h"
#include "eval/validator.h"
#include "io/checkpoint.h"
#include "model/loader.h"
#include "model/yolo.h"
#include "scratch.h"
#include "testing.h"
#include "train/detection_loss.h"
#include "train/trainer.h"
#include "util/error.h"
#include "util/npy.h"

using namespace y26;
namespace fs = std::filesystem;

namespace {

torch::Tensor load_npy(const std::string& rel) {
  auto a = read_npy(y26test::fixture(rel));
  torch::Dtype dt = a.dtype == "f4" ? torch::kFloat : a.dtype == "u1" ? torch::kByte : torch::kLong;
  auto t = torch::empty(a.shape, torch::TensorOptions().dtype(dt));
  std::memcpy(t.data_ptr(), a.bytes.data(), a.bytes.size());
  return t;
}

std::string temp_dir(const std::string& name) { return y26test::scratch_dir("test_train", name); }

// 12 train / 4 val images of 96 px with large shapes: enough for a few batches at imgsz 64.
std::string tiny_dataset() {
  static std::string yaml;
  if (yaml.empty()) yaml = y26test::write_tiny_set(temp_dir("data"));
  return yaml;
}

YAML::Node tiny_args(const std::string& project, const std::string& name, int epochs) {
  YAML::Node a;
  a["model"] = "yolo26n.yaml";
  a["data"] = tiny_dataset();
  a["epochs"] = epochs;
  a["imgsz"] = 64;
  a["batch"] = 4;
  a["workers"] = 1;
  a["project"] = project;
  a["name"] = name;
  a["close_mosaic"] = 1;
  a["plots"] = false;
  return a;
}

int64_t count_lines(const std::string& path) {
  std::ifstream f(path);
  std::string l;
  int64_t n = 0;
  while (std::getline(f, l)) n += !l.empty();
  return n;
}

void check_grad(YoloModel& m, const std::string& param, const std::string& file) {
  auto params = m.named_parameters(true);
  auto* p = params.find(param);
  EXPECT_MSG(p != nullptr, "no parameter " << param);
  if (!p) return;
  auto ref = load_npy(file);
  auto g = p->grad();
  EXPECT_MSG(g.defined(), param << " has no gradient");
  if (!g.defined()) return;
  double tol = 2e-4 * ref.abs().max().item<double>();
  double err = (g - ref).abs().max().item<double>();
  EXPECT_MSG(err <= tol, param << ": max |grad - ref| " << err << " > " << tol);
}

}  // namespace

// Also in the channels-last layout that CPU training uses (to_channels_last): same loss and gradients.
TEST_CASE("loss gradients of the fixture batch match the official trainer (epoch 0 and last epoch)") {
  const std::string path = y26test::fixture("det/yolo26n-shapes.pt");
  for (const bool channels_last : {false, true}) {
  auto model = y26::build_model(load_checkpoint(path), path);  // unfused, train mode
  model->train();
  auto img = load_npy("loss/batch_img_u8.npy").to(torch::kFloat32).div(255.0);
  if (channels_last) {
    to_channels_last(*model);
    img = img.contiguous(torch::MemoryFormat::ChannelsLast);
    EXPECT(model->named_parameters()["model.0.conv.weight"].is_contiguous(torch::MemoryFormat::ChannelsLast));
  }
  DetectionBatch batch{load_npy("loss/batch_batch_idx.npy"), load_npy("loss/batch_cls.npy"),
                       load_npy("loss/batch_bboxes_xywhn.npy")};
  E2EDetectionLoss crit(3, model->stride(), 30);
  auto json = YAML::LoadFile(y26test::fixture("loss/loss.json"));
  for (const std::string phase : {"epoch0", "last_epoch_of_30"}) {
    if (phase != "epoch0") crit.set_updates(29);
    model->zero_grad();
    auto out = model->forward(img);
    auto r = crit({out.one2many.boxes, out.one2many.scores}, {out.one2one.boxes, out.one2one.scores},
                  grid_sizes_of(out.feats), batch);
    r.total.backward();
    const auto& w = json["weightings"][phase];
    double ref_total = w["total_loss"].as<double>();
 EXPECT_MSG(std::fabs(r.total.item<double>() - ref_total) <= 1e-5 * std::fabs(ref_total),
               "channels_last " << channels_last << " " << phase << " total " << r.total.item<double>() << " vs " << ref_total);
    double sq = 0;
    for (auto& p : model->parameters())
      if (p.grad().defined()) sq += p.grad().to(torch::kDouble).pow(2).sum().item<double>();
    double ref_norm = w["grad_global_l2_norm"].as<double>();
    EXPECT_MSG(std::fabs(std::sqrt(sq) - ref_norm) <= 1e-5 * ref_norm,
               phase << " grad norm " << std::sqrt(sq) << " vs " << ref_norm);
    for (const std::string p : {"model.0.conv.weight", "model.23.cv3.0.2.bias", "model.23.one2one_cv2.2.2.weight"})
      check_grad(*model, p, "loss/grad_" + phase + "_" + p + ".npy");
  }
  }
}

TEST_CASE("validator reproduces the official metrics on the fixture set") {
  YAML::Node a;
  a["model"] = y26test::fixture("det/yolo26n-shapes.pt");
  a["data"] = y26test::fixture("metrics/data.yaml");
  a["imgsz"] = 320;
  a["batch"] = 8;
  a["workers"] = 1;
  std::string printed;
  a["project"] = temp_dir("val_plots");
  auto r = run_validation(a, [&](const std::string& s) { printed += s + "\n"; });
  EXPECT_NEAR(r.metrics.at("metrics/mAP50-95(B)"), 0.326037, 1e-4);
  // plots (the default): the official validation plots in project/val; each GT is counted once in its column.
  EXPECT(r.save_dir == fs::absolute(fs::path(a["project"].as<std::string>()) / "val").string());
  for (const char* f : {"val_batch0_labels.jpg", "val_batch0_pred.jpg", "confusion_matrix.png",
                        "confusion_matrix_normalized.png", "BoxPR_curve.png", "BoxF1_curve.png", "BoxP_curve.png",
                        "BoxR_curve.png"})
    EXPECT_MSG(fs::exists(r.save_dir + "/" + f), f);
  double gt_counted = 0;
  for (size_t row = 0; row < r.confusion_matrix.size(); ++row)
    for (size_t col = 0; col + 1 < r.confusion_matrix.size(); ++col) gt_counted += r.confusion_matrix[row][col];
  EXPECT(r.confusion_matrix.size() == r.det.nt_per_class.size() + 1 && gt_counted == 20);
  a["plots"] = false;
  EXPECT_NEAR(r.metrics.at("metrics/mAP50(B)"), 0.590933, 1e-4);
  EXPECT_NEAR(r.metrics.at("metrics/precision(B)"), 0.474591, 1e-3);
  EXPECT_NEAR(r.metrics.at("metrics/recall(B)"), 0.458333, 1e-3);
  EXPECT_NEAR(r.metrics.at("fitness"), r.metrics.at("metrics/mAP50-95(B)"), 1e-12);
  EXPECT(r.images == 8);
  EXPECT(r.det.instances == 20);
  EXPECT(printed.find("mAP50-95") != std::string::npos && printed.find("ellipse") != std::string::npos);
  EXPECT(printed.find("Speed:") != std::string::npos);
  a["end2end"] = false;  // one2many head + NMS: a different but sane result
  auto c = run_validation(a);
  EXPECT(c.metrics.at("metrics/mAP50(B)") > 0.3);
}

TEST_CASE("train(): unknown arguments and missing data are clear errors") {
  std::atomic<bool> stop{false};
  YAML::Node bad;
  bad["epoch"] = 3;
  try {
    run_training(bad, {}, stop);
    EXPECT_MSG(false, "unknown key accepted");
  } catch (const Error& e) {
    EXPECT(std::string(e.what()).find("'epoch'") != std::string::npos);
    EXPECT(std::string(e.what()).find("epochs") != std::string::npos);
  }
  YAML::Node nodata;
  nodata["epochs"] = 1;
  EXPECT_THROWS(run_training(nodata, {}, stop));
  EXPECT(resolve_train_args(YAML::Node())["lr0"].as<double>() == 0.01);
  EXPECT(resolve_train_args(YAML::Node())["close_mosaic"].as<int>() == 10);
}

TEST_CASE("a short training run writes weights, args.yaml, results.csv and reports events in order") {
  const std::string project = temp_dir("runs");
  std::atomic<bool> stop{false};
  std::vector<TrainEvent> events;
  TrainCallbacks cb{[&](const TrainEvent& e) { events.push_back(e); }};
  auto r = run_training(tiny_args(project, "t", 2), cb, stop);
  EXPECT(r.save_dir == fs::absolute(fs::path(project) / "t").string());
  EXPECT(r.epochs_completed == 2 && !r.stopped);
  EXPECT(fs::exists(r.save_dir + "/weights/last.pt") && fs::exists(r.save_dir + "/weights/best.pt"));
  EXPECT(fs::exists(r.save_dir + "/args.yaml"));
  EXPECT(YAML::LoadFile(r.save_dir + "/args.yaml")["epochs"].as<int>() == 2);
  for (const auto& e : fs::directory_iterator(r.save_dir))  // plots=false: no .png / .jpg at all
    EXPECT_MSG(e.path().extension() != ".png" && e.path().extension() != ".jpg", "plots=false wrote " << e.path());
  EXPECT(count_lines(r.save_dir + "/results.csv") == 3);  // header + one row per epoch
  {
    std::ifstream f(r.save_dir + "/results.csv");
    std::string header;
    std::getline(f, header);
    EXPECT(header.rfind("epoch,time,train/box_loss,train/cls_loss,train/dfl_loss,metrics/precision(B)", 0) == 0);
    EXPECT(header.find("metrics/mAP50-95(B),val/box_loss,val/cls_loss,val/dfl_loss,lr/pg0,lr/pg1,lr/pg2") !=
           std::string::npos);
  }
  // Events: epoch_start, batches (3 per epoch), epoch_end, checkpoints, in order.
  std::vector<std::string> seq;
  for (auto& e : events)
    if (e.type != "log") seq.push_back(e.type);
  EXPECT(!seq.empty() && seq.front() == "epoch_start");
  int starts = 0, ends = 0, batches = 0;
  for (size_t i = 0; i < seq.size(); ++i) {
    starts += seq[i] == "epoch_start";
    ends += seq[i] == "epoch_end";
    batches += seq[i] == "batch";
    if (seq[i] == "batch") EXPECT(i > 0 && (seq[i - 1] == "batch" || seq[i - 1] == "epoch_start"));
  }
  EXPECT(starts == 2 && ends == 2 && batches == 6);
  for (auto& e : events) {
    if (e.type == "batch") {
      EXPECT(std::isfinite(e.num.at("box_loss")) && e.num.at("images_per_second") > 0);
      EXPECT(e.num.at("data_wait_fraction") >= 0 && e.num.at("data_wait_fraction") <= 1.0);
      EXPECT(e.num.at("size") == 64);
    }
    if (e.type == "epoch_end") {
      for (const char* k : {"metrics/mAP50-95(B)", "metrics/mAP50(B)", "fitness", "lr/pg0", "epoch_time",
                            "val/box_loss", "train/box_loss"})
        EXPECT_MSG(e.num.count(k), "epoch_end lacks " << k);
    }
  }
  auto ck = load_checkpoint(r.last);
  EXPECT(ck.format == kCheckpointFormat && ck.epoch == 1 && ck.nc == 3 && !ck.ema.empty());
  EXPECT(!ck.optimizer.tensors.empty() && ck.updates > 0);
  EXPECT(ck.train_results["epoch"].size() == 2);
  auto lm = y26::load_model(r.best, "cpu");
  EXPECT(lm.model->nc() == 3 && lm.names.size() == 3 && lm.names[0] == "rectangle");
  // The result is best.pt validated again at the end (official final_eval): it reproduces best_fitness.
  bool revalidated = false;
  for (auto& e : events) revalidated |= e.type == "log" && e.str.count("text") && e.str.at("text").find("Validating " + r.best) != std::string::npos;
  EXPECT(revalidated);
  EXPECT_NEAR(r.final_metrics.at("fitness"), r.best_fitness, 1e-6);

  // Same project/name again: increment_path gives t2; a NaN injected at the first batch of epoch 2 stops with
  // a clear error and leaves epoch 1's last.pt.
  auto a2 = tiny_args(project, "t", 2);
  a2["debug_nan_at"] = 3;  // 3 batches per epoch -> first batch of the second epoch
  try {
    run_training(a2, {}, stop);
    EXPECT_MSG(false, "NaN loss did not stop training");
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_MSG(m.find("NaN") != std::string::npos && m.find("last.pt") != std::string::npos, m);
  }
  auto t2 = fs::path(project) / "t2" / "weights" / "last.pt";
  EXPECT(fs::exists(t2));
  if (fs::exists(t2)) EXPECT(load_checkpoint(t2.string()).epoch == 0);
}

TEST_CASE("out of memory in the first epoch halves the batch and restarts the epoch (official recovery); cls_pw weights") {
  const std::string project = temp_dir("runs_oom");
  std::atomic<bool> stop{false};
  std::vector<double> started;
  std::vector<std::string> warnings;
  int64_t batches_epoch1 = 0;
  TrainCallbacks cb{[&](const TrainEvent& e) {
    if (e.type == "epoch_start") started.push_back(e.num.at("epoch"));
    if (e.type == "batch" && e.num.at("epoch") == 1) batches_epoch1 = (int64_t)e.num.at("batches");
    if (e.type == "log" && e.str.count("text") && e.str.at("text").find("Reducing to batch=") != std::string::npos)
      warnings.push_back(e.str.at("text"));
  }};
  auto a = tiny_args(project, "o", 2);
  a["debug_oom_above"] = 2;  // batch 4 "runs out of memory" at its second iteration; batch 2 fits
  a["cls_pw"] = 1.0;         // and class weights from the label counts (logged)
  bool weights_logged = false;
  TrainCallbacks cb0 = cb;
  cb = TrainCallbacks{[&](const TrainEvent& e) {
    cb0.on_event(e);
    if (e.type == "log" && e.str.count("text") && e.str.at("text").rfind("Class weights: ", 0) == 0)
      weights_logged = std::count(e.str.at("text").begin(), e.str.at("text").end(), ' ') == 4;  // 3 classes
  }};
  auto r = run_training(a, cb, stop);
  EXPECT(weights_logged);
  EXPECT_MSG(warnings.size() == 1 && warnings[0].find("batch=4. Reducing to batch=2") != std::string::npos,
             (warnings.empty() ? std::string("no warning") : warnings[0]));
  EXPECT_MSG(started.size() == 3 && started[0] == 1 && started[1] == 1 && started[2] == 2, "epoch starts " << started.size());
  EXPECT(batches_epoch1 == 6);  // 12 images at batch 2
  EXPECT(r.epochs_completed == 2 && !r.stopped);
  auto ck = load_checkpoint(r.last);
  EXPECT(ck.epoch == 1 && ck.train_args["batch"].as<int>() == 2);
  EXPECT(count_lines(r.save_dir + "/results.csv") == 3);
}

TEST_CASE("cls_remap: fine-tuning on data with other class names copies the class-logit rows by name") {
  const std::string project = temp_dir("runs_remap");
  std::atomic<bool> stop{false};
  auto src = run_training(tiny_args(project, "src", 1), {}, stop);  // names rectangle, ellipse, triangle
  // Same images, names reordered and one new: triangle <- 2, Rectangle <- 0 (any case), circle unmatched.
  YAML::Node y = YAML::LoadFile(tiny_dataset());
  const std::string dir = fs::path(tiny_dataset()).parent_path().string();
  y["path"] = dir;
  y["names"] = YAML::Node(YAML::NodeType::Map);
  y["names"][0] = "triangle";
  y["names"][1] = " Rectangle";
  y["names"][2] = "circle";
  const std::string yaml2 = (fs::path(temp_dir("remap_data")) / "data.yaml").string();
  {
    std::ofstream f(yaml2);
    f << YAML::Dump(y);
  }
  auto tuned_run = [&](const std::string& name, bool remap, std::vector<std::string>* logs) {
    auto a = tiny_args(project, name, 1);
    a["model"] = src.best;
    a["data"] = yaml2;
    a["freeze"] = YAML::Load("[23]");  // the head stays as transferred
    a["cls_remap"] = remap;
    TrainCallbacks cb{[&](const TrainEvent& e) {
      if (e.type == "log" && e.str.count("text")) logs->push_back(e.str.at("text"));
    }};
    return load_checkpoint(run_training(a, cb, stop).best);
  };
  auto tensor = [](const Checkpoint& c, const std::string& k) {
    for (const auto& [n, t] : c.ema)
      if (n == k) return t;
    return torch::Tensor();
  };
  const Checkpoint s = load_checkpoint(src.best);
  std::vector<std::string> logs, logs_off;
  const Checkpoint on = tuned_run("on", true, &logs), off = tuned_run("off", false, &logs_off);
  bool noted = false;
  for (const auto& l : logs) noted |= l.find("Remapped 2/3 cls head rows") != std::string::npos;
  EXPECT(noted);
  for (const char* k : {"model.23.cv3.0.2.bias", "model.23.one2one_cv3.2.2.weight"}) {
    auto a = tensor(s, k), b = tensor(on, k), c = tensor(off, k);
    EXPECT_MSG(a.defined() && b.defined() && c.defined(), k);
    if (!a.defined() || !b.defined() || !c.defined()) continue;
    // (the EMA of a frozen tensor moves by rounding only: ~1e-8)
    auto same = [](const torch::Tensor& x, const torch::Tensor& y) { return torch::allclose(x, y, 0, 1e-6); };
    EXPECT_MSG(same(b[0], a[2]) && same(b[1], a[0]), k);
    EXPECT_MSG(!same(b[2], a[0]) && !same(b[2], a[1]) && !same(b[2], a[2]), k);
    EXPECT_MSG(same(c, a), k);  // cls_remap=false: the plain copy in the checkpoint's order
  }
}

TEST_CASE("the stop flag ends after the current batch with last.pt; resume continues to the final epoch") {
  const std::string project = temp_dir("runs_stop");
  std::atomic<bool> stop{false};
  int batches = 0;
  TrainCallbacks cb{[&](const TrainEvent& e) {
    if (e.type == "batch" && ++batches == 2) stop = true;
  }};
  auto r = run_training(tiny_args(project, "s", 3), cb, stop);
  EXPECT(r.stopped && batches == 2 && r.epochs_completed == 1);
  EXPECT(fs::exists(r.last));
  EXPECT(load_checkpoint(r.last).epoch == 0);

  stop = false;
  std::vector<double> started;
  TrainCallbacks cb2{[&](const TrainEvent& e) {
    if (e.type == "epoch_start") started.push_back(e.num.at("epoch"));
  }};
  YAML::Node ra;
  ra["resume"] = r.last;
  auto r2 = run_training(ra, cb2, stop);
  EXPECT(r2.save_dir == r.save_dir);
  EXPECT_MSG(started.size() == 2 && started[0] == 2 && started[1] == 3, "resumed epochs " << started.size());
  EXPECT(r2.epochs_completed == 3 && !r2.stopped);
  auto ck = load_checkpoint(r2.last);
  EXPECT(ck.epoch == 2);
  EXPECT(count_lines(r.save_dir + "/results.csv") == 3);  // header + epochs 2 and 3 (the stopped one has no row)
  // A finished run cannot be resumed.
  YAML::Node again;
  again["resume"] = r2.last;
  EXPECT_THROWS(run_training(again, {}, stop));
}

TEST_MAIN()
