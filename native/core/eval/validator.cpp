#include "eval/validator.h"

#include <chrono>
#include <cstdio>
#include <sstream>

#include "data/dataset.h"
#include "eval/classify_val.h"
#include "infer/postprocess.h"
#include "model/loader.h"
#include "util/error.h"
#include "util/system.h"

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

ValResult validate(YoloModel& model, DataLoader& loader, const std::vector<std::string>& names, const ValOptions& opt,
                   const E2EDetectionLoss* criterion) {
  torch::NoGradGuard no_grad;
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

  std::vector<std::string> metric_names = opt.single_cls ? std::vector<std::string>{"item"} : names;
  DetMetrics metrics(metric_names);
  PostprocessOptions post;
  post.conf = (float)opt.conf;
  post.iou = (float)opt.iou;
  post.max_det = opt.max_det;
  post.end2end = opt.end2end;
  post.multi_label = true;  // the official validator's NMS keeps one row per (box, class) above conf
  post.nc = (int)model.nc();

  ValResult res;
  torch::Tensor loss_sum = torch::zeros({3});
  int64_t loss_batches = 0;
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
      DetectionBatch db{b.batch_idx.to(device), b.cls.to(device), b.bboxes.to(device)};
      HeadBranchOutput o2m{out.one2many.boxes.to(torch::kFloat32), out.one2many.scores.to(torch::kFloat32)};
      HeadBranchOutput o2o{out.one2one.boxes.to(torch::kFloat32), out.one2one.scores.to(torch::kFloat32)};
      auto lr = (*criterion)(o2m, o2o, grid_sizes_of(out.feats), db);
      loss_sum += lr.loss_items.to(torch::kCPU, torch::kFloat32);
      ++loss_batches;
    }
    auto t3 = Clock::now();
    std::vector<torch::Tensor> dets = opt.end2end ? select_end2end(out.end2end.to(torch::kFloat32), post)
                                                  : non_max_suppression(out.classic.to(torch::kFloat32), post);
    // Ground truth in the letterboxed input space, where the official validator matches.
    const int64_t H = b.img.size(2), W = b.img.size(3);
    auto bidx = b.batch_idx.to(torch::kCPU).to(torch::kLong);
    auto cls = b.cls.to(torch::kCPU).view({-1});
    auto xywh = b.bboxes.to(torch::kCPU).view({-1, 4});
    auto scale = torch::tensor({(float)W, (float)H, (float)W, (float)H});
    auto gt_xyxy = torch::stack({xywh.select(1, 0) - xywh.select(1, 2) / 2, xywh.select(1, 1) - xywh.select(1, 3) / 2,
                                 xywh.select(1, 0) + xywh.select(1, 2) / 2, xywh.select(1, 1) + xywh.select(1, 3) / 2},
                                1) * scale;
    for (int64_t i = 0; i < b.size(); ++i) {
      auto sel = (bidx == i).nonzero().view({-1});
      auto gtb = gt_xyxy.index_select(0, sel);
      auto gtc = cls.index_select(0, sel);
      auto d = dets[i].to(torch::kCPU, torch::kFloat32);
      auto pb = d.slice(1, 0, 4), pc = d.select(1, 4), pk = d.select(1, 5);
      if (opt.single_cls) {
        gtc = torch::zeros_like(gtc);
        pk = torch::zeros_like(pk);
      }
      metrics.add_image(pb, pc, pk, gtb, gtc);
    }
    auto t4 = Clock::now();
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

  res.det = metrics.compute();
  res.metrics["metrics/precision(B)"] = res.det.precision;
  res.metrics["metrics/recall(B)"] = res.det.recall;
  res.metrics["metrics/mAP50(B)"] = res.det.map50;
  res.metrics["metrics/mAP50-95(B)"] = res.det.map50_95;
  res.metrics["fitness"] = res.det.fitness;
  if (loss_batches) {
    auto mean = loss_sum / (double)loss_batches;
    res.loss = {mean[0].item<double>(), mean[1].item<double>(), mean[2].item<double>()};
    res.metrics["val/box_loss"] = res.loss[0];
    res.metrics["val/cls_loss"] = res.loss[1];
    res.metrics["val/dfl_loss"] = res.loss[2];
  }
  res.table = format_det_table(res.det, metric_names, opt.verbose);
  char buf[200];
  std::snprintf(buf, sizeof buf, "Speed: %.1fms preprocess, %.1fms inference, %.1fms loss, %.1fms postprocess per image",
                res.preprocess_ms, res.inference_ms, res.loss_ms, res.postprocess_ms);
  res.speed_line = buf;
  return res;
}

ValResult run_validation(const YAML::Node& args, const std::function<void(const std::string&)>& log) {
  auto get_s = [&](const char* k, const std::string& d) {
    return args[k] && !args[k].IsNull() ? args[k].as<std::string>() : d;
  };
  auto get_i = [&](const char* k, int d) { return args[k] && !args[k].IsNull() ? args[k].as<int>() : d; };
  auto get_d = [&](const char* k, double d) { return args[k] && !args[k].IsNull() ? args[k].as<double>() : d; };
  auto get_b = [&](const char* k, bool d) { return args[k] && !args[k].IsNull() ? args[k].as<bool>() : d; };
  auto emit = [&](const std::string& s) {
    if (log) log(s);
  };

  const std::string model_path = get_s("model", "");
  const std::string data_path = get_s("data", "");
  if (model_path.empty()) fail("val(): 'model' is required (a checkpoint path such as runs/detect/train/weights/best.pt)");
  if (data_path.empty()) fail("val(): 'data' is required (a data.yaml path, or the folder of a classification data set)");
  const std::string device = resolve_device(get_s("device", "cpu"));
  const int imgsz = get_i("imgsz", 640);
  const int batch = std::max(1, get_i("batch", 16));
  const std::string split = get_s("split", "val");

  LoadedModel lm = load_model(model_path, device);
  if (lm.task == "classify") {  // a folder data set, top-1/top-5 accuracy
    ClassifySplit cs = open_classify_split(data_path, split, emit);
    ClassifyValOptions co;
    co.imgsz_h = co.imgsz_w = imgsz;
    co.batch = batch;
    co.workers = get_i("workers", 2);
    co.half = get_b("half", false);
    co.device = device;
    lm.model->fuse();
    auto cr = validate_classify(*lm.model, cs, co);
    emit(cr.table);
    emit(cr.speed_line);
    ValResult r;
    r.metrics = cr.metrics;
    r.images = cr.images;
    r.preprocess_ms = cr.preprocess_ms;
    r.inference_ms = cr.inference_ms;
    r.postprocess_ms = cr.postprocess_ms;
    r.table = cr.table;
    r.speed_line = cr.speed_line;
    return r;
  }
  if (is_classify_data(data_path))
    fail("val(): data '" + data_path + "' is a folder (a classification data set) but " + model_path + " is a " +
         lm.task + " model; pass its data.yaml");
  ValOptions opt;
  opt.conf = get_d("conf", 0.001);
  opt.iou = get_d("iou", 0.7);
  opt.max_det = get_i("max_det", 300);
  opt.end2end = get_b("end2end", lm.model->end2end());
  if (opt.end2end && !lm.model->end2end())
    fail(model_path + ": end2end=true needs a model with the one2one head; use end2end=false");
  opt.half = get_b("half", false);
  opt.single_cls = get_b("single_cls", false);
  opt.verbose = get_b("verbose", true);
  opt.device = device;
  // The official validator runs the fused model; fusing drops the one2many head, which NMS needs.
  if (opt.end2end) lm.model->fuse();
  lm.model->to(torch::Device(device));

  DataConfig dc = load_data_yaml(data_path);
  if (dc.split(split).empty()) fail(data_path + ": no '" + split + "' split; add it or pick another split");
  DatasetOptions dso;
  dso.imgsz = imgsz;
  IndexOptions io;
  io.nc = dc.nc;
  io.strict = false;
  io.verbose = false;
  auto ds = Dataset::open(dc, split, dso, io);
  const int stride = (int)std::max(32.0, lm.model->stride().back());
  auto loader = make_val_loader(ds, batch, get_i("workers", 2), stride, device);
  std::vector<std::string> names = dc.names.empty() ? lm.names : dc.names;
  if ((int64_t)names.size() != lm.model->nc())
    fail(data_path + ": the data set has " + std::to_string(names.size()) + " classes but " + model_path + " has " +
         std::to_string(lm.model->nc()) + "; validate on a data set with the model's classes");
  auto r = validate(*lm.model, *loader, names, opt, nullptr);
  emit(r.table);
  emit(r.speed_line);
  return r;
}

}  // namespace y26
