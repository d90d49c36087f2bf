// The predict pipeline on ONNX Runtime's C API against ONNX Runtime's bare forward of the same file, in one process:
// each round streams every image of a folder through the Predictor (decode, letterbox, forward, end-to-end
// post-processing; batch 1) and then runs the bare session.run the same number of times on a pre-built input of the
// imgsz. Rounds alternate (the machine's load drifts within a run); the medians and their ratio are reported, with
// the process CPU time per image.
//   bench_ort_predict --model M.pt|M.onnx --source DIR [--imgsz 640] [--rounds 5] [--threads 0] [--lib LIB] [--json]
// A .pt is exported first (dynamic shape, as predict()'s cache does). LIB: $YOLO26_ORT_LIB, else the library of
// node_modules/onnxruntime-node in the source tree.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "export/onnx_export.h"
#include "infer/ort_runtime.h"
#include "infer/predictor.h"
#include "util/error.h"
#include "util/source_dir.h"

namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;

double cpu_ms() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto ms = [](const timeval& t) { return t.tv_sec * 1e3 + t.tv_usec / 1e3; };
  return ms(ru.ru_utime) + ms(ru.ru_stime);
}

double since_ms(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  std::string model, source, lib;
  int imgsz = 640, rounds = 5, threads = 0;
  bool json = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) y26::fail(a + " needs a value");
      return argv[++i];
    };
    if (a == "--model") model = val();
    else if (a == "--source") source = val();
    else if (a == "--imgsz") imgsz = std::stoi(val());
    else if (a == "--rounds") rounds = std::stoi(val());
    else if (a == "--threads") threads = std::stoi(val());
    else if (a == "--lib") lib = val();
    else if (a == "--json") json = true;
    else {
      std::cerr << "usage: bench_ort_predict --model M.pt|M.onnx --source DIR [--imgsz 640] [--rounds 5] [--threads 0] [--lib LIB] [--json]\n";
      return 2;
    }
  }
  try {
    if (model.empty() || source.empty()) y26::fail("bench_ort_predict: --model and --source are required");
    if (lib.empty()) lib = y26::find_ort_library(y26::source_dir());
    if (lib.empty()) y26::fail("no libonnxruntime.so under node_modules/onnxruntime-node: run npm ci, or pass --lib / set YOLO26_ORT_LIB");
    std::string onnx = model;
    if (fs::path(model).extension() != ".onnx") {
      onnx = (fs::temp_directory_path() / ("bench-ort-predict-" + std::to_string(::getpid()) + ".onnx")).string();
      y26::ExportOptions eo;
      eo.dynamic = true;
      eo.imgsz_h = eo.imgsz_w = imgsz;
      y26::export_model(model, eo, onnx);
    }
    auto session = std::make_shared<y26::OrtModel>(lib, onnx, threads);
    const y26::PredictArgs args = y26::parse_predict_args(YAML::Load("{imgsz: " + std::to_string(imgsz) + ", batch: 1}"));
    const y26::OnnxMetadata md = y26::read_onnx_metadata(onnx);

    auto stream = [&]() {
      y26::PredictPlan plan = y26::plan_onnx(md, onnx, &args);
      y26::use_ort_model(plan, session);
      y26::Predictor pred(y26::open_path_source(source, {}), std::move(plan), args);
      y26::Result r;
      int n = 0;
      while (pred.next(r)) n += r.error.empty();
      return n;
    };
    const int images = stream();  // warm-up: page cache, ONNX Runtime's first runs at this shape
    if (images == 0) y26::fail("bench_ort_predict: no readable images in " + source);
    const torch::Tensor x = torch::full({1, 3, imgsz, imgsz}, 0.5f);
    for (int i = 0; i < 3; ++i) session->run(x);

    std::vector<double> ours, bare, ours_cpu, bare_cpu;
    for (int r = 0; r < rounds; ++r) {
      double c0 = cpu_ms();
      auto t0 = Clock::now();
      stream();
      ours.push_back(since_ms(t0) / images);
      ours_cpu.push_back((cpu_ms() - c0) / images);
      c0 = cpu_ms();
      t0 = Clock::now();
      for (int i = 0; i < images; ++i) session->run(x);
      bare.push_back(since_ms(t0) / images);
      bare_cpu.push_back((cpu_ms() - c0) / images);
    }
    if (onnx != model) fs::remove(onnx);
    const double o = median(ours), b = median(bare);
    std::printf("ONNX Runtime %s, %d images at %d, batch 1, %d rounds: pipeline %.1f ms/img (CPU %.1f), bare forward %.1f ms "
                "(CPU %.1f): %.3fx\n",
                session->version().c_str(), images, imgsz, rounds, o, median(ours_cpu), b, median(bare_cpu), o / b);
    if (json) {
      std::printf("{\"ort_version\": \"%s\", \"images\": %d, \"imgsz\": %d, \"rounds\": %d, \"pipeline_ms_per_image\": %.3f, "
                  "\"pipeline_cpu_ms_per_image\": %.3f, \"bare_forward_ms\": %.3f, \"bare_cpu_ms\": %.3f, \"ratio\": %.4f}\n",
                  session->version().c_str(), images, imgsz, rounds, o, median(ours_cpu), b, median(bare_cpu), o / b);
    }
  } catch (...) {
    std::cerr << y26::describe_exception(std::current_exception()) << "\n";
    return 1;
  }
  return 0;
}
