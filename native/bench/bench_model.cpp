// Forward-pass timing of a YOLO26 model: bench_model [yaml-or-pt=yolo26n.yaml] [imgsz=640] [threads=2] [iters=10]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "model/yolo.h"
#include "util/error.h"

using Clock = std::chrono::steady_clock;

static double time_forward(y26::YoloModel& m, const torch::Tensor& x, int iters) {
  torch::NoGradGuard ng;
  for (int i = 0; i < 2; ++i) m.forward(x);  // warm-up: allocator, oneDNN primitive caches
  double best = 1e30, sum = 0;
  for (int i = 0; i < iters; ++i) {
    auto t0 = Clock::now();
    m.forward(x);
    double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    best = std::min(best, ms);
    sum += ms;
  }
  std::printf("    mean %.1f ms, best %.1f ms over %d runs\n", sum / iters, best, iters);
  return sum / iters;
}

int main(int argc, char** argv) {
  std::string src = argc > 1 ? argv[1] : "yolo26n.yaml";
  int imgsz = argc > 2 ? std::atoi(argv[2]) : 640;
  int threads = argc > 3 ? std::atoi(argv[3]) : 2;
  int iters = argc > 4 ? std::atoi(argv[4]) : 10;
  try {
    torch::set_num_threads(threads);
    auto ends_with = [&](const char* s) { return src.size() > 3 && src.substr(src.size() - 3) == s; };
    auto m = ends_with(".pt") ? y26::load_model(src) : y26::build_model(src);
    torch::Device dev = torch::cuda::is_available() ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
    m->to(dev);
    m->eval();
    std::printf("%s on %s, %d threads, input 1x3x%dx%d\n", m->info().c_str(), dev.str().c_str(), threads, imgsz, imgsz);
    auto x = torch::rand({1, 3, imgsz, imgsz}, torch::TensorOptions().device(dev));
    {
      // Machine reference (platform notes: ~147 GFLOP/s with 2 threads here): 10 x conv3x3 64->64 at 160x160.
      torch::NoGradGuard ng;
      torch::nn::Conv2d c(torch::nn::Conv2dOptions(64, 64, 3).padding(1).bias(false));
      c->to(dev);
      auto r = torch::rand({1, 64, 160, 160}, x.options());
      c->forward(r);
      auto t0 = Clock::now();
      for (int i = 0; i < 10; ++i) c->forward(r);
      double s = std::chrono::duration<double>(Clock::now() - t0).count();
      std::printf("  reference conv throughput: %.0f GFLOP/s\n", 10 * 2.0 * 160 * 160 * 64 * 64 * 9 / s / 1e9);
    }
    std::printf("  unfused (both heads, e2e + classic decode):\n");
    time_forward(*m, x, iters);
    m->compute_classic = false;
    std::printf("  unfused, e2e only:\n");
    time_forward(*m, x, iters);
    m->fuse();
    std::printf("  fused (deploy):\n");
    time_forward(*m, x, iters);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_model: %s\n", e.what());
    return 1;
  }
  return 0;
}
