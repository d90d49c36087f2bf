// The YOLO26 training engine (detect, segment, pose, obb): official trainer behaviour (defaults, optimiser groups,
// nominal-batch accumulation, warmup, LambdaLR, grad clipping, EMA, AMP on CUDA, close_mosaic, per-epoch validation
// on the EMA, best/last checkpoints, patience, resume) with progress reported through callbacks.
#pragma once
#include <yaml-cpp/yaml.h>
#include <atomic>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "train/train_args.h"  // train_defaults, resolve_train_args

namespace y26 {

struct TrainEvent {
  std::string type;  // epoch_start | batch | epoch_end | checkpoint | log
  std::map<std::string, double> num;
  std::map<std::string, std::string> str;  // log: "text"; checkpoint: "path", "kind" (last|best|period)
};

struct TrainCallbacks {
  std::function<void(const TrainEvent&)> on_event;  // may be empty; exceptions thrown here abort training
};

struct TrainResult {
  std::string save_dir;             // runs/<task>/<name>
  std::string last, best;           // weights/last.pt, weights/best.pt ("" when not written)
  int64_t epochs_completed = 0;     // epochs finished, including resumed ones
  int64_t best_epoch = -1;
  double best_fitness = 0;
  bool stopped = false;             // the stop flag ended the run
  bool early_stopped = false;       // patience ran out
  std::map<std::string, double> final_metrics;  // last epoch_end numbers; metrics and val losses from best.pt
  YAML::Node args;                  // the effective arguments (what args.yaml holds)
};

// Trains as Ultralytics `model.train(**args)` does. `stop` is polled after every batch: the run then saves
// weights/last.pt and returns with stopped = true. A NaN/Inf loss throws y26::Error and leaves the last good
// checkpoint on disk. Tasks detect, segment, pose and obb (the model decides; train/criterion.h has the losses).
TrainResult run_training(const YAML::Node& args, const TrainCallbacks& cb, const std::atomic<bool>& stop);

}  // namespace y26
