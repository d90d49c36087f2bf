// YOLO26 building blocks with the official state_dict names (Conv, C3k2, SPPF, C2PSA, ...).
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

namespace y26 {

// Multiply-add counter used by YoloModel::gflops(); null (off) except during that one dummy forward.
extern thread_local int64_t* g_mac_counter;
inline void count_macs(int64_t macs) {
  if (g_mac_counter) *g_mac_counter += macs;
}
// Runs a Conv2d / ConvTranspose2d / Linear and counts its multiply-adds when counting is on.
torch::Tensor run_conv(torch::nn::Conv2d& conv, const torch::Tensor& x);
torch::Tensor run_conv(torch::nn::ConvTranspose2d& conv, const torch::Tensor& x);
torch::Tensor run_linear(torch::nn::Linear& lin, const torch::Tensor& x);

// A module whose children fuse() can remove: they stay registered (libtorch 1.13 cannot unregister)
// but leave state_dict(), num_params() and forward(), as in the official fused model.
class Node : public torch::nn::Module {
 public:
  std::vector<std::string> dropped;
  bool is_dropped(const std::string& child) const;
};

// Base of every block with one input tensor.
class Layer : public Node {
 public:
  virtual torch::Tensor forward(const torch::Tensor& x) = 0;
};

// Conv2d (no bias) -> BatchNorm2d(eps 1e-3, momentum 0.03) -> SiLU or identity.
class Conv : public Layer {
 public:
  Conv(int64_t c1, int64_t c2, int64_t k = 1, int64_t s = 1, int64_t p = -1, int64_t g = 1, int64_t d = 1,
       bool act = true);
  torch::Tensor forward(const torch::Tensor& x) override;
  void fuse();  // folds bn into conv (which gains a bias) and drops bn
  bool fused() const { return fused_; }
  bool has_act() const { return act_; }  // SiLU after the conv (the exporter needs it)
  torch::nn::Conv2d conv{nullptr};
  torch::nn::BatchNorm2d bn{nullptr};

 private:
  bool act_, fused_ = false;
};

// Conv with groups = gcd(c1, c2).
std::shared_ptr<Conv> make_dwconv(int64_t c1, int64_t c2, int64_t k = 1, int64_t s = 1, bool act = true);

// nn.Sequential / nn.ModuleList equivalent: children "0", "1", ...; an optional plain Conv2d tail
// (the head's final 1x1 conv with bias) takes the next index.
class Seq : public Layer {
 public:
  explicit Seq(std::vector<std::shared_ptr<Layer>> items, torch::nn::Conv2d tail = nullptr);
  torch::Tensor forward(const torch::Tensor& x) override;  // runs items in order, then the tail
  std::vector<std::shared_ptr<Layer>> items;
  torch::nn::Conv2d tail{nullptr};
};

class Bottleneck : public Layer {
 public:
  Bottleneck(int64_t c1, int64_t c2, bool shortcut = true, int64_t g = 1, int64_t k1 = 3, int64_t k2 = 3,
             double e = 0.5);
  torch::Tensor forward(const torch::Tensor& x) override;
  std::shared_ptr<Conv> cv1, cv2;
  bool add;
};

// CSP block with 3 convs; m = n Bottlenecks (e=1.0) as in C3k.
class C3k : public Layer {
 public:
  C3k(int64_t c1, int64_t c2, int64_t n = 2, bool shortcut = true, int64_t g = 1, double e = 0.5, int64_t k = 3);
  torch::Tensor forward(const torch::Tensor& x) override;
  std::shared_ptr<Conv> cv1, cv2, cv3;
  std::shared_ptr<Seq> m;
};

class Attention : public Layer {
 public:
  Attention(int64_t dim, int64_t num_heads = 8, double attn_ratio = 0.5);
  torch::Tensor forward(const torch::Tensor& x) override;
  std::shared_ptr<Conv> qkv, proj, pe;
  int64_t num_heads, head_dim, key_dim;
  double scale;
};

class PSABlock : public Layer {
 public:
  PSABlock(int64_t c, double attn_ratio = 0.5, int64_t num_heads = 4, bool shortcut = true);
  torch::Tensor forward(const torch::Tensor& x) override;
  std::shared_ptr<Attention> attn;
  std::shared_ptr<Seq> ffn;
  bool add;
};

// C2f with C3k / Bottleneck / Bottleneck+PSABlock inner blocks.
class C3k2 : public Layer {
 public:
  C3k2(int64_t c1, int64_t c2, int64_t n = 1, bool c3k = false, double e = 0.5, bool attn = false, int64_t g = 1,
       bool shortcut = true);
  torch::Tensor forward(const torch::Tensor& x) override;
  std::shared_ptr<Conv> cv1, cv2;
  std::shared_ptr<Seq> m;  // ModuleList: blocks run on the last chunk, each output appended
  int64_t c;
};

// SPPF as of 8.4: cv1 without activation, 3 chained max-pools, optional residual.
class SPPF : public Layer {
 public:
  SPPF(int64_t c1, int64_t c2, int64_t k = 5, int64_t n = 3, bool shortcut = false);
  torch::Tensor forward(const torch::Tensor& x) override;
  std::shared_ptr<Conv> cv1, cv2;
  int64_t k, n;
  bool add;
};

class C2PSA : public Layer {
 public:
  C2PSA(int64_t c1, int64_t c2, int64_t n = 1, double e = 0.5);
  torch::Tensor forward(const torch::Tensor& x) override;
  std::shared_ptr<Conv> cv1, cv2;
  std::shared_ptr<Seq> m;
  int64_t c;
};

// Proto26: multi-scale fusion, then the proto chain; semseg (training only) on the fused P3 feature.
class Proto26 : public Node {
 public:
  Proto26(const std::vector<int64_t>& ch, int64_t c_, int64_t c2, int64_t nc);
  // Returns proto (B, c2, 2H, 2W); fills *semseg (B, nc, H, W) when given and the branch exists.
  torch::Tensor forward(const std::vector<torch::Tensor>& x, torch::Tensor* semseg = nullptr);
  void drop_semseg() { dropped.push_back("semseg"); }
  std::shared_ptr<Conv> cv1, cv2, cv3, feat_fuse;
  torch::nn::ConvTranspose2d upsample{nullptr};
  std::shared_ptr<Seq> feat_refine, semseg;
};

// Linear 2->64, SiLU, Linear 64->64, SiLU, Linear 64->2 (+Tanh for the scale nets): Sequential names 0, 2, 4.
class FlowMLP : public torch::nn::Module {
 public:
  explicit FlowMLP(bool tanh);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Linear l0{nullptr}, l2{nullptr}, l4{nullptr};
  bool tanh;
};

// RealNVP flow prior of the pose RLE loss: 6 couplings, masks [[0,1],[1,0]] x 3, 2-D standard normal prior.
class RealNVP : public torch::nn::Module {
 public:
  RealNVP();
  torch::Tensor log_prob(const torch::Tensor& x);  // x (N, 2) -> (N,)
  torch::Tensor loc, cov, mask;
  std::vector<std::shared_ptr<FlowMLP>> s, t;
};

}  // namespace y26
