// The Trainer class behind run_training, shared by its two units: trainer_setup.cpp (everything before the first
// epoch) and trainer.cpp (the epoch/step loop, validation and checkpoints). Not part of the public API.
#pragma once
#include "train/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <limits>
#include <map>
#include <optional>
#include <sstream>
#include <thread>

#include "data/classify_loader.h"
#include "data/dataset.h"
#include "data/device_prefetch.h"
#include "data/index_warnings.h"
#include "data/loader.h"
#include "eval/classify_val.h"
#include "eval/plots.h"
#include "eval/validator.h"
#include "util/gpu_stats.h"
#include "infer/save.h"
#include "io/checkpoint.h"
#include "io/checkpoint_temps.h"
#include "model/loader.h"
#include "model/yolo.h"
#include "train/amp.h"
#include "train/criterion.h"
#include "train/distributed.h"
#include "train/ema.h"
#include "train/optimizer.h"
#include "train/results_table.h"
#include "train/schedule.h"
#include "train/train_args.h"
#include "train/weight_transfer.h"
#include "util/cpu_alloc_cache.h"
#include "util/cuda_util.h"
#include "util/error.h"
#include "util/system.h"
#include "util/text.h"

namespace y26::trainer_internal {

namespace fs = std::filesystem;

using Clock = std::chrono::steady_clock;
inline double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

class Trainer {
 public:
  Trainer(const YAML::Node& user_args, const TrainCallbacks& cb, const std::atomic<bool>& stop)
      : cb_(cb), stop_(stop) {
    setup(user_args);
  }
  TrainResult run();

 private:
  // What run() reads from the arguments once.
  struct RunSettings {
    double time_limit_h = 0;  // `time`: hours, 0 = none
    int64_t patience = INT64_MAX, save_period = -1, close_mosaic = 0;
    int64_t nan_at = -1, oom_above = 0;  // the debug_* test hooks
    bool single_cls = false, plots = false;
    WarmupConfig wcfg;
    ValOptions vopt;
  };
  // The running numbers of the epoch being trained.
  struct EpochProgress {
    torch::Tensor tloss;  // mean of the loss items so far
    int64_t i = 0, samples = 0, instances = 0;
    bool stopped = false, oom_restart = false;
  };

  std::optional<GpuStats> device_gpu_stats() const {
    return device_.is_cuda() ? gpu_stats(device_.has_index() ? device_.index() : 0) : std::nullopt;
  }
  // The official GPU_mem column: "0G" on the CPU, "1.23G" on CUDA ("?G" without NVML).
  std::string gpu_mem_column() const {
    if (!device_.is_cuda()) return "0G";
    auto g = device_gpu_stats();
    return g ? format_number("%.3gG", g->mem_used_gb) : std::string("?G");
  }
  void emit(const std::string& type, std::map<std::string, double> num = {},
            std::map<std::string, std::string> str = {}) {
    if (!cb_.on_event) return;
    // Distributed: rank 0 reports the run; the other ranks only their warnings.
    if (!main_ && !(type == "log" && str.count("level") && str["level"] == "warning")) return;
    TrainEvent e{type, std::move(num), std::move(str)};
    cb_.on_event(e);
  }
  void log(const std::string& text) { emit("log", {}, {{"text", text}}); }
  void warn(const std::string& text) { emit("log", {}, {{"text", text}, {"level", "warning"}}); }

  // setup(), in order.
  void setup(const YAML::Node& user_args);
  std::string open_resume(const YAML::Node& user_args);
  void select_device(const YAML::Node& user_args);
  void setup_distributed();
  ClassifySplit open_data(const YAML::Node& user_args);
  void build_model(const std::string& model_arg, const YAML::Node& pretrained);
  void adapt_config(ModelConfig& cfg, const std::string& model_arg);
  void check_model_task();
  void make_run_folder();
  void resolve_batch();
  void build_classify_loaders(ClassifySplit cls_train, uint64_t seed);
  void build_detection_loaders(uint64_t seed);
  void apply_class_weights();
  void build_optimizer();
  void build_ema();
  void write_args_yaml();

  // run(), in order.
  RunSettings run_settings();
  double begin_epoch(int64_t epoch);
  void train_epoch(int64_t epoch, double lf, Clock::time_point t_epoch, EpochProgress& p);
  bool forward_backward(DeviceBatch& d, int64_t epoch, int64_t i, int64_t ni, torch::Tensor* items);
  void optimizer_step();
  void emit_batch(int64_t epoch, const EpochProgress& p, int64_t accumulate, int64_t size, Clock::time_point t_epoch);
  bool stop_after_batch(int64_t epoch, int64_t i, bool* over_time);
  void reduce_batch_after_oom(int64_t epoch);
  std::map<std::string, double> epoch_numbers(int64_t epoch, const EpochProgress& p, Clock::time_point t_epoch);
  bool validate_and_save(int64_t epoch, const EpochProgress& p, std::map<std::string, double>& num, TrainResult& res);
  void finish(TrainResult& res);
  CheckpointData checkpoint_data(int64_t epoch) const;
  void save(const std::string& path, const CheckpointData& d, const std::string& kind);
  ValResult validate_epoch(const ValOptions& vopt);
  ValResult validate_model(YoloModel& model, const ValOptions& vopt);
  ValResult validate_best(const ValOptions& vopt);

  const TrainCallbacks& cb_;
  const std::atomic<bool>& stop_;
  TrainArgs a_;
  std::string device_str_;
  torch::Device device_{torch::kCPU};
  std::string save_dir_, wdir_, last_, best_;
  DataConfig data_;
  std::vector<std::string> names_;
  int64_t nc_ = 0;
  int imgsz_ = 640;
  int64_t batch_ = 16, epochs_ = 100, start_epoch_ = 0;
  int workers_ = 1;
  std::shared_ptr<YoloModel> model_, ema_model_;
  std::unique_ptr<ModelEMA> ema_;
  std::unique_ptr<TrainCriterion> criterion_;
  std::unique_ptr<Optimizer> optim_;
  OptimizerChoice choice_;
  std::vector<torch::Tensor> params_;  // trainable, for clipping
  std::shared_ptr<Dataset> train_ds_, val_ds_;
  // The train batches (detection DataLoader or ClassifyLoader), and how to make them again with another per-rank
  // batch after a first-epoch OOM.
  std::unique_ptr<TrainLoader> train_loader_;
  std::function<std::unique_ptr<TrainLoader>(int batch)> new_train_loader_;
  std::unique_ptr<DataLoader> val_loader_;
  // Classify: folder splits, its own loader (no boxes, no mosaic) and validate_classify.
  bool classify_ = false;
  // Channels-last on the CPU (see to_channels_last). Not for classify: its 1x1 late feature maps send the
  // convolution backward through oneDNN's slow reorder path (a 10 s test ran for minutes).
  bool channels_last_ = false;
  ClassifySplit cls_val_;
  int val_stride_ = 32;
  int oom_retries_ = 0;
  int64_t train_size_ = 0;
  void set_loader_epoch(int e) {
    if (prefetch_) prefetch_->reset();
    train_loader_->set_epoch(e);
  }
  // The next train batch on the device, normalised there; its copy overlapped the previous step.
  bool next_device_batch(DeviceBatch& d) {
    if (!prefetch_)
      prefetch_ = std::make_unique<DevicePrefetcher>([this](Batch& b) { return train_loader_->next(b); }, device_);
    return prefetch_->next(d);
  }
  int64_t accumulate_ = 1, nb_ = 0, nw_ = -1;
  bool accumulate_override_ = false;
  MixedPrecision amp_;
  std::unique_ptr<DevicePrefetcher> prefetch_;  // the train batches on the device, one ahead
  std::optional<double> best_fitness_;
  int64_t best_epoch_ = -1;
  ResultsTable results_;
  double prior_time_ = 0;  // training seconds of the epochs before a resume
  Checkpoint resume_ckpt_;
  bool resuming_ = false;
  std::string last_good_;  // last checkpoint written successfully
  // Distributed data parallel (train/distributed.h): rank 0 (main_) validates and writes the run folder.
  DistEnv denv_;
  std::unique_ptr<Distributed> dist_;
  std::unique_ptr<GradientSync> grad_sync_;  // over params_; made at the first step
  bool main_ = true;
  // State of run().
  RunSettings rs_;
  Clock::time_point t_start_;
  int64_t last_opt_step_ = -1;
  ValResult last_val_;
  bool have_val_ = false;
};

}  // namespace y26::trainer_internal
