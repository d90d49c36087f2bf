#include "eval/classify_val.h"

#include <opencv2/imgcodecs.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <future>
#include <set>

#include "data/image_io.h"
#include "eval/metrics.h"
#include "eval/plots.h"
#include "infer/classify.h"
#include "infer/preprocess.h"
#include "infer/source.h"
#include "util/error.h"

namespace fs = std::filesystem;

namespace y26 {

namespace {

using Clock = std::chrono::steady_clock;
double ms(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double, std::milli>(b - a).count(); }

std::vector<std::string> sorted_subdirs(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_directory()) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

bool is_image_file(const fs::path& p) {
  std::string ext = p.extension().string();
  if (ext.empty()) return false;
  ext = ext.substr(1);
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return (char)std::tolower(c); });
  return is_image_extension(ext);
}

// Images under one class folder, recursively, sorted by path (torchvision's ImageFolder walks sorted too).
std::vector<std::string> images_under(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir, fs::directory_options::follow_directory_symlink))
    if (e.is_regular_file() && is_image_file(e.path())) out.push_back(e.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

std::string listing(const fs::path& root) {
  std::string s;
  for (const auto& d : sorted_subdirs(root)) s += (s.empty() ? "" : ", ") + d + "/";
  return s.empty() ? "no folders" : s;
}

}  // namespace

bool is_classify_data(const std::string& data) {
  std::error_code ec;
  return !data.empty() && fs::is_directory(data, ec);
}

ClassifySplit open_classify_split(const std::string& root_in, const std::string& split,
                                  const std::function<void(const std::string&)>& log) {
  const fs::path root(root_in);
  std::error_code ec;
  if (!fs::is_directory(root, ec)) {
    if (fs::exists(root, ec))
      fail("classify data '" + root_in + "' is a file: classification data sets are a folder (data=path/to/dir) with "
           "train/<class>/*.jpg and val/<class>/*.jpg");
    fail("classify data folder '" + root_in + "' not found (this package never downloads data sets)");
  }
  auto first_dir = [&](std::initializer_list<const char*> names) -> fs::path {
    for (const char* n : names)
      if (fs::is_directory(root / n, ec)) return root / n;
    return {};
  };
  const fs::path val = first_dir({"val", "validation", "valid"}), test = first_dir({"test"});
  fs::path dir;
  if (split == "train") {
    dir = first_dir({"train"});
  } else if (split == "val") {
    dir = val;
    if (dir.empty() && !test.empty()) {
      dir = test;
      if (log) log("WARNING: " + root_in + ": no val/ folder, validating on test/ instead");
    }
  } else if (split == "test") {
    dir = test;
    if (dir.empty() && !val.empty()) {
      dir = val;
      if (log) log("WARNING: " + root_in + ": no test/ folder, using " + val.filename().string() + "/ instead");
    }
  } else {
    fail("classify data: unknown split '" + split + "' (use train, val or test)");
  }
  if (dir.empty())
    fail(root_in + ": no '" + split + "' split folder (" +
         (split == "train" ? std::string("train/") : split == "val" ? "val/, validation/, valid/ or test/" : "test/ or val/") +
         " with one subfolder per class); it holds " + listing(root));

  ClassifySplit out;
  out.root = root_in;
  out.dir = dir.string();
  const fs::path train = root / "train";
  out.names = sorted_subdirs(fs::is_directory(train, ec) ? train : dir);
  if (out.names.empty()) fail(out.dir + ": no class subfolders (expected " + out.dir + "/<class>/*.jpg)");
  std::map<std::string, int64_t> index;
  for (size_t i = 0; i < out.names.size(); ++i) index[out.names[i]] = static_cast<int64_t>(i);
  // Labels by folder name (equal to torchvision's index whenever every class folder is present in the split).
  for (const auto& cls : sorted_subdirs(dir)) {
    auto it = index.find(cls);
    if (it == index.end())
      fail(out.dir + ": class folder '" + cls + "' is not among the " + std::to_string(out.names.size()) +
           " classes of " + train.string() + "; every split needs the same class folders");
    for (auto& f : images_under(dir / cls)) {
      out.files.push_back(std::move(f));
      out.labels.push_back(it->second);
    }
  }
  if (out.files.empty())
    fail(out.dir + ": no images found in its class folders (" + listing(dir) + ")");
  return out;
}

std::pair<double, double> classify_accuracy(const torch::Tensor& top_pred, const torch::Tensor& targets) {
  if (top_pred.size(0) == 0) return {0.0, 0.0};
  torch::Tensor correct = (targets.view({-1, 1}).to(torch::kLong) == top_pred.to(torch::kLong)).to(torch::kFloat64);
  const double top1 = correct.select(1, 0).mean().item<double>();
  const double top5 = std::get<0>(correct.max(1)).mean().item<double>();
  return {top1, top5};
}

ClassifyValResult validate_classify(YoloModel& model, const ClassifySplit& split, const ClassifyValOptions& opt) {
  if (model.task_kind() != Task::Classify) fail("validate_classify: the model is a " + model.task() + " model");
  if ((int64_t)split.names.size() != model.nc())
    fail(split.root + ": the data set has " + std::to_string(split.names.size()) + " classes but the model has " +
         std::to_string(model.nc()) + "; validate on a data set with the model's classes");
  torch::NoGradGuard no_grad;
  model.eval();
  const torch::Device device(opt.device);
  const bool half = opt.half && device.is_cuda();
  if (half) model.to(torch::kHalf);
  const int64_t n = static_cast<int64_t>(split.files.size());
  const int64_t nc = model.nc(), k = std::min<int64_t>(5, nc);
  const int batch = std::max(1, opt.batch), workers = std::max(1, opt.workers);
  std::vector<torch::Tensor> preds, targets;
  double loss_sum = 0;
  int64_t loss_batches = 0;
  ClassifyValResult res;
  const bool plots = !opt.plots_dir.empty();
  ConfusionMatrix cm(split.names, /*classify=*/true);
  for (int64_t start = 0; start < n; start += batch) {
    const int64_t end = std::min<int64_t>(n, start + batch);
    auto t0 = Clock::now();
    // Decode and transform in parallel: each worker takes every workers-th image of the batch.
    std::vector<cv::Mat> ims(end - start);
    std::vector<std::future<void>> jobs;
    for (int w = 0; w < workers; ++w)
      jobs.push_back(std::async(std::launch::async, [&, w] {
        for (int64_t i = start + w; i < end; i += workers)
          ims[i - start] = classify_transform(read_image_bgr(split.files[i]), opt.imgsz_h, opt.imgsz_w);
      }));
    for (auto& j : jobs) j.get();
    torch::Tensor x = preprocess_batch(ims, device, half);
    auto t1 = Clock::now();
    ModelOutput out = model.forward(x);
    if (device.is_cuda()) out.cls_probs.cpu();
    auto t2 = Clock::now();
    torch::Tensor y = torch::tensor(std::vector<int64_t>(split.labels.begin() + start, split.labels.begin() + end));
    if (opt.compute_loss) {
      loss_sum += torch::nn::functional::cross_entropy(out.cls_logits.to(torch::kCPU, torch::kFloat32), y).item<double>();
      ++loss_batches;
    }
    auto probs = out.cls_probs.to(torch::kCPU, torch::kFloat32);
    preds.push_back(std::get<1>(probs.topk(k, 1)));
    targets.push_back(y);
    if (plots) {
      auto top1 = preds.back().select(1, 0).contiguous();
      cm.process_classes(std::vector<int64_t>(top1.data_ptr<int64_t>(), top1.data_ptr<int64_t>() + top1.numel()),
                         std::vector<int64_t>(split.labels.begin() + start, split.labels.begin() + end));
      const int64_t bi = start / batch;
      if (bi < 3) {
        std::vector<TileLabels> gt(ims.size()), pr(ims.size());
        for (size_t i = 0; i < ims.size(); ++i) {
          gt[i].title = pr[i].title = fs::path(split.files[start + i]).filename().string();
          gt[i].cls = y.slice(0, i, i + 1);
          pr[i].cls = top1.slice(0, i, i + 1);
          pr[i].conf = probs[i].index_select(0, pr[i].cls).contiguous();
        }
        const std::string stem = (fs::path(opt.plots_dir) / ("val_batch" + std::to_string(bi))).string();
        plot_safely(opt.log, "val_batch labels", [&] { save_image_atomic(stem + "_labels.jpg", image_grid(ims, gt, split.names)); });
        plot_safely(opt.log, "val_batch predictions", [&] { save_image_atomic(stem + "_pred.jpg", image_grid(ims, pr, split.names)); });
      }
    }
    auto t3 = Clock::now();
    res.preprocess_ms += ms(t0, t1);
    res.inference_ms += ms(t1, t2);
    res.postprocess_ms += ms(t2, t3);
  }
  if (half) model.to(torch::kFloat32);
  res.images = n;
  std::tie(res.top1, res.top5) = classify_accuracy(torch::cat(preds), torch::cat(targets));
  res.fitness = (res.top1 + res.top5) / 2;
  res.preprocess_ms /= n;
  res.inference_ms /= n;
  res.postprocess_ms /= n;
  res.metrics["metrics/accuracy_top1"] = res.top1;
  res.metrics["metrics/accuracy_top5"] = res.top5;
  res.metrics["fitness"] = res.fitness;
  if (loss_batches) {
    res.loss = loss_sum / loss_batches;
    res.metrics["val/loss"] = res.loss;
  }
  char buf[256];
  std::snprintf(buf, sizeof buf, "%22s%11s%11s\n%22s%11.3g%11.3g", "classes", "top1_acc", "top5_acc", "all", res.top1,
                res.top5);
  res.table = buf;
  std::snprintf(buf, sizeof buf, "Speed: %.1fms preprocess, %.1fms inference, %.1fms postprocess per image",
                res.preprocess_ms, res.inference_ms, res.postprocess_ms);
  res.speed_line = buf;
  if (plots) {
    res.confusion_matrix = cm.matrix();
    plot_safely(opt.log, "confusion matrix", [&] {
      for (bool normalize : {true, false}) plot_confusion_matrix(cm, normalize, opt.plots_dir);
    });
  }
  return res;
}

}  // namespace y26
