#include "model/yolo.h"

#include <cmath>
#include <iomanip>
#include <sstream>
#include <unordered_map>

#include "io/checkpoint.h"
#include "model/postprocess.h"
#include "util/error.h"

namespace y26 {

namespace {

int64_t make_divisible(double x, int64_t d) { return (int64_t)std::ceil(x / d) * d; }

// The numbered children "0", "1", ... of `model`; Concat/Upsample have no module, as they hold no state.
struct LayerStack : Node {};

// Reads a layer's YAML args with defaults; resolves the "nc" / "kpt_shape" names and None.
struct Args {
  const LayerSpec& l;
  const ModelConfig& cfg;
  bool has(size_t i) const {
    if (i >= l.args.size()) return false;
    const YAML::Node& n = l.args[i];
    return !(n.IsNull() || (n.IsScalar() && (n.Scalar() == "None" || n.Scalar() == "null")));
  }
  [[noreturn]] void bad(size_t i, const std::string& what) const {
    fail(cfg.source + (l.line ? ":" + std::to_string(l.line) : "") + ": layer " + std::to_string(l.index) + " (" +
         l.module + "): argument " + std::to_string(i) + " " + what);
  }
  int64_t i64(size_t i, int64_t def) const {
    if (!has(i)) return def;
    const YAML::Node& n = l.args[i];
    if (n.IsScalar() && n.Scalar() == "nc") return cfg.nc;
    try { return n.as<int64_t>(); } catch (const YAML::Exception&) { bad(i, "must be an integer"); }
  }
  double f64(size_t i, double def) const {
    if (!has(i)) return def;
    try { return l.args[i].as<double>(); } catch (const YAML::Exception&) { bad(i, "must be a number"); }
  }
  bool flag(size_t i, bool def) const {
    if (!has(i)) return def;
    try { return l.args[i].as<bool>(); } catch (const YAML::Exception&) { bad(i, "must be True or False"); }
  }
};

std::string shape_str(const torch::Tensor& t) {
  std::ostringstream s;
  s << t.sizes();
  return s.str();
}

std::string thousands(int64_t v) {
  std::string s = std::to_string(v);
  for (int i = (int)s.size() - 3; i > 0; i -= 3) s.insert(i, ",");
  return s;
}

// Parameter-free modules the official tree holds inside `m` that ours computes functionally: Identity acts,
// MaxPool, the dfl Identity, the SiLUs that deepcopy gives each one2one branch, Classify's pool/dropout,
// RealNVP's activations. Counted so num_layers() equals len(list(model.modules())) upstream.
int64_t functional_modules(const torch::nn::Module& m) {
  if (auto* c = dynamic_cast<const Conv*>(&m)) return c->has_act() ? 0 : 1;
  if (dynamic_cast<const SPPF*>(&m)) return 1;
  if (dynamic_cast<const ClassifyHead*>(&m)) return 2;
  if (auto* f = dynamic_cast<const FlowMLP*>(&m)) return f->tanh ? 3 : 2;
  if (auto* h = dynamic_cast<const DetectHead*>(&m)) return 1 + (h->spec.end2end ? (h->one2one_cv4 ? 3 : 2) : 0);
  return 0;
}

void collect(const torch::nn::Module& m, const std::string& prefix, bool buffers, StateDict& out, int64_t* modules) {
  if (modules) *modules += 1 + functional_modules(m);
  for (const auto& p : m.named_parameters(false)) out.emplace_back(prefix + p.key(), p.value());
  if (buffers)
    for (const auto& b : m.named_buffers(false)) out.emplace_back(prefix + b.key(), b.value());
  const auto* node = dynamic_cast<const Node*>(&m);
  for (const auto& c : m.named_children()) {
    if (node && node->is_dropped(c.key())) continue;
    collect(*c.value(), prefix + c.key() + ".", buffers, out, modules);
  }
}

// Turns on the multiply-add counter for one scope.
struct MacScope {
  explicit MacScope(int64_t* sink) { g_mac_counter = sink; }
  ~MacScope() { g_mac_counter = nullptr; }
};

}  // namespace

YoloModel::YoloModel(const ModelConfig& cfg) : cfg_(cfg), task_kind_(cfg.task_kind()) { build(); }

void YoloModel::build() {
  auto stack = register_module("model", std::make_shared<LayerStack>());
  std::vector<int64_t> ch;  // output channels per layer
  const bool force_c3k = cfg_.scale == "m" || cfg_.scale == "l" || cfg_.scale == "x";
  std::vector<bool> referenced(cfg_.layers.size(), false);
  for (const auto& l : cfg_.layers)
    for (int f : l.from)
      if (f >= 0 && (f != l.index - 1 || l.from.size() > 1)) referenced[f] = true;

  for (const auto& l : cfg_.layers) {
    Args a{l, cfg_};
    const int i = l.index;
    auto where = [&]() {
      return cfg_.source + (l.line ? ":" + std::to_string(l.line) : "") + ": layer " + std::to_string(i) + " (" +
             l.module + ")";
    };
    const int64_t n = l.repeats > 1 ? std::max<int64_t>((int64_t)std::nearbyint(l.repeats * cfg_.depth), 1) : l.repeats;
    auto in_ch = [&](int f) { return f < 0 ? (int64_t)cfg_.channels : ch[f]; };
    const int64_t c1 = in_ch(l.from[0]);
    Step step{Kind::Block, l.from, nullptr, referenced[i]};
    int64_t c2 = c1;
    std::ostringstream argstr;
    const std::string& m = l.module;
    if (n > 1 && m != "C3k2" && m != "C2PSA") fail(where() + ": repeats > 1 is only supported for C3k2 and C2PSA");
    if (l.from.size() > 1 && m != "Concat" && m != "Detect" && m != "Segment26" && m != "Pose26" && m != "OBB26")
      fail(where() + ": only Concat and heads take several inputs (from)");

    if (m == "Conv" || m == "DWConv" || m == "C3k2" || m == "SPPF" || m == "C2PSA" || m == "Classify") {
      c2 = a.i64(0, -1);
      if (c2 < 1) a.bad(0, "(output channels) is required and must be >= 1");
      if (c2 != cfg_.nc) c2 = make_divisible(std::min<double>(c2, cfg_.max_channels) * cfg_.width, 8);
      if (m == "Conv") {
        int64_t k = a.i64(1, 1), s = a.i64(2, 1), p = a.i64(3, -1), g = a.i64(4, 1), d = a.i64(5, 1);
        bool act = a.flag(6, true);
        step.block = std::make_shared<Conv>(c1, c2, k, s, p, g, d, act);
        argstr << "[" << c1 << ", " << c2 << ", " << k << ", " << s << "]";
      } else if (m == "DWConv") {
        int64_t k = a.i64(1, 1), s = a.i64(2, 1);
        step.block = make_dwconv(c1, c2, k, s, a.flag(3, true));
        argstr << "[" << c1 << ", " << c2 << ", " << k << ", " << s << "]";
      } else if (m == "C3k2") {
        bool c3k = a.flag(1, false) || force_c3k;
        double e = a.f64(2, 0.5);
        bool attn = a.flag(3, false);
        step.block = std::make_shared<C3k2>(c1, c2, n, c3k, e, attn, a.i64(4, 1), a.flag(5, true));
        argstr << "[" << c1 << ", " << c2 << ", " << n << ", " << (c3k ? "True" : "False") << ", " << e
               << (attn ? ", attn" : "") << "]";
      } else if (m == "SPPF") {
        int64_t k = a.i64(1, 5), r = a.i64(2, 3);
        bool sc = a.flag(3, false);
        step.block = std::make_shared<SPPF>(c1, c2, k, r, sc);
        argstr << "[" << c1 << ", " << c2 << ", " << k << ", " << r << ", " << (sc ? "True" : "False") << "]";
      } else if (m == "C2PSA") {
        if (c1 != c2) fail(where() + ": C2PSA needs equal input and output channels, got " + std::to_string(c1) +
                           " -> " + std::to_string(c2));
        step.block = std::make_shared<C2PSA>(c1, c2, n, a.f64(1, 0.5));
        argstr << "[" << c1 << ", " << c2 << ", " << n << "]";
      } else {
        step.kind = Kind::Classify;
        step.block = std::make_shared<ClassifyHead>(c1, c2);
        argstr << "[" << c1 << ", " << c2 << "]";
      }
    } else if (m == "Concat") {
      if (a.i64(0, 1) != 1) a.bad(0, "(dimension) must be 1");
      step.kind = Kind::Concat;
      c2 = 0;
      for (int f : l.from) c2 += in_ch(f);
      argstr << "[1]";
    } else if (m == "Upsample") {
      if (a.has(0)) a.bad(0, "(size) must be None");
      if (a.f64(1, 2) != 2) a.bad(1, "(scale factor) must be 2");
      if (a.has(2) && l.args[2].as<std::string>() != "nearest") a.bad(2, "(mode) must be \"nearest\"");
      step.kind = Kind::Upsample;
      argstr << "[None, 2, 'nearest']";
    } else {  // heads
      HeadSpec hs;
      hs.task = task_kind_;
      hs.nc = a.i64(0, cfg_.nc);
      if (hs.nc != cfg_.nc) a.bad(0, "(nc) must be nc");
      hs.reg_max = cfg_.reg_max;
      hs.end2end = cfg_.end2end;
      for (int f : l.from) hs.ch.push_back(in_ch(f));
      if (m == "Segment26") {
        hs.nm = a.i64(1, 32);
        hs.npr = make_divisible(std::min<double>(a.i64(2, 256), cfg_.max_channels) * cfg_.width, 8);
      } else if (m == "OBB26") {
        hs.ne = a.i64(1, 1);
      } else if (m == "Pose26") {
        hs.kpt_shape = cfg_.kpt_shape;
      }
      if (hs.reg_max != 1) fail(where() + ": YOLO26 heads need reg_max: 1 (no DFL), got " + std::to_string(hs.reg_max));
      head_ = std::make_shared<DetectHead>(hs);
      step.kind = Kind::Head;
      argstr << "[" << hs.nc << ", " << (hs.end2end ? "end2end, " : "") << "ch=" << torch::IntArrayRef(hs.ch) << "]";
    }
    int64_t np = 0;
    torch::nn::Module* mod = step.kind == Kind::Head ? (torch::nn::Module*)head_.get() : step.block.get();
    if (mod) {
      stack->register_module(std::to_string(i), step.kind == Kind::Head ? std::static_pointer_cast<torch::nn::Module>(head_)
                                                                        : std::static_pointer_cast<torch::nn::Module>(step.block));
      for (const auto& p : mod->parameters()) np += p.numel();
    }
    std::ostringstream row, from;
    if (l.from.size() == 1) from << (l.from[0] == i - 1 ? -1 : l.from[0]);
    else { from << "["; for (size_t j = 0; j < l.from.size(); ++j) from << (j ? ", " : "") << (l.from[j] == i - 1 ? -1 : l.from[j]); from << "]"; }
    row << std::setw(3) << i << std::setw(20) << from.str() << std::setw(3) << n << std::setw(11) << np << "  "
        << std::left << std::setw(12) << m << std::right << " " << argstr.str();
    layer_rows_.push_back(row.str());
    ch.push_back(c2);
    steps_.push_back(std::move(step));
  }
  if (steps_.back().kind != Kind::Head && steps_.back().kind != Kind::Classify)
    fail(cfg_.source + ": the last layer must be a head");

  if (head_) {
    // Strides from a 256x256 dummy pass in eval mode, so BatchNorm statistics stay untouched.
    torch::NoGradGuard ng;
    eval();
    auto feats = run_backbone(torch::zeros({1, cfg_.channels, 256, 256}), nullptr);
    train();
    for (auto& f : feats) stride_.push_back(256.0 / f.size(2));
    head_->bias_init(stride_);
  } else {
    stride_ = {1.0};
  }
}

std::vector<torch::Tensor> YoloModel::run_backbone(const torch::Tensor& input, torch::Tensor* last) {
  std::vector<torch::Tensor> saved(steps_.size());
  torch::Tensor x = input;
  const int n = (int)steps_.size();
  auto get = [&](int f, int i) -> const torch::Tensor& { return f < 0 ? input : (f == i - 1 ? x : saved[f]); };
  for (int i = 0; i + 1 < n; ++i) {
    Step& s = steps_[i];
    switch (s.kind) {
      case Kind::Block: x = s.block->forward(get(s.from[0], i)); break;
      case Kind::Upsample: {
        const auto& in = get(s.from[0], i);
        x = torch::nn::functional::interpolate(
            in, torch::nn::functional::InterpolateFuncOptions()
                    .size(std::vector<int64_t>{in.size(2) * 2, in.size(3) * 2})
                    .mode(torch::kNearest));
        break;
      }
      case Kind::Concat: {
        std::vector<torch::Tensor> parts;
        for (int f : s.from) parts.push_back(get(f, i));
        x = torch::cat(parts, 1);
        break;
      }
      default: break;
    }
    if (s.save) saved[i] = x;
  }
  Step& h = steps_.back();
  std::vector<torch::Tensor> feats;
  for (int f : h.from) feats.push_back(get(f, n - 1));
  if (last) *last = h.kind == Kind::Classify ? h.block->forward(feats[0]) : torch::Tensor();
  return feats;
}

ModelOutput YoloModel::forward(const torch::Tensor& x) {
  if (x.dim() != 4 || x.size(1) != cfg_.channels)
    fail("model input must be (B, " + std::to_string(cfg_.channels) + ", H, W), got " + shape_str(x));
  const bool eval_mode = !is_training();
  std::unique_ptr<torch::NoGradGuard> ng;
  if (eval_mode) ng = std::make_unique<torch::NoGradGuard>();
  ModelOutput out;
  torch::Tensor logits;
  out.feats = run_backbone(x, &logits);
  if (!head_) {
    out.cls_logits = logits;
    if (eval_mode) out.cls_probs = logits.softmax(1);
    return out;
  }
  auto ho = head_->forward(out.feats);
  out.one2many = std::move(ho.one2many);
  out.one2one = std::move(ho.one2one);
  out.proto = ho.proto;
  out.semseg = ho.semseg;
  if (!eval_mode) return out;

  std::vector<std::pair<int64_t, int64_t>> hw;
  for (auto& f : out.feats) hw.emplace_back(f.size(2), f.size(3));
  if (hw != anchor_hw_ || !anchor_points_.defined() || anchor_points_.device() != x.device() ||
      anchor_points_.scalar_type() != x.scalar_type()) {
    auto g = anchor_grid(hw, stride_, x.device(), x.scalar_type());
    anchor_points_ = g.points;
    anchor_strides_ = g.strides;
    anchor_hw_ = hw;
  }
  AnchorGrid grid{anchor_points_, anchor_strides_};
  const int64_t ndim = cfg_.kpt_shape.size() == 2 ? cfg_.kpt_shape[1] : 3;
  if (out.one2one.defined()) {
    out.decoded = decode_branch(out.one2one, grid, task_kind_, false, ndim);
    out.end2end = topk_end2end(out.decoded, cfg_.nc, max_det, &out.end2end_anchor);
  }
  if (out.one2many.defined() && (compute_classic || !cfg_.end2end))
    out.classic = decode_branch(out.one2many, grid, task_kind_, true, ndim);
  return out;
}

StateDict YoloModel::state_dict() const {
  StateDict out;
  for (const auto& c : named_children()) collect(*c.value(), c.key() + ".", true, out, nullptr);
  return out;
}

void YoloModel::load_state_dict(const StateDict& sd, const std::string& source) {
  // Before fuse() the module tree is exactly the official one, so the generic all-or-nothing loader applies.
  if (fused_) fail(source + ": load weights before fuse(), the fused model has no BatchNorm or one2many head");
  ::y26::load_state_dict(static_cast<torch::nn::Module&>(*this), sd, /*strict=*/true, source);
}

void YoloModel::load_state_dict(const std::map<std::string, torch::Tensor>& sd, const std::string& source) {
  StateDict v(sd.begin(), sd.end());
  load_state_dict(v, source);
}

void YoloModel::fuse() {
  if (fused_) return;
  for (const auto& m : modules(true))
    if (auto* c = dynamic_cast<Conv*>(m.get())) c->fuse();
  if (head_) head_->fuse();
  fused_ = true;
  gflops_.clear();
}

ClassifyHead* YoloModel::classify_head() const {
  return steps_.empty() ? nullptr : dynamic_cast<ClassifyHead*>(steps_.back().block.get());
}

std::shared_ptr<YoloModel> YoloModel::clone_model() const {
  auto m = std::make_shared<YoloModel>(cfg_);
  if (fused_) m->fuse();
  auto src = state_dict();
  if (!src.empty()) m->to(src.front().second.device());
  auto dst = m->state_dict();
  {
    torch::NoGradGuard ng;
    for (size_t i = 0; i < src.size(); ++i) {
      dst[i].second.set_data(src[i].second.detach().clone());
      if (dst[i].second.is_floating_point()) dst[i].second.set_requires_grad(src[i].second.requires_grad());
    }
  }
  m->max_det = max_det;
  m->compute_classic = compute_classic;
  if (auto* h = classify_head()) m->classify_head()->dropout = h->dropout;
  m->train(is_training());
  return m;
}

int64_t YoloModel::num_params(bool trainable_only) const {
  StateDict ps;
  for (const auto& c : named_children()) collect(*c.value(), "", false, ps, nullptr);
  int64_t n = 0;
  for (const auto& kv : ps)
    if (!trainable_only || kv.second.requires_grad()) n += kv.second.numel();
  return n;
}

int64_t YoloModel::num_layers() const {
  StateDict ps;
  int64_t n = 2;  // the model itself and the one SiLU instance all activated Convs share upstream
  for (const auto& c : named_children()) collect(*c.value(), "", false, ps, &n);
  for (const auto& s : steps_) n += s.kind == Kind::Concat || s.kind == Kind::Upsample;
  return n;
}

double YoloModel::gflops(int imgsz) {
  if (auto it = gflops_.find(imgsz); it != gflops_.end()) return it->second;
  const bool was_training = is_training();
  auto p = parameters();
  auto opts = torch::TensorOptions().dtype(p.empty() ? torch::kFloat32 : p[0].scalar_type())
                  .device(p.empty() ? torch::kCPU : p[0].device());
  int64_t macs = 0;
  {
    torch::NoGradGuard ng;
    eval();
    MacScope scope(&macs);
    try {
      forward(torch::zeros({1, cfg_.channels, imgsz, imgsz}, opts));
    } catch (...) {
      train(was_training);
      throw;
    }
  }
  train(was_training);
  return gflops_[imgsz] = 2.0 * (double)macs / 1e9;
}

std::string YoloModel::display_name() const {
  std::string n = "YOLO26" + cfg_.scale;
  switch (task_kind_) {
    case Task::Detect: return n;
    case Task::Segment: return n + "-seg";
    case Task::Pose: return n + "-pose";
    case Task::Obb: return n + "-obb";
    case Task::Classify: return n + "-cls";
  }
  fail("display_name: unknown task of " + cfg_.source);
}

std::string YoloModel::info(bool verbose, int imgsz) {
  std::ostringstream s;
  if (verbose) {
    s << "                from  n    params  module       arguments\n";
    for (const auto& r : layer_rows_) s << r << "\n";
  }
  std::ostringstream g;
  g << std::fixed << std::setprecision(1) << gflops(imgsz);
  s << display_name() << " summary" << (fused_ ? " (fused)" : "") << ": " << thousands(num_layers()) << " layers, "
    << thousands(num_params()) << " parameters, " << thousands(num_params(true)) << " gradients, " << g.str()
    << " GFLOPs";
  return s.str();
}

std::shared_ptr<YoloModel> build_model(const std::string& name_or_path, int nc) {
  auto cfg = load_model_config(name_or_path);
  if (nc > 0) set_num_classes(cfg, nc);
  return std::make_shared<YoloModel>(cfg);
}

void to_channels_last(torch::nn::Module& model) {
  torch::NoGradGuard ng;
  for (auto& t : model.parameters())
    if (t.dim() == 4) t.set_data(t.data().contiguous(torch::MemoryFormat::ChannelsLast));
  for (auto& t : model.buffers())
    if (t.dim() == 4) t.set_data(t.data().contiguous(torch::MemoryFormat::ChannelsLast));
}

void calibrate_batchnorm(YoloModel& model, const torch::Tensor& x) {
  if (model.is_fused()) fail("calibrate_batchnorm: the model is fused (no BatchNorm left)");
  using Momentum = std::decay_t<decltype(std::declval<torch::nn::BatchNormOptions&>().momentum())>;
  std::vector<std::pair<torch::nn::BatchNorm2dImpl*, Momentum>> bns;
  for (const auto& m : model.modules(true))
    if (auto* bn = dynamic_cast<torch::nn::BatchNorm2dImpl*>(m.get())) {
      bns.emplace_back(bn, bn->options.momentum());
      bn->options.momentum(1.0);  // running stats := this batch's stats
    }
  {
    torch::NoGradGuard ng;
    model.train();
    model.forward(x);
  }
  for (auto& [bn, momentum] : bns) bn->options.momentum(momentum);
  model.eval();
}

std::shared_ptr<YoloModel> build_model(const CheckpointData& ckpt, const std::string& source) {
  if (!ckpt.yaml || !ckpt.yaml.IsMap() || !ckpt.yaml["backbone"])
    fail(source + ": the checkpoint has no model YAML (backbone/head); build from a YAML and load the weights");
  auto cfg = parse_model_config(ckpt.yaml, source);
  if (ckpt.nc > 0 && ckpt.nc != cfg.nc) set_num_classes(cfg, (int)ckpt.nc);
  auto m = std::make_shared<YoloModel>(cfg);
  m->load_state_dict(ckpt.state_dict, source);
  return m;
}


}  // namespace y26
