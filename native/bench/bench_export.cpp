// ONNX export from the command line, and the libtorch forward timing the export benchmark compares with:
//   bench_export --model X.pt --out file.onnx [--imgsz N|H,W] [--batch N] [--dynamic] [--half] [--no-end2end]
//                [--opset N] [--time-torch ITERS] [--threads N]
// --time-torch prints the mean libtorch forward time (fused model, batch `--batch`) at imgsz.
#include <chrono>
#include <ctime>
#include <cstdio>
#include <string>
#include <vector>

#include "export/onnx_export.h"
#include "model/loader.h"
#include "util/error.h"

using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) {
  std::string model, out;
  std::vector<std::pair<std::string, std::string>> kv;
  int time_iters = 0, threads = 2;
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      auto value = [&]() -> std::string {
        if (i + 1 >= argc) y26::fail("bench_export: " + a + " needs a value");
        return argv[++i];
      };
      if (a == "--model") model = value();
      else if (a == "--out") out = value();
      else if (a == "--imgsz") kv.push_back({"imgsz", value()});
      else if (a == "--batch") kv.push_back({"batch", value()});
      else if (a == "--opset") kv.push_back({"opset", value()});
      else if (a == "--dynamic") kv.push_back({"dynamic", "true"});
      else if (a == "--half") kv.push_back({"half", "true"});
      else if (a == "--no-end2end") kv.push_back({"end2end", "false"});
      else if (a == "--time-torch") time_iters = std::stoi(value());
      else if (a == "--threads") threads = std::stoi(value());
      else y26::fail("bench_export: unknown argument " + a + " (see the usage at the top of bench_export.cpp)");
    }
    if (model.empty()) y26::fail("bench_export: --model is required");
    torch::set_num_threads(threads);
    auto opt = y26::parse_export_options("onnx", kv);
    if (!out.empty() || time_iters == 0) {
      auto t0 = Clock::now();
      auto path = y26::export_model(model, opt, out);
      double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
      std::printf("exported %s in %.0f ms\n", path.c_str(), ms);
    }
    if (time_iters > 0) {
      auto lm = y26::load_model(model, "cpu");
      lm.model->fuse();
      lm.model->compute_classic = false;
      auto x = torch::rand({opt.batch, 3, opt.imgsz_h, opt.imgsz_w});
      torch::NoGradGuard ng;
      for (int i = 0; i < 2; ++i) lm.model->forward(x);
      double sum = 0, best = 1e30;
      const std::clock_t cpu0 = std::clock();  // process CPU time: meaningful on a contended machine
      for (int i = 0; i < time_iters; ++i) {
        auto t0 = Clock::now();
        lm.model->forward(x);
        double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
        sum += ms;
        best = std::min(best, ms);
      }
      const double cpu_ms = 1000.0 * double(std::clock() - cpu0) / CLOCKS_PER_SEC / time_iters;
      std::printf("libtorch forward (fused, end2end, %d threads) %lldx3x%lldx%lld: mean %.2f ms, best %.2f ms, "
                  "CPU %.2f ms per forward over %d\n",
                  threads, (long long)opt.batch, (long long)opt.imgsz_h, (long long)opt.imgsz_w, sum / time_iters,
                  best, cpu_ms, time_iters);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
