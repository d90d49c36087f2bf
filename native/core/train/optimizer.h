// Our own optimisers (SGD, Adam, AdamW, MuSGD) over named parameters, the official param-group builder
// (`build_optimizer`), the optimizer='auto' rule and the nominal-batch helpers. No torch::optim base class:
// its API differs between libtorch 1.13 and 2.x, and MuSGD needs per-group flags it does not have.
#pragma once
#include <torch/nn/module.h>
#include <torch/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace y26 {

using NamedTensor = std::pair<std::string, torch::Tensor>;
using NamedTensors = std::vector<NamedTensor>;

enum class OptimKind { SGD, Adam, AdamW, MuSGD };

// Case-insensitive "SGD", "Adam", "AdamW", "MuSGD"; anything else throws y26::Error naming the choices.
OptimKind parse_optimizer_kind(const std::string& name);
const char* optimizer_kind_name(OptimKind kind);

struct ParamGroup {
  std::string kind;            // "weight" (decay), "bn" (no decay), "bias" (no decay), "muon" (decay)
  NamedTensors params;         // (full parameter name, tensor); the tensors are updated in place
  double lr = 0.001;
  double initial_lr = 0.001;   // what the LR schedule multiplies: lr = initial_lr * lf(epoch)
  double momentum = 0.9;       // SGD momentum, or Adam beta1
  double beta2 = 0.999;        // Adam only
  double eps = 1e-8;           // Adam only
  double weight_decay = 0.0;
  bool nesterov = true;        // SGD/MuSGD
  bool use_muon = false;       // MuSGD: Newton-Schulz update plus the SGD update
};

// Everything needed to resume: per-parameter buffers named "<param name>.<buffer>" (momentum_buffer,
// momentum_buffer_SGD, exp_avg, exp_avg_sq, step), per-group scalars "group.<i>.<field>" (lr, initial_lr, momentum,
// weight_decay) and "optimizer_kind" (the OptimKind value, checked on load).
struct OptimizerSnapshot {
  NamedTensors tensors;
  std::vector<std::pair<std::string, double>> scalars;
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  OptimKind kind() const { return kind_; }
  std::vector<ParamGroup>& groups() { return groups_; }
  const std::vector<ParamGroup>& groups() const { return groups_; }

  // set_to_none drops the gradients (libtorch 2.x default); otherwise they are zeroed in place.
  void zero_grad(bool set_to_none = true);
  // One update of every parameter that has a gradient; parameters without one are skipped (as torch does).
  void step();

  OptimizerSnapshot state_dict() const;
  // Restores buffers by parameter name; throws y26::Error on unknown names, shape or group-count mismatch.
  void load_state_dict(const OptimizerSnapshot& state);

 protected:
  Optimizer(OptimKind kind, std::vector<ParamGroup> groups);
  virtual void step_group(ParamGroup& group) = 0;
  // Named buffer of one parameter, created as zeros like `like` on first use.
  torch::Tensor& buffer(const std::string& param, const char* name, const torch::Tensor& like);
  int64_t& step_count(const std::string& param) { return steps_[param]; }

 private:
  OptimKind kind_;
  std::vector<ParamGroup> groups_;
  std::map<std::string, std::map<std::string, torch::Tensor>> buffers_;
  std::map<std::string, int64_t> steps_;
};

// torch.optim.SGD: g += wd*p; buf = m*buf + g; p -= lr*(g + m*buf) with Nesterov, else lr*buf.
class SGD : public Optimizer {
 public:
  explicit SGD(std::vector<ParamGroup> groups);
 protected:
  SGD(OptimKind kind, std::vector<ParamGroup> groups);
  void step_group(ParamGroup& group) override;
  // Shared with MuSGD's SGD part; `buffer_name` keeps MuSGD's two buffers apart.
  void sgd_update(ParamGroup& group, const std::string& name, torch::Tensor& p, const torch::Tensor& grad,
                  const char* buffer_name, double lr);
};

// torch.optim.Adam (decoupled = false: L2 added to the gradient) and AdamW (decoupled: p *= 1 - lr*wd),
// betas (momentum, beta2), bias correction as torch.
class Adam : public Optimizer {
 public:
  Adam(std::vector<ParamGroup> groups, bool decoupled_weight_decay);
 protected:
  void step_group(ParamGroup& group) override;
 private:
  bool decoupled_;
};

// Ultralytics MuSGD: use_muon groups get p -= lr*muon_scale*NS5(nesterov EMA momentum) then an SGD step
// (lr*sgd_scale, weight decay, its own buffer); other groups get plain Nesterov SGD.
class MuSGD : public SGD {
 public:
  MuSGD(std::vector<ParamGroup> groups, double muon_scale = 0.2, double sgd_scale = 1.0);
  double muon_scale() const { return muon_scale_; }
  double sgd_scale() const { return sgd_scale_; }
 protected:
  void step_group(ParamGroup& group) override;
 private:
  double muon_scale_, sgd_scale_;
};

std::unique_ptr<Optimizer> make_optimizer(OptimKind kind, std::vector<ParamGroup> groups);

// Quintic Newton-Schulz orthogonalisation, 5 iterations in bfloat16 on the (rows <= cols) contiguous matrix,
// as the official MuSGD does. Input 2-D (any float dtype); output bfloat16 with the input's shape.
torch::Tensor newton_schulz5(const torch::Tensor& g, double eps = 1e-7);
// Muon update of one parameter: momentum.lerp_(grad, 1-beta) (in place), u = grad.lerp(momentum, beta) with
// Nesterov, NS5 of u viewed as (rows, -1), times sqrt(max(1, rows/cols)) of the grad. Returns bfloat16 with the
// grad's shape. Throws y26::Error unless grad is 2-D or 4-D.
torch::Tensor muon_update(const torch::Tensor& grad, torch::Tensor& momentum, double beta, bool nesterov = true);

// ---- param groups (BaseTrainer.build_optimizer) ------------------------------------------------------------

struct ParamInfo {
  std::string module_path;   // "model.1" (the owning module, as named_modules() names it)
  std::string module_kind;   // "Conv2d", "BatchNorm2d", "Linear", ...: any kind containing "Norm" is a norm layer
  std::string param_name;    // "weight" (the module's own parameter name)
  torch::Tensor tensor;
  std::string full_name() const { return module_path.empty() ? param_name : module_path + "." + param_name; }
};

// Every parameter of a libtorch module tree in named_modules() order, each with its owning module's path (under
// `prefix`, e.g. "model" -> "model.0.conv") and kind (Module::name(), e.g. "torch::nn::BatchNorm2dImpl").
// Frozen parameters (requires_grad false) are skipped unless include_frozen.
std::vector<ParamInfo> collect_params(const torch::nn::Module& root, const std::string& prefix = "",
                                      bool include_frozen = false);

struct OptimizerChoice {
  OptimKind kind = OptimKind::SGD;
  double lr = 0.01;
  double momentum = 0.937;
  bool from_auto = false;    // optimizer='auto' chose it: the trainer must then use warmup_bias_lr = 0
};

// optimizer name -> kind, lr and momentum. 'auto': MuSGD (lr 0.01, momentum 0.9) when iterations > 10000, else
// AdamW with lr round(0.002*5/(4+nc), 6) and momentum 0.9 (user lr0/momentum ignored).
OptimizerChoice resolve_optimizer(const std::string& name, double lr0, double momentum, int64_t nc,
                                  double iterations);
// The iterations 'auto' compares: ceil(dataset_size / max(batch, nbs)) * epochs.
double auto_iterations(int64_t dataset_size, int64_t batch, int64_t epochs, int64_t nbs = 64);
// Gradient accumulation for nominal batch nbs: max(round(nbs / batch), 1), round half to even as Python.
int64_t nominal_accumulate(int64_t batch, int64_t nbs = 64);
// weight_decay * batch * accumulate / nbs (what the trainer passes as `decay`).
double scaled_weight_decay(double weight_decay, int64_t batch, int64_t accumulate, int64_t nbs = 64);

// Groups in the official order: weight, bn, bias (SGD/Adam: 3 groups) or, for MuSGD, weight, bn, bias, muon each
// split into (boosted lr*3, rest): 8 groups, empty ones kept. Rules per parameter, first match wins: MuSGD and
// ndim in {2,4} -> muon; "bias" in the name -> bias; norm module or "logit_scale" -> bn; else weight.
// Boosted (MuSGD only): parameters under <head_module>.cv3 / <head_module>.one2one_cv3, or names containing
// "proto.semseg" / "SemanticSegment". head_module "" = the highest "model.N" among the names (model[-1]).
// initial_lr is set to lr. Adam-family groups use betas (momentum, 0.999), eps 1e-8.
std::vector<ParamGroup> build_param_groups(const std::vector<ParamInfo>& params, OptimKind kind, double lr,
                                           double momentum, double decay, const std::string& head_module = "");

}  // namespace y26
