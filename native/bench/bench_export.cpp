// ONNX export from the command line, and the libtorch forward timing the export benchmark compares with:
//   bench_export --model X.pt --out file.onnx [--imgsz N|H,W] [--batch N] [--dynamic] [--half] [--no-end2end]
//                [--opset N] [--time-torch ITERS] [--threads N]
//                [--calibrate-bn] [--forward-npy input.npy --forward-out torch_out.npy]
// --time-torch prints the mean libtorch forward time (fused model, batch `--batch`) at imgsz.
// --calibrate-bn gives a freshly built YAML model data-like BatchNorm statistics (one train-mode pass over a
//   seeded random batch with momentum 1, attention qkv gamma x 0.2, as the fixtures' recipe) so its outputs are
//   not all equal to the head biases; the same calibrated weights are exported and run.
// --forward-npy runs our libtorch forward on a stored input (uint8 /255 or float32) and writes the tensor the
//   export's output0 holds (end2end or classic) to --forward-out, plus <out>.proto.npy for segment.
#include <chrono>
#include <ctime>
#include <cstdio>
#include <string>
#include <vector>

#include "export/onnx_export.h"
#include "util/npy.h"
#include "model/loader.h"
#include "util/error.h"

using Clock = std::chrono::steady_clock;

static void calibrate_bn(y26::YoloModel& m, int64_t h, int64_t w) {
  torch::manual_seed(0);
  const int threads = torch::get_num_threads();
  torch::set_num_threads(1);  // same statistics, hence the same weights, on every run
  for (auto& mod : m.modules(false))
    if (auto* bn = dynamic_cast<torch::nn::BatchNorm2dImpl*>(mod.get())) bn->options.momentum(1.0);
  m.train();
  {
    torch::NoGradGuard ng;
    m.forward(torch::rand({4, 3, h, w}));
    for (auto& kv : m.named_modules())
      if (kv.key().size() > 7 && kv.key().substr(kv.key().size() - 7) == "qkv.bn")
        if (auto* bn = dynamic_cast<torch::nn::BatchNorm2dImpl*>(kv.value().get())) bn->weight.mul_(0.2);
  }
  for (auto& mod : m.modules(false))
    if (auto* bn = dynamic_cast<torch::nn::BatchNorm2dImpl*>(mod.get())) bn->options.momentum(0.03);
  m.eval();
  torch::set_num_threads(threads);
}

static void write_f32(const std::string& path, const torch::Tensor& t) {
  auto c = t.to(torch::kFloat).contiguous();
  y26::write_npy(path, "f4", c.sizes().vec(), c.data_ptr(), c.nbytes());
}

int main(int argc, char** argv) {
  std::string model, out;
  std::vector<std::pair<std::string, std::string>> kv;
  int time_iters = 0, threads = 2;
  bool calibrate = false, end2end = true;
  std::string forward_in, forward_out;
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
      else if (a == "--no-end2end") kv.push_back({"end2end", "false"}), end2end = false;
      else if (a == "--calibrate-bn") calibrate = true;
      else if (a == "--forward-npy") forward_in = value();
      else if (a == "--forward-out") forward_out = value();
      else if (a == "--time-torch") time_iters = std::stoi(value());
      else if (a == "--threads") threads = std::stoi(value());
      else y26::fail("bench_export: unknown argument " + a + " (see the usage at the top of bench_export.cpp)");
    }
    if (model.empty()) y26::fail("bench_export: --model is required");
    torch::set_num_threads(threads);
    auto opt = y26::parse_export_options("onnx", kv);
    if (calibrate || !forward_in.empty()) {
      torch::manual_seed(0);  // a YAML model's random init, so parity runs are repeatable
      auto lm = y26::load_model(model, "cpu");
      if (calibrate) calibrate_bn(*lm.model, opt.imgsz_h, opt.imgsz_w);
      lm.model->eval();
      if (!out.empty()) {
        opt.names = lm.names;
        y26::export_onnx(*lm.model, opt, out);
        std::printf("exported %s\n", out.c_str());
      }
      if (!forward_in.empty()) {
        if (forward_out.empty()) y26::fail("bench_export: --forward-npy needs --forward-out");
        auto npy = y26::read_npy(forward_in);
        auto v = npy.as_float();
        auto x = torch::from_blob(v.data(), npy.shape, torch::kFloat).clone();
        if (npy.dtype == "u1") x = x / 255.0f;
        torch::NoGradGuard ng;
        auto o = lm.model->forward(x);
        write_f32(forward_out, end2end && lm.model->end2end() ? o.end2end : o.classic);
        if (o.proto.defined()) write_f32(forward_out.substr(0, forward_out.size() - 4) + ".proto.npy", o.proto);
        std::printf("wrote %s\n", forward_out.c_str());
      }
    } else if (!out.empty() || time_iters == 0) {
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
