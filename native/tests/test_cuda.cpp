// The GPU path: what runs on the CPU too (loss scaling, the AutoBatch fit, the AMP check's comparison, the device
// prefetcher's order and normalisation, device errors, NVML absence) and, where a GPU is visible, the same on
// CUDA plus an AMP training step and fp16 predictions against fp32.
#include <torch/torch.h>
#include <torch/version.h>

#include <optional>

#include "data/device_prefetch.h"
#include "io/checkpoint.h"
#include "model/loader.h"
#include "model/yolo.h"
#include "testing.h"
#include "train/amp.h"
#include "train/autocast.h"
#include "train/detection_loss.h"
#include "util/cuda_util.h"
#include "util/gpu_stats.h"
#include "util/system.h"

using namespace y26;

namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// A source of `n` tiny batches whose pixel values encode their number, then the end of the epoch.
DevicePrefetcher::Source numbered_batches(int n, int* served) {
  return [n, served](Batch& b) {
    if (*served == n) {
      *served = 0;  // the next call starts the following epoch
      return false;
    }
    const int k = (*served)++;
    b = Batch();
    b.img = torch::full({2, 3, 4, 4}, 10 * k, torch::kUInt8);
    b.cls = torch::full({1, 1}, (float)k);
    b.bboxes = torch::rand({1, 4});
    b.batch_idx = torch::zeros({1});
    b.batch_index = k;
    return true;
  };
}

void check_prefetch_order(const torch::Device& dev) {
  int served = 0;
  DevicePrefetcher pf(numbered_batches(3, &served), dev);
  for (int epoch = 0; epoch < 2; ++epoch) {
    DeviceBatch d;
    int k = 0;
    while (pf.next(d)) {
      EXPECT(d.host.batch_index == k);
      EXPECT(d.img.device() == dev && d.img.scalar_type() == torch::kFloat32);
      EXPECT_NEAR(d.img.max().item<double>(), 10.0 * k / 255.0, 1e-6);
      EXPECT(d.cls.device() == dev && d.cls.item<float>() == (float)k);
      EXPECT(d.host.img.device().is_cpu());  // the host batch stays for plots
      ++k;
    }
    EXPECT_MSG(k == 3, "epoch " << epoch << " gave " << k << " batches on " << dev);
  }
  // reset() (a loader rebuilt after an out-of-memory error) drops the batch in flight and starts afresh
  DeviceBatch d;
  EXPECT(pf.next(d) && d.host.batch_index == 0);
  pf.reset();
  served = 0;
  EXPECT(pf.next(d) && d.host.batch_index == 0);
}

std::shared_ptr<YoloModel> fixture_detector() {
  const std::string pt = y26test::fixture("det/yolo26n-shapes.pt");
  auto m = build_model(load_checkpoint(pt), pt);
  m->eval();
  return m;
}

}  // namespace

TEST_CASE("LossScaler unscales, skips on inf and halves, grows after its interval") {
  LossScaler s(1024.0, 3);
  auto p = torch::ones({4}, torch::requires_grad());
  (p * 1024.0).sum().backward();
  EXPECT(s.unscale({p}));
  EXPECT(torch::allclose(p.grad(), torch::ones({4})));
  s.update(true);
  s.update(true);
  EXPECT(s.scale() == 1024.0);
  s.update(true);  // third finite step in a row
  EXPECT(s.scale() == 2048.0);
  p.mutable_grad().fill_(std::numeric_limits<float>::infinity());
  EXPECT(!s.unscale({p}));
  s.update(false);
  EXPECT(s.scale() == 1024.0);
  auto q = torch::ones({2}, torch::requires_grad());  // no gradient yet: nothing to check
  EXPECT(s.unscale({q}));
}

TEST_CASE("AutoBatch fits a line through the measured memory and stays below a failed size") {
  // 0.5 GB + 0.1 GB per image, 10 GB free, 60 %: (6 - 0.5) / 0.1 = 55
  auto linear = [](int64_t b) -> std::optional<double> { return 0.5 + 0.1 * (double)b; };
  auto r = fit_autobatch(linear, 10.0, 0.6, autobatch_sizes(20.0));
  EXPECT(r.has_value());
  EXPECT_MSG(r && (r->batch == 55 || r->batch == 54), "batch " << (r ? r->batch : -1));
  EXPECT(r && std::fabs(r->predicted_fraction - 0.6) < 0.02);
  // Out of memory from 32 up: the fit says 55, the last size that ran (16) is used.
  int64_t largest_tried = 0;
  auto ooms = [&](int64_t b) -> std::optional<double> {
    largest_tried = std::max(largest_tried, b);
    return b >= 32 ? std::nullopt : std::optional<double>(0.5 + 0.1 * (double)b);
  };
  auto r2 = fit_autobatch(ooms, 10.0, 0.6, autobatch_sizes(20.0));
  EXPECT(r2 && r2->batch == 16);
  EXPECT(largest_tried == 32);  // stops probing at the first failure
  // Flat memory cannot be fitted: the caller keeps its default.
  EXPECT(!fit_autobatch([](int64_t) -> std::optional<double> { return 1.0; }, 10.0, 0.6, autobatch_sizes(8.0)));
  EXPECT(autobatch_sizes(8.0).back() == 16 && autobatch_sizes(80.0).back() == 64);
}

TEST_CASE("AMP check: output comparison, the GPUs known to break fp16, CPU devices refused") {
  auto a = torch::rand({2, 7, 10}) * 100;
  EXPECT(amp_outputs_agree(a, a + 0.4));
  EXPECT(amp_outputs_agree(a, a.to(torch::kHalf), 0.5));
  EXPECT(!amp_outputs_agree(a, a + 0.6));
  EXPECT(!amp_outputs_agree(a, a.slice(2, 0, 9)));
  auto nan = a.clone();
  nan[0][0][0] = std::numeric_limits<float>::quiet_NaN();
  EXPECT(!amp_outputs_agree(a, nan));
  EXPECT(gpu_has_broken_amp("NVIDIA GeForce GTX 1660 Ti"));
  EXPECT(gpu_has_broken_amp("Quadro T1000"));
  EXPECT(!gpu_has_broken_amp("NVIDIA H200"));
  EXPECT(!gpu_has_broken_amp("NVIDIA GeForce RTX 4090"));
  auto m = fixture_detector();
  std::string why;
  EXPECT(!check_amp(*m, torch::kCPU, &why));
  EXPECT(has(why, "CUDA"));
  if (torch::cuda::is_available()) {  // the real check on the GPU: a trained detector passes, the mode is kept
    m->to(torch::kCUDA);
    m->train();
    EXPECT_MSG(check_amp(*m, torch::Device("cuda:0"), &why), "AMP check failed on this GPU: " << why);
    EXPECT(m->is_training());
  }
}

TEST_CASE("DevicePrefetcher hands batches out in order, normalised, epoch after epoch") {
  check_prefetch_order(torch::kCPU);
  if (torch::cuda::is_available()) check_prefetch_order(torch::Device("cuda:0"));
}

TEST_CASE("device strings: several GPUs, missing GPUs and CPU-only libtorch fail clearly") {
  auto multi = error_of([] { resolve_device("0,1"); });
  EXPECT_MSG(has(multi, "multi-GPU") && has(multi, "0,1"), multi);
  EXPECT(has(error_of([] { resolve_device("cuda:0,,1"); }), "not valid"));
  auto seven = error_of([] { resolve_device("cuda:7"); });
  if (!torch::cuda::is_available()) {
    EXPECT_MSG(has(seven, "libtorch " TORCH_VERSION) && has(seven, "device='cpu'"), seven);
    if (!built_with_cuda()) EXPECT_MSG(has(seven, "CPU-only") && has(seven, "LIBTORCH"), seven);
  } else if (torch::cuda::device_count() < 8) {
    EXPECT_MSG(has(seven, "does not exist") && has(seven, "0: "), seven);
  }
  EXPECT(resolve_device(" CPU ") == "cpu");
}

TEST_CASE("GPU stats: absent NVML or device gives nothing, a name is always printable") {
  EXPECT(!gpu_stats(-3));
  EXPECT(!gpu_name(0).empty());
  if (!gpu_stats(0)) EXPECT(gpu_name(0) == "CUDA device 0");
  cuda_empty_cache();  // harmless without CUDA
}

TEST_CASE("CUDA: an AMP training step is finite and fp16 predictions match fp32 (GPU machines)") {
  if (!torch::cuda::is_available()) {
    // CPU machines: the same step in fp32 on the CPU, so the test always trains something.
    auto m = build_model("yolo26n.yaml", 3);
    m->train();
    E2EDetectionLoss loss(3, m->stride(), 10);
    auto out = m->forward(torch::rand({2, 3, 64, 64}));
    DetectionBatch b{torch::tensor({0.f, 1.f}), torch::tensor({0.f, 2.f}), torch::tensor({{0.5f, 0.5f, 0.3f, 0.3f}, {0.4f, 0.6f, 0.2f, 0.5f}})};
    auto r = loss({out.one2many.boxes, out.one2many.scores}, {out.one2one.boxes, out.one2one.scores},
                  grid_sizes_for(64, 64, m->stride()), b);
    r.total.backward();
    const double total = r.total.item<double>();
    EXPECT(std::isfinite(total));
    return;
  }
  const torch::Device dev("cuda:0");
  {  // AMP step: autocast forward, fp32 loss, scaled backward, unscale
    auto m = build_model("yolo26n.yaml", 3);
    m->to(dev);
    m->train();
    E2EDetectionLoss loss(3, m->stride(), 10);
    LossScaler scaler;
    set_autocast(true, false);
    auto out = m->forward(torch::rand({4, 3, 128, 128}, torch::TensorOptions().device(dev)));
    set_autocast(false, false);
    DetectionBatch b{torch::tensor({0.f, 3.f}).to(dev), torch::tensor({0.f, 2.f}).to(dev),
                     torch::tensor({{0.5f, 0.5f, 0.3f, 0.3f}, {0.4f, 0.6f, 0.2f, 0.5f}}).to(dev)};
    auto r = loss({out.one2many.boxes, out.one2many.scores}, {out.one2one.boxes, out.one2one.scores},
                  grid_sizes_for(128, 128, m->stride()), b);
    const double total = r.total.item<double>();
    EXPECT(std::isfinite(total));
    (r.total * scaler.scale()).backward();
    std::vector<torch::Tensor> params;
    for (auto& p : m->parameters()) params.push_back(p);
    EXPECT_MSG(scaler.unscale(params), "AMP step produced non-finite gradients");
  }
  {  // fp16 predict against fp32 on the fixture detector: scores within 1e-2, boxes within 1e-2 of the image size
    auto m = fixture_detector();
    m->to(dev);
    auto x = torch::rand({2, 3, 320, 320}, torch::TensorOptions().device(dev));
    auto a = m->forward(x).decoded.cpu();
    m->to(torch::kHalf);
    auto h = m->forward(x.to(torch::kHalf)).decoded.to(torch::kCPU, torch::kFloat32);
    auto box_d = (a.slice(1, 0, 4) - h.slice(1, 0, 4)).abs().max().item<double>();
    auto score_d = (a.slice(1, 4) - h.slice(1, 4)).abs().max().item<double>();
    EXPECT_MSG(score_d <= 1e-2, "fp16 scores differ by " << score_d);
    EXPECT_MSG(box_d <= 1e-2 * 320, "fp16 boxes differ by " << box_d << " px");
  }
}

TEST_MAIN()
