// predict() throughput and memory: per-stage ms per image at batch 1 and 8, the bare forward time in the same
// run, images/s over a 200-image directory, and VmRSS across a 1000-image stream.
//   bench_predict [--model fake|<checkpoint.pt>] [--source DIR] [--imgsz 640] [--batch 1,8] [--stream 1000]
//                 [--threads N] [--workers N] [--device cpu] [--json out.json]
// Without --source, 200 synthetic 640x480 JPEGs are written to a temporary folder.
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "infer/model_forward.h"
#include "infer/pipeline.h"
#include "infer/preprocess.h"
#include "util/error.h"
#include "util/system.h"

namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;

double vmrss_mb() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  return 0;
}

// A stand-in detector with a realistic input path (strided convs over the whole image) and the end2end output
// layout (B,300,6): --model fake measures the pipeline without a checkpoint.
struct StandInImpl : torch::nn::Module {
  torch::nn::Sequential body{nullptr};
  torch::nn::Linear head{nullptr};
  StandInImpl() {
    body = register_module("body", torch::nn::Sequential(
        torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 16, 3).stride(2).padding(1)), torch::nn::SiLU(),
        torch::nn::Conv2d(torch::nn::Conv2dOptions(16, 32, 3).stride(2).padding(1)), torch::nn::SiLU(),
        torch::nn::Conv2d(torch::nn::Conv2dOptions(32, 64, 3).stride(2).padding(1)), torch::nn::SiLU(),
        torch::nn::Conv2d(torch::nn::Conv2dOptions(64, 128, 3).stride(2).padding(1)), torch::nn::SiLU(),
        torch::nn::AdaptiveAvgPool2d(torch::nn::AdaptiveAvgPool2dOptions(1))));
    head = register_module("head", torch::nn::Linear(128, 300 * 6));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor y = head(body->forward(x).flatten(1)).sigmoid().view({x.size(0), 300, 6});
    const double w = x.size(3), h = x.size(2);
    torch::Tensor xy = y.narrow(2, 0, 2) * torch::tensor({w, h}).to(x.options()) * 0.5;
    torch::Tensor wh = y.narrow(2, 2, 2) * torch::tensor({w, h}).to(x.options()) * 0.5;
    return torch::cat({xy, xy + wh, y.narrow(2, 4, 1), (y.narrow(2, 5, 1) * 3).floor()}, 2);
  }
};
TORCH_MODULE(StandIn);

struct BenchModel {
  y26::ForwardOutputsFn forward;
  std::shared_ptr<y26::YoloModel> model;  // null for the stand-in
};

// --model fake: the stand-in above; otherwise a checkpoint (.pt), loaded, fused and in eval mode as predict() runs it.
BenchModel make_forward(const std::string& model, const torch::Device& device) {
  if (model == "fake") {
    torch::manual_seed(0);
    StandIn net;
    net->to(device);
    net->eval();
    return {[net](const torch::Tensor& x) mutable { return std::vector<torch::Tensor>{net->forward(x)}; }, nullptr};
  }
  auto m = y26::load_model(model).model;
  m->eval();
  m->fuse();
  m->to(device);
  return {y26::model_forward(m), m};
}

std::vector<int> parse_ints(const std::string& s) {
  std::vector<int> out;
  std::stringstream ss(s);
  std::string tok;
  while (std::getline(ss, tok, ',')) out.push_back(std::stoi(tok));
  return out;
}

std::string make_synthetic_dir(int n) {
  fs::path d = fs::temp_directory_path() / "y26_bench_predict_images";
  if (fs::exists(d) && std::distance(fs::directory_iterator(d), fs::directory_iterator()) == n) return d.string();
  fs::remove_all(d);
  fs::create_directories(d);
  cv::RNG rng(0);
  for (int i = 0; i < n; ++i) {
    cv::Mat im(480, 640, CV_8UC3);
    rng.fill(im, cv::RNG::UNIFORM, 0, 255);
    cv::GaussianBlur(im, im, cv::Size(9, 9), 3);
    for (int k = 0; k < 5; ++k)
      cv::rectangle(im, cv::Rect(rng.uniform(0, 500), rng.uniform(0, 380), rng.uniform(20, 140), rng.uniform(20, 100)),
                    cv::Scalar(rng.uniform(0, 255), rng.uniform(0, 255), rng.uniform(0, 255)), cv::FILLED);
    char name[32];
    std::snprintf(name, sizeof(name), "im_%04d.jpg", i);
    cv::imwrite((d / name).string(), im, {cv::IMWRITE_JPEG_QUALITY, 90});
  }
  return d.string();
}

struct RunStats {
  int batch = 0;
  int64_t images = 0;
  double wall_s = 0;
  y26::Speed mean;
};

// rss_peak: highest VmRSS sampled every 50 images; rss_early: VmRSS after the first 100 images (the steady state
// a flat pipeline keeps to the end).
RunStats run_stream(const std::vector<std::string>& specs, const y26::ForwardOutputsFn& fwd, y26::PipelineOptions po,
                    double* rss_peak = nullptr, double* rss_early = nullptr, double* rss_last = nullptr) {
  RunStats st;
  st.batch = po.batch;
  const auto t0 = Clock::now();
  y26::Pipeline p(y26::open_path_list_source(specs), fwd, po);
  y26::Result r;
  while (p.next(r)) {
    if (!r.error.empty()) y26::fail("bench_predict: " + r.error);
    ++st.images;
    st.mean.decode += r.speed.decode;
    st.mean.preprocess += r.speed.preprocess;
    st.mean.inference += r.speed.inference;
    st.mean.postprocess += r.speed.postprocess;
    if (rss_peak && st.images % 50 == 0) *rss_peak = std::max(*rss_peak, vmrss_mb());
    if (rss_early && st.images == 100) *rss_early = vmrss_mb();
  }
  if (rss_last) *rss_last = vmrss_mb();  // before the pipeline is torn down
  st.wall_s = std::chrono::duration<double>(Clock::now() - t0).count();
  const double n = std::max<int64_t>(st.images, 1);
  st.mean.decode /= n;
  st.mean.preprocess /= n;
  st.mean.inference /= n;
  st.mean.postprocess /= n;
  return st;
}

// Bare forward on a ready input batch, ms per image (median of iters).
double pure_forward_ms(const y26::ForwardOutputsFn& fwd, const std::string& image, const y26::PipelineOptions& po, int iters) {
  cv::Mat im = cv::imread(image);
  y26::LetterboxOptions lo;
  lo.height = po.imgsz_h;
  lo.width = po.imgsz_w;
  lo.stride = po.stride;
  std::vector<cv::Mat> batch(po.batch, y26::letterbox(im, lo).image);
  torch::Device dev(po.device);
  torch::Tensor x = y26::preprocess_batch(batch, dev, po.half);
  torch::NoGradGuard ng;
  fwd(x);
  std::vector<double> ms;
  for (int i = 0; i < iters; ++i) {
    const auto t0 = Clock::now();
    std::vector<torch::Tensor> y = fwd(x);
    if (dev.is_cuda()) torch::cuda::synchronize();
    ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count() / po.batch);
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  std::string model = "fake", source, json_path, device = "cpu";
  int imgsz = 640, stream_n = 1000, threads = 0, workers = 1;
  std::vector<int> batches = {1, 8};
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) { std::cerr << a << " needs a value\n"; std::exit(2); }
      return argv[++i];
    };
    if (a == "--model") model = val();
    else if (a == "--source") source = val();
    else if (a == "--imgsz") imgsz = std::stoi(val());
    else if (a == "--batch") batches = parse_ints(val());
    else if (a == "--stream") stream_n = std::stoi(val());
    else if (a == "--threads") threads = std::stoi(val());
    else if (a == "--workers") workers = std::stoi(val());
    else if (a == "--device") device = val();
    else if (a == "--json") json_path = val();
    else { std::cerr << "unknown option " << a << " (see the header of bench_predict.cpp)\n"; return 2; }
  }
  try {
    const int torch_threads = y26::configure_threads(threads, workers);
    device = y26::resolve_device(device);
    if (source.empty()) source = make_synthetic_dir(200);
    const std::vector<std::string> files = y26::expand_source_paths(source);
    BenchModel bm = make_forward(model, torch::Device(device));
    const y26::ForwardOutputsFn& fwd = bm.forward;

    y26::PipelineOptions po;
    if (bm.model) po = y26::model_pipeline_options(*bm.model, po);
    po.imgsz_h = po.imgsz_w = imgsz;
    po.device = device;
    po.workers = workers;
    po.post.conf = 0.25f;

    std::ostringstream js;
    js << "{\n  \"model\": \"" << model << "\", \"device\": \"" << device << "\", \"imgsz\": " << imgsz
       << ", \"torch_threads\": " << torch_threads << ", \"workers\": " << workers << ", \"images\": " << files.size() << ",\n  \"runs\": [";
    for (size_t bi = 0; bi < batches.size(); ++bi) {
      po.batch = batches[bi];
      const double fwd_ms = pure_forward_ms(fwd, files.front(), po, 10);
      RunStats st = run_stream({source}, fwd, po);
      const double ips = st.images / st.wall_s;
      std::printf("batch %d: %lld images in %.2f s = %.1f img/s | per image ms: decode %.2f preprocess %.2f inference %.2f "
                  "postprocess %.2f | bare forward %.2f\n",
                  st.batch, static_cast<long long>(st.images), st.wall_s, ips, st.mean.decode, st.mean.preprocess,
                  st.mean.inference, st.mean.postprocess, fwd_ms);
      std::fflush(stdout);
      js << (bi ? "," : "") << "\n    {\"batch\": " << st.batch << ", \"images\": " << st.images << ", \"wall_s\": " << st.wall_s
         << ", \"images_per_s\": " << ips << ", \"ms_per_image\": {\"decode\": " << st.mean.decode << ", \"preprocess\": "
         << st.mean.preprocess << ", \"inference\": " << st.mean.inference << ", \"postprocess\": " << st.mean.postprocess
         << "}, \"bare_forward_ms_per_image\": " << fwd_ms << "}";
    }
    // Memory across a long stream: the directory repeated until stream_n images.
    std::vector<std::string> specs;
    for (int64_t n = 0; n < stream_n; n += static_cast<int64_t>(files.size())) specs.push_back(source);
    po.batch = batches.back();
    const double rss_start = vmrss_mb();
    double rss_peak = rss_start, rss_100 = 0, rss_last = 0;
    RunStats st = run_stream(specs, fwd, po, &rss_peak, &rss_100, &rss_last);
    const double rss_end = vmrss_mb();
    std::printf("stream: %lld images at batch %d, %.1f img/s, VmRSS MB: start %.1f, after 100 images %.1f, peak %.1f, "
                "after the last image %.1f, after teardown %.1f\n",
                static_cast<long long>(st.images), po.batch, st.images / st.wall_s, rss_start, rss_100, rss_peak, rss_last,
                rss_end);
    js << "\n  ],\n  \"stream\": {\"images\": " << st.images << ", \"batch\": " << po.batch << ", \"images_per_s\": "
       << st.images / st.wall_s << ", \"vmrss_mb_start\": " << rss_start << ", \"vmrss_mb_peak\": " << rss_peak
       << ", \"vmrss_mb_after_100\": " << rss_100 << ", \"vmrss_mb_after_last\": " << rss_last
       << ", \"vmrss_mb_end\": " << rss_end << "}\n}\n";
    if (!json_path.empty()) {
      std::ofstream(json_path) << js.str();
      std::printf("wrote %s\n", json_path.c_str());
    }
  } catch (...) {
    std::cerr << y26::describe_exception(std::current_exception()) << "\n";
    return 1;
  }
  return 0;
}
