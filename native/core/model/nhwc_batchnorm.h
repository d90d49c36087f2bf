// Training-mode BatchNorm2d for channels-last (NHWC) float tensors on the CPU, with exact batch statistics.
//
// CPU training runs channels-last (to_channels_last in model/yolo.h) because oneDNN then convolves without layout
// reorders. libtorch 1.13's channels-last BatchNorm collects the batch mean and variance in float with a one-pass
// formula: on real activations (mean several times the spread) its output is off by ~5e-5, 50x the contiguous
// kernel, which moves the loss by 2e-5 relative (the fixtures ask for 1e-5). This one accumulates in double (error
// ~1e-6, like the contiguous kernel) and is also faster; the backward is libtorch's own.
#pragma once
#include <torch/torch.h>

namespace y26 {

// Whether batch_norm_nhwc_train() takes this call: `bn` in training mode, x a 4-D float32 CPU tensor stored
// channels-last. Anything else (eval, CUDA, bf16 autocast, contiguous input) goes through bn->forward().
bool nhwc_batch_norm_applies(const torch::Tensor& x, const torch::nn::BatchNorm2dImpl& bn);

// bn->forward(x) in training mode: batch statistics, running stats and num_batches_tracked updated as libtorch's
// BatchNorm2d does; differentiable in x, weight and bias. Output channels-last.
torch::Tensor batch_norm_nhwc_train(const torch::Tensor& x, torch::nn::BatchNorm2dImpl& bn);

}  // namespace y26
