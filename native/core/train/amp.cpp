#include "train/amp.h"

#include <ATen/Functions.h>
#include <torch/cuda.h>

#include <algorithm>
#include <cmath>
#include <regex>

#include "model/yolo.h"
#include "train/autocast.h"
#include "util/gpu_stats.h"

namespace y26 {

bool LossScaler::unscale(const std::vector<torch::Tensor>& params) {
  std::vector<torch::Tensor> grads;
  for (const auto& p : params)
    if (p.grad().defined()) grads.push_back(p.grad());
  if (grads.empty()) return true;
  const auto dev = grads[0].device();
  const bool fused = dev.is_cuda() && std::all_of(grads.begin(), grads.end(), [&](const torch::Tensor& g) {
    return g.device() == dev && g.scalar_type() == torch::kFloat32;
  });
  auto found_inf = torch::zeros({1}, torch::TensorOptions().device(dev));
  if (fused) {  // GradScaler's kernel: unscale all and flag non-finite values in one launch
    auto inv = torch::full({1}, 1.0 / scale_, torch::TensorOptions().device(dev));
    at::_amp_foreach_non_finite_check_and_unscale_(grads, found_inf, inv);
  } else {
    for (auto& g : grads) {
      g.mul_(1.0 / scale_);
      found_inf.add_(g.isfinite().logical_not().any().to(torch::kFloat32).to(dev));
    }
  }
  return found_inf.item<float>() == 0.0f;
}

void LossScaler::update(bool finite) {
  if (!finite) {
    scale_ *= 0.5;
    good_steps_ = 0;
  } else if (++good_steps_ >= interval_) {
    scale_ *= 2.0;
    good_steps_ = 0;
  }
}

bool amp_outputs_agree(const torch::Tensor& fp32, const torch::Tensor& amp, double atol) {
  if (!fp32.defined() || !amp.defined() || fp32.sizes() != amp.sizes()) return false;
  auto a = fp32.to(torch::kCPU, torch::kFloat32), b = amp.to(torch::kCPU, torch::kFloat32);
  if (!b.isfinite().all().item<bool>()) return false;
  return (a - b).abs().max().item<double>() <= atol;
}

bool gpu_has_broken_amp(const std::string& gpu_name) {
  static const std::regex known(R"((nvidia|geforce|quadro|tesla).*?(1660|1650|1630|t400|t550|t600|t1000|t1200|t2000|k40m))",
                                std::regex::icase);
  return std::regex_search(gpu_name, known);
}

bool check_amp(YoloModel& model, const torch::Device& device, std::string* why) {
  auto say = [&](const std::string& s) { if (why) *why = s; };
  if (!device.is_cuda()) {
    say("AMP is used on CUDA devices only");
    return false;
  }
  const std::string name = gpu_name(device.has_index() ? device.index() : 0);
  if (gpu_has_broken_amp(name)) {
    say("AMP training on " + name + " may cause NaN losses or zero-mAP results");
    return false;
  }
  const bool was_training = model.is_training();
  model.eval();
  // A fixed, smooth test pattern (no file needed): eight images at 256 px, as the official check's batch.
  auto opts = torch::TensorOptions().device(device);
  auto yy = torch::linspace(0, 1, 256, opts).view({1, 1, 256, 1});
  auto xx = torch::linspace(0, 1, 256, opts).view({1, 1, 1, 256});
  auto ch = torch::arange(3, opts).view({1, 3, 1, 1});
  auto img = (0.5 + 0.5 * torch::sin(6.28 * (xx * (ch + 1) + yy * (3 - ch)))).expand({8, 3, 256, 256}).contiguous();
  auto pick = [](const ModelOutput& o) {
    if (o.cls_probs.defined()) return o.cls_probs;
    return o.decoded.defined() ? o.decoded : o.classic;
  };
  bool ok = false;
  try {
    torch::NoGradGuard ng;
    auto a = pick(model.forward(img));
    set_autocast(true, false);
    torch::Tensor b;
    try {
      b = pick(model.forward(img));
    } catch (...) {
      set_autocast(false, false);
      throw;
    }
    set_autocast(false, false);
    ok = amp_outputs_agree(a, b, 0.5);
    if (!ok) say("fp32 and fp16 outputs differ by more than 0.5 on the check images");
  } catch (const std::exception& e) {
    say(std::string("the check failed to run: ") + e.what());
  }
  if (was_training) model.train();
  return ok;
}

std::vector<int64_t> autobatch_sizes(double total_gb) {
  if (total_gb < 16) return {1, 2, 4, 8, 16};
  return {1, 2, 4, 8, 16, 32, 64};
}

std::optional<AutoBatchResult> fit_autobatch(const std::function<std::optional<double>(int64_t)>& mem_gb,
                                             double free_gb, double fraction, const std::vector<int64_t>& sizes) {
  std::vector<std::optional<double>> res;
  for (int64_t b : sizes) {
    res.push_back(mem_gb(b));
    if (!res.back()) break;  // larger ones will not fit either
  }
  // Least squares through the increasing, plausible measurements.
  std::vector<double> xs, ys;
  for (size_t i = 0; i < res.size(); ++i) {
    if (!res[i] || *res[i] <= 0 || *res[i] >= free_gb) continue;
    if (i > 0 && res[i - 1] && !(*res[i] > *res[i - 1])) continue;
    xs.push_back((double)sizes[i]);
    ys.push_back(*res[i]);
  }
  if (xs.size() < 2) return std::nullopt;
  double mx = 0, my = 0;
  for (size_t i = 0; i < xs.size(); ++i) mx += xs[i], my += ys[i];
  mx /= xs.size(), my /= xs.size();
  double sxx = 0, sxy = 0;
  for (size_t i = 0; i < xs.size(); ++i) sxx += (xs[i] - mx) * (xs[i] - mx), sxy += (xs[i] - mx) * (ys[i] - my);
  if (sxx <= 0 || sxy <= 0) return std::nullopt;
  const double slope = sxy / sxx, icpt = my - slope * mx;
  int64_t b = (int64_t)((free_gb * fraction - icpt) / slope);
  for (size_t i = 0; i < res.size(); ++i)
    if (!res[i] && b >= sizes[i]) b = sizes[i > 0 ? i - 1 : 0];  // stay below the first size that failed
  if (b < 1 || b > 1024) return std::nullopt;
  return AutoBatchResult{b, (slope * (double)b + icpt) / free_gb};
}

}  // namespace y26
