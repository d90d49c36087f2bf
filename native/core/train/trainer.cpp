// The trainer: setup (arguments, device, data, model, loaders, optimiser, EMA) and the epoch/step loop. What it
// builds on lives beside it: train_args (defaults), weight_transfer (pretrained weights, cls_remap, freeze), amp
// (mixed precision, AutoBatch), criterion (task losses), optimizer and schedule, ema, results_table (results.csv)
// and distributed (DDP); the loaders implement data/loader.h's TrainLoader.
#include "train/trainer_impl.h"
#include "util/timestamp.h"

namespace y26 {

namespace trainer_internal {

namespace {

// Errors the official trainer treats as running out of device memory.
bool is_memory_error(const std::string& what) {
  return to_lower(what).find("out of memory") != std::string::npos || what.find("CUBLAS_STATUS_ALLOC_FAILED") != std::string::npos ||
         what.find("CUDNN_STATUS_INTERNAL_ERROR") != std::string::npos ||
         what.find("unable to find an engine") != std::string::npos;
}
std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

YAML::Node snapshot_to_yaml(const std::vector<std::pair<std::string, double>>& scalars) {
  YAML::Node m(YAML::NodeType::Map);
  for (const auto& [k, v] : scalars) m[k] = v;
  return m;
}

}  // namespace

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
  grad_sync_.reset();
  params_.clear();
  build_optimizer();
}

void Trainer::optimizer_step() {
  // the sum of every rank's gradients (started during backward), before unscaling and clipping: every rank steps the same
  if (grad_sync_) grad_sync_->finish();
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
  co.batch = (int)(batch_ / (dist_ ? dist_->world() : 1)) * 2;  // the per-rank batch's double, as detection's
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
  const Task task = model_->task_kind();
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
    if (dist_ && ni - last_opt_step_ >= accumulate) {  // this backward ends with a step: overlap its all-reduce
      if (!grad_sync_) grad_sync_ = std::make_unique<GradientSync>(*dist_, params_);
      grad_sync_->arm();
    }
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

}  // namespace trainer_internal

TrainResult run_training(const YAML::Node& args, const TrainCallbacks& cb, const std::atomic<bool>& stop) {
  trainer_internal::Trainer t(args, cb, stop);
  return t.run();
}

}  // namespace y26
