// The real trainer (run_training, defaults unless given) timed from outside, with the GPU sampled through NVML:
// the side-by-side figure of the device check. The last epoch is the measured one (the first ones warm up cuDNN,
// the allocator and the loader); validation is not part of it.
//   bench_trainer [--synthetic N --synthetic-dir DIR] [--sample-hz 20] [--json-out FILE] key=value ...
// key=value are training arguments (data=, model=, imgsz=, batch=, epochs=, device=, ...). --synthetic writes a
// shapes set of N 640-px JPEGs (and N/10 val images) into DIR once and trains on it unless data= is given.
// Prints one JSON object (last line): images_per_second, epoch_seconds, data_wait_fraction, gpu_util_mean (%),
// gpu_util_samples, gpu_mem_peak_gb (NVML, whole device), batch, epochs, and the trainer's final metrics.
#include <atomic>
#include <cctype>
#include <cmath>
#include <map>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <sstream>
#include <thread>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "data/synthetic.h"
#include "train/trainer.h"
#include "util/error.h"
#include "util/gpu_stats.h"

using namespace y26;
using Clock = std::chrono::steady_clock;

namespace {

// Samples utilisation and memory of one GPU at a fixed rate while `on` is set.
class GpuSampler {
 public:
  GpuSampler(int index, double hz) : index_(index), period_(1.0 / std::max(hz, 1.0)) {
    if (!gpu_stats(index_)) return;  // no NVML / no GPU: no samples
    thread_ = std::thread([this] { loop(); });
  }
  ~GpuSampler() {
    quit_ = true;
    if (thread_.joinable()) thread_.join();
  }
  void set_recording(bool on) { recording_ = on; }
  struct Summary { int samples = 0; double util_mean = 0, mem_peak_gb = 0; };
  Summary summary() {
    std::lock_guard<std::mutex> l(mu_);
    Summary s;
    s.samples = (int)util_.size();
    for (double u : util_) s.util_mean += u;
    if (s.samples) s.util_mean /= s.samples;
    s.mem_peak_gb = mem_peak_;
    return s;
  }

 private:
  void loop() {
    auto next = Clock::now();
    while (!quit_) {
      next += std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(period_));
      if (recording_) {
        if (auto g = gpu_stats(index_)) {
          std::lock_guard<std::mutex> l(mu_);
          util_.push_back(g->util_percent);
          mem_peak_ = std::max(mem_peak_, g->mem_used_gb);
        }
      }
      std::this_thread::sleep_until(next);
    }
  }
  int index_;
  double period_;
  std::atomic<bool> quit_{false}, recording_{false};
  std::mutex mu_;
  std::vector<double> util_;
  double mem_peak_ = 0;
  std::thread thread_;
};

std::string json_num(double v) {
  char b[64];
  std::snprintf(b, sizeof b, "%.6g", std::isfinite(v) ? v : 0.0);
  return b;
}

}  // namespace

int main(int argc, char** argv) {
  int synthetic = 0;
  double hz = 20;
  std::string synthetic_dir = (std::filesystem::temp_directory_path() / "y26_bench_trainer").string(), json_out;
  YAML::Node args(YAML::NodeType::Map);
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--synthetic") synthetic = std::stoi(value());
    else if (a == "--synthetic-dir") synthetic_dir = value();
    else if (a == "--sample-hz") hz = std::stod(value());
    else if (a == "--json-out") json_out = value();
    else if (a.find('=') != std::string::npos) args[a.substr(0, a.find('='))] = YAML::Load(a.substr(a.find('=') + 1));
    else {
      std::fprintf(stderr, "unknown argument %s (see the header of bench_trainer.cpp)\n", a.c_str());
      return 2;
    }
  }
  try {
    if (synthetic > 0 && !args["data"]) {
      const std::string yaml = (std::filesystem::path(synthetic_dir) / "data.yaml").string();
      if (!std::filesystem::exists(yaml)) {
        SyntheticOptions so;
        so.train_images = synthetic;
        so.val_images = std::max(8, synthetic / 10);
        so.width = so.height = 640;
        so.max_objects = 8;
        write_synthetic_dataset(synthetic_dir, so);
      }
      args["data"] = yaml;
    }
    if (!args["epochs"]) args["epochs"] = 2;
    if (!args["plots"]) args["plots"] = false;
    const int64_t epochs = args["epochs"].as<int64_t>();
    int gpu_index = 0;
    if (args["device"]) {
      std::string d = args["device"].as<std::string>();
      if (d.rfind("cuda:", 0) == 0) d = d.substr(5);
      if (!d.empty() && std::isdigit((unsigned char)d[0])) gpu_index = std::stoi(d);
    }
    GpuSampler sampler(gpu_index, hz);
    double epoch_seconds = 0, ips = 0, wait_fraction = 0, batch = 0;
    TrainCallbacks cb;
    cb.on_event = [&](const TrainEvent& e) {
      const int64_t epoch = e.num.count("epoch") ? (int64_t)e.num.at("epoch") : 0;
      if (e.type == "log") std::cout << e.str.at("text") << "\n";
      if (e.type == "epoch_start" && epoch == epochs) sampler.set_recording(true);
      if (e.type == "batch" && epoch == epochs && e.num.count("iteration") && e.num.count("batches") &&
          e.num.at("iteration") == e.num.at("batches")) {
        sampler.set_recording(false);
        ips = e.num.at("images_per_second");
        wait_fraction = e.num.at("data_wait_fraction");
      }
      if (e.type == "epoch_end" && epoch == epochs && e.num.count("epoch_time")) epoch_seconds = e.num.at("epoch_time");
    };
    std::atomic<bool> stop{false};
    const auto t0 = Clock::now();
    TrainResult r = run_training(args, cb, stop);
    const double wall = std::chrono::duration<double>(Clock::now() - t0).count();
    batch = r.args["batch"] ? r.args["batch"].as<double>() : 0;
    const auto s = sampler.summary();
    std::ostringstream j;
    j << "{\"images_per_second\": " << json_num(ips) << ", \"epoch_seconds\": " << json_num(epoch_seconds)
      << ", \"data_wait_fraction\": " << json_num(wait_fraction) << ", \"gpu_util_mean\": " << json_num(s.util_mean)
      << ", \"gpu_util_samples\": " << s.samples << ", \"gpu_mem_peak_gb\": " << json_num(s.mem_peak_gb)
      << ", \"batch\": " << json_num(batch) << ", \"epochs\": " << epochs << ", \"wall_seconds\": " << json_num(wall)
      << ", \"device\": \"" << (r.args["device"] ? r.args["device"].as<std::string>() : "") << "\"";
    for (const auto& [k, v] : r.final_metrics)
      if (k.rfind("metrics/", 0) == 0) j << ", \"" << k << "\": " << json_num(v);
    j << "}";
    std::cout << j.str() << std::endl;
    if (!json_out.empty()) std::ofstream(json_out) << j.str() << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "bench_trainer: " << describe_exception(std::current_exception()) << "\n";
    return 1;
  }
}
