#include "model/heads.h"

#include <cmath>

namespace y26 {

namespace {

using Layers = std::vector<std::shared_ptr<Layer>>;

torch::nn::Conv2d conv1x1(int64_t c1, int64_t c2) { return torch::nn::Conv2d(torch::nn::Conv2dOptions(c1, c2, 1)); }

// Per level: Conv 3x3 (ch -> c), Conv 3x3 (c -> c), optionally a 1x1 Conv2d with bias (c -> out).
std::shared_ptr<Seq> two_conv_branch(const std::vector<int64_t>& ch, int64_t c, int64_t out) {
  Layers levels;
  for (int64_t x : ch)
    levels.push_back(std::make_shared<Seq>(Layers{std::make_shared<Conv>(x, c, 3), std::make_shared<Conv>(c, c, 3)},
                                           out > 0 ? conv1x1(c, out) : nullptr));
  return std::make_shared<Seq>(levels);
}

// Non-legacy cls branch: (DWConv 3x3, Conv 1x1) x 2, then a 1x1 Conv2d to nc.
std::shared_ptr<Seq> cls_branch(const std::vector<int64_t>& ch, int64_t c3, int64_t nc) {
  Layers levels;
  for (int64_t x : ch)
    levels.push_back(std::make_shared<Seq>(
        Layers{std::make_shared<Seq>(Layers{make_dwconv(x, x, 3), std::make_shared<Conv>(x, c3, 1)}),
               std::make_shared<Seq>(Layers{make_dwconv(c3, c3, 3), std::make_shared<Conv>(c3, c3, 1)})},
        conv1x1(c3, nc)));
  return std::make_shared<Seq>(levels);
}

torch::nn::ModuleList conv_list(const std::vector<int64_t>& ch_in, int64_t c, int64_t out) {
  torch::nn::ModuleList l;
  for (size_t i = 0; i < ch_in.size(); ++i) l->push_back(conv1x1(c, out));
  return l;
}

// The official head deep-copies one2many into one2one: same initial values, separate tensors.
void copy_state(torch::nn::Module& from, torch::nn::Module& to) {
  torch::NoGradGuard ng;
  auto src = from.named_parameters(true);
  for (auto& p : to.named_parameters(true)) p.value().copy_(src[p.key()]);
  auto bsrc = from.named_buffers(true);
  for (auto& b : to.named_buffers(true)) b.value().copy_(bsrc[b.key()]);
}

torch::Tensor level_cat(std::vector<torch::Tensor>& parts) { return parts.size() == 1 ? parts[0] : torch::cat(parts, 2); }

torch::Tensor run_list(torch::nn::ModuleList& list, size_t i, const torch::Tensor& x) {
  auto conv = std::dynamic_pointer_cast<torch::nn::Conv2dImpl>(list->ptr(i));
  torch::nn::Conv2d holder(conv);
  return run_conv(holder, x);
}

}  // namespace

DetectHead::DetectHead(const HeadSpec& s) : spec(s), nl((int64_t)s.ch.size()) {
  TORCH_CHECK(!s.ch.empty(), "DetectHead needs input channels");
  const int64_t ch0 = s.ch[0];
  const int64_t c2 = std::max({(int64_t)16, ch0 / 4, s.reg_max * 4});
  const int64_t c3 = std::max(ch0, std::min(s.nc, (int64_t)100));
  cv2 = register_module("cv2", two_conv_branch(s.ch, c2, 4 * s.reg_max));
  cv3 = register_module("cv3", cls_branch(s.ch, c3, s.nc));
  if (s.end2end) {
    one2one_cv2 = register_module("one2one_cv2", two_conv_branch(s.ch, c2, 4 * s.reg_max));
    one2one_cv3 = register_module("one2one_cv3", cls_branch(s.ch, c3, s.nc));
  }
  if (s.task == Task::Segment) {
    proto = register_module("proto", std::make_shared<Proto26>(s.ch, s.npr, s.nm, s.nc));
    cv4 = register_module("cv4", two_conv_branch(s.ch, std::max(ch0 / 4, s.nm), s.nm));
    if (s.end2end) one2one_cv4 = register_module("one2one_cv4", two_conv_branch(s.ch, std::max(ch0 / 4, s.nm), s.nm));
  } else if (s.task == Task::Obb) {
    cv4 = register_module("cv4", two_conv_branch(s.ch, std::max(ch0 / 4, s.ne), s.ne));
    if (s.end2end) one2one_cv4 = register_module("one2one_cv4", two_conv_branch(s.ch, std::max(ch0 / 4, s.ne), s.ne));
  } else if (s.task == Task::Pose) {
    TORCH_CHECK(s.kpt_shape.size() == 2, "Pose26 needs kpt_shape");
    const int64_t nk = s.kpt_shape[0] * s.kpt_shape[1];
    const int64_t c4 = std::max(ch0 / 4, s.kpt_shape[0] * (s.kpt_shape[1] + 2));
    cv4 = register_module("cv4", two_conv_branch(s.ch, c4, 0));
    if (s.end2end) one2one_cv4 = register_module("one2one_cv4", two_conv_branch(s.ch, c4, 0));
    flow_model = register_module("flow_model", std::make_shared<RealNVP>());
    cv4_kpts = register_module("cv4_kpts", conv_list(s.ch, c4, nk));
    cv4_sigma = register_module("cv4_sigma", conv_list(s.ch, c4, s.kpt_shape[0] * 2));
    if (s.end2end) {
      one2one_cv4_kpts = register_module("one2one_cv4_kpts", conv_list(s.ch, c4, nk));
      one2one_cv4_sigma = register_module("one2one_cv4_sigma", conv_list(s.ch, c4, s.kpt_shape[0] * 2));
    }
  } else {
    TORCH_CHECK(s.task == Task::Detect, "no detection head for task ", task_name(s.task));
  }
  if (s.end2end) {
    copy_state(*cv2, *one2one_cv2);
    copy_state(*cv3, *one2one_cv3);
    if (cv4) copy_state(*cv4, *one2one_cv4);
    if (cv4_kpts) copy_state(*cv4_kpts, *one2one_cv4_kpts);
    if (cv4_sigma) copy_state(*cv4_sigma, *one2one_cv4_sigma);
  }
}

void DetectHead::bias_init(const std::vector<double>& strides) {
  torch::NoGradGuard ng;
  for (bool o2o : {false, true}) {
    auto box = o2o ? one2one_cv2 : cv2;
    auto cls = o2o ? one2one_cv3 : cv3;
    if (!box) continue;
    for (int64_t i = 0; i < nl; ++i) {
      std::static_pointer_cast<Seq>(box->items[i])->tail->bias.fill_(2.0);
      double b = std::log(5.0 / spec.nc / std::pow(640.0 / strides[i], 2));
      std::static_pointer_cast<Seq>(cls->items[i])->tail->bias.fill_(b);
    }
  }
}

void DetectHead::fuse() {
  if (!spec.end2end || !has_one2many()) return;
  for (const char* n : {"cv2", "cv3", "cv4", "cv4_kpts", "cv4_sigma", "one2one_cv4_sigma", "flow_model"})
    if (named_children().contains(n)) dropped.push_back(n);
  if (proto) proto->drop_semseg();
}

BranchOutput DetectHead::run_branch(const std::vector<torch::Tensor>& x, bool o2o) {
  BranchOutput out;
  const int64_t B = x[0].size(0);
  auto& box = o2o ? one2one_cv2 : cv2;
  auto& cls = o2o ? one2one_cv3 : cv3;
  auto& extra = o2o ? one2one_cv4 : cv4;
  std::vector<torch::Tensor> b(nl), c(nl), e, k, sg;
  for (int64_t i = 0; i < nl; ++i) {
    b[i] = box->items[i]->forward(x[i]).view({B, 4 * spec.reg_max, -1});
    c[i] = cls->items[i]->forward(x[i]).view({B, spec.nc, -1});
  }
  out.boxes = level_cat(b);
  out.scores = level_cat(c);
  if (spec.task == Task::Segment || spec.task == Task::Obb) {
    const int64_t n = spec.task == Task::Segment ? spec.nm : spec.ne;
    for (int64_t i = 0; i < nl; ++i) e.push_back(extra->items[i]->forward(x[i]).view({B, n, -1}));
    (spec.task == Task::Segment ? out.mask_coef : out.angle) = level_cat(e);
  } else if (spec.task == Task::Pose) {
    auto& kl = o2o ? one2one_cv4_kpts : cv4_kpts;
    auto& sl = o2o ? one2one_cv4_sigma : cv4_sigma;
    const bool sigma = is_training() && !is_dropped(o2o ? "one2one_cv4_sigma" : "cv4_sigma");
    for (int64_t i = 0; i < nl; ++i) {
      auto feat = extra->items[i]->forward(x[i]);
      k.push_back(run_list(kl, i, feat).view({B, spec.kpt_shape[0] * spec.kpt_shape[1], -1}));
      if (sigma) sg.push_back(run_list(sl, i, feat).view({B, spec.kpt_shape[0] * 2, -1}));
    }
    out.kpts = level_cat(k);
    if (sigma) out.kpts_sigma = level_cat(sg);
  }
  return out;
}

DetectHead::Output DetectHead::forward(const std::vector<torch::Tensor>& x) {
  TORCH_CHECK((int64_t)x.size() == nl, "DetectHead expects ", nl, " feature maps, got ", x.size());
  Output out;
  if (has_one2many()) out.one2many = run_branch(x, false);
  if (spec.end2end) {
    std::vector<torch::Tensor> xd;
    xd.reserve(x.size());
    for (auto& t : x) xd.push_back(t.detach());
    out.one2one = run_branch(xd, true);
  }
  if (proto) out.proto = proto->forward(x, is_training() ? &out.semseg : nullptr);
  return out;
}

ClassifyHead::ClassifyHead(int64_t c1, int64_t nc) {
  conv = register_module("conv", std::make_shared<Conv>(c1, 1280, 1, 1));
  linear = register_module("linear", torch::nn::Linear(1280, nc));
}

torch::Tensor ClassifyHead::forward(const torch::Tensor& x) {
  auto y = torch::adaptive_avg_pool2d(conv->forward(x), {1, 1}).flatten(1);
  if (dropout > 0 && is_training()) y = torch::dropout(y, dropout, true);
  return run_linear(linear, y);
}

}  // namespace y26
