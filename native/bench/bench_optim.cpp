// Optimiser and EMA step time at yolo26n scale (366 parameters, 2.57 M values), on CUDA when available.
// Usage: bench_optim [steps=10] [cpu|cuda]
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "../tests/yolo26n_params.h"
#include "train/ema.h"
#include "train/optimizer.h"
#include "util/source_dir.h"

static std::string keys_json() {
  std::string p = y26::source_dir() + "/test/fixtures/det/yolo26n-coco-random.keys.json";
  if (FILE* f = std::fopen(p.c_str(), "r")) {
    std::fclose(f);
    return p;
  }
  std::fprintf(stderr, "bench_optim: %s not found\n", p.c_str());
  std::exit(1);
}

static void sync(const torch::Device& d) {
  if (d.is_cuda()) torch::cuda::synchronize();
}

int main(int argc, char** argv) {
  const int steps = argc > 1 ? std::atoi(argv[1]) : 10;
  const bool cuda = argc > 2 ? std::string(argv[2]) == "cuda" : torch::cuda::is_available();
  const torch::Device dev = cuda ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
  torch::manual_seed(0);
  std::printf("device %s, %d steps, %d threads\n", cuda ? "cuda" : "cpu", steps, torch::get_num_threads());
  for (auto kind : {y26::OptimKind::SGD, y26::OptimKind::AdamW, y26::OptimKind::MuSGD}) {
    auto ps = y26test::yolo26n_params(keys_json());
    for (auto& p : ps) {
      p.tensor = torch::randn(p.tensor.sizes(), torch::TensorOptions().device(dev)) * 0.1;
      p.tensor.mutable_grad() = torch::randn_like(p.tensor) * 0.01;
    }
    auto opt = y26::make_optimizer(kind, y26::build_param_groups(ps, kind, 0.01, 0.9, 5e-4));
    opt->step();  // warm-up: buffers allocated
    sync(dev);
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < steps; ++i) opt->step();
    sync(dev);
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / steps;
    std::printf("%-6s step %8.2f ms\n", y26::optimizer_kind_name(kind), ms);
  }
  // EMA over the parameters (the real state also has 342 BN buffers; same cost per value).
  auto ps = y26test::yolo26n_params(keys_json());
  y26::NamedTensors model, copy;
  for (auto& p : ps) {
    model.emplace_back(p.full_name(), torch::randn(p.tensor.sizes(), torch::TensorOptions().device(dev)));
    copy.emplace_back(p.full_name(), model.back().second.clone());
  }
  y26::ModelEMA ema(copy);
  ema.update(model);
  sync(dev);
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < steps; ++i) ema.update(model);
  sync(dev);
  double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / steps;
  std::printf("EMA    update %6.2f ms\n", ms);
  return 0;
}
