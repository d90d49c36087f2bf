#include "train/amp.h"

#include <ATen/Functions.h>
#include <torch/cuda.h>

#include <algorithm>
#include <cmath>
#include <regex>

#include "model/yolo.h"
#include "train/autocast.h"
#include "train/train_args.h"
#include "util/cuda_util.h"
#include "util/error.h"
#include "util/gpu_stats.h"
#include "util/system.h"
#include "util/text.h"

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

void MixedPrecision::configure(const torch::Device& device, const TrainArgs& args, const Log& log) {
  cuda_ = device.is_cuda();
  // CPU bf16 is opt-in: on the demo set it trained to mAP50-95 0.348 against fp32's 0.414 in 25 epochs.
  on_ = cuda_ ? args.flag("amp") : args.flag("cpu_amp") && cpu_has_native_bf16();
  if (args.flag("cpu_amp") && !cuda_ && !on_)
    log("cpu_amp: this CPU has no native bf16 (avx512_bf16/amx_bf16); training in fp32");
  scaling_ = on_ && cuda_;  // bf16 keeps fp32's exponent range: no scaling
}

void MixedPrecision::check(YoloModel& model, const torch::Device& device, const Log& log) {
  if (!fp16()) return;
  std::string why;
  if (check_amp(model, device, &why)) {
    log("AMP: checks passed");
  } else {
    log("WARNING: AMP: checks failed (" + why + "); training in fp32 (amp=False). Pass amp=false to skip the check");
    on_ = scaling_ = false;
  }
}

MixedPrecision::Scope::Scope(const MixedPrecision& mp) : on_(mp.on_), cpu_(!mp.cuda_) {
  if (on_) set_autocast(true, cpu_);
}

MixedPrecision::Scope::~Scope() {
  if (on_) set_autocast(false, cpu_);
}

torch::Tensor MixedPrecision::scale_loss(const torch::Tensor& loss) const {
  return scaling_ ? loss * scaler_.scale() : loss;
}

bool MixedPrecision::unscale_and_update(const std::vector<torch::Tensor>& params) {
  if (!scaling_) return true;
  // GradScaler: unscale, skip the step on inf/NaN gradients and back off the scale, grow it after 2000 good steps.
  const bool finite = scaler_.unscale(params);
  scaler_.update(finite);
  return finite;
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

int64_t probe_cuda_batch(YoloModel& model, int imgsz, const torch::Device& dev, double fraction,
                         const std::function<void(const std::string&)>& log) {
  const int idx = dev.has_index() ? dev.index() : 0;
  auto step = [&](int64_t b) {
    auto x = torch::rand({b, 3, imgsz, imgsz}, torch::TensorOptions().device(dev));
    auto out = model.forward(x);
    (out.cls_logits.defined() ? out.cls_logits.sum() : out.one2many.scores.sum() + out.one2many.boxes.sum()).backward();
    model.zero_grad();
  };
  cuda_empty_cache();
  const auto base = gpu_stats(idx);
  if (base) {
    const double free_gb = base->mem_total_gb - base->mem_used_gb;
    log("AutoBatch: computing the batch for imgsz=" + std::to_string(imgsz) + " at " + format_number("%.0f", fraction * 100) +
        "% of the free GPU memory (" + gpu_name(idx) + ", " + format_number("%.2f", base->mem_total_gb) + "G total, " +
        format_number("%.2f", free_gb) + "G free)");
    auto mem = [&](int64_t b) -> std::optional<double> {
      try {
        cuda_empty_cache();
        step(b);
        torch::cuda::synchronize(idx);
        auto s = gpu_stats(idx);
        return s ? std::optional<double>(s->mem_used_gb - base->mem_used_gb) : std::nullopt;
      } catch (const c10::Error&) {
        model.zero_grad();
        return std::nullopt;
      }
    };
    auto fit = fit_autobatch(mem, free_gb, fraction, autobatch_sizes(base->mem_total_gb));
    cuda_empty_cache();
    if (fit) {
      log("AutoBatch: using batch " + std::to_string(fit->batch) + " (" + format_number("%.0f", fit->predicted_fraction * 100) +
          "% of the free memory expected)");
      return fit->batch;
    }
    log("AutoBatch: the memory measurements could not be fitted; using the largest batch that ran");
  }
  int64_t fit = 0;
  for (int64_t b : {8, 16, 32, 64, 128, 256}) {
    try {
      step(b);
      fit = b;
    } catch (const c10::Error&) {
      model.zero_grad();
      break;
    }
  }
  cuda_empty_cache();
  if (fit == 0) fail("batch=-1: not even a batch of 8 fits on the GPU at imgsz " + std::to_string(imgsz) +
                     "; use a smaller imgsz or a fixed batch");
  return std::max<int64_t>(8, (int64_t)(fit * fraction) / 8 * 8);
}

}  // namespace y26
