#include "train/trainer_impl.h"

namespace y26::trainer_internal {

namespace {

// The newest last.pt under root: resume=true without a path.
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

}  // namespace

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

  results_.columns = results_columns(*criterion_, model_->task_kind(), optim_->groups().size());
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
  if (classify_ != (model_->task_kind() == Task::Classify))
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
  // The classify loader decodes every image each time (upstream turns RAM caching off for classify too): say so
  // rather than ignore the argument.
  if (parse_cache_mode(a_.str("cache", "false")) != CacheMode::None && main_)
    warn("cache=" + a_.str("cache") + " has no effect on classify training: its images are decoded every epoch");
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
  const int rank = dist_ ? dist_->rank() : 0, world = dist_ ? dist_->world() : 1;
  new_train_loader_ = [this, split = std::move(cls_train), aug, seed, rank,
                       world](int batch) -> std::unique_ptr<TrainLoader> {
    return std::make_unique<ClassifyLoader>(split, imgsz_, batch, workers_, seed, aug, rank, world);
  };
  train_loader_ = new_train_loader_((int)(batch_ / world));  // `batch` is global: each rank takes its share
  nb_ = train_loader_->batches_per_epoch();
}

void Trainer::build_detection_loaders(uint64_t seed) {
  DatasetOptions dso;
  dso.imgsz = imgsz_;
  dso.cache = parse_cache_mode(a_.str("cache", "false"));
  dso.fast_decode = true;
  dso.verbose = false;
  dso.obb = model_->task_kind() == Task::Obb;
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
    const uint64_t private_before = private_memory_bytes();
    DatasetOptions shared = dso;
    shared.shared_cache = "/yolo26-cache-" + std::to_string(denv_.master_port) + "-" + std::to_string(denv_.rank - denv_.local_rank);
    shared.shared_cache_owner = denv_.local_rank == 0;
    if (shared.shared_cache_owner) train_ds_ = open_train(shared);
    dist_->barrier("filling the shared RAM cache (local rank 0 decodes the images)");
    if (!shared.shared_cache_owner) train_ds_ = open_train(shared);
    dist_->barrier("mapping the shared RAM cache");
    train_ds_->unlink_shared_cache();
    const uint64_t private_after = private_memory_bytes();
    // every rank's private growth, so that rank 0's log shows that no peer made a copy
    std::vector<double> grew((size_t)dist_->world(), 0.0);
    grew[(size_t)dist_->rank()] = (double)(private_after > private_before ? private_after - private_before : 0);
    grew = dist_->allreduce_small(grew, "comparing the ranks' memory after mapping the shared RAM cache");
    const auto mib = [](double b) { return std::to_string(((uint64_t)b + (1 << 19)) >> 20) + " MiB"; };
    std::string per_rank;
    for (size_t r = 0; r < grew.size(); ++r) per_rank += (r ? ", " : "") + mib(grew[r]);
    log("cache='ram': one copy of the train images per machine (" + mib((double)train_ds_->ram_cache_bytes()) +
        " in shared memory), shared by its " + std::to_string(denv_.local_world) + " ranks; private memory growth "
        "opening it, by rank: " + per_rank);
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
  if (model_->task_kind() == Task::Pose && data_.flip_idx.empty() && a_.num("fliplr") > 0) {
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
  if (cfg.task_kind() != Task::Pose) return;
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

}  // namespace y26::trainer_internal
