// ModelEMA: exponential moving average of every floating-point state entry (parameters and BatchNorm
// buffers), with the official ramped decay d(u) = decay * (1 - exp(-u / tau)), u = optimizer steps so far.
#pragma once
#include <torch/nn/module.h>
#include <torch/types.h>

#include <cstdint>
#include <string>
#include <unordered_map>

#include "train/optimizer.h"

namespace y26 {

// A module's state entries (parameters, then buffers such as BN running stats), named as state_dict() names them.
NamedTensors module_state(const torch::nn::Module& module);

class ModelEMA {
 public:
  // ema_state: the EMA model's state entries (name, tensor), updated in place. Non-floating entries
  // (num_batches_tracked) are kept but never averaged.
  explicit ModelEMA(NamedTensors ema_state, double decay = 0.9999, double tau = 2000.0, int64_t updates = 0);

  double decay_at(int64_t updates) const;
  // updates += 1; every floating entry: ema = ema * d + (1 - d) * model, d = decay_at(updates). Matched by name;
  // throws y26::Error if the model lacks an entry or its shape differs.
  void update(const NamedTensors& model_state);
  // Copies the model's values into the EMA (what the official deepcopy does at construction); updates unchanged.
  void copy_from(const NamedTensors& model_state);

  int64_t updates() const { return updates_; }
  const NamedTensors& state() const { return ema_; }
  // Restores a saved EMA (by name, all entries required) and its update count, for resume.
  void load(const NamedTensors& saved, int64_t updates);

 private:
  const torch::Tensor& find(const NamedTensors& state, size_t i, const std::string& what) const;
  NamedTensors ema_;
  double decay_, tau_;
  int64_t updates_;
};

}  // namespace y26
