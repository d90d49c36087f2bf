#include "model/nhwc_batchnorm.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

namespace y26 {
namespace {

using torch::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

// Per-channel mean and biased variance of the (P, C) rows of an NHWC tensor; double sums per thread slice.
std::pair<Tensor, Tensor> channel_stats(const Tensor& x) {
  const int64_t C = x.size(1), P = x.numel() / C;
  const float* px = x.data_ptr<float>();
  const int64_t slices = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), P / 1024 + 1));
  std::vector<double> part((size_t)(slices * 2 * C), 0.0);  // per slice: C sums, then C sums of squares
  at::parallel_for(0, slices, 1, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      double* s = part.data() + t * 2 * C;
      double* q = s + C;
      for (int64_t r = P * t / slices, r1 = P * (t + 1) / slices; r < r1; ++r) {
        const float* row = px + r * C;
        for (int64_t c = 0; c < C; ++c) {
          const double v = row[c];
          s[c] += v;
          q[c] += v * v;
        }
      }
    }
  });
  auto mean = torch::empty({C}, x.options()), var = torch::empty({C}, x.options());
  float* pm = mean.data_ptr<float>();
  float* pv = var.data_ptr<float>();
  for (int64_t c = 0; c < C; ++c) {
    double s = 0, q = 0;
    for (int64_t t = 0; t < slices; ++t) {
      s += part[t * 2 * C + c];
      q += part[t * 2 * C + C + c];
    }
    const double m = s / (double)P;
    pm[c] = (float)m;
    pv[c] = (float)std::max(0.0, q / (double)P - m * m);
  }
  return {mean, var};
}

struct NhwcBatchNorm : torch::autograd::Function<NhwcBatchNorm> {
  static Tensor forward(AutogradContext* ctx, Tensor x, Tensor weight, Tensor bias, Tensor running_mean,
                        Tensor running_var, double momentum, double eps) {
    auto [mean, var] = channel_stats(x);
    const int64_t C = x.size(1), P = x.numel() / C;
    auto invstd = (var + eps).rsqrt();
    auto alpha = (invstd * weight).contiguous(), beta = (bias - mean * alpha).contiguous();
    auto y = torch::empty_like(x);  // keeps the channels-last layout
    const float* px = x.data_ptr<float>();
    float* py = y.data_ptr<float>();
    const float* pa = alpha.data_ptr<float>();
    const float* pb = beta.data_ptr<float>();
    at::parallel_for(0, P, 256, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const float* xi = px + r * C;
        float* yo = py + r * C;
        for (int64_t c = 0; c < C; ++c) yo[c] = xi[c] * pa[c] + pb[c];
      }
    });
    running_mean.mul_(1 - momentum).add_(mean, momentum);  // unbiased variance, as torch's BatchNorm
    running_var.mul_(1 - momentum).add_(var * ((double)P / (double)std::max<int64_t>(P - 1, 1)), momentum);
    ctx->save_for_backward({x, weight, mean, invstd});
    ctx->saved_data["eps"] = eps;
    return y;
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grad_out) {
    auto s = ctx->get_saved_variables();
    auto g = grad_out[0].contiguous(torch::MemoryFormat::ChannelsLast);
    auto r = at::native_batch_norm_backward(g, s[0], s[1], Tensor(), Tensor(), s[2], s[3], true,
                                            ctx->saved_data["eps"].toDouble(), {true, true, true});
    return {std::get<0>(r), std::get<1>(r), std::get<2>(r), Tensor(), Tensor(), Tensor(), Tensor()};
  }
};

}  // namespace

bool nhwc_batch_norm_applies(const torch::Tensor& x, const torch::nn::BatchNorm2dImpl& bn) {
  return bn.is_training() && bn.options.affine() && bn.options.track_running_stats() && bn.options.momentum() &&
         x.dim() == 4 && x.device().is_cpu() && x.scalar_type() == torch::kFloat && x.size(1) > 0 &&
         x.numel() > x.size(1) && x.is_contiguous(torch::MemoryFormat::ChannelsLast) &&
         !x.is_contiguous();  // a 1x1 map is both; the stock kernel is exact there
}

torch::Tensor batch_norm_nhwc_train(const torch::Tensor& x, torch::nn::BatchNorm2dImpl& bn) {
  {
    torch::NoGradGuard ng;
    bn.num_batches_tracked.add_(1);
  }
  return NhwcBatchNorm::apply(x, bn.weight, bn.bias, bn.running_mean, bn.running_var, *bn.options.momentum(),
                              bn.options.eps());
}

}  // namespace y26
