#include "model/modules.h"
#include "model/nhwc_batchnorm.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace y26 {

namespace F = torch::nn::functional;

thread_local int64_t* g_mac_counter = nullptr;

torch::Tensor run_conv(torch::nn::Conv2d& conv, const torch::Tensor& x) {
  auto y = conv->forward(x);
  if (g_mac_counter) {
    const auto& w = conv->weight;  // (out, in/groups, kh, kw)
    count_macs(y.numel() * w.size(1) * w.size(2) * w.size(3));
  }
  return y;
}

torch::Tensor run_conv(torch::nn::ConvTranspose2d& conv, const torch::Tensor& x) {
  auto y = conv->forward(x);
  if (g_mac_counter) {
    const auto& w = conv->weight;  // (in, out/groups, kh, kw): every input pixel feeds out*kh*kw outputs
    count_macs(x.numel() * w.size(1) * w.size(2) * w.size(3));
  }
  return y;
}

torch::Tensor run_linear(torch::nn::Linear& lin, const torch::Tensor& x) {
  auto y = lin->forward(x);
  if (g_mac_counter) count_macs(y.numel() * lin->weight.size(1));
  return y;
}

bool Node::is_dropped(const std::string& child) const {
  return std::find(dropped.begin(), dropped.end(), child) != dropped.end();
}

// ---- Conv ------------------------------------------------------------------------------------

Conv::Conv(int64_t c1, int64_t c2, int64_t k, int64_t s, int64_t p, int64_t g, int64_t d, bool act) : act_(act) {
  if (p < 0) p = d > 1 ? (d * (k - 1) + 1) / 2 : k / 2;  // "same" padding
  conv = register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(c1, c2, k).stride(s).padding(p)
                                                        .dilation(d).groups(g).bias(false)));
  bn = register_module("bn", torch::nn::BatchNorm2d(torch::nn::BatchNorm2dOptions(c2).eps(1e-3).momentum(0.03)));
}

torch::Tensor Conv::forward(const torch::Tensor& x) {
  auto y = run_conv(conv, x);
  if (!fused_) y = nhwc_batch_norm_applies(y, *bn) ? batch_norm_nhwc_train(y, *bn) : bn->forward(y);
  return act_ ? torch::silu_(y) : y;
}

void Conv::fuse() {
  if (fused_) return;
  torch::NoGradGuard ng;
  const auto& o = conv->options;
  torch::nn::Conv2d fusedconv(torch::nn::Conv2dOptions(o.in_channels(), o.out_channels(), o.kernel_size())
                                  .stride(o.stride()).padding(o.padding()).dilation(o.dilation())
                                  .groups(o.groups()).bias(true));
  fusedconv->to(conv->weight.device(), conv->weight.scalar_type());
  auto scale = bn->weight / torch::sqrt(bn->running_var + bn->options.eps());
  fusedconv->weight.copy_(conv->weight * scale.view({-1, 1, 1, 1}));
  fusedconv->bias.copy_(bn->bias - bn->running_mean * scale);
  conv = replace_module("conv", fusedconv);
  dropped.push_back("bn");
  fused_ = true;
}

std::shared_ptr<Conv> make_dwconv(int64_t c1, int64_t c2, int64_t k, int64_t s, bool act) {
  return std::make_shared<Conv>(c1, c2, k, s, -1, std::gcd(c1, c2), 1, act);
}

// ---- containers --------------------------------------------------------------------------------

Seq::Seq(std::vector<std::shared_ptr<Layer>> it, torch::nn::Conv2d t) : items(std::move(it)) {
  for (size_t i = 0; i < items.size(); ++i) register_module(std::to_string(i), items[i]);
  if (t) tail = register_module(std::to_string(items.size()), t);
}

torch::Tensor Seq::forward(const torch::Tensor& x) {
  torch::Tensor y = x;
  for (auto& m : items) y = m->forward(y);
  return tail ? run_conv(tail, y) : y;
}

// ---- CSP blocks --------------------------------------------------------------------------------

Bottleneck::Bottleneck(int64_t c1, int64_t c2, bool shortcut, int64_t g, int64_t k1, int64_t k2, double e) {
  int64_t c_ = (int64_t)(c2 * e);
  cv1 = register_module("cv1", std::make_shared<Conv>(c1, c_, k1, 1));
  cv2 = register_module("cv2", std::make_shared<Conv>(c_, c2, k2, 1, -1, g));
  add = shortcut && c1 == c2;
}

torch::Tensor Bottleneck::forward(const torch::Tensor& x) {
  auto y = cv2->forward(cv1->forward(x));
  return add ? y + x : y;  // out of place: autograd needs the SiLU output
}

C3k::C3k(int64_t c1, int64_t c2, int64_t n, bool shortcut, int64_t g, double e, int64_t k) {
  int64_t c_ = (int64_t)(c2 * e);
  cv1 = register_module("cv1", std::make_shared<Conv>(c1, c_, 1, 1));
  cv2 = register_module("cv2", std::make_shared<Conv>(c1, c_, 1, 1));
  cv3 = register_module("cv3", std::make_shared<Conv>(2 * c_, c2, 1));
  std::vector<std::shared_ptr<Layer>> blocks;
  for (int64_t i = 0; i < n; ++i) blocks.push_back(std::make_shared<Bottleneck>(c_, c_, shortcut, g, k, k, 1.0));
  m = register_module("m", std::make_shared<Seq>(blocks));
}

torch::Tensor C3k::forward(const torch::Tensor& x) {
  return cv3->forward(torch::cat({m->forward(cv1->forward(x)), cv2->forward(x)}, 1));
}

C3k2::C3k2(int64_t c1, int64_t c2, int64_t n, bool c3k, double e, bool attn, int64_t g, bool shortcut) {
  c = (int64_t)(c2 * e);
  cv1 = register_module("cv1", std::make_shared<Conv>(c1, 2 * c, 1, 1));
  cv2 = register_module("cv2", std::make_shared<Conv>((2 + n) * c, c2, 1));
  std::vector<std::shared_ptr<Layer>> blocks;
  for (int64_t i = 0; i < n; ++i) {
    if (attn) {
      blocks.push_back(std::make_shared<Seq>(std::vector<std::shared_ptr<Layer>>{
          std::make_shared<Bottleneck>(c, c, shortcut, g), std::make_shared<PSABlock>(c, 0.5, std::max<int64_t>(c / 64, 1))}));
    } else if (c3k) {
      blocks.push_back(std::make_shared<C3k>(c, c, 2, shortcut, g));
    } else {
      blocks.push_back(std::make_shared<Bottleneck>(c, c, shortcut, g));
    }
  }
  m = register_module("m", std::make_shared<Seq>(blocks));
}

torch::Tensor C3k2::forward(const torch::Tensor& x) {
  auto y0 = cv1->forward(x);
  std::vector<torch::Tensor> ys = y0.chunk(2, 1);
  ys.reserve(2 + m->items.size());
  for (auto& b : m->items) ys.push_back(b->forward(ys.back()));
  return cv2->forward(torch::cat(ys, 1));
}

SPPF::SPPF(int64_t c1, int64_t c2, int64_t k_, int64_t n_, bool shortcut) : k(k_), n(n_) {
  int64_t c_ = c1 / 2;
  cv1 = register_module("cv1", std::make_shared<Conv>(c1, c_, 1, 1, -1, 1, 1, /*act=*/false));
  cv2 = register_module("cv2", std::make_shared<Conv>(c_ * (n + 1), c2, 1, 1));
  add = shortcut && c1 == c2;
}

torch::Tensor SPPF::forward(const torch::Tensor& x) {
  std::vector<torch::Tensor> ys{cv1->forward(x)};
  for (int64_t i = 0; i < n; ++i) ys.push_back(torch::max_pool2d(ys.back(), {k, k}, {1, 1}, {k / 2, k / 2}));
  auto y = cv2->forward(torch::cat(ys, 1));
  return add ? y + x : y;
}

// ---- attention -----------------------------------------------------------------------------------

Attention::Attention(int64_t dim, int64_t nh, double attn_ratio) : num_heads(nh) {
  head_dim = dim / nh;
  key_dim = (int64_t)(head_dim * attn_ratio);
  scale = std::pow((double)key_dim, -0.5);
  int64_t h = dim + key_dim * nh * 2;
  qkv = register_module("qkv", std::make_shared<Conv>(dim, h, 1, 1, -1, 1, 1, false));
  proj = register_module("proj", std::make_shared<Conv>(dim, dim, 1, 1, -1, 1, 1, false));
  pe = register_module("pe", std::make_shared<Conv>(dim, dim, 3, 1, -1, dim, 1, false));
}

torch::Tensor Attention::forward(const torch::Tensor& x) {
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), N = H * W;
  auto parts = qkv->forward(x).view({B, num_heads, key_dim * 2 + head_dim, N}).split({key_dim, key_dim, head_dim}, 2);
  const auto &q = parts[0], &k = parts[1], &v = parts[2];
  auto attn = torch::matmul(q.transpose(-2, -1), k).mul_(scale).softmax(-1);
  auto y = torch::matmul(v, attn.transpose(-2, -1)).view({B, C, H, W});
  if (g_mac_counter) count_macs(B * num_heads * N * N * (key_dim + head_dim));  // q^T k and v attn^T
  y = y + pe->forward(v.reshape({B, C, H, W}));
  return proj->forward(y);
}

PSABlock::PSABlock(int64_t c, double attn_ratio, int64_t num_heads, bool shortcut) : add(shortcut) {
  attn = register_module("attn", std::make_shared<Attention>(c, num_heads, attn_ratio));
  ffn = register_module("ffn", std::make_shared<Seq>(std::vector<std::shared_ptr<Layer>>{
                                   std::make_shared<Conv>(c, c * 2, 1), std::make_shared<Conv>(c * 2, c, 1, 1, -1, 1, 1, false)}));
}

torch::Tensor PSABlock::forward(const torch::Tensor& x) {
  auto y = add ? x + attn->forward(x) : attn->forward(x);
  return add ? y + ffn->forward(y) : ffn->forward(y);
}

C2PSA::C2PSA(int64_t c1, int64_t c2, int64_t n, double e) {
  TORCH_CHECK(c1 == c2, "C2PSA needs c1 == c2");
  c = (int64_t)(c1 * e);
  cv1 = register_module("cv1", std::make_shared<Conv>(c1, 2 * c, 1, 1));
  cv2 = register_module("cv2", std::make_shared<Conv>(2 * c, c1, 1));
  std::vector<std::shared_ptr<Layer>> blocks;
  for (int64_t i = 0; i < n; ++i) blocks.push_back(std::make_shared<PSABlock>(c, 0.5, c / 64));
  m = register_module("m", std::make_shared<Seq>(blocks));
}

torch::Tensor C2PSA::forward(const torch::Tensor& x) {
  auto ab = cv1->forward(x).split({c, c}, 1);
  return cv2->forward(torch::cat({ab[0], m->forward(ab[1])}, 1));
}

// ---- segmentation prototypes --------------------------------------------------------------------

Proto26::Proto26(const std::vector<int64_t>& ch, int64_t c_, int64_t c2, int64_t nc) {
  cv1 = register_module("cv1", std::make_shared<Conv>(c_, c_, 3));
  upsample = register_module("upsample", torch::nn::ConvTranspose2d(
                                             torch::nn::ConvTranspose2dOptions(c_, c_, 2).stride(2).padding(0).bias(true)));
  cv2 = register_module("cv2", std::make_shared<Conv>(c_, c_, 3));
  cv3 = register_module("cv3", std::make_shared<Conv>(c_, c2, 1));
  std::vector<std::shared_ptr<Layer>> refine;
  for (size_t i = 1; i < ch.size(); ++i) refine.push_back(std::make_shared<Conv>(ch[i], ch[0], 1));
  feat_refine = register_module("feat_refine", std::make_shared<Seq>(refine));
  feat_fuse = register_module("feat_fuse", std::make_shared<Conv>(ch[0], c_, 3));
  semseg = register_module("semseg", std::make_shared<Seq>(
                                         std::vector<std::shared_ptr<Layer>>{std::make_shared<Conv>(ch[0], c_, 3),
                                                                             std::make_shared<Conv>(c_, c_, 3)},
                                         torch::nn::Conv2d(torch::nn::Conv2dOptions(c_, nc, 1))));
}

torch::Tensor Proto26::forward(const std::vector<torch::Tensor>& x, torch::Tensor* sem) {
  auto feat = x[0];
  for (size_t i = 0; i < feat_refine->items.size(); ++i) {
    auto up = F::interpolate(feat_refine->items[i]->forward(x[i + 1]),
                             F::InterpolateFuncOptions()
                                 .size(std::vector<int64_t>{feat.size(2), feat.size(3)})
                                 .mode(torch::kNearest));
    feat = feat + up;
  }
  auto p = cv3->forward(cv2->forward(run_conv(upsample, cv1->forward(feat_fuse->forward(feat)))));
  if (sem && !is_dropped("semseg")) *sem = semseg->forward(feat);
  return p;
}

// ---- RealNVP ---------------------------------------------------------------------------------------

FlowMLP::FlowMLP(bool t) : tanh(t) {
  l0 = register_module("0", torch::nn::Linear(2, 64));
  l2 = register_module("2", torch::nn::Linear(64, 64));
  l4 = register_module("4", torch::nn::Linear(64, 2));
  torch::NoGradGuard ng;
  for (auto* l : {&l0, &l2, &l4}) torch::nn::init::xavier_uniform_((*l)->weight, 0.01);
}

torch::Tensor FlowMLP::forward(const torch::Tensor& x) {
  auto y = run_linear(l4, torch::silu(run_linear(l2, torch::silu(run_linear(l0, x)))));
  return tanh ? torch::tanh(y) : y;
}

RealNVP::RealNVP() {
  loc = register_buffer("loc", torch::zeros({2}));
  cov = register_buffer("cov", torch::eye(2));
  mask = register_buffer("mask", torch::tensor({0.f, 1.f, 1.f, 0.f, 0.f, 1.f, 1.f, 0.f, 0.f, 1.f, 1.f, 0.f}).view({6, 2}));
  torch::nn::ModuleList sl, tl;
  for (int i = 0; i < 6; ++i) {
    s.push_back(std::make_shared<FlowMLP>(true));
    t.push_back(std::make_shared<FlowMLP>(false));
    sl->push_back(s.back());
  }
  for (auto& m : t) tl->push_back(m);
  register_module("s", sl);
  register_module("t", tl);
}

torch::Tensor RealNVP::log_prob(const torch::Tensor& x) {
  // Inverse pass x -> z with the log-determinant, then the Gaussian prior's log-density.
  auto z = x;
  auto log_det = torch::zeros({x.size(0)}, x.options());
  for (int i = (int)t.size() - 1; i >= 0; --i) {
    auto mi = mask[i];
    auto z_ = mi * z;
    auto sv = s[i]->forward(z_) * (1 - mi);
    auto tv = t[i]->forward(z_) * (1 - mi);
    z = (1 - mi) * (z - tv) * torch::exp(-sv) + z_;
    log_det = log_det - sv.sum(1);
  }
  auto d = z - loc;
  auto inv = torch::inverse(cov);
  auto maha = (torch::matmul(d, inv) * d).sum(1);
  double log_norm = std::log(2 * M_PI) + 0.5 * std::log(torch::det(cov).item<double>());
  return -0.5 * maha - log_norm + log_det;
}

}  // namespace y26
