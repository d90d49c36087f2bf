#include "eval/validator.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <cstdio>
#include <sstream>
#include <thread>

#include "data/dataset.h"
#include "data/index_warnings.h"
#include "data/obb_labels.h"
#include "eval/classify_val.h"
#include "eval/mask_metrics.h"
#include "eval/obb_metrics.h"
#include "eval/plots.h"
#include "infer/save.h"
#include "infer/postprocess.h"
#include "model/loader.h"
#include "train/train_args.h"
#include "util/error.h"
#include "util/system.h"

namespace fs = std::filesystem;

namespace y26 {

namespace {

using Clock = std::chrono::steady_clock;

void sync_device(const torch::Device& d) {
  // A tiny host copy waits for queued CUDA work so the stage timings are honest.
  if (d.is_cuda()) torch::zeros({1}, torch::TensorOptions().device(d)).cpu();
}

}  // namespace

std::unique_ptr<DataLoader> make_val_loader(std::shared_ptr<const Dataset> ds, int batch, int workers, int stride,
                                            const std::string& device) {
  LoaderOptions lo;
  lo.batch = std::max(1, batch);
  lo.workers = std::max(1, workers);
  lo.shuffle = false;
  lo.augment = false;
  lo.rect = true;
  lo.stride = stride;
  lo.pad = 0.5f;
  lo.device = device;
  return std::make_unique<DataLoader>(std::move(ds), lo);
}

std::vector<std::string> metric_keys(Task task) {
  std::vector<std::string> suffixes;
  switch (task) {
    case Task::Classify: return {"metrics/accuracy_top1", "metrics/accuracy_top5"};
    case Task::Detect:
    case Task::Obb: suffixes = {"B"}; break;
    case Task::Pose: suffixes = {"B", "P"}; break;
    case Task::Segment: suffixes = {"B", "M"}; break;
  }
  if (suffixes.empty()) fail("metric_keys: not a Task value (" + std::to_string(static_cast<int>(task)) + ")");
  std::vector<std::string> out;
  for (const auto& s : suffixes)
    for (const char* k : {"precision", "recall", "mAP50", "mAP50-95"})
      out.push_back(std::string("metrics/") + k + "(" + s + ")");
  return out;
}

std::vector<std::string> metric_keys(const std::string& task) { return metric_keys(parse_task(task)); }

std::string format_val_table(const ValResult& r, const std::vector<std::string>& names, bool per_class) {
  switch (parse_task(r.task)) {  // throws for an unknown task
    case Task::Segment: return format_seg_table(r.det, r.mask, names, per_class);
    case Task::Detect:
    case Task::Obb:
    case Task::Classify: return format_det_table(r.det, names, per_class);
    case Task::Pose: break;
  }
  // Box columns then Pose columns, one row per class of the box results (both share the GT classes).
  char buf[320];
  std::string out;
  std::snprintf(buf, sizeof buf, "%22s%11s%11s%11s%11s%11s%11s%11s%11s%11s%11s\n", "Class", "Images", "Instances",
                "Box(P", "R", "mAP50", "mAP50-95)", "Pose(P", "R", "mAP50", "mAP50-95)");
  out += buf;
  auto row = [&](const std::string& name, int64_t images, int64_t instances, double bp, double br, double b50,
                 double b5095, double kp, double kr, double k50, double k5095) {
    std::snprintf(buf, sizeof buf, "%22s%11lld%11lld%11.3g%11.3g%11.3g%11.3g%11.3g%11.3g%11.3g%11.3g\n", name.c_str(),
                  (long long)images, (long long)instances, bp, br, b50, b5095, kp, kr, k50, k5095);
    out += buf;
  };
  row("all", r.det.images, r.det.instances, r.det.precision, r.det.recall, r.det.map50, r.det.map50_95,
      r.kpt.precision, r.kpt.recall, r.kpt.map50, r.kpt.map50_95);
  if (per_class && names.size() > 1)
    for (size_t i = 0; i < r.det.per_class.size(); ++i) {
      const auto& c = r.det.per_class[i];
      ClassMetrics k;
      for (const auto& kc : r.kpt.per_class)
        if (kc.cls == c.cls) k = kc;
      row(c.cls < (int64_t)names.size() ? names[c.cls] : c.name, c.images, c.instances, c.precision, c.recall, c.ap50,
          c.ap50_95, k.precision, k.recall, k.ap50, k.ap50_95);
    }
  return out;
}

ValMatcher::ValMatcher(const std::string& task, std::vector<std::string> names, std::vector<int64_t> kpt_shape,
                       const ValOptions& opt)
    : task_(parse_task(task)), opt_(opt), box_(names) {
  if (task_ == Task::Classify)
    fail("val(): ValMatcher matches detect, segment, pose and obb predictions, not task '" + task +
         "' (classify models go through validate_classify)");
  if (task_ == Task::Pose) {
    if (kpt_shape.size() != 2) fail("val(): a pose model needs kpt_shape [K, 2 or 3]");
    nk_ = kpt_shape[0];
    ndim_ = kpt_shape[1];
    pose_ = std::make_unique<PoseMetrics>(names, nk_, opt.kpt_sigmas);
  }
  if (task_ == Task::Segment) seg_ = std::make_unique<SegmentMetrics>(names);
  if (task_ == Task::Obb) obb_ = std::make_unique<ObbMetrics>(names);
  if (!opt.plots_dir.empty()) cm_ = std::make_unique<ConfusionMatrix>(names);
}

ValMatcher::~ValMatcher() = default;

void ValMatcher::add_batch(const Batch& b, const std::vector<torch::Tensor>& dets, const torch::Tensor& proto) {
  if ((int64_t)dets.size() != b.size())
    fail("val(): " + std::to_string(dets.size()) + " detection sets for a batch of " + std::to_string(b.size()));
  // Ground truth in the letterboxed input space, where the official validator matches.
  const int64_t H = b.img.size(2), W = b.img.size(3);
  auto bidx = b.batch_idx.to(torch::kCPU).to(torch::kLong);
  auto cls = b.cls.to(torch::kCPU).view({-1});
  auto xywh = b.bboxes.to(torch::kCPU).view({-1, 4});
  auto scale = torch::tensor({(float)W, (float)H, (float)W, (float)H});
  auto gt_xyxy = torch::stack({xywh.select(1, 0) - xywh.select(1, 2) / 2, xywh.select(1, 1) - xywh.select(1, 3) / 2,
                               xywh.select(1, 0) + xywh.select(1, 2) / 2, xywh.select(1, 1) + xywh.select(1, 3) / 2},
                              1) * scale;
  torch::Tensor gt_kpts;  // (N, K, 3) input pixels + visibility (ones when the data has no visibility column)
  if (pose_) {
    if (!b.keypoints.defined() || b.keypoints.dim() != 3 || b.keypoints.size(1) != nk_ || b.keypoints.size(2) != ndim_)
      fail("pose validation: the val batch has no keypoints of shape (N, " + std::to_string(nk_) + ", " +
           std::to_string(ndim_) + "); the data yaml needs kpt_shape: [" + std::to_string(nk_) + ", " +
           std::to_string(ndim_) + "] like the model");
    auto k = b.keypoints.to(torch::kCPU, torch::kFloat32).clone();
    k.select(-1, 0).mul_((float)W);
    k.select(-1, 1).mul_((float)H);
    gt_kpts = ndim_ == 3 ? k : torch::cat({k, torch::ones({k.size(0), nk_, 1})}, -1);
  }
  torch::Tensor gt_masks, gt_rboxes;
  if (seg_) {
    if (!proto.defined() || proto.dim() != 4 || proto.size(0) != b.size())
      fail("segment validation: the model gave no proto (B, nm, h, w) for the batch");
    gt_masks = polygon_masks(b, opt_.mask_ratio, opt_.overlap_mask);
  }
  if (obb_) gt_rboxes = batch_rboxes(b, /*normalized=*/false);  // (N, 5) input pixels
  for (int64_t i = 0; i < b.size(); ++i) {
    auto sel = (bidx == i).nonzero().view({-1});
    auto gtb = gt_xyxy.index_select(0, sel);
    auto gtc = cls.index_select(0, sel);
    auto d = dets[i].to(torch::kCPU, torch::kFloat32);
    auto pb = d.slice(1, 0, 4), pc = d.select(1, 4), pk = d.select(1, 5);
    if (opt_.single_cls) {
      gtc = torch::zeros_like(gtc);
      pk = torch::zeros_like(pk);
    }
    if (pose_) {
      // Predicted keypoints ride in the extra columns, decoded in input pixels like the boxes.
      auto pkpt = d.slice(1, 6, 6 + nk_ * ndim_).reshape({d.size(0), nk_, ndim_});
      pose_->add_image(pb, pc, pk, pkpt, gtb, gtc, gt_kpts.index_select(0, sel));
    } else if (seg_) {
      // Masks compared at proto resolution (the official process_mask during val), both sides.
      auto pr = proto[i].to(torch::kCPU, torch::kFloat32);
      const int64_t mh = pr.size(1), mw = pr.size(2);
      auto pm = predict_masks(pr, d.slice(1, 6, d.size(1)), pb, H, W, /*native=*/false);
      auto gm = opt_.overlap_mask ? gt_instance_masks(gt_masks[i], sel.numel(), true, mh, mw)
                                  : gt_instance_masks(gt_masks.index_select(0, sel), sel.numel(), false, mh, mw);
      seg_->add_image(pb, pc, pk, pm, gtb, gtc, gm);
    } else if (obb_) {
      // Rows are [cx, cy, w, h, score, cls, angle] in input pixels.
      auto prb = torch::cat({d.slice(1, 0, 4), d.slice(1, 6, 7)}, 1);
      auto grb = gt_rboxes.index_select(0, sel);
      obb_->add_image(prb, pc, pk, grb, gtc);
      if (cm_)  // rotated boxes pair by probiou, as the official OBB confusion matrix
        cm_->process_detections(grb.size(0) && prb.size(0) ? probiou_matrix(grb, prb) : torch::zeros({grb.size(0), prb.size(0)}),
                                pc, pk, gtc, opt_.cm_conf, 0.45);
    } else {
      box_.add_image(pb, pc, pk, gtb, gtc);
    }
    if (cm_ && !obb_) cm_->process_boxes(pb, pc, pk, gtb, gtc, opt_.cm_conf, 0.45);
  }
}

void ValMatcher::finish(ValResult& res) const {
  res.task = task_name(task_);
  auto put = [&](const DetResults& r, const char* s) {
    res.metrics[std::string("metrics/precision(") + s + ")"] = r.precision;
    res.metrics[std::string("metrics/recall(") + s + ")"] = r.recall;
    res.metrics[std::string("metrics/mAP50(") + s + ")"] = r.map50;
    res.metrics[std::string("metrics/mAP50-95(") + s + ")"] = r.map50_95;
  };
  if (pose_) {
    res.det = pose_->box();
    res.kpt = pose_->pose();
    put(res.det, "B");
    put(res.kpt, "P");
    res.metrics["fitness"] = res.det.fitness + res.kpt.fitness;  // the official PoseMetrics: box + pose
  } else if (seg_) {
    res.det = seg_->box();
    res.mask = seg_->mask();
    put(res.det, "B");
    put(res.mask, "M");
    res.metrics["fitness"] = res.det.fitness + res.mask.fitness;  // the official SegmentMetrics: box + mask
  } else {
    res.det = obb_ ? obb_->compute() : box_.compute();
    put(res.det, "B");
    res.metrics["fitness"] = res.det.fitness;
  }
  if (cm_) res.confusion_matrix = cm_->matrix();
}

ValResult validate(YoloModel& model, DataLoader& loader, const std::vector<std::string>& names, const ValOptions& opt,
                   const TrainCriterion* criterion) {
  torch::NoGradGuard no_grad;
  std::vector<std::string> metric_names = opt.single_cls ? std::vector<std::string>{"item"} : names;
  ValMatcher matcher(model.task(), metric_names, model.config().kpt_shape, opt);  // throws for classify
  model.eval();
  const bool was_classic = model.compute_classic;
  model.compute_classic = !opt.end2end;
  const int saved_max_det = model.max_det;
  model.max_det = opt.max_det;
  if (!opt.end2end && model.is_fused())
    fail("val(end2end=false) needs the one2many head, but the model is fused; validate the unfused model");

  const torch::Device device(opt.device);
  const bool half = opt.half && device.is_cuda();
  if (half) model.to(torch::kHalf);

  ValResult res;
  PostprocessOptions post;
  post.conf = (float)opt.conf;
  post.iou = (float)opt.iou;
  post.max_det = opt.max_det;
  post.end2end = opt.end2end;
  post.multi_label = true;  // the official validator's NMS keeps one row per (box, class) above conf
  post.nc = (int)model.nc();
  post.task = model.task_kind();  // OBB: rotated NMS on the classic path

  torch::Tensor loss_sum;
  int64_t loss_batches = 0, batch_i = 0;
  const bool plots = !opt.plots_dir.empty();
  Batch b;
  while (loader.next(b)) {
    auto t0 = Clock::now();
    auto img = b.img.to(device, /*non_blocking=*/true).to(half ? torch::kHalf : torch::kFloat32).div_(255.0);
    sync_device(device);
    auto t1 = Clock::now();
    ModelOutput out = model.forward(img);
    sync_device(device);
    auto t2 = Clock::now();
    if (criterion) {
      auto items = criterion->compute(out, b, device, opt.single_cls).items.to(torch::kCPU, torch::kFloat32);
      loss_sum = loss_sum.defined() ? loss_sum + items : items.clone();
      ++loss_batches;
    }
    auto t3 = Clock::now();
    std::vector<torch::Tensor> dets = opt.end2end ? select_end2end(out.end2end.to(torch::kFloat32), post)
                                                  : non_max_suppression(out.classic.to(torch::kFloat32), post);
    matcher.add_batch(b, dets, out.proto);
    auto t4 = Clock::now();
    if (plots && batch_i < 3) {  // the official first three batches: labels and predictions side by side
      const std::string stem = (fs::path(opt.plots_dir) / ("val_batch" + std::to_string(batch_i))).string();
      plot_safely(opt.log, "val_batch labels", [&] {
        save_image_atomic(stem + "_labels.jpg",
                          image_grid(batch_images(b), batch_labels(b, model.task_kind()), metric_names));
      });
      plot_safely(opt.log, "val_batch predictions", [&] {
        auto preds = batch_predictions(b, dets, model.task_kind(), model.config().kpt_shape,
                                       out.proto.defined() ? out.proto.to(torch::kCPU, torch::kFloat32) : out.proto);
        if (opt.single_cls)
          for (auto& p : preds) p.cls = torch::zeros_like(p.cls);
        save_image_atomic(stem + "_pred.jpg", image_grid(batch_images(b), preds, metric_names));
      });
    }
    ++batch_i;
    res.preprocess_ms += std::chrono::duration<double, std::milli>(t1 - t0).count();
    res.inference_ms += std::chrono::duration<double, std::milli>(t2 - t1).count();
    res.loss_ms += std::chrono::duration<double, std::milli>(t3 - t2).count();
    res.postprocess_ms += std::chrono::duration<double, std::milli>(t4 - t3).count();
    res.images += b.size();
  }
  if (half) model.to(torch::kFloat32);
  model.compute_classic = was_classic;
  model.max_det = saved_max_det;

  if (res.images == 0) fail("validation found no images: check the val split of the data.yaml");
  const double n = (double)res.images;
  res.preprocess_ms /= n;
  res.inference_ms /= n;
  res.loss_ms /= n;
  res.postprocess_ms /= n;
  matcher.finish(res);
  if (plots) {
    plot_safely(opt.log, "confusion matrix", [&] {
      for (bool normalize : {true, false}) plot_confusion_matrix(*matcher.confusion(), normalize, opt.plots_dir);
    });
    plot_safely(opt.log, "curves", [&] {
      plot_curves(res.det.curves, metric_names, opt.plots_dir, "Box");
      if (model.task_kind() == Task::Segment) plot_curves(res.mask.curves, metric_names, opt.plots_dir, "Mask");
      if (model.task_kind() == Task::Pose) plot_curves(res.kpt.curves, metric_names, opt.plots_dir, "Pose");
    });
  }
  if (loss_batches) {
    auto mean = loss_sum / (double)loss_batches;
    const auto& ln = criterion->loss_names();
    for (int64_t j = 0; j < mean.numel(); ++j) {
      res.loss.push_back(mean[j].item<double>());
      if (j < (int64_t)ln.size()) res.metrics["val/" + ln[j] + "_loss"] = res.loss.back();
    }
  }
  res.table = format_val_table(res, metric_names, opt.verbose);
  char buf[200];
  std::snprintf(buf, sizeof buf, "Speed: %.1fms preprocess, %.1fms inference, %.1fms loss, %.1fms postprocess per image",
                res.preprocess_ms, res.inference_ms, res.loss_ms, res.postprocess_ms);
  res.speed_line = buf;
  return res;
}

ValResult to_val_result(const ClassifyValResult& cr) {
  ValResult r;
  r.task = "classify";
  r.metrics = cr.metrics;
  r.images = cr.images;
  r.preprocess_ms = cr.preprocess_ms;
  r.inference_ms = cr.inference_ms;
  r.postprocess_ms = cr.postprocess_ms;
  r.table = cr.table;
  r.speed_line = cr.speed_line;
  r.confusion_matrix = cr.confusion_matrix;
  return r;
}

ValResult run_validation(const YAML::Node& args, const std::function<void(const std::string&)>& log) {
  auto get_s = [&](const char* k, const std::string& d) {
    return args[k] && !args[k].IsNull() ? args[k].as<std::string>() : d;
  };
  auto get_i = [&](const char* k, int d) { return args[k] && !args[k].IsNull() ? args[k].as<int>() : d; };
  auto get_d = [&](const char* k, double d) { return args[k] && !args[k].IsNull() ? args[k].as<double>() : d; };
  // The facade sends every option (its schema holds the defaults); a C++ caller's missing ones take default.yaml's
  // value from the one C++ table, train_defaults().
  auto arg = [&](const char* k) { return args[k] && !args[k].IsNull() ? args[k] : train_defaults()[k]; };
  // As the trainer (and upstream's loader): no more loader threads than the machine has.
  const int workers = std::clamp(arg("workers").as<int>(), 1, (int)std::max(1u, std::thread::hardware_concurrency()));
  auto emit = [&](const std::string& s) {
    if (log) log(s);
  };

  const std::string model_path = get_s("model", "");
  if (model_path.empty()) fail("val(): 'model' is required (a checkpoint path such as runs/detect/train/weights/best.pt)");
  const std::string device = resolve_device(get_s("device", "cpu"));
  LoadedModel lm = load_model(model_path, device);
  // As upstream, a checkpoint's training data and imgsz are the defaults.
  const YAML::Node& ta = lm.train_args;
  const std::string trained_on = ta && ta.IsMap() && ta["data"] && ta["data"].IsScalar() ? ta["data"].as<std::string>() : "";
  const std::string data_path = get_s("data", trained_on);
  if (data_path.empty())
    fail("val(): 'data' is required (a data.yaml path, or the folder of a classification data set); " + model_path +
         " does not record the data it was trained on");
  const int imgsz = get_i("imgsz", lm.imgsz.empty() ? 640 : (int)lm.imgsz[0]);
  const int batch = std::max(1, arg("batch").as<int>());
  const std::string split = arg("split").as<std::string>();
  // Plots as the official validator: runs/<task>/val (or project/name), incremented unless exist_ok.
  const bool plots = arg("plots").as<bool>();
  std::string save_dir;
  if (plots) {
    const std::string project = get_s("project", "runs/" + lm.task), name = get_s("name", "val");
    save_dir = fs::absolute(increment_path((fs::path(project) / name).string(), arg("exist_ok").as<bool>(), true)).string();
  }
  auto with_settings = [&](ValResult r) {
    r.imgsz = imgsz;
    r.data = data_path;
    r.save_dir = save_dir;
    if (plots) emit("Results saved to " + save_dir);
    return r;
  };

  if (parse_task(lm.task) == Task::Classify) {  // a folder data set, top-1/top-5 accuracy
    ClassifySplit cs = open_classify_split(data_path, split, emit);
    ClassifyValOptions co;
    co.imgsz_h = co.imgsz_w = imgsz;
    co.batch = batch;
    co.workers = workers;
    co.half = arg("half").as<bool>();
    co.device = device;
    co.plots_dir = save_dir;
    co.log = emit;
    lm.model->fuse();
    auto cr = validate_classify(*lm.model, cs, co);
    emit(cr.table);
    emit(cr.speed_line);
    return with_settings(to_val_result(cr));
  }
  if (is_classify_data(data_path))
    fail("val(): data '" + data_path + "' is a folder (a classification data set) but " + model_path + " is a " +
         lm.task + " model; pass its data.yaml");
  ValOptions opt;
  opt.conf = get_d("conf", 0.001);
  opt.iou = arg("iou").as<double>();
  opt.max_det = arg("max_det").as<int>();
  opt.end2end = arg("end2end").IsNull() ? lm.model->end2end() : arg("end2end").as<bool>();
  if (opt.end2end && !lm.model->end2end())
    fail(model_path + ": end2end=true needs a model with the one2one head; use end2end=false");
  opt.half = arg("half").as<bool>();
  opt.single_cls = arg("single_cls").as<bool>();
  opt.verbose = arg("verbose").as<bool>();
  opt.overlap_mask = arg("overlap_mask").as<bool>();
  opt.mask_ratio = arg("mask_ratio").as<int>();
  opt.device = device;
  opt.plots_dir = save_dir;
  opt.cm_conf = get_d("conf", 0.25);  // the official confusion_matrix_conf: 0.25 unless conf is given
  opt.log = emit;
  // The official validator runs the fused model; fusing drops the one2many head, which NMS needs.
  if (opt.end2end) lm.model->fuse();
  lm.model->to(torch::Device(device));

  DataConfig dc = load_data_yaml(data_path);
  if (dc.split(split).empty()) fail(data_path + ": no '" + split + "' split; add it or pick another split");
  opt.kpt_sigmas = dc.kpt_oks_sigmas;
  DatasetOptions dso;
  dso.imgsz = imgsz;
  dso.obb = lm.model->task_kind() == Task::Obb;
  IndexOptions io;
  io.nc = dc.nc;
  io.strict = false;
  io.verbose = false;
  auto ds = Dataset::open(dc, split, dso, io);
  for (const auto& w : shown_warnings(ds->index().summary.warnings)) emit("WARNING: " + split + ": " + w);
  const int stride = (int)std::max(32.0, lm.model->stride().back());
  auto loader = make_val_loader(ds, batch, workers, stride, device);
  if (lm.model->task_kind() == Task::Pose) {
    const auto& ks = lm.model->config().kpt_shape;
    if (dc.kpt_count != ks.at(0) || dc.kpt_dims != ks.at(1))
      fail(data_path + ": kpt_shape [" + std::to_string(dc.kpt_count) + ", " + std::to_string(dc.kpt_dims) +
           "] does not match the pose model's [" + std::to_string(ks[0]) + ", " + std::to_string(ks[1]) + "] of " +
           model_path + "; validate on a data set with the model's keypoints");
  }
  std::vector<std::string> names = dc.names.empty() ? lm.names : dc.names;
  if ((int64_t)names.size() != lm.model->nc())
    fail(data_path + ": the data set has " + std::to_string(names.size()) + " classes but " + model_path + " has " +
         std::to_string(lm.model->nc()) + "; validate on a data set with the model's classes");
  auto r = validate(*lm.model, *loader, names, opt, nullptr);
  emit(r.table);
  emit(r.speed_line);
  return with_settings(std::move(r));
}

}  // namespace y26
