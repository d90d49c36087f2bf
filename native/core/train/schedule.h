// Learning-rate schedule (LambdaLR factors) and the per-iteration warmup of the official trainer, as pure
// functions so the trainer stays thin and every value is testable.
#pragma once
#include <cstdint>
#include <vector>

#include "train/optimizer.h"

namespace y26 {

// lf(epoch) for linear decay: max(1 - epoch/epochs, 0) * (1 - lrf) + lrf.
double linear_lr_factor(double epoch, double epochs, double lrf);
// lf(epoch) for cos_lr (one-cycle cosine from 1 to lrf): max((1 - cos(epoch*pi/epochs))/2, 0) * (lrf - 1) + 1.
double cosine_lr_factor(double epoch, double epochs, double lrf);
double lr_factor(double epoch, double epochs, double lrf, bool cos_lr);

// The LambdaLR step at the start of each epoch: every group's lr = initial_lr * lf.
void set_epoch_lr(std::vector<ParamGroup>& groups, double lf);

// Warmup length in iterations: max(round(warmup_epochs * batches_per_epoch), min_iterations) (round half to even as
// Python), or -1 (no warmup) when warmup_epochs <= 0.
int64_t warmup_iterations(double warmup_epochs, int64_t batches_per_epoch, int64_t min_iterations = 100);
// The trainer warms up while ni <= nw (ni = i + nb*epoch counts batches from the start of training).
inline bool in_warmup(int64_t ni, int64_t nw) { return ni <= nw; }

// np.interp(x, [0, x_end], [y0, y1]) with numpy's exact arithmetic (clamped outside [0, x_end]).
double interp_ramp(double x, double x_end, double y0, double y1);

struct WarmupConfig {
  double warmup_bias_lr = 0.1;   // start lr of "bias" groups (optimizer=auto forces 0.0)
  double warmup_momentum = 0.8;  // start momentum (Adam: beta1)
  double momentum = 0.937;       // args.momentum: the end value, even when auto chose 0.9
  int64_t nbs = 64;              // nominal batch
  int64_t batch = 16;
};

// Accumulate at iteration ni: max(1, round(interp(ni, [0, nw], [1, nbs/batch]))).
int64_t warmup_accumulate(int64_t ni, int64_t nw, int64_t nbs, int64_t batch);
// Applies one warmup iteration to every group: lr from (bias: warmup_bias_lr, others: 0) to initial_lr * lf,
// momentum from warmup_momentum to cfg.momentum (SGD/MuSGD only: torch's Adam groups have betas, not a
// "momentum" key, so the official warmup leaves beta1 alone). Returns the accumulate for this iteration.
int64_t apply_warmup(std::vector<ParamGroup>& groups, OptimKind kind, int64_t ni, int64_t nw, double lf,
                     const WarmupConfig& cfg);

}  // namespace y26
