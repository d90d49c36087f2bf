// Runs the demo (synthetic set -> train yolo26n -> validate -> predict held-out images) and reports its wall time
// and final mAP, the numbers `yolo26 demo` promises (under 5 minutes on a 2-core CPU, mAP50 > 0.5).
//   bench_demo [key=value ...]   any run_demo()/train() argument, e.g. epochs=12 imgsz=160 project=/tmp/demo-runs
#include <atomic>
#include <cstdio>
#include <iostream>
#include <string>

#include "train/demo.h"

int main(int argc, char** argv) {
  YAML::Node args(YAML::NodeType::Map);
  args["project"] = "/tmp/yolo26-demo-runs";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto eq = a.find('=');
    if (eq == std::string::npos) {
      std::fprintf(stderr, "arguments are key=value (got '%s')\n", a.c_str());
      return 2;
    }
    args[a.substr(0, eq)] = YAML::Load(a.substr(eq + 1));
  }
  std::atomic<bool> stop{false};
  y26::TrainCallbacks cb{[](const y26::TrainEvent& e) {
    if (e.type == "log") std::cout << e.str.at("text") << std::endl;
    if (e.type == "epoch_end")
      std::printf("epoch %g: mAP50 %.4f mAP50-95 %.4f, %.1f s, %.1f img/s, data wait %.2f\n", e.num.at("epoch"),
                  e.num.count("metrics/mAP50(B)") ? e.num.at("metrics/mAP50(B)") : 0.0,
                  e.num.count("metrics/mAP50-95(B)") ? e.num.at("metrics/mAP50-95(B)") : 0.0, e.num.at("epoch_time"),
                  e.num.at("images_per_second"), e.num.at("data_wait_fraction"));
  }};
  try {
    auto r = y26::run_demo(args, cb, stop);
    std::printf("{\"seconds\":%.1f,\"mAP50\":%.4f,\"mAP50_95\":%.4f,\"epochs\":%lld,\"detections\":%lld,\"predictDir\":\"%s\"}\n",
                r.seconds, r.metrics.count("metrics/mAP50(B)") ? r.metrics.at("metrics/mAP50(B)") : 0.0,
                r.metrics.count("metrics/mAP50-95(B)") ? r.metrics.at("metrics/mAP50-95(B)") : 0.0,
                (long long)r.train.epochs_completed, (long long)r.detections, r.predict_dir.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_demo: %s\n", e.what());
    return 1;
  }
  return 0;
}
