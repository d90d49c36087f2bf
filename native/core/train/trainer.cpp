// The trainer: setup (arguments, device, data, model, loaders, optimiser, EMA) and the epoch/step loop. What it
// builds on lives beside it: train_args (defaults), weight_transfer (pretrained weights, cls_remap, freeze), amp
// (mixed precision, AutoBatch), criterion (task losses), optimizer and schedule, ema, results_table (results.csv)
// and distributed (DDP); the loaders implement data/loader.h's TrainLoader.
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

namespace fs = std::filesystem;

namespace y26 {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Errors the official trainer treats as running out of device memory.
bool is_memory_error(const std::string& what) {
  return to_lower(what).find("out of memory") != std::string::npos || what.find("CUBLAS_STATUS_ALLOC_FAILED") != std::string::npos ||
         what.find("CUDNN_STATUS_INTERNAL_ERROR") != std::string::npos ||
         what.find("unable to find an engine") != std::string::npos;
}
std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

std::string iso_now() {
  std::time_t t = std::time(nullptr);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", std::gmtime(&t));
  return buf;
}

YAML::Node snapshot_to_yaml(const std::vector<std::pair<std::string, double>>& scalars) {
  YAML::Node m(YAML::NodeType::Map);
  for (const auto& [k, v] : scalars) m[k] = v;
  return m;
}

std::string latest_last_pt(const std::string& root) {
  std::string best;
  fs::file_time_type best_t{};
  std::error_code ec;
  if (!fs::exists(root, ec)) return best;
  for (auto it = fs::recursive_directory_iterator(root, ec); it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) break;
    if (it->path().filename() == "last.pt") {
      auto t = fs::last_write_time(it->path(), ec);
      if (!ec && (best.empty() || t > best_t)) best = it->path().string(), best_t = t;
    }
  }
  return best;
}

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
  bool main_ = true;
  // State of run().
  RunSettings rs_;
  Clock::time_point t_start_;
  int64_t last_opt_step_ = -1;
  ValResult last_val_;
  bool have_val_ = false;
};

void Trainer::setup(const YAML::Node& user_args) {
  a_.n = resolve_train_args(user_args);
  denv_ = dist_env_from_environment();
  main_ = denv_.rank == 0;
  const std::string resume_path = open_resume(user_args);

  epochs_ = a_.integer("epochs");
  if (epochs_ < 1) fail("train(): epochs must be >= 1");
  if (resuming_ && start_epoch_ >= epochs_)
    fail("resume: " + resume_path + " already finished all " + std::to_string(epochs_) +
         " epochs; nothing to resume. Start a new training with model=" + resume_path);
  imgsz_ = (int)a_.integer("imgsz");
  if (imgsz_ < 32) fail("train(): imgsz must be at least 32");
  imgsz_ = (imgsz_ + 31) / 32 * 32;  // the official check_imgsz rounds up to the max stride

  select_device(user_args);
  const int64_t seed = a_.integer("seed");
  torch::manual_seed((uint64_t)seed);
  ClassifySplit cls_train = open_data(user_args);

  build_model(a_.str("model", "yolo26n.yaml"), a_.n["pretrained"]);
  check_model_task();
  // The task's loss (throws for tasks without one, before any run folder is made).
  criterion_ = make_criterion(*model_, nc_, epochs_, a_.n, data_.kpt_oks_sigmas);
  if (resuming_) criterion_->set_updates(start_epoch_);
  class_weights_for({}, a_.num("cls_pw"));  // range check before any run folder is made

  make_run_folder();
  amp_.check(*model_, device_, [this](const std::string& t) { log(t); });
  if (classify_) build_classify_loaders(std::move(cls_train), (uint64_t)seed);
  else build_detection_loaders((uint64_t)seed);
  build_optimizer();
  build_ema();

  results_.columns = results_columns(*criterion_, model_->task(), optim_->groups().size());
  if (resuming_) results_.load(resume_ckpt_.train_results);
  prior_time_ = results_.time();
  resume_ckpt_ = Checkpoint();  // free the loaded tensors
  if (main_) write_args_yaml();
}

// Resume: the run's own arguments come back from the checkpoint; only machine-specific keys may change. Returns the
// checkpoint's path, "" when not resuming.
std::string Trainer::open_resume(const YAML::Node& user_args) {
  bool resume_flag = false;
  const std::string resume_s = a_.str("resume", "false");
  std::string resume_path;
  if (!is_bool_text(resume_s, &resume_flag)) resume_path = resume_s;
  else if (resume_flag) {
    std::string m = a_.str("model");
    if (is_checkpoint_path(m) && fs::exists(m)) resume_path = m;
    else {
      std::string root = a_.has("project") ? a_.str("project") : "runs";
      resume_path = latest_last_pt(root);
      if (resume_path.empty())
        fail("resume=true: no last.pt found under " + root + "; pass resume='path/to/weights/last.pt'");
    }
  }
  if (resume_path.empty()) return resume_path;
  if (!fs::exists(resume_path)) fail("resume: " + resume_path + " does not exist; pass the run's weights/last.pt");
  if (int n = main_ ? remove_stale_checkpoint_temps(resume_path) : 0)  // left by a run killed while it saved
    log("Removed " + std::to_string(n) + " partial checkpoint file(s) " + resume_path + ".tmp-* of an interrupted save");
  resume_ckpt_ = load_checkpoint(resume_path);
  if (resume_ckpt_.format != kCheckpointFormat || resume_ckpt_.ema.empty() || resume_ckpt_.optimizer.empty())
    fail("resume: " + resume_path + " is not a training checkpoint of this engine (no EMA/optimizer state); "
         "start a new training with model=" + resume_path + " instead");
  YAML::Node ck_args = resolve_train_args(resume_ckpt_.train_args);
  for (const char* k : {"device", "workers", "cache", "threads", "batch"})
    if (user_args && user_args[k]) ck_args[k] = YAML::Clone(user_args[k]);
  ck_args["resume"] = resume_path;
  ck_args["model"] = resume_path;
  a_.n = ck_args;
  resuming_ = true;
  start_epoch_ = resume_ckpt_.epoch + 1;
  save_dir_ = fs::absolute(fs::path(resume_path)).parent_path().parent_path().string();
  return resume_path;
}

// The device (this rank's under torchrun, after the rendezvous), AMP, loader workers and compute threads.
void Trainer::select_device(const YAML::Node& user_args) {
  device_str_ = a_.has("device") ? resolve_device(denv_.active() ? rank_device(a_.str("device"), denv_) : a_.str("device"))
                                 : (torch::cuda::is_available() ? std::string(denv_.active() ? "cuda:" + std::to_string(denv_.local_rank) : "cuda:0") : std::string("cpu"));
  device_ = torch::Device(device_str_);
  if (denv_.active()) setup_distributed();  // the rendezvous first: a missing rank fails before any work
  amp_.configure(device_, a_, [this](const std::string& t) { log(t); });

  const int hw = std::max(1u, std::thread::hardware_concurrency());
  workers_ = (int)std::clamp<int64_t>(a_.integer("workers"), 1, hw);
  // On a GPU the loader is what keeps the card busy: without an explicit `workers`, every core but the training
  // thread's prepares batches (our workers are threads that sleep when the queue is full, not processes).
  if (device_.is_cuda() && !(user_args && user_args["workers"])) workers_ = std::max(workers_, hw - 1);
  // Compute gets every physical core: the loader needs ~2-5 ms of CPU per image against ~60-100 ms of CPU
  // forward+backward, so its threads mostly wait (measured on 2 cores: 1 thread 9.9 img/s, 2 threads 13.1).
  configure_threads((int)a_.integer("threads"), 0);
}

// Data: a data.yaml, or for classify an ImageNet-style folder (root/train/<class>/*, root/val/<class>/*); returns
// the classify train split (empty otherwise).
ClassifySplit Trainer::open_data(const YAML::Node& user_args) {
  if (!a_.has("data")) fail("train(): 'data' is required (path to a data.yaml, or a classification folder)");
  const bool single_cls = a_.flag("single_cls");
  ClassifySplit cls_train;
  classify_ = is_classify_data(a_.str("data"));
  if (classify_ && dist_)
    fail("train(): distributed training of classify models is not supported yet; train them in one process");
  if (classify_) {
    auto logger = [this](const std::string& t) { log(t); };
    cls_train = open_classify_split(a_.str("data"), "train", logger);
    cls_val_ = open_classify_split(a_.str("data"), a_.str("split", "val") == "test" ? "test" : "val", logger);
    data_.nc = (int)cls_train.names.size();
    data_.names = cls_train.names;
    // The official ClassificationTrainer trains at 224 when the user gives no imgsz (default.yaml's 640 is for
    // detection).
    if (!resuming_ && !(user_args && user_args["imgsz"] && !user_args["imgsz"].IsNull())) imgsz_ = 224;
  } else {
    data_ = load_data_yaml(a_.str("data"));
  }
  nc_ = single_cls ? 1 : data_.nc;
  names_ = single_cls ? std::vector<std::string>{"item"} : data_.names;
  return cls_train;
}

void Trainer::check_model_task() {
  if (classify_ != (model_->task() == "classify"))
    fail(classify_ ? "train(): data '" + a_.str("data") + "' is a classification folder but the model is a " +
                         model_->task() + " model; use a -cls model (yolo26n-cls.yaml) or pass a data.yaml"
                   : "train(): a classify model needs a classification folder as data (root/train/<class>/*), not " +
                         a_.str("data"));
}

// runs/<task>/<name> (rank 0 picks it, the other ranks share it) and its weights folder.
void Trainer::make_run_folder() {
  if (main_) {
    if (save_dir_.empty()) {
      std::string project = a_.has("project") ? a_.str("project") : "runs/" + model_->task();
      std::string name = a_.has("name") ? a_.str("name") : "train";
      save_dir_ = increment_path((fs::path(project) / name).string(), a_.flag("exist_ok"), true);
    }
    save_dir_ = fs::absolute(save_dir_).string();
  }
  if (dist_) save_dir_ = dist_->share_from_main("save_dir", save_dir_);  // one run folder, rank 0's
  wdir_ = (fs::path(save_dir_) / "weights").string();
  std::error_code ec;
  if (main_) fs::create_directories(wdir_, ec);
  if (ec) fail("cannot create " + wdir_ + ": " + ec.message() + "; choose a writable project folder");
  last_ = (fs::path(wdir_) / "last.pt").string();
  best_ = (fs::path(wdir_) / "best.pt").string();
  if (resuming_) last_good_ = a_.str("resume");
}

void Trainer::resolve_batch() {
  const double batch_arg = a_.num("batch");
  if (batch_arg < 1 && dist_)
    fail("train(): AutoBatch (batch=" + a_.str("batch") + ") is not supported with several ranks; pass the global batch "
         "as a multiple of the " + std::to_string(dist_->world()) + " ranks");
  if (batch_arg < 1) {  // -1: AutoBatch at 60% of the free memory; 0 < batch < 1: at that fraction
    const double fraction = batch_arg > 0 ? batch_arg : 0.6;
    batch_ = device_.is_cuda() ? probe_cuda_batch(*model_, imgsz_, device_, fraction, [this](const std::string& t) { log(t); })
                               : 16;
    if (!device_.is_cuda()) log("AutoBatch: intended for CUDA devices, using the default batch 16 on the CPU");
  } else {
    batch_ = a_.integer("batch");
  }
  if (dist_ && (batch_ < dist_->world() || batch_ % dist_->world() != 0))
    fail("train(): batch=" + std::to_string(batch_) + " is the global batch and must be a multiple of the " +
         std::to_string(dist_->world()) + " ranks (each rank trains on batch / world images)");
}

void Trainer::build_classify_loaders(ClassifySplit cls_train, uint64_t seed) {
  const double fraction = a_.num("fraction");  // official: the first round(n * fraction) samples
  if (fraction < 1.0) {
    const size_t n = std::max<size_t>(1, (size_t)std::llround(cls_train.files.size() * fraction));
    cls_train.files.resize(std::min(n, cls_train.files.size()));
    cls_train.labels.resize(cls_train.files.size());
  }
  train_size_ = (int64_t)cls_train.files.size();
  log("train: " + std::to_string(train_size_) + " images in " + std::to_string(cls_train.names.size()) +
      " classes; val: " + std::to_string(cls_val_.files.size()) + " images");
  resolve_batch();
  ClassifyAugment aug;
  aug.scale = a_.num("scale");
  aug.fliplr = a_.num("fliplr");
  aug.flipud = a_.num("flipud");
  aug.hsv_h = a_.num("hsv_h");
  aug.hsv_s = a_.num("hsv_s");
  aug.hsv_v = a_.num("hsv_v");
  aug.auto_augment = parse_auto_augment(a_.str("auto_augment"));  // null / false: ColorJitter instead
  aug.erasing = a_.num("erasing");
  if (aug.erasing < 0 || aug.erasing > 1)
    fail("train(): erasing=" + a_.str("erasing") + " must be a probability in [0, 1]");
  new_train_loader_ = [this, split = std::move(cls_train), aug, seed](int batch) -> std::unique_ptr<TrainLoader> {
    return std::make_unique<ClassifyLoader>(split, imgsz_, batch, workers_, seed, aug);
  };
  train_loader_ = new_train_loader_((int)batch_);
  nb_ = train_loader_->batches_per_epoch();
}

void Trainer::build_detection_loaders(uint64_t seed) {
  DatasetOptions dso;
  dso.imgsz = imgsz_;
  dso.cache = parse_cache_mode(a_.str("cache", "false"));
  dso.fast_decode = true;
  dso.verbose = false;
  dso.obb = model_->task() == "obb";
  IndexOptions io;
  io.nc = data_.nc;
  io.strict = false;
  io.verbose = false;
  io.kpt_count = data_.kpt_count;
  io.kpt_dims = data_.kpt_dims;
  auto train_files = list_image_files(data_.train, "train images");
  const double fraction = a_.num("fraction");
  if (fraction < 1.0) train_files.resize(std::max<size_t>(1, (size_t)(train_files.size() * fraction)));
  auto index = DatasetIndex::build(train_files, io);
  auto open_train = [&](const DatasetOptions& o) {
    return std::make_shared<Dataset>(index, o, data_.kpt_count, data_.kpt_dims, data_.flip_idx, data_.names);
  };
  if (dist_ && dso.cache == CacheMode::Ram && denv_.local_world > 1) {
    // One copy of the cached images per machine: local rank 0 fills a shared-memory cache, its peers map it.
    DatasetOptions shared = dso;
    shared.shared_cache = "/yolo26-cache-" + std::to_string(denv_.master_port) + "-" + std::to_string(denv_.rank - denv_.local_rank);
    shared.shared_cache_owner = denv_.local_rank == 0;
    if (shared.shared_cache_owner) train_ds_ = open_train(shared);
    dist_->barrier("filling the shared RAM cache (local rank 0 decodes the images)");
    if (!shared.shared_cache_owner) train_ds_ = open_train(shared);
    dist_->barrier("mapping the shared RAM cache");
    train_ds_->unlink_shared_cache();
    log("cache='ram': one copy of the train images per machine, shared by its " + std::to_string(denv_.local_world) + " ranks");
  } else {
    train_ds_ = open_train(dso);
  }
  if (train_ds_->size() == 0) fail(a_.str("data") + ": the train split has no usable images");
  for (const auto& w : shown_warnings(train_ds_->index().summary.warnings)) warn("train: " + w);
  log("train: " + train_ds_->index().summary.line());
  apply_class_weights();

  resolve_batch();

  const int stride = (int)std::max(32.0, model_->stride().back());
  LoaderOptions lo;
  lo.batch = (int)(batch_ / (dist_ ? dist_->world() : 1));  // `batch` is global: each rank takes its share
  if (dist_) lo.rank = dist_->rank(), lo.world = dist_->world();
  lo.workers = workers_;
  lo.shuffle = true;
  lo.seed = seed;
  lo.augment = true;
  for (const char* k : {"hsv_h", "hsv_s", "hsv_v", "degrees", "translate", "scale", "shear", "perspective", "flipud",
                        "fliplr", "bgr", "mosaic", "mixup", "cutmix", "close_mosaic"})
    lo.hyp.set(k, a_.num(k));
  if (model_->task() == "pose" && data_.flip_idx.empty() && a_.num("fliplr") > 0) {
    // Without flip_idx a mirrored image would keep left keypoints labelled as left (official behaviour too).
    lo.hyp.set("fliplr", 0.0);
    log("WARNING: No 'flip_idx' array defined in data.yaml, disabling 'fliplr'.");
  }
  lo.epochs = (int)epochs_;
  lo.stride = stride;
  lo.device = device_str_;
  val_stride_ = stride;
  new_train_loader_ = [this, lo](int batch) -> std::unique_ptr<TrainLoader> {
    LoaderOptions o = lo;
    o.batch = batch;
    return std::make_unique<DataLoader>(train_ds_, o);
  };
  train_loader_ = new_train_loader_(lo.batch);
  nb_ = train_loader_->batches_per_epoch();

  // Built even with val=false (the final epoch is always validated, as the official trainer does); by rank 0
  // alone, which alone validates.
  const std::string split = a_.str("split", "val") == "test" ? "test" : "val";
  if (data_.split(split).empty()) fail(a_.str("data") + ": no '" + split + "' split; add one for validation");
  if (main_) {
    DatasetOptions vso = dso;
    vso.fast_decode = false;
    val_ds_ = Dataset::open(data_, split, vso, io);
    for (const auto& w : shown_warnings(val_ds_->index().summary.warnings)) warn("val: " + w);
    val_loader_ = make_val_loader(val_ds_, lo.batch * 2, workers_, stride, device_str_);
  }
  train_size_ = (int64_t)train_ds_->size();
}

// Official set_class_weights (cls_pw > 0): the criterion again, with weights from the train labels' class counts
// (single_cls: one class, weight 1).
void Trainer::apply_class_weights() {
  if (!(a_.num("cls_pw") > 0 && !a_.flag("single_cls"))) return;
  std::vector<int64_t> counts(nc_, 0);
  for (size_t i = 0; i < train_ds_->size(); ++i)
    for (float c : train_ds_->labels(i).cls)
      if (c >= 0 && c < nc_) ++counts[(size_t)c];
  auto w = class_weights_for(counts, a_.num("cls_pw"));
  if (!w.defined()) return;
  std::ostringstream s;
  s << "Class weights:";
  for (int64_t k = 0; k < w.numel(); ++k) s << " " << format_number("%.3f", w[k].item<double>());
  log(s.str());
  criterion_ = make_criterion(*model_, nc_, epochs_, a_.n, data_.kpt_oks_sigmas, w);
  if (resuming_) criterion_->set_updates(start_epoch_);
}

// EMA: a second network whose tensors the averager updates in place.
void Trainer::build_ema() {
  ema_model_ = std::make_shared<YoloModel>(model_->config());
  ema_model_->load_state_dict(model_->state_dict(), "ema");
  for (auto& p : ema_model_->parameters()) p.set_requires_grad(false);
  ema_model_->to(device_);
  if (channels_last_) to_channels_last(*ema_model_);
  ema_model_->eval();
  if (dist_) {  // every rank starts from rank 0's weights (the initialisation, a checkpoint or a resume)
    std::vector<torch::Tensor> ts;
    for (auto& [k, t] : module_state(*model_)) ts.push_back(t);
    for (auto& [k, t] : module_state(*ema_model_)) ts.push_back(t);
    dist_->broadcast(ts, "broadcasting rank 0's initial weights");
  }
  ema_ = std::make_unique<ModelEMA>(module_state(*ema_model_));
  if (resuming_) {
    YoloModel tmp(model_->config());
    tmp.load_state_dict(resume_ckpt_.ema, a_.str("resume"));
    for (auto& p : tmp.parameters()) p.set_requires_grad(false);
    tmp.to(device_);
    ema_->load(module_state(tmp), resume_ckpt_.updates);
    best_fitness_ = resume_ckpt_.best_fitness;
    if (resume_ckpt_.extra && resume_ckpt_.extra["best_epoch"]) best_epoch_ = resume_ckpt_.extra["best_epoch"].as<int64_t>();
    if (resume_ckpt_.extra && resume_ckpt_.extra["amp_scale"]) amp_.set_loss_scale(resume_ckpt_.extra["amp_scale"].as<double>());
  }
}

// args.yaml: the effective arguments.
void Trainer::write_args_yaml() {
  a_.n["batch"] = batch_;
  a_.n["imgsz"] = imgsz_;
  a_.n["device"] = device_str_;
  a_.n["save_dir"] = save_dir_;
  YAML::Emitter em;
  em << a_.n;
  std::ofstream f(fs::path(save_dir_) / "args.yaml", std::ios::trunc);
  if (!f || !(f << em.c_str() << "\n"))
    fail("cannot write " + (fs::path(save_dir_) / "args.yaml").string() + ": check the folder is writable");
}

// The rendezvous and process group of this rank (the torchrun variables are set).
void Trainer::setup_distributed() {
  dist_ = std::make_unique<Distributed>(denv_, device_, dist_timeout());
  log("DDP: rank " + std::to_string(denv_.rank) + " of " + std::to_string(denv_.world) + " (local rank " +
      std::to_string(denv_.local_rank) + "), " + dist_->backend() + " process group via " + denv_.master_addr + ":" +
      std::to_string(denv_.master_port) + ", device " + device_str_);
}

void Trainer::build_model(const std::string& model_arg, const YAML::Node& pretrained) {
  std::vector<std::string> skipped;
  // cls_remap (official, default on): the data's class names pick the checkpoint's class-logit rows.
  auto transfer = [&](const NamedTensors& sd, const std::string& src, const std::vector<std::string>& src_names) {
    std::string note;
    const std::vector<std::string> none;
    const bool remap = a_.flag("cls_remap") && !a_.flag("single_cls");
    int64_t n = transfer_weights(*model_, sd, &skipped, remap ? src_names : none, remap ? data_.names : none, &note);
    if (!note.empty()) log(note);
    log(transfer_summary(n, skipped, src));
  };
  if (resuming_) {
    auto cfg = parse_model_config(resume_ckpt_.yaml, model_arg);
    model_ = std::make_shared<YoloModel>(cfg);
    model_->load_state_dict(resume_ckpt_.state_dict, model_arg);  // the EMA weights, as the official resume
  } else if (is_checkpoint_path(model_arg)) {
    Checkpoint ck = load_checkpoint(model_arg);
    auto cfg = parse_model_config(ck.yaml, model_arg);
    adapt_config(cfg, model_arg);
    model_ = std::make_shared<YoloModel>(cfg);
    bool use = true;
    if (pretrained && pretrained.IsScalar()) is_bool_text(pretrained.as<std::string>(), &use);
    if (use) transfer(ck.ema.empty() ? ck.state_dict : ck.ema, model_arg, ck.names);
  } else {
    auto cfg = load_model_config(model_arg);
    adapt_config(cfg, model_arg);
    model_ = std::make_shared<YoloModel>(cfg);
    bool flag = false;
    if (pretrained && pretrained.IsScalar() && !is_bool_text(pretrained.as<std::string>(), &flag)) {
      Checkpoint ck = load_checkpoint(pretrained.as<std::string>());
      transfer(ck.ema.empty() ? ck.state_dict : ck.ema, pretrained.as<std::string>(), ck.names);
    }
  }
  if (!resuming_ && model_->nc() != nc_)
    fail(model_arg + ": the model has " + std::to_string(model_->nc()) + " classes, the data " + std::to_string(nc_));
  std::vector<std::string> frozen;
  apply_freeze(*model_, freeze_prefixes(a_.n["freeze"]), &frozen);
  if (!frozen.empty()) {
    YAML::Emitter fz;  // freeze is a layer count or a list of layer indices
    fz << YAML::Flow << a_.n["freeze"];
    log("Freezing " + std::to_string(frozen.size()) + " parameter tensors (freeze=" +
        (a_.n["freeze"] && !a_.n["freeze"].IsNull() ? std::string(fz.c_str()) : std::string("none")) + ")");
  }
  model_->to(device_);
  // CPU: always (oneDNN convolves NHWC without reorders); CUDA: on request, as the official channels_last.
  channels_last_ = !classify_ && (!device_.is_cuda() || a_.flag("channels_last"));
  if (channels_last_) to_channels_last(*model_);  // before the optimiser and EMA take the tensors
  model_->train();
  if (classify_) {  // official ClassificationTrainer.get_model: every Dropout gets p = dropout when it is non-zero
    const double p = a_.num("dropout");
    if (p < 0 || p > 1) fail("train(): dropout=" + a_.str("dropout") + " must be a probability in [0, 1]");
    if (p > 0 && model_->classify_head()) model_->classify_head()->dropout = p;
  }
  log(model_->info(false, imgsz_));
}

// The data decides the class count and, for pose, the keypoint shape (as the official PoseModel's data_kpt_shape).
void Trainer::adapt_config(ModelConfig& cfg, const std::string& model_arg) {
  if (cfg.nc != nc_) set_num_classes(cfg, (int)nc_);
  if (cfg.task != "pose") return;
  if (data_.kpt_count <= 0)
    fail(a_.str("data") + ": a pose model (" + model_arg + ") needs 'kpt_shape: [K, 2 or 3]' in the data yaml; "
         "see the pose dataset format (and add flip_idx for fliplr)");
  const std::vector<int64_t> ks = {data_.kpt_count, data_.kpt_dims};
  if (cfg.kpt_shape != ks) {
    log("Overriding model.yaml kpt_shape=[" + std::to_string(cfg.kpt_shape.at(0)) + ", " +
        std::to_string(cfg.kpt_shape.at(1)) + "] with kpt_shape=[" + std::to_string(ks[0]) + ", " +
        std::to_string(ks[1]) + "]");
    set_kpt_shape(cfg, ks);
  }
}

void Trainer::build_optimizer() {
  accumulate_override_ = a_.integer("accumulate") > 0;
  const int64_t nbs = a_.integer("nbs");
  accumulate_ = accumulate_override_ ? a_.integer("accumulate") : nominal_accumulate(batch_, nbs);
  const double decay = scaled_weight_decay(a_.num("weight_decay"), batch_, accumulate_, nbs);
  const double iterations = auto_iterations(train_size_, batch_, epochs_, nbs);
  choice_ = resolve_optimizer(a_.str("optimizer", "auto"), a_.num("lr0"), a_.num("momentum"), nc_, iterations);
  auto params = collect_params(*model_, "");
  for (const auto& p : params) params_.push_back(p.tensor);
  auto groups = build_param_groups(params, choice_.kind, choice_.lr, choice_.momentum, decay);
  optim_ = make_optimizer(choice_.kind, std::move(groups));
  std::ostringstream s;
  if (choice_.from_auto)
    s << "optimizer: 'optimizer=auto' found, determining best 'optimizer', 'lr0' and 'momentum' automatically... ";
  s << "optimizer: " << optimizer_kind_name(choice_.kind) << "(lr=" << choice_.lr << ", momentum=" << choice_.momentum
    << ") with parameter groups";
  for (const auto& g : optim_->groups())
    s << " " << g.params.size() << " " << g.kind << "(decay=" << g.weight_decay << ")";
  log(s.str());
  if (resuming_ && !resume_ckpt_.optimizer.tensors.empty()) {
    OptimizerSnapshot snap;
    snap.tensors = resume_ckpt_.optimizer.tensors;
    if (resume_ckpt_.optimizer.scalars && resume_ckpt_.optimizer.scalars.IsMap())
      for (const auto& kv : resume_ckpt_.optimizer.scalars)
        snap.scalars.emplace_back(kv.first.as<std::string>(), kv.second.as<double>());
    for (auto& [n, t] : snap.tensors) t = t.to(device_);
    optim_->load_state_dict(snap);
  }
  nw_ = warmup_iterations(a_.num("warmup_epochs"), nb_, 100);
}

CheckpointData Trainer::checkpoint_data(int64_t epoch) const {
  CheckpointData d;
  const auto& cfg = model_->config();
  d.task = model_->task();
  d.nc = nc_;
  d.names = names_;
  d.kpt_shape = cfg.kpt_shape;
  for (double s : model_->stride()) d.stride.push_back((float)s);
  d.end2end = model_->end2end();
  d.reg_max = cfg.reg_max;
  d.imgsz = {imgsz_};
  d.yaml = cfg.yaml;
  d.train_args = a_.n;
  // The EMA is what is validated and deployed; the official format keeps it under 'ema' with 'model' empty,
  // and load_model() then reads the EMA. fp32 so that resume continues exactly.
  for (auto& [k, t] : ema_model_->state_dict()) d.ema.emplace_back(k, t.detach().to(torch::kCPU).clone());
  OptimizerSnapshot snap = optim_->state_dict();
  for (auto& [k, t] : snap.tensors) d.optimizer.tensors.emplace_back(k, t.to(torch::kCPU));
  d.optimizer.scalars = snapshot_to_yaml(snap.scalars);
  d.epoch = epoch;
  d.best_fitness = best_fitness_;
  d.updates = ema_->updates();
  d.date = iso_now();
  d.version = "yolo26-native";
  d.train_results = results_.to_yaml();
  YAML::Node extra(YAML::NodeType::Map);
  extra["best_epoch"] = best_epoch_;
  extra["amp_scale"] = amp_.loss_scale();
  extra["optimizer_kind"] = optimizer_kind_name(choice_.kind);
  d.extra = extra;
  return d;
}

void Trainer::save(const std::string& path, const CheckpointData& d, const std::string& kind) {
  try {
    save_checkpoint(path, d);
  } catch (const std::exception& e) {
    fail("could not save " + path + ": " + e.what() + ". The previous checkpoint" +
         (last_good_.empty() ? std::string() : " (" + last_good_ + ")") +
         " is intact; free disk space or choose a writable project folder, then resume");
  }
  if (kind == "last") last_good_ = path;
  emit("checkpoint", {{"epoch", (double)d.epoch + 1}}, {{"path", path}, {"kind", kind}});
}


// Official first-epoch OOM recovery: half the batch, new loaders, a fresh optimiser (weight decay and accumulate follow
// the batch); the model and EMA keep what the interrupted epoch taught them.
void Trainer::reduce_batch_after_oom(int64_t epoch) {
  batch_ = std::max<int64_t>(batch_ / 2, 1);
  a_.n["batch"] = batch_;
  train_loader_.reset();  // its workers and queued batches first
  val_loader_.reset();
  train_loader_ = new_train_loader_((int)batch_);  // one process: the per-rank batch is the batch
  nb_ = train_loader_->batches_per_epoch();
  if (val_ds_) val_loader_ = make_val_loader(val_ds_, (int)batch_ * 2, workers_, val_stride_, device_str_);
  set_loader_epoch((int)epoch);
  optim_.reset();
  params_.clear();
  build_optimizer();
}

void Trainer::optimizer_step() {
  if (dist_) {  // the sum of every rank's gradients, before unscaling and clipping, so every rank steps the same
    std::vector<torch::Tensor> grads;
    for (auto& p : params_) {
      if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
      grads.push_back(p.grad());
    }
    dist_->allreduce_sum(grads, "the gradient all-reduce");
  }
  if (!amp_.unscale_and_update(params_)) {  // inf/NaN gradients: skip the step
    optim_->zero_grad();
    return;
  }
  torch::nn::utils::clip_grad_norm_(params_, 10.0);
  optim_->step();
  optim_->zero_grad();
  ema_->update(module_state(*model_));
}

// The epoch's validation (of the EMA): the detection-family validator with the criterion's val losses, or for
// classify top-1/top-5 and the cross-entropy (val/loss) on the val folder.
ValResult Trainer::validate_model(YoloModel& model, const ValOptions& vopt) {
  if (!classify_) return validate(model, *val_loader_, names_, vopt, criterion_.get());
  ClassifySplit split = cls_val_;
  if (a_.flag("single_cls")) {
    std::fill(split.labels.begin(), split.labels.end(), 0);
    split.names = {"item"};
  }
  ClassifyValOptions co;
  co.imgsz_h = co.imgsz_w = imgsz_;
  co.batch = (int)batch_ * 2;
  co.workers = workers_;
  co.device = device_str_;
  co.compute_loss = true;
  co.plots_dir = vopt.plots_dir;
  co.log = vopt.log;
  auto cr = validate_classify(model, split, co);
  return to_val_result(cr);
}

// The epoch's validation of the EMA. Under AMP on CUDA in fp16, as the official validator during training, but of a
// copy: the official casts the EMA itself to half and back, rounding its weights every epoch.
ValResult Trainer::validate_epoch(const ValOptions& vopt) {
  if (!amp_.fp16() || classify_) return validate_model(*ema_model_, vopt);
  auto copy = std::make_shared<YoloModel>(ema_model_->config());
  copy->to(device_);
  {
    torch::NoGradGuard ng;
    auto src = module_state(*ema_model_), dst = module_state(*copy);
    for (size_t i = 0; i < dst.size(); ++i) dst[i].second.copy_(src[i].second);
  }
  copy->eval();
  ValOptions v = vopt;
  v.half = true;
  return validate_model(*copy, v);
}

// As the official final_eval: the run's result is best.pt validated again (it may predate the last epoch).
ValResult Trainer::validate_best(const ValOptions& vopt) {
  log("\nValidating " + best_ + "...");
  auto ck = load_checkpoint(best_);
  auto m = y26::build_model(ck, best_);
  m->to(device_);
  if (channels_last_) to_channels_last(*m);
  m->eval();
  ValOptions v = vopt;
  if (a_.flag("plots")) v.plots_dir = save_dir_;  // as the official final_eval: the validation plots of best.pt
  return validate_model(*m, v);
}

TrainResult Trainer::run() {
  std::optional<CpuAllocCache> alloc_cache;  // CPU training re-allocates the same big buffers every iteration
  if (!device_.is_cuda()) alloc_cache.emplace();
  // Fixed input sizes: let cuDNN time its algorithms once per shape (after AutoBatch, which needs it off).
  if (device_.is_cuda()) at::globalContext().setBenchmarkCuDNN(true);
  TrainResult res;
  res.save_dir = save_dir_;
  t_start_ = Clock::now();
  rs_ = run_settings();

  log("Image sizes " + std::to_string(imgsz_) + " train, " + std::to_string(imgsz_) + " val");
  log("Using " + std::to_string(workers_) + " dataloader workers");
  log("Logging results to " + save_dir_);
  log((resuming_ ? "Resuming training from epoch " + std::to_string(start_epoch_ + 1) + " for "
                 : std::string("Starting training for ")) +
      std::to_string(epochs_) + " epochs...");

  last_opt_step_ = -1;
  set_loader_epoch((int)start_epoch_);
  for (int64_t epoch = start_epoch_; epoch < epochs_; ++epoch) {
    const auto t_epoch = Clock::now();
    const double lf = begin_epoch(epoch);
    EpochProgress p;
    train_epoch(epoch, lf, t_epoch, p);
    if (p.oom_restart) {  // the same epoch again with half the batch
      ++oom_retries_;
      reduce_batch_after_oom(epoch);
      rs_.wcfg.batch = batch_;
      last_opt_step_ = -1;
      --epoch;
      continue;
    }
    std::map<std::string, double> num = epoch_numbers(epoch, p, t_epoch);
    if (p.stopped) {
      // Keep what was learned: last.pt with this epoch counted, so resume continues with the next one.
      if (main_) save(last_, checkpoint_data(epoch), "last");
      res.stopped = true;
      res.epochs_completed = epoch + 1;
      break;
    }
    {
      std::ostringstream s;
      s << std::setw(11) << (std::to_string(epoch + 1) + "/" + std::to_string(epochs_)) << std::setw(11)
        << gpu_mem_column();
      for (int64_t j = 0; j < p.tloss.numel(); ++j) s << std::setw(11) << format_number("%.4g", p.tloss[j].item<double>());
      s << std::setw(11) << p.instances << std::setw(11) << imgsz_;
      log(s.str());
    }
    criterion_->update();

    bool early = main_ && validate_and_save(epoch, p, num, res);  // rank 0 alone validates and saves
    res.epochs_completed = epoch + 1;
    bool stop_now = stop_.load();
    if (dist_) {  // the other ranks wait here while rank 0 validates and saves; then all go on or end together
      const auto v = dist_->allreduce_small({early ? 1.0 : 0.0, stop_now ? 1.0 : 0.0},
                                            "the end of epoch " + std::to_string(epoch + 1) + " (rank 0 validates and saves)");
      early = v[0] > 0, stop_now = v[1] > 0;
    }
    if (early) {
      if (main_)
        log("Stopping training early as no improvement observed in last " + std::to_string(rs_.patience) +
            " epochs. Best results observed at epoch " + std::to_string(best_epoch_ + 1) + ", best model saved as best.pt.");
      res.early_stopped = true;
      break;
    }
    if (stop_now) {
      res.stopped = true;
      break;
    }
  }
  finish(res);
  return res;
}

Trainer::RunSettings Trainer::run_settings() {
  RunSettings s;
  s.time_limit_h = a_.has("time") ? a_.num("time") : 0.0;
  s.patience = a_.integer("patience") > 0 ? a_.integer("patience") : INT64_MAX;
  s.save_period = a_.integer("save_period");
  s.single_cls = a_.flag("single_cls");
  s.nan_at = a_.integer("debug_nan_at");
  s.oom_above = a_.integer("debug_oom_above");
  s.wcfg.warmup_bias_lr = choice_.from_auto ? 0.0 : a_.num("warmup_bias_lr");
  s.wcfg.warmup_momentum = a_.num("warmup_momentum");
  s.wcfg.momentum = a_.num("momentum");
  s.wcfg.nbs = a_.integer("nbs");
  s.wcfg.batch = batch_;
  ValOptions& v = s.vopt;
  v.device = device_str_;
  v.half = a_.flag("half") && device_.is_cuda();  // the final evaluation: fp16 on request, as upstream
  v.max_det = (int)a_.integer("max_det");
  v.single_cls = s.single_cls;
  v.end2end = model_->end2end();
  v.overlap_mask = a_.flag("overlap_mask");
  v.mask_ratio = (int)a_.integer("mask_ratio");
  v.kpt_sigmas = data_.kpt_oks_sigmas;
  if (a_.has("conf")) v.cm_conf = a_.num("conf");  // the official confusion matrix: conf, else 0.25
  v.log = [this](const std::string& t) { log(t); };
  // Plots: the official train_batch{ni}.jpg for iterations 0-2 and the first 3 after close_mosaic, results.png
  // after every epoch (official: at the end) and the final validation's plots (validate_best).
  s.plots = a_.flag("plots");
  s.close_mosaic = a_.integer("close_mosaic");
  return s;
}

// The epoch's learning rate, its events and table header; returns the LambdaLR factor.
double Trainer::begin_epoch(int64_t epoch) {
  const double lf = lr_factor((double)epoch, (double)epochs_, a_.num("lrf"), a_.flag("cos_lr"));
  set_epoch_lr(optim_->groups(), lf);
  if (!classify_ && a_.integer("close_mosaic") > 0 && epoch == epochs_ - a_.integer("close_mosaic"))
    log("Closing dataloader mosaic");
  model_->train();
  train_loader_->reset_stats();
  {  // the batch event's losses come in a std::map (alphabetical): loss_names gives the task's order for display
    std::string order;
    for (const auto& c : loss_columns(*criterion_, "")) order += (order.empty() ? "" : ",") + c;
    emit("epoch_start", {{"epoch", (double)epoch + 1}, {"epochs", (double)epochs_}, {"batches", (double)nb_}},
         {{"loss_names", order}});
  }
  std::ostringstream h;
  h << std::setw(11) << "Epoch" << std::setw(11) << "GPU_mem";
  for (const auto& n : criterion_->loss_names()) h << std::setw(11) << loss_column(n);
  h << std::setw(11) << "Instances" << std::setw(11) << "Size";
  log(h.str());
  return lf;
}

// The epoch's batches: warmup, forward/backward, an optimiser step every `accumulate` batches, the batch event and
// the stop checks. Ends early with p.stopped (stop() or the time limit) or p.oom_restart.
void Trainer::train_epoch(int64_t epoch, double lf, Clock::time_point t_epoch, EpochProgress& p) {
  const std::vector<std::string>& loss_names = criterion_->loss_names();
  const std::string task = model_->task();
  auto plot_batch = [&](int64_t ni) {  // nb_ read each time: an out-of-memory retry changes it
    const int64_t k = rs_.close_mosaic > 0 ? ni - (epochs_ - rs_.close_mosaic) * nb_ : -1;
    return ni < 3 || (k >= 0 && k < 3);
  };
  p.tloss = torch::zeros({(int64_t)loss_names.size()});
  DeviceBatch d;
  optim_->zero_grad();
  while (next_device_batch(d)) {
    const Batch& b = d.host;
    const int64_t ni = p.i + nb_ * epoch;
    int64_t accumulate = accumulate_;
    if (nw_ >= 0 && in_warmup(ni, nw_)) {
      accumulate = apply_warmup(optim_->groups(), choice_.kind, ni, nw_, lf, rs_.wcfg);
      if (accumulate_override_)
        accumulate = std::max<int64_t>(1, std::llround(interp_ramp((double)ni, (double)nw_, 1.0, (double)accumulate_)));
    }
    const int64_t size = d.img.size(3);
    torch::Tensor items;
    if (!forward_backward(d, epoch, p.i, ni, &items)) {
      p.oom_restart = true;
      break;
    }
    if (ni - last_opt_step_ >= accumulate) {
      optimizer_step();
      last_opt_step_ = ni;
    }
    p.tloss = (p.tloss * (double)p.i + items.to(torch::kCPU)) / (double)(p.i + 1);
    p.samples += b.size();
    p.instances = b.cls.size(0);
    if (rs_.plots && main_ && plot_batch(ni))
      plot_safely(rs_.vopt.log, "train_batch", [&] {
        save_image_atomic((fs::path(save_dir_) / ("train_batch" + std::to_string(ni) + ".jpg")).string(),
                          image_grid(batch_images(b), batch_labels(b, task), names_));
      });
    ++p.i;
    emit_batch(epoch, p, accumulate, size, t_epoch);
    bool over_time = false;
    if (stop_after_batch(epoch, p.i, &over_time)) {
      p.stopped = true;
      if (over_time) log("Training time limit of " + format_number("%g", rs_.time_limit_h) + " hours reached");
      break;
    }
  }
}

// Forward, loss and backward of one batch; *items gets the loss items. False when it ran out of memory in the first
// epoch with halvings left (the caller retries the epoch with half the batch); other errors throw.
bool Trainer::forward_backward(DeviceBatch& d, int64_t epoch, int64_t i, int64_t ni, torch::Tensor* items) {
  auto img = d.img;
  if (channels_last_) img = img.contiguous(torch::MemoryFormat::ChannelsLast);
  try {
    if (rs_.oom_above > 0 && batch_ > rs_.oom_above && i == 1)
      throw std::runtime_error("CUDA out of memory (simulated: debug_oom_above=" + std::to_string(rs_.oom_above) + ")");
    ModelOutput out;
    {
      auto autocast = amp_.autocast();
      out = model_->forward(img);
    }
    Batch targets = d.host;  // the labels already copied to the device with the image
    targets.cls = d.cls, targets.bboxes = d.bboxes, targets.batch_idx = d.batch_idx;
    auto cr = criterion_->compute(out, targets, device_, rs_.single_cls);  // float32 losses outside autocast
    torch::Tensor total = cr.total;
    *items = cr.items;
    if (ni == rs_.nan_at) total = total * std::numeric_limits<float>::quiet_NaN();
    const double total_v = total.item<double>();
    if (!std::isfinite(total_v))
      fail("training diverged: the loss is " + std::string(std::isnan(total_v) ? "NaN" : "Inf") + " at epoch " +
           std::to_string(epoch + 1) + ", batch " + std::to_string(i + 1) + ". " +
           (last_good_.empty() ? std::string("No checkpoint was written yet")
                               : "The last good checkpoint is " + last_good_) +
           ". Lower lr0 (now " + format_number("%g", optim_->groups()[0].initial_lr) +
           "), check the labels, or resume from the last good checkpoint");
    amp_.scale_loss(total).backward();
    return true;
  } catch (const std::exception& e) {
    if (!is_memory_error(e.what())) throw;
    *items = d.img = torch::Tensor();
    cuda_empty_cache();  // the failed step's blocks, before the smaller batch allocates
    const std::string what = first_line(e.what());
    if (epoch > start_epoch_ || oom_retries_ >= 3 || dist_)  // ranks cannot halve their batches apart
      fail("out of memory at batch=" + std::to_string(batch_) + " (epoch " + std::to_string(epoch + 1) + ", " +
           (epoch > start_epoch_ ? "after the first epoch" : "after 3 halvings") + "): " + what +
           ". Lower batch or imgsz" + (last_good_.empty() ? std::string() : "; the last good checkpoint is " + last_good_));
    log("WARNING: " + what + " with batch=" + std::to_string(batch_) + ". Reducing to batch=" +
        std::to_string(std::max<int64_t>(batch_ / 2, 1)) + " and retrying (" + std::to_string(oom_retries_ + 1) +
        "/3).");
    return false;
  }
}

void Trainer::emit_batch(int64_t epoch, const EpochProgress& p, int64_t accumulate, int64_t size,
                         Clock::time_point t_epoch) {
  const double elapsed = seconds_since(t_epoch);
  const auto st = train_loader_->stats();
  const int64_t world = dist_ ? dist_->world() : 1;
  std::map<std::string, double> num = {
      {"epoch", (double)epoch + 1},
      {"epochs", (double)epochs_},
      {"iteration", (double)p.i},
      {"batches", (double)nb_},
      {"lr", optim_->groups()[0].lr},
      {"images_per_second", p.samples * world / std::max(elapsed, 1e-9)},
      {"data_wait_fraction", st.wait_ms_total / 1000.0 / std::max(elapsed, 1e-9)},
      {"instances", (double)p.instances},
      {"size", (double)size},
      {"accumulate", (double)accumulate}};
  const auto& loss_names = criterion_->loss_names();
  for (size_t j = 0; j < loss_names.size(); ++j) num[loss_column(loss_names[j])] = p.tloss[(int64_t)j].item<double>();
  if (auto g = device_gpu_stats()) {
    num["gpu_mem_gb"] = g->mem_used_gb;
    num["gpu_util"] = g->util_percent;
  }
  emit("batch", std::move(num));
}

// stop() or the time limit after batch i; *over_time tells which.
bool Trainer::stop_after_batch(int64_t epoch, int64_t i, bool* over_time) {
  bool stop_now = stop_.load();
  *over_time = rs_.time_limit_h > 0 && seconds_since(t_start_) > rs_.time_limit_h * 3600;
  if (dist_) {  // every rank ends at the same batch: rank 0's clock decides the time limit, any rank's stop()
    const auto v = dist_->allreduce_small({stop_now ? 1.0 : 0.0, *over_time && main_ ? 1.0 : 0.0},
                                          "the stop check after batch " + std::to_string(i) + " of epoch " + std::to_string(epoch + 1));
    stop_now = v[0] > 0, *over_time = v[1] > 0;
  }
  if (stop_now) *over_time = false;  // stop() wins: no time-limit line
  return stop_now || *over_time;
}

// The epoch_end numbers before validation: time, throughput, train losses, learning rates.
std::map<std::string, double> Trainer::epoch_numbers(int64_t epoch, const EpochProgress& p, Clock::time_point t_epoch) {
  const double epoch_time = seconds_since(t_epoch);
  const auto st = train_loader_->stats();
  std::map<std::string, double> num = {{"epoch", (double)epoch + 1},
                                       {"epochs", (double)epochs_},
                                       {"epoch_time", epoch_time},
                                       {"images_per_second", p.samples / std::max(epoch_time, 1e-9)},
                                       {"data_wait_fraction", st.wait_ms_total / 1000.0 / std::max(epoch_time, 1e-9)}};
  const auto& loss_names = criterion_->loss_names();
  for (size_t j = 0; j < loss_names.size(); ++j) num["train/" + loss_column(loss_names[j])] = p.tloss[(int64_t)j].item<double>();
  for (size_t g = 0; g < optim_->groups().size(); ++g) num["lr/pg" + std::to_string(g)] = optim_->groups()[g].lr;
  return num;
}

// Rank 0 after each epoch: validation (or the train loss as fitness), results.csv, the checkpoints and the
// epoch_end event. Returns whether patience ran out.
bool Trainer::validate_and_save(int64_t epoch, const EpochProgress& p, std::map<std::string, double>& num,
                                TrainResult& res) {
  const bool final_epoch = epoch + 1 == epochs_;
  double fitness;
  if (a_.flag("val") || final_epoch) {
    last_val_ = validate_epoch(rs_.vopt);
    have_val_ = true;
    log(last_val_.table);
    for (const auto& [k, v] : last_val_.metrics) num[k] = v;
    fitness = last_val_.metrics.at("fitness");
  } else {
    fitness = -(p.tloss.sum().item<double>());
    num["fitness"] = fitness;
  }
  const bool is_best = !best_fitness_ || *best_fitness_ == 0.0 || fitness > *best_fitness_;
  if (is_best) best_fitness_ = fitness, best_epoch_ = epoch;

  results_.add_row(epoch + 1, prior_time_ + seconds_since(t_start_), num);
  results_.write_csv((fs::path(save_dir_) / "results.csv").string());
  if (rs_.plots) plot_safely(rs_.vopt.log, "results", [&] { plot_results((fs::path(save_dir_) / "results.csv").string()); });

  auto ck = checkpoint_data(epoch);
  save(last_, ck, "last");
  if (is_best) save(best_, ck, "best");
  if (rs_.save_period > 0 && (epoch + 1) % rs_.save_period == 0)
    save((fs::path(wdir_) / ("epoch" + std::to_string(epoch + 1) + ".pt")).string(), ck, "period");
  num["fitness"] = fitness;
  num["best_fitness"] = *best_fitness_;
  emit("epoch_end", num);
  res.final_metrics = num;
  return epoch - best_epoch_ >= rs_.patience && !final_epoch;
}

// After the last epoch: best.pt validated again, the final table, and the result.
void Trainer::finish(TrainResult& res) {
  const double hours = seconds_since(t_start_) / 3600.0;
  log(std::to_string(res.epochs_completed - start_epoch_) + " epochs completed in " + format_number("%.3f", hours) + " hours.");
  if (have_val_ && !res.stopped && fs::exists(best_)) {  // stop() asks for a prompt end: no extra pass
    last_val_ = validate_best(rs_.vopt);
    for (const auto& [k, v] : last_val_.metrics) res.final_metrics[k] = v;
  }
  if (have_val_) {
    // The official final table lists every class.
    log(classify_ ? last_val_.table
                  : format_val_table(last_val_, rs_.single_cls ? std::vector<std::string>{"item"} : names_, true));
    log(last_val_.speed_line);
  }
  if (dist_) dist_->barrier("the end of training (rank 0 validates best.pt)");
  log("Results saved to " + save_dir_);
  res.last = fs::exists(last_) ? last_ : "";
  res.best = fs::exists(best_) ? best_ : "";
  res.best_epoch = best_epoch_;
  res.best_fitness = best_fitness_.value_or(0.0);
  res.args = a_.n;
}

}  // namespace

TrainResult run_training(const YAML::Node& args, const TrainCallbacks& cb, const std::atomic<bool>& stop) {
  Trainer t(args, cb, stop);
  return t.run();
}

}  // namespace y26
