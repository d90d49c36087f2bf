// Times the YOLO26 end-to-end detection loss (both branches: assignment, BCE, CIoU, L1, backward) on a synthetic
// batch, and with --fixtures runs the fixture batch on the chosen device to compare against the CPU reference.
//   bench_loss [--device cpu|cuda] [--batch 16] [--imgsz 640] [--nc 80] [--gts 50] [--iters 10] [--threads N]
//              [--fixtures DIR]   (DIR = the loss/ fixture folder)
#include "train/detection_loss.h"
#include "util/npy.h"

#include <torch/torch.h>

#include <chrono>
#include <cstring>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <string>

using namespace y26;

namespace {

torch::Tensor load(const std::string& path) {
  auto a = read_npy(path);
  auto dt = a.dtype == "f4" ? torch::kFloat : torch::kLong;
  auto t = torch::empty(a.shape, torch::TensorOptions().dtype(dt));
  std::memcpy(t.data_ptr(), a.bytes.data(), a.bytes.size());
  return t;
}

std::string values(const torch::Tensor& t) {
  std::ostringstream o;
  o << std::setprecision(9) << "[";
  auto c = t.detach().cpu().to(torch::kDouble).flatten();
  for (int64_t i = 0; i < c.numel(); ++i) o << (i ? ", " : "") << c[i].item<double>();
  return o.str() + "]";
}

void sync(torch::Device d) {
  if (d.is_cuda()) torch::zeros({1}, torch::TensorOptions().device(d)).sum().item<float>();
}

void run_fixtures(const std::string& dir, torch::Device dev) {
  const std::vector<double> strides{8, 16, 32};
  auto grid = grid_sizes_for(320, 320, strides);
  DetectionBatch batch{load(dir + "/batch_batch_idx.npy").to(dev), load(dir + "/batch_cls.npy").to(dev),
                       load(dir + "/batch_bboxes_xywhn.npy").to(dev)};
  E2EDetectionLoss loss(3, strides, 30);
  for (int64_t updates : {0, 29}) {
    loss.set_updates(updates);
    HeadBranchOutput o2m{load(dir + "/train_preds_one2many_boxes_ltrb.npy").to(dev).requires_grad_(true),
                         load(dir + "/train_preds_one2many_scores_logits.npy").to(dev).requires_grad_(true)};
    HeadBranchOutput o2o{load(dir + "/train_preds_one2one_boxes_ltrb.npy").to(dev).requires_grad_(true),
                         load(dir + "/train_preds_one2one_scores_logits.npy").to(dev).requires_grad_(true)};
    auto r = loss(o2m, o2o, grid, batch);
    r.total.backward();
    auto fg_ref = load(dir + "/assigner_one2many_fg_mask.npy").to(torch::kBool);
    auto fg_ref_o2o = load(dir + "/assigner_one2one_fg_mask.npy").to(torch::kBool);
    auto ts_ref = load(dir + "/assigner_one2many_target_scores.npy");
    std::cout << std::setprecision(9) << "fixtures on " << dev << ", updates " << updates << ": total "
              << r.total.item<double>() << ", fg " << r.one2many.fg_count << "/" << r.one2one.fg_count
              << ", fg masks equal to reference: "
              << (torch::equal(r.one2many.assigned.fg_mask.cpu(), fg_ref) &&
                  torch::equal(r.one2one.assigned.fg_mask.cpu(), fg_ref_o2o))
              << ", target_scores max diff " << (r.one2many.assigned.target_scores.cpu() - ts_ref).abs().max().item<double>()
              << ", items " << values(r.loss_items) << ", P3 cls bias grad "
              << values(o2m.scores.grad().narrow(2, 0, 1600).sum(torch::IntArrayRef{0, 2})) << "\n";
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string device = "cpu", fixtures;
  int64_t batch = 16, imgsz = 640, nc = 80, gts = 50, iters = 10, threads = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--device") device = v;
    else if (k == "--batch") batch = std::stoll(v);
    else if (k == "--imgsz") imgsz = std::stoll(v);
    else if (k == "--nc") nc = std::stoll(v);
    else if (k == "--gts") gts = std::stoll(v);
    else if (k == "--iters") iters = std::stoll(v);
    else if (k == "--threads") threads = std::stoll(v);
    else if (k == "--fixtures") fixtures = v;
    else { std::cerr << "unknown option " << k << "\n"; return 2; }
  }
  if (threads > 0) torch::set_num_threads(threads);
  if (device == "cuda" && !torch::cuda::is_available()) {
    std::cerr << "CUDA is not available in this build/machine; use --device cpu\n";
    return 2;
  }
  torch::Device dev(device == "cuda" ? torch::kCUDA : torch::kCPU);
  try {
    if (!fixtures.empty()) run_fixtures(fixtures, dev);

    torch::manual_seed(0);
    const std::vector<double> strides{8, 16, 32};
    auto grid = grid_sizes_for(imgsz, imgsz, strides);
    int64_t na = 0;
    for (auto& hw : grid) na += hw.first * hw.second;
    auto opts = torch::TensorOptions().device(dev);
    auto wh = torch::rand({batch * gts, 2}, opts) * 0.28 + 0.02;
    auto xy = wh / 2 + torch::rand({batch * gts, 2}, opts) * (1 - wh);
    DetectionBatch b{torch::arange(batch, opts).repeat_interleave(gts).to(torch::kFloat),
                     torch::randint(nc, {batch * gts, 1}, opts).to(torch::kFloat), torch::cat({xy, wh}, 1)};
    E2EDetectionLoss loss(nc, strides, 100);
    auto make = [&] {
      return HeadBranchOutput{(2 + 0.5 * torch::randn({batch, 4, na}, opts)).requires_grad_(true),
                              (torch::randn({batch, nc, na}, opts) - 4).requires_grad_(true)};
    };
    auto o2m = make(), o2o = make();
    double total_ms = 0, value = 0;
    for (int64_t it = -2; it < iters; ++it) {
      sync(dev);
      auto t0 = std::chrono::steady_clock::now();
      auto r = loss(o2m, o2o, grid, b);
      r.total.backward();
      value = r.total.item<double>() + o2m.scores.grad().sum().item<double>() * 0;
      auto ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      if (it >= 0) total_ms += ms;
      o2m.boxes.mutable_grad().reset(); o2m.scores.mutable_grad().reset();
      o2o.boxes.mutable_grad().reset(); o2o.scores.mutable_grad().reset();
    }
    std::cout << std::setprecision(4) << "e2e loss fwd+bwd on " << dev << ": batch " << batch << ", imgsz " << imgsz
              << " (" << na << " anchors), nc " << nc << ", " << gts << " GT/image, threads "
              << torch::get_num_threads() << ": " << total_ms / std::max<int64_t>(iters, 1) << " ms/iter (loss "
              << value << ")\n";
  } catch (const std::exception& e) {
    std::cerr << "bench_loss: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
