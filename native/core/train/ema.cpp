#include "train/ema.h"

#include <cmath>

#include "util/error.h"

namespace y26 {

NamedTensors module_state(const torch::nn::Module& module) {
  NamedTensors out;
  for (const auto& p : module.named_parameters(/*recurse=*/true)) out.emplace_back(p.key(), p.value());
  for (const auto& b : module.named_buffers(/*recurse=*/true)) out.emplace_back(b.key(), b.value());
  return out;
}

ModelEMA::ModelEMA(NamedTensors ema_state, double decay, double tau, int64_t updates)
    : ema_(std::move(ema_state)), decay_(decay), tau_(tau), updates_(updates) {
  for (const auto& [name, t] : ema_)
    if (!t.defined()) fail("ModelEMA: state entry '" + name + "' is an undefined tensor");
}

double ModelEMA::decay_at(int64_t updates) const { return decay_ * (1 - std::exp(-(double)updates / tau_)); }

// Entry i of the EMA in `state`: same position when the orders agree (the usual case), else by name.
const torch::Tensor& ModelEMA::find(const NamedTensors& state, size_t i, const std::string& what) const {
  const std::string& name = ema_[i].first;
  const torch::Tensor* t = nullptr;
  if (i < state.size() && state[i].first == name) {
    t = &state[i].second;
  } else {
    for (const auto& [n, v] : state)
      if (n == name) { t = &v; break; }
  }
  if (!t) fail("ModelEMA: " + what + " has no entry '" + name + "'; the EMA was made from another model");
  if (t->sizes() != ema_[i].second.sizes())
    fail("ModelEMA: " + what + " entry '" + name + "' has shape " + c10::str(t->sizes()) + ", the EMA has " +
         c10::str(ema_[i].second.sizes()));
  return *t;
}

void ModelEMA::update(const NamedTensors& model_state) {
  torch::NoGradGuard no_grad;
  ++updates_;
  const double d = decay_at(updates_);
  for (size_t i = 0; i < ema_.size(); ++i) {
    torch::Tensor& v = ema_[i].second;
    if (!v.is_floating_point()) continue;
    const torch::Tensor& m = find(model_state, i, "the model");
    v.mul_(d);
    v.add_((1 - d) * m.detach());
  }
}

void ModelEMA::copy_from(const NamedTensors& model_state) {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < ema_.size(); ++i) ema_[i].second.copy_(find(model_state, i, "the model"));
}

void ModelEMA::load(const NamedTensors& saved, int64_t updates) {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < ema_.size(); ++i) ema_[i].second.copy_(find(saved, i, "the saved EMA"));
  updates_ = updates;
}

}  // namespace y26
