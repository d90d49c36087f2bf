#include "train/schedule.h"

#include <algorithm>
#include <cmath>

namespace y26 {

double linear_lr_factor(double epoch, double epochs, double lrf) {
  return std::max(1 - epoch / epochs, 0.0) * (1.0 - lrf) + lrf;
}

double cosine_lr_factor(double epoch, double epochs, double lrf) {
  const double y1 = 1.0, y2 = lrf;
  return std::max((1 - std::cos(epoch * M_PI / epochs)) / 2, 0.0) * (y2 - y1) + y1;
}

double lr_factor(double epoch, double epochs, double lrf, bool cos_lr) {
  return cos_lr ? cosine_lr_factor(epoch, epochs, lrf) : linear_lr_factor(epoch, epochs, lrf);
}

void set_epoch_lr(std::vector<ParamGroup>& groups, double lf) {
  for (auto& g : groups) g.lr = g.initial_lr * lf;
}

int64_t warmup_iterations(double warmup_epochs, int64_t batches_per_epoch, int64_t min_iterations) {
  if (warmup_epochs <= 0) return -1;
  return std::max((int64_t)std::nearbyint(warmup_epochs * (double)batches_per_epoch), min_iterations);
}

double interp_ramp(double x, double x_end, double y0, double y1) {
  // numpy: below the first point -> left value, at/after the last -> right value, else slope*(x - x0) + y0.
  if (x <= 0) return y0;
  if (x >= x_end) return y1;
  const double slope = (y1 - y0) / (x_end - 0.0);
  return slope * (x - 0.0) + y0;
}

int64_t warmup_accumulate(int64_t ni, int64_t nw, int64_t nbs, int64_t batch) {
  const double a = interp_ramp((double)ni, (double)nw, 1.0, (double)nbs / (double)batch);
  return std::max<int64_t>(1, (int64_t)std::nearbyint(a));
}

int64_t apply_warmup(std::vector<ParamGroup>& groups, OptimKind kind, int64_t ni, int64_t nw, double lf,
                     const WarmupConfig& cfg) {
  const bool has_momentum = kind == OptimKind::SGD || kind == OptimKind::MuSGD;
  for (auto& g : groups) {
    const double start = g.kind == "bias" ? cfg.warmup_bias_lr : 0.0;
    g.lr = interp_ramp((double)ni, (double)nw, start, g.initial_lr * lf);
    if (has_momentum) g.momentum = interp_ramp((double)ni, (double)nw, cfg.warmup_momentum, cfg.momentum);
  }
  return warmup_accumulate(ni, nw, cfg.nbs, cfg.batch);
}

}  // namespace y26
