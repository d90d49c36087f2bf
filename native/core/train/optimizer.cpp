#include "train/optimizer.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "util/error.h"
#include "util/text.h"

namespace y26 {

OptimKind parse_optimizer_kind(const std::string& name) {
  const std::string n = to_lower(name);
  if (n == "sgd") return OptimKind::SGD;
  if (n == "adam") return OptimKind::Adam;
  if (n == "adamw") return OptimKind::AdamW;
  if (n == "musgd") return OptimKind::MuSGD;
  fail("optimizer '" + name + "' is not supported: use one of SGD, Adam, AdamW, MuSGD or auto");
}

const char* optimizer_kind_name(OptimKind kind) {
  switch (kind) {
    case OptimKind::SGD: return "SGD";
    case OptimKind::Adam: return "Adam";
    case OptimKind::AdamW: return "AdamW";
    case OptimKind::MuSGD: return "MuSGD";
  }
  return "?";
}

// ---- base ----------------------------------------------------------------------------------------------------

Optimizer::Optimizer(OptimKind kind, std::vector<ParamGroup> groups) : kind_(kind), groups_(std::move(groups)) {
  std::map<std::string, int> seen;
  for (const auto& g : groups_)
    for (const auto& [name, p] : g.params) {
      if (!p.defined()) fail("optimizer: parameter '" + name + "' is an undefined tensor");
      if (!p.is_floating_point()) fail("optimizer: parameter '" + name + "' is not a floating-point tensor");
      if (seen[name]++) fail("optimizer: parameter '" + name + "' appears in more than one group; names must be unique");
    }
}

void Optimizer::zero_grad(bool set_to_none) {
  for (auto& g : groups_)
    for (auto& [name, p] : g.params) {
      if (!p.grad().defined()) continue;
      if (set_to_none) {
        p.mutable_grad().reset();
      } else {
        p.mutable_grad().detach_();
        p.mutable_grad().zero_();
      }
    }
}

void Optimizer::step() {
  torch::NoGradGuard no_grad;
  for (auto& g : groups_) step_group(g);
}

torch::Tensor& Optimizer::buffer(const std::string& param, const char* name, const torch::Tensor& like) {
  auto& slot = buffers_[param][name];
  if (!slot.defined()) slot = torch::zeros_like(like);
  return slot;
}

OptimizerSnapshot Optimizer::state_dict() const {
  OptimizerSnapshot s;
  for (const auto& [param, bufs] : buffers_)
    for (const auto& [name, t] : bufs) s.tensors.emplace_back(param + "." + name, t.detach().clone());
  for (const auto& [param, n] : steps_)
    s.tensors.emplace_back(param + ".step", torch::tensor((float)n, torch::kFloat32));
  s.scalars.emplace_back("optimizer_kind", (double)(int)kind_);
  for (size_t i = 0; i < groups_.size(); ++i) {
    const std::string k = "group." + std::to_string(i) + ".";
    const auto& g = groups_[i];
    s.scalars.emplace_back(k + "lr", g.lr);
    s.scalars.emplace_back(k + "initial_lr", g.initial_lr);
    s.scalars.emplace_back(k + "momentum", g.momentum);
    s.scalars.emplace_back(k + "weight_decay", g.weight_decay);
  }
  return s;
}

void Optimizer::load_state_dict(const OptimizerSnapshot& state) {
  std::map<std::string, const torch::Tensor*> params;
  for (const auto& g : groups_)
    for (const auto& [name, p] : g.params) params[name] = &p;
  // Longest parameter name that prefixes the key, so "a.b.weight.exp_avg" maps to "a.b.weight".
  auto split = [&](const std::string& key) -> std::pair<std::string, std::string> {
    for (size_t dot = key.rfind('.'); dot != std::string::npos && dot > 0; dot = key.rfind('.', dot - 1)) {
      auto it = params.find(key.substr(0, dot));
      if (it != params.end()) return {it->first, key.substr(dot + 1)};
    }
    fail("optimizer state: '" + key + "' names no parameter of this optimizer; was it saved for another model?");
  };
  decltype(buffers_) buffers;
  decltype(steps_) steps;
  for (const auto& [key, t] : state.tensors) {
    auto [param, name] = split(key);
    const torch::Tensor& p = *params[param];
    if (name == "step") {
      steps[param] = (int64_t)std::llround(t.item<double>());
      continue;
    }
    if (t.sizes() != p.sizes())
      fail("optimizer state: '" + key + "' has shape " + c10::str(t.sizes()) + " but the parameter has " +
           c10::str(p.sizes()) + "; the checkpoint belongs to another model");
    buffers[param][name] = t.detach().to(p.device(), p.scalar_type()).clone();
  }
  for (const auto& [key, v] : state.scalars) {
    if (key == "optimizer_kind" && (int)v != (int)kind_)
      fail(std::string("optimizer state: saved by ") + optimizer_kind_name((OptimKind)(int)v) + ", cannot resume " +
           optimizer_kind_name(kind_) + "; use the same optimizer as the checkpoint or start without its state");
    if (key.rfind("group.", 0) != 0) continue;
    size_t dot = key.find('.', 6);
    size_t gi = std::strtoul(key.substr(6, dot - 6).c_str(), nullptr, 10);
    if (dot == std::string::npos || gi >= groups_.size())
      fail("optimizer state: '" + key + "' refers to a param group this optimizer does not have (" +
           std::to_string(groups_.size()) + " groups); the checkpoint was made with another optimizer");
    const std::string field = key.substr(dot + 1);
    auto& g = groups_[gi];
    if (field == "lr") g.lr = v;
    else if (field == "initial_lr") g.initial_lr = v;
    else if (field == "momentum") g.momentum = v;
    else if (field == "weight_decay") g.weight_decay = v;
  }
  buffers_ = std::move(buffers);
  steps_ = std::move(steps);
}

// ---- SGD ------------------------------------------------------------------------------------------------------

SGD::SGD(std::vector<ParamGroup> groups) : Optimizer(OptimKind::SGD, std::move(groups)) {}
SGD::SGD(OptimKind kind, std::vector<ParamGroup> groups) : Optimizer(kind, std::move(groups)) {}

void SGD::sgd_update(ParamGroup& group, const std::string& name, torch::Tensor& p, const torch::Tensor& grad,
                     const char* buffer_name, double lr) {
  torch::Tensor d = grad;
  if (group.weight_decay != 0) d = d.add(p, group.weight_decay);
  if (group.momentum != 0) {
    torch::Tensor& buf = buffer(name, buffer_name, p);
    buf.mul_(group.momentum).add_(d);
    d = group.nesterov ? d.add(buf, group.momentum) : buf;
  }
  p.add_(d, -lr);
}

void SGD::step_group(ParamGroup& group) {
  for (auto& [name, p] : group.params) {
    if (!p.grad().defined()) continue;
    sgd_update(group, name, p, p.grad(), "momentum_buffer", group.lr);
  }
}

// ---- Adam / AdamW -----------------------------------------------------------------------------------------------

Adam::Adam(std::vector<ParamGroup> groups, bool decoupled_weight_decay)
    : Optimizer(decoupled_weight_decay ? OptimKind::AdamW : OptimKind::Adam, std::move(groups)),
      decoupled_(decoupled_weight_decay) {}

void Adam::step_group(ParamGroup& group) {
  const double b1 = group.momentum, b2 = group.beta2, lr = group.lr;
  for (auto& [name, p] : group.params) {
    if (!p.grad().defined()) continue;
    torch::Tensor grad = p.grad();
    const int64_t step = ++step_count(name);
    if (decoupled_) p.mul_(1 - lr * group.weight_decay);
    else if (group.weight_decay != 0) grad = grad.add(p, group.weight_decay);
    torch::Tensor& m = buffer(name, "exp_avg", p);
    torch::Tensor& v = buffer(name, "exp_avg_sq", p);
    m.mul_(b1).add_(grad, 1 - b1);
    v.mul_(b2).addcmul_(grad, grad, 1 - b2);
    const double bc1 = 1 - std::pow(b1, (double)step);
    const double bc2_sqrt = std::sqrt(1 - std::pow(b2, (double)step));
    torch::Tensor denom = (v.sqrt() / bc2_sqrt).add_(group.eps);
    p.addcdiv_(m, denom, -(lr / bc1));
  }
}

// ---- MuSGD ------------------------------------------------------------------------------------------------------

torch::Tensor newton_schulz5(const torch::Tensor& g, double eps) {
  if (g.dim() != 2) fail("newton_schulz5: expected a 2-D matrix, got " + std::to_string(g.dim()) + "-D");
  const bool tall = g.size(0) > g.size(1);
  // The official order: cast, normalise, then work on the transposed *view* of a tall matrix. bf16 matmuls are
  // layout- and CPU-sensitive, so any other order changes the result; this one equals the official Python code
  // under the same libtorch bit for bit (measured with Debian's python3-torch 1.13 on an AVX512-BF16 CPU).
  torch::Tensor x = g.to(torch::kBFloat16);
  x = x / (x.norm() + eps);
  if (tall) x = x.t();
  const double a = 3.4445, b = -4.7750, c = 2.0315;
  for (int i = 0; i < 5; ++i) {
    torch::Tensor A = x.matmul(x.t());
    torch::Tensor B = A * b + (A * c).matmul(A);  // Python's `c * A @ A` is (c*A) @ A
    x = x * a + B.matmul(x);
  }
  return tall ? x.t() : x;
}

torch::Tensor muon_update(const torch::Tensor& grad, torch::Tensor& momentum, double beta, bool nesterov) {
  if (grad.dim() != 2 && grad.dim() != 4)
    fail("muon_update: Muon orthogonalises matrices and conv filters only (ndim 2 or 4), got ndim " +
         std::to_string(grad.dim()) + "; put this parameter in a non-Muon group");
  momentum.lerp_(grad, 1 - beta);
  torch::Tensor u = nesterov ? grad.lerp(momentum, beta) : momentum;
  if (u.dim() == 4) u = u.reshape({u.size(0), -1});
  torch::Tensor o = newton_schulz5(u);
  o.mul_(std::sqrt(std::max(1.0, (double)grad.size(-2) / (double)grad.size(-1))));
  return o.reshape(grad.sizes());
}

MuSGD::MuSGD(std::vector<ParamGroup> groups, double muon_scale, double sgd_scale)
    : SGD(OptimKind::MuSGD, std::move(groups)), muon_scale_(muon_scale), sgd_scale_(sgd_scale) {}

void MuSGD::step_group(ParamGroup& group) {
  if (!group.use_muon) return SGD::step_group(group);
  for (auto& [name, p] : group.params) {
    if (!p.grad().defined()) continue;
    const torch::Tensor grad = p.grad();
    torch::Tensor& m = buffer(name, "momentum_buffer", p);
    torch::Tensor update = muon_update(grad, m, group.momentum, group.nesterov);
    p.add_(update, -(group.lr * muon_scale_));
    sgd_update(group, name, p, grad, "momentum_buffer_SGD", group.lr * sgd_scale_);
  }
}

std::unique_ptr<Optimizer> make_optimizer(OptimKind kind, std::vector<ParamGroup> groups) {
  switch (kind) {
    case OptimKind::SGD: return std::make_unique<SGD>(std::move(groups));
    case OptimKind::Adam: return std::make_unique<Adam>(std::move(groups), false);
    case OptimKind::AdamW: return std::make_unique<Adam>(std::move(groups), true);
    case OptimKind::MuSGD: return std::make_unique<MuSGD>(std::move(groups));
  }
  fail("make_optimizer: unknown optimizer kind");
}

// ---- param groups and trainer helpers ---------------------------------------------------------------------------

// Python's round(x, digits): the exactly rounded decimal (glibc printf rounds the binary value exactly).
static double python_round(double x, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, x);
  return std::strtod(buf, nullptr);
}

OptimizerChoice resolve_optimizer(const std::string& name, double lr0, double momentum, int64_t nc,
                                  double iterations) {
  OptimizerChoice c;
  if (to_lower(name) == "auto") {
    c.from_auto = true;
    c.momentum = 0.9;
    if (iterations > 10000) {
      c.kind = OptimKind::MuSGD;
      c.lr = 0.01;
    } else {
      c.kind = OptimKind::AdamW;
      c.lr = python_round(0.002 * 5 / (4 + (double)nc), 6);
    }
    return c;
  }
  c.kind = parse_optimizer_kind(name);
  c.lr = lr0;
  c.momentum = momentum;
  return c;
}

double auto_iterations(int64_t dataset_size, int64_t batch, int64_t epochs, int64_t nbs) {
  return std::ceil((double)dataset_size / (double)std::max(batch, nbs)) * (double)epochs;
}

int64_t nominal_accumulate(int64_t batch, int64_t nbs) {
  if (batch < 1) fail("nominal_accumulate: batch must be >= 1, got " + std::to_string(batch));
  return std::max<int64_t>((int64_t)std::nearbyint((double)nbs / (double)batch), 1);
}

double scaled_weight_decay(double weight_decay, int64_t batch, int64_t accumulate, int64_t nbs) {
  return weight_decay * (double)batch * (double)accumulate / (double)nbs;
}

static bool contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }
static bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

// model[-1]: the "model.N" with the largest N among the parameter names ("" when there is none).
static std::string last_model_layer(const std::vector<ParamInfo>& params) {
  long best = -1;
  for (const auto& p : params) {
    const std::string n = p.full_name();
    if (!starts_with(n, "model.")) continue;
    char* end = nullptr;
    long idx = std::strtol(n.c_str() + 6, &end, 10);
    if (end != n.c_str() + 6 && (*end == '.' || *end == '\0')) best = std::max(best, idx);
  }
  return best < 0 ? "" : "model." + std::to_string(best);
}

std::vector<ParamInfo> collect_params(const torch::nn::Module& root, const std::string& prefix, bool include_frozen) {
  std::vector<ParamInfo> out;
  for (const auto& item : root.named_modules(prefix, /*include_self=*/true))
    for (const auto& p : item.value()->named_parameters(/*recurse=*/false)) {
      if (!include_frozen && !p.value().requires_grad()) continue;
      out.push_back({item.key(), item.value()->name(), p.key(), p.value()});
    }
  return out;
}

std::vector<ParamGroup> build_param_groups(const std::vector<ParamInfo>& params, OptimKind kind, double lr,
                                           double momentum, double decay, const std::string& head_module) {
  const bool use_muon = kind == OptimKind::MuSGD;
  const bool adam = kind == OptimKind::Adam || kind == OptimKind::AdamW;
  enum { WEIGHT, BN, BIAS, MUON };
  std::vector<NamedTensors> g(4);
  for (const auto& p : params) {
    if (!p.tensor.defined()) fail("build_param_groups: parameter '" + p.full_name() + "' is undefined");
    const std::string name = p.full_name();
    const int64_t nd = p.tensor.dim();
    if (use_muon && (nd == 2 || nd == 4)) g[MUON].emplace_back(name, p.tensor);
    else if (contains(name, "bias")) g[BIAS].emplace_back(name, p.tensor);
    else if (contains(p.module_kind, "Norm") || contains(name, "logit_scale")) g[BN].emplace_back(name, p.tensor);
    else g[WEIGHT].emplace_back(name, p.tensor);
  }
  auto make = [&](const char* k, NamedTensors ps, double wd, double group_lr) {
    ParamGroup pg;
    pg.kind = k;
    pg.params = std::move(ps);
    pg.lr = pg.initial_lr = group_lr;
    pg.momentum = momentum;
    pg.beta2 = 0.999;
    pg.eps = 1e-8;
    pg.weight_decay = wd;
    pg.nesterov = !adam;
    pg.use_muon = std::string(k) == "muon";
    return pg;
  };
  const char* names[4] = {"weight", "bn", "bias", "muon"};
  const double wds[4] = {decay, 0.0, 0.0, decay};
  std::vector<ParamGroup> out;
  if (!use_muon) {
    for (int i = 0; i < 3; ++i) out.push_back(make(names[i], g[i], wds[i], lr));
    return out;
  }
  // MuSGD: the classification branches of the head (and the semseg head) learn 3x faster.
  const std::string head = head_module.empty() ? last_model_layer(params) : head_module;
  auto boosted = [&](const std::string& n) {
    return (!head.empty() && (starts_with(n, head + ".cv3.") || starts_with(n, head + ".one2one_cv3."))) ||
           contains(n, "proto.semseg") || contains(n, "SemanticSegment");
  };
  for (int i = 0; i < 4; ++i) {
    NamedTensors fast, rest;
    for (auto& nt : g[i]) (boosted(nt.first) ? fast : rest).push_back(nt);
    out.push_back(make(names[i], std::move(fast), wds[i], lr * 3));
    out.push_back(make(names[i], std::move(rest), wds[i], lr));
  }
  return out;
}

}  // namespace y26
