#include "train/demo.h"

#include <chrono>
#include <filesystem>
#include <thread>

#include <opencv2/imgcodecs.hpp>

#include "data/synthetic.h"
#include "eval/validator.h"
#include "infer/pipeline.h"
#include "infer/save.h"
#include "model/loader.h"
#include "util/error.h"

namespace fs = std::filesystem;

namespace y26 {

DemoResult run_demo(const YAML::Node& args_in, const TrainCallbacks& cb, const std::atomic<bool>& stop) {
  const auto t0 = std::chrono::steady_clock::now();
  YAML::Node args = args_in && args_in.IsMap() ? YAML::Clone(args_in) : YAML::Node(YAML::NodeType::Map);
  auto take = [&](const char* k, const std::string& d) {
    std::string v = args[k] && !args[k].IsNull() ? args[k].as<std::string>() : d;
    args.remove(k);
    return v;
  };
  const std::string dir = take("dir", (fs::temp_directory_path() / "yolo26-demo-shapes").string());
  SyntheticOptions so;
  so.train_images = std::stoi(take("images", "256"));
  so.val_images = std::stoi(take("val_images", "32"));
  const int predict_images = std::stoi(take("predict_images", "8"));
  const float predict_conf = std::stof(take("conf", "0.25"));
  so.width = so.height = std::stoi(take("size", "64"));
  so.min_objects = 1;
  so.max_objects = 3;
  so.min_size = 0.25f;  // large objects: learnable in a few epochs at a small imgsz
  so.max_size = 0.5f;
  so.seed = 7;

  auto log = [&](const std::string& s) {
    if (cb.on_event) cb.on_event(TrainEvent{"log", {}, {{"text", s}}});
  };
  DemoResult res;
  res.data_yaml = write_synthetic_dataset(dir, so);
  log("demo: synthetic data set " + res.data_yaml + " (" + std::to_string(so.train_images) + " train, " +
      std::to_string(so.val_images) + " val images of " + std::to_string(so.width) + " px, 3 classes)");

  // Held-out images: same generator, a seed range the data set does not use.
  const fs::path holdout = fs::path(dir) / "holdout";
  fs::create_directories(holdout);
  std::vector<std::string> holdout_files;
  for (int i = 0; i < predict_images; ++i) {
    auto img = make_synthetic_image(so.width, so.height, 900000 + (uint64_t)i, so);
    auto p = (holdout / ("holdout_" + std::to_string(i) + ".jpg")).string();
    if (!cv::imwrite(p, img.bgr)) fail("demo: cannot write " + p + "; check that " + dir + " is writable");
    holdout_files.push_back(p);
  }

  auto set_default = [&](const char* k, const YAML::Node& v) {
    if (!args[k]) args[k] = v;
  };
  args["data"] = res.data_yaml;
  set_default("model", YAML::Node("yolo26n.yaml"));
  // Tuned for a 2-core CPU: small images, batch 8 with no accumulation (nbs = batch) so every batch is an
  // optimiser step, and no warmup (its 100-iteration minimum would be most of this short run).
  set_default("epochs", YAML::Node(40));
  set_default("imgsz", YAML::Node(so.width));
  set_default("batch", YAML::Node(8));
  set_default("nbs", YAML::Node(8));
  set_default("warmup_epochs", YAML::Node(0));
  set_default("close_mosaic", YAML::Node(5));
  set_default("name", YAML::Node("demo"));
  set_default("workers", YAML::Node(1));
  // At 64 px the loader needs little CPU: give libtorch every core instead of cores minus workers.
  set_default("threads", YAML::Node((int)std::max(1u, std::thread::hardware_concurrency())));
  res.train = run_training(args, cb, stop);
  if (res.train.stopped || res.train.best.empty()) {
    res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return res;
  }

  YAML::Node va;
  va["model"] = res.train.best;
  va["data"] = res.data_yaml;
  va["imgsz"] = res.train.args["imgsz"];
  va["batch"] = 16;
  va["device"] = res.train.args["device"];
  va["workers"] = 2;
  va["plots"] = false;  // the run folder already holds the final validation's plots
  auto vr = run_validation(va, log);
  res.metrics = vr.metrics;

  LoadedModel lm = load_model(res.train.best, res.train.args["device"].as<std::string>());
  lm.model->fuse();
  auto model = lm.model;
  PipelineOptions po;
  po.imgsz_h = po.imgsz_w = res.train.args["imgsz"].as<int>();
  po.device = res.train.args["device"].as<std::string>();
  po.keep_images = true;
  po.post.conf = predict_conf;
  ForwardFn fwd = [model](const torch::Tensor& x) {
    torch::NoGradGuard ng;
    return model->forward(x).end2end;
  };
  Pipeline pipe(open_path_list_source(holdout_files), fwd, po);
  SaveOptions sv;
  sv.project = res.train.save_dir;  // predictions land inside the demo run: <run>/detect/predict
  sv.name = "predict";
  sv.names = lm.names;
  ResultSaver saver(sv);
  res.predict_dir = saver.save_dir();
  Result r;
  while (pipe.next(r)) {
    res.detections += (int64_t)r.size();
    std::string p = saver.save(r);
    if (!p.empty()) res.predicted.push_back(p);
  }
  saver.close();
  log("demo: " + std::to_string(res.detections) + " objects found on " + std::to_string(res.predicted.size()) +
      " held-out images, saved to " + res.predict_dir);
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

}  // namespace y26
