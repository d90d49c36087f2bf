#include <torch/csrc/autograd/profiler_legacy.h>
// Training throughput of a YOLO26 detect model: images/s of the real loop (data loader with augmentation, forward,
// loss, backward, clip + optimiser step + EMA) split per stage, and the same loop on one pre-loaded batch (the
// compute-only ceiling), in the same run; on the CPU also that ceiling without the caching allocator the trainer uses.
//   bench_train [--data data.yaml] [--model yolo26n.yaml] [--imgsz 640] [--batch 16] [--iterations 10]
//               [--warmup 2] [--workers 2] [--device cpu|0] [--threads N] [--json]
//               [--bf16] [--no-channels-last] [--no-alloc-cache] [--profile trace.json]
// Without --data a synthetic shapes set (256 images of 640 px) is generated under /tmp. The last line with --json
// is one JSON object: imagesPerSecond, ceilingImagesPerSecond and the per-stage milliseconds per iteration.
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>

#include "data/dataset.h"
#include "data/loader.h"
#include "data/synthetic.h"
#include "model/yolo.h"
#include "train/detection_loss.h"
#include "train/autocast.h"
#include "train/ema.h"
#include "train/optimizer.h"
#include "util/cpu_alloc_cache.h"
#include "util/error.h"
#include "util/system.h"

using namespace y26;
using Clock = std::chrono::steady_clock;

namespace {

double ms(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double, std::milli>(b - a).count(); }

void sync(const torch::Device& d) {
  if (d.is_cuda()) torch::zeros({1}, torch::TensorOptions().device(d)).sum().item<float>();
}

// Process CPU seconds (all threads) and minor page faults so far: contention-free costs next to the wall times.
std::pair<double, long> cpu_and_faults() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto sec = [](const timeval& t) { return t.tv_sec + t.tv_usec / 1e6; };
  return {sec(ru.ru_utime) + sec(ru.ru_stime), ru.ru_minflt};
}

struct Split {
  double data = 0, forward = 0, loss = 0, backward = 0, optimizer = 0;
  double cpu_s = 0;
  long faults = 0;
  int64_t images = 0, iterations = 0;
  double total() const { return data + forward + loss + backward + optimizer; }
  double ips() const { return total() > 0 ? images / (total() / 1000.0) : 0; }
  void print(const char* what) const {
    const double n = std::max<int64_t>(iterations, 1);
    std::printf("%-28s %8.1f img/s | per iteration ms: data %.1f, forward %.1f, loss %.1f, backward %.1f, optimiser %.1f"
                " | CPU ms %.0f, page faults %.0f\n",
                what, ips(), data / n, forward / n, loss / n, backward / n, optimizer / n, cpu_s * 1000 / n, faults / n);
  }
};

}  // namespace

int main(int argc, char** argv) {
  std::string data, model_name = "yolo26n.yaml", device_arg = "cpu";
  int imgsz = 640, batch = 16, iterations = 10, warmup = 2, workers = 2, threads = 0;
  bool json = false, channels_last = true, bf16 = false, alloc_cache = true;
  std::string profile;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--data") data = next();
    else if (a == "--model") model_name = next();
    else if (a == "--imgsz") imgsz = std::stoi(next());
    else if (a == "--batch") batch = std::stoi(next());
    else if (a == "--iterations") iterations = std::stoi(next());
    else if (a == "--warmup") warmup = std::stoi(next());
    else if (a == "--workers") workers = std::stoi(next());
    else if (a == "--device") device_arg = next();
    else if (a == "--threads") threads = std::stoi(next());
    else if (a == "--json") json = true;
    else if (a == "--no-channels-last") channels_last = false;
    else if (a == "--bf16") bf16 = true;
    else if (a == "--no-alloc-cache") alloc_cache = false;
    else if (a == "--profile") profile = next();
    else {
      std::fprintf(stderr, "unknown flag %s (see the header of bench_train.cpp)\n", a.c_str());
      return 2;
    }
  }
  try {
    const std::string dev_s = resolve_device(device_arg);
    const torch::Device dev(dev_s);
    const int intra = configure_threads(threads, 0);  // the trainer's rule: compute gets every core
    if (data.empty()) {
      SyntheticOptions so;
      so.train_images = 256;
      so.val_images = 8;
      so.width = so.height = 640;
      data = write_synthetic_dataset((std::filesystem::temp_directory_path() / "y26_bench_train_shapes640").string(), so);
    }
    DataConfig dc = load_data_yaml(data);
    DatasetOptions dso;
    dso.imgsz = imgsz;
    dso.fast_decode = true;
    dso.verbose = false;
    IndexOptions io;
    io.nc = dc.nc;
    io.strict = false;
    io.verbose = false;
    auto ds = Dataset::open(dc, "train", dso, io);
    auto model = build_model(model_name, dc.nc);
    model->to(dev);
    model->train();
    channels_last = channels_last && !dev.is_cuda();  // as the trainer
    if (channels_last) to_channels_last(*model);
    LoaderOptions lo;
    lo.batch = batch;
    lo.workers = workers;
    lo.device = dev_s;
    lo.epochs = 1000;  // keeps mosaic on
    DataLoader loader(ds, lo);
    E2EDetectionLoss crit(dc.nc, model->stride(), 100);
    auto params = collect_params(*model, "");
    std::vector<torch::Tensor> tensors;
    for (auto& p : params) tensors.push_back(p.tensor);
    auto opt = make_optimizer(OptimKind::SGD, build_param_groups(params, OptimKind::SGD, 0.01, 0.937, 5e-4));
    auto ema_model = std::make_shared<YoloModel>(model->config());
    ema_model->to(dev);
    if (channels_last) to_channels_last(*ema_model);
    ModelEMA ema(module_state(*ema_model));
    ema.copy_from(module_state(*model));

    auto step = [&](const Batch& b, Split& s, Clock::time_point t_data_start) {
      auto t0 = Clock::now();
      const auto [cpu0, faults0] = cpu_and_faults();
      auto img = b.img.to(dev).to(torch::kFloat32).div_(255.0);
      if (channels_last) img = img.contiguous(torch::MemoryFormat::ChannelsLast);
      DetectionBatch db{b.batch_idx.to(dev), b.cls.to(dev), b.bboxes.to(dev)};
      sync(dev);
      auto t1 = Clock::now();
      if (bf16) set_autocast(true, /*cpu=*/true);
      auto out = model->forward(img);
      if (bf16) { set_autocast(false, /*cpu=*/true);
        for (auto* br : {&out.one2many, &out.one2one}) { br->boxes = br->boxes.to(torch::kFloat32); br->scores = br->scores.to(torch::kFloat32); } }
      sync(dev);
      auto t2 = Clock::now();
      auto r = crit({out.one2many.boxes, out.one2many.scores}, {out.one2one.boxes, out.one2one.scores},
                    grid_sizes_of(out.feats), db);
      sync(dev);
      auto t3 = Clock::now();
      r.total.backward();
      sync(dev);
      auto t4 = Clock::now();
      torch::nn::utils::clip_grad_norm_(tensors, 10.0);
      opt->step();
      opt->zero_grad();
      ema.update(module_state(*model));
      sync(dev);
      auto t5 = Clock::now();
      s.data += ms(t_data_start, t1);
      s.forward += ms(t1, t2);
      s.loss += ms(t2, t3);
      s.backward += ms(t3, t4);
      s.optimizer += ms(t4, t5);
      s.images += b.size();
      s.iterations += 1;
      const auto [cpu1, faults1] = cpu_and_faults();
      s.cpu_s += cpu1 - cpu0;
      s.faults += faults1 - faults0;
      (void)t0;
    };

    Split real, ceiling, plain, discard;
    Batch b, first;
    {
      // As the trainer: CPU training keeps freed activation buffers (util/cpu_alloc_cache.h).
      std::optional<CpuAllocCache> cache;
      if (alloc_cache && !dev.is_cuda()) cache.emplace();
      for (int it = 0; it < warmup + iterations; ++it) {
        auto t = Clock::now();
        if (!loader.next(b) && !loader.next(b)) throw Error("the data set yields no batches");
        if (!first.img.defined()) first = b;
        step(b, it < warmup ? discard : real, t);
      }
      if (!profile.empty()) {
        // libtorch's op profiler over the ceiling iterations (chrome://tracing format; slows the ops a little)
        torch::autograd::profiler::RecordProfile guard(profile);
        for (int it = 0; it < iterations; ++it) step(first, ceiling, Clock::now());
      } else {
        for (int it = 0; it < iterations; ++it) step(first, ceiling, Clock::now());
      }
    }
    // The same ceiling with glibc's allocator alone, so the cache's gain is a ratio within this run.
    const bool compare_plain = alloc_cache && !dev.is_cuda();
    if (compare_plain) {
      step(first, discard, Clock::now());
      for (int it = 0; it < iterations; ++it) step(first, plain, Clock::now());
    }

    std::printf("bench_train: %s, imgsz %d, batch %d, %d iterations (+%d warmup), device %s, %d intra-op threads, "
                "%d loader workers\n", model_name.c_str(), imgsz, batch, iterations, warmup, dev_s.c_str(), intra,
                workers);
    real.print("loader");
    ceiling.print("ceiling");
    if (compare_plain) plain.print("ceiling, no allocator cache");
    if (json) {
      const double n = std::max<int64_t>(real.iterations, 1), m = std::max<int64_t>(ceiling.iterations, 1);
      std::printf("{\"model\":\"%s\",\"imgsz\":%d,\"batch\":%d,\"iterations\":%d,\"device\":\"%s\",\"threads\":%d,"
                  "\"imagesPerSecond\":%.3f,\"ceilingImagesPerSecond\":%.3f,\"ceilingNoAllocCacheImagesPerSecond\":%.3f,"
                  "\"splitMs\":{\"data\":%.3f,\"forward\":%.3f,\"loss\":%.3f,\"backward\":%.3f,\"optimizer\":%.3f},"
                  "\"ceilingSplitMs\":{\"data\":%.3f,\"forward\":%.3f,\"loss\":%.3f,\"backward\":%.3f,\"optimizer\":%.3f}}\n",
                  model_name.c_str(), imgsz, batch, iterations, dev_s.c_str(), intra, real.ips(), ceiling.ips(),
                  compare_plain ? plain.ips() : 0.0,
                  real.data / n, real.forward / n, real.loss / n, real.backward / n, real.optimizer / n,
                  ceiling.data / m, ceiling.forward / m, ceiling.loss / m, ceiling.backward / m, ceiling.optimizer / m);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_train: %s\n", e.what());
    return 1;
  }
  return 0;
}
