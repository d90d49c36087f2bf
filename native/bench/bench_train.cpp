#include <ATen/autocast_mode.h>
// Training throughput of a YOLO26 detect model: images/s of the real loop (data loader with augmentation, forward,
// loss, backward, clip + optimiser step + EMA) split per stage, and the same loop on one pre-loaded batch (the
// compute-only ceiling), in the same run.
//   bench_train [--data data.yaml] [--model yolo26n.yaml] [--imgsz 640] [--batch 16] [--iterations 10]
//               [--warmup 2] [--workers 2] [--device cpu|0] [--threads N] [--json]
// Without --data a synthetic shapes set (256 images of 640 px) is generated under /tmp. The last line with --json
// is one JSON object: imagesPerSecond, ceilingImagesPerSecond and the per-stage milliseconds per iteration.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>

#include "data/dataset.h"
#include "data/loader.h"
#include "data/synthetic.h"
#include "model/yolo.h"
#include "train/detection_loss.h"
#include "train/ema.h"
#include "train/optimizer.h"
#include "util/error.h"
#include "util/system.h"

using namespace y26;
using Clock = std::chrono::steady_clock;

namespace {

double ms(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double, std::milli>(b - a).count(); }

void sync(const torch::Device& d) {
  if (d.is_cuda()) torch::zeros({1}, torch::TensorOptions().device(d)).sum().item<float>();
}

struct Split {
  double data = 0, forward = 0, loss = 0, backward = 0, optimizer = 0;
  int64_t images = 0, iterations = 0;
  double total() const { return data + forward + loss + backward + optimizer; }
  double ips() const { return total() > 0 ? images / (total() / 1000.0) : 0; }
  void print(const char* what) const {
    const double n = std::max<int64_t>(iterations, 1);
    std::printf("%-9s %8.1f img/s | per iteration ms: data %.1f, forward %.1f, loss %.1f, backward %.1f, optimiser %.1f\n",
                what, ips(), data / n, forward / n, loss / n, backward / n, optimizer / n);
  }
};

}  // namespace

int main(int argc, char** argv) {
  std::string data, model_name = "yolo26n.yaml", device_arg = "cpu";
  int imgsz = 640, batch = 16, iterations = 10, warmup = 2, workers = 2, threads = 0;
  bool json = false, channels_last = false, bf16 = false;
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
    else if (a == "--channels-last") channels_last = true;
    else if (a == "--bf16") bf16 = true;
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
    if (channels_last)
      for (auto& p : model->parameters())
        if (p.dim() == 4) p.set_data(p.data().contiguous(torch::MemoryFormat::ChannelsLast));
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
    ModelEMA ema(module_state(*ema_model));
    ema.copy_from(module_state(*model));

    auto step = [&](const Batch& b, Split& s, Clock::time_point t_data_start) {
      auto t0 = Clock::now();
      auto img = b.img.to(dev).to(torch::kFloat32).div_(255.0);
      if (channels_last) img = img.contiguous(torch::MemoryFormat::ChannelsLast);
      DetectionBatch db{b.batch_idx.to(dev), b.cls.to(dev), b.bboxes.to(dev)};
      sync(dev);
      auto t1 = Clock::now();
      if (bf16) { at::autocast::set_cpu_enabled(true); at::autocast::set_autocast_cpu_dtype(torch::kBFloat16); }
      auto out = model->forward(img);
      if (bf16) { at::autocast::set_cpu_enabled(false); at::autocast::clear_cache(); 
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
      (void)t0;
    };

    Split real, ceiling, discard;
    Batch b, first;
    for (int it = 0; it < warmup + iterations; ++it) {
      auto t = Clock::now();
      if (!loader.next(b) && !loader.next(b)) throw Error("the data set yields no batches");
      if (!first.img.defined()) first = b;
      step(b, it < warmup ? discard : real, t);
    }
    for (int it = 0; it < iterations; ++it) step(first, ceiling, Clock::now());

    std::printf("bench_train: %s, imgsz %d, batch %d, %d iterations (+%d warmup), device %s, %d intra-op threads, "
                "%d loader workers\n", model_name.c_str(), imgsz, batch, iterations, warmup, dev_s.c_str(), intra,
                workers);
    real.print("loader");
    ceiling.print("ceiling");
    if (json) {
      const double n = std::max<int64_t>(real.iterations, 1), m = std::max<int64_t>(ceiling.iterations, 1);
      std::printf("{\"model\":\"%s\",\"imgsz\":%d,\"batch\":%d,\"iterations\":%d,\"device\":\"%s\",\"threads\":%d,"
                  "\"imagesPerSecond\":%.3f,\"ceilingImagesPerSecond\":%.3f,"
                  "\"splitMs\":{\"data\":%.3f,\"forward\":%.3f,\"loss\":%.3f,\"backward\":%.3f,\"optimizer\":%.3f},"
                  "\"ceilingSplitMs\":{\"data\":%.3f,\"forward\":%.3f,\"loss\":%.3f,\"backward\":%.3f,\"optimizer\":%.3f}}\n",
                  model_name.c_str(), imgsz, batch, iterations, dev_s.c_str(), intra, real.ips(), ceiling.ips(),
                  real.data / n, real.forward / n, real.loss / n, real.backward / n, real.optimizer / n,
                  ceiling.data / m, ceiling.forward / m, ceiling.loss / m, ceiling.backward / m, ceiling.optimizer / m);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_train: %s\n", e.what());
    return 1;
  }
  return 0;
}
