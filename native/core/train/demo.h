// `yolo26 demo`: generate a synthetic shapes set, train yolo26n on it, validate best.pt and predict on held-out
// images, saving annotated copies. Small enough to finish in minutes on a laptop CPU.
#pragma once
#include <yaml-cpp/yaml.h>
#include <atomic>
#include <map>
#include <string>
#include <vector>
#include "train/trainer.h"

namespace y26 {

struct DemoResult {
  std::string data_yaml;                  // the generated data set
  TrainResult train;
  std::map<std::string, double> metrics;  // validation of best.pt (official keys)
  std::string predict_dir;                // annotated held-out images
  std::vector<std::string> predicted;     // their paths
  int64_t detections = 0;                 // boxes found on the held-out images (at conf)
  double seconds = 0;                     // wall time of the whole demo
};

// args (all optional): dir (data set folder, default <tmp>/yolo26-demo-shapes), images (train images, 256),
// val_images (32), predict_images (8), size (image side, 64), conf (predict threshold, 0.25), plus any train()
// argument, passed through; demo defaults: epochs 40, imgsz = size, batch 8, nbs 8, warmup_epochs 0,
// close_mosaic 5, workers 1, name "demo".
DemoResult run_demo(const YAML::Node& args, const TrainCallbacks& cb, const std::atomic<bool>& stop);

}  // namespace y26
