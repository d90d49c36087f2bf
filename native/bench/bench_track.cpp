// Tracking overhead over predict on a generated video of moving shapes: the same video through the same model
// without a tracker, with ByteTrack and with BoT-SORT (sparse optical flow; its motion estimate overlapped with the
// forward pass, and inline), the four side by side and interleaved frame by frame; time per frame, its ratio to
// predict's in the same round (median and range over rounds), the tracking step's own time on the pipeline thread,
// and ID switches / MOTA against the known identities.
//   bench_track [--model <checkpoint.pt|model.yaml>] [--imgsz 320] [--frames 90] [--size 640x480] [--objects 10]
//               [--rounds 5] [--threads N] [--cv-threads N]
//               [--forward-ms MS] [--json out.json] [--write-video out.mp4]
// The model runs for its cost; its detections are replaced by the scene's true boxes (scores 0.5-0.95, boxes
// jittered by 2 px), so every arm tracks the same known objects. --forward-ms replaces the model by a wait of that
// long with the CPU idle, as a forward pass on an accelerator leaves it. --write-video only writes the scene and exits.
#include <opencv2/videoio.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <thread>

#include "infer/model_forward.h"
#include "infer/pipeline.h"
#include "track/mot_metrics.h"
#include "track/scene.h"
#include "track/track_results.h"
#include "util/error.h"
#include "util/source_dir.h"

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

struct Arm {
  std::string name;                  // predict, bytetrack, botsort, botsort-inline
  std::vector<double> ms, track_ms;  // per round, per frame: wall ms of next(), tracking step ms
  y26::MotAccumulator acc;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    std::string model = y26::source_dir() + "/test/fixtures/det/yolo26n-shapes.pt", json_path, write_video;
    int imgsz = 320, frames = 90, w = 640, h = 480, objects = 10, rounds = 5, threads = 0;
    double forward_ms = 0;
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      auto val = [&]() -> std::string {
        if (i + 1 >= argc) y26::fail("bench_track: " + a + " needs a value");
        return argv[++i];
      };
      if (a == "--model") model = val();
      else if (a == "--imgsz") imgsz = std::stoi(val());
      else if (a == "--frames") frames = std::stoi(val());
      else if (a == "--size") { std::string v = val(); w = std::stoi(v); h = std::stoi(v.substr(v.find('x') + 1)); }
      else if (a == "--objects") objects = std::stoi(val());
      else if (a == "--rounds") rounds = std::stoi(val());
      else if (a == "--threads") threads = std::stoi(val());
      else if (a == "--forward-ms") forward_ms = std::stod(val());
      else if (a == "--cv-threads") cv::setNumThreads(std::stoi(val()));
      else if (a == "--json") json_path = val();
      else if (a == "--write-video") write_video = val();
      else y26::fail("bench_track: unknown argument " + a);
    }
    if (!write_video.empty()) {
      const y26::SceneSpec s = y26::crossing_scene(w, h, frames, 8);
      y26::write_scene_video(s, write_video, 10);
      std::printf("wrote %s (%d frames %dx%d)\n", write_video.c_str(), frames, w, h);
      return 0;
    }
    if (threads > 0) torch::set_num_threads(threads);
    const y26::SceneSpec scene = y26::random_scene(w, h, frames, objects);
    const std::string video = (fs::temp_directory_path() / "y26_bench_track.avi").string();
    y26::write_scene_video(scene, video, 30);

    auto loaded = y26::load_model(model);
    auto net = loaded.model;
    net->eval();
    net->fuse();
    y26::ForwardOutputsFn model_fwd = y26::model_forward(net);
    y26::PipelineOptions base = y26::model_pipeline_options(*net);
    base.imgsz_h = base.imgsz_w = imgsz;
    base.post.conf = 0.1f;
    // Detections: the true boxes of the frame, in letterboxed input pixels, after the real forward. One counter per
    // pipeline (batch 1, frames in order).
    const double gain = std::min(double(imgsz) / w, double(imgsz) / h);
    auto make_forward = [&]() -> y26::ForwardOutputsFn {
      auto frame = std::make_shared<int>(0);
      return [&, frame](const torch::Tensor& x) {
        if (forward_ms > 0) std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(forward_ms));
        else model_fwd(x);
        const double pad_x = (x.size(3) - w * gain) / 2, pad_y = (x.size(2) - h * gain) / 2;
        std::mt19937 rng(*frame);
        std::uniform_real_distribution<double> jit(-2, 2), score(0.5, 0.95);
        torch::Tensor y = torch::zeros({1, 300, 6});
        int i = 0;
        for (const auto& t : y26::scene_truth(scene, (*frame)++)) {
          const double x1 = t.box.x + jit(rng), y1 = t.box.y + jit(rng), x2 = t.box.x + t.box.width + jit(rng), y2 = t.box.y + t.box.height + jit(rng);
          y[0][i++] = torch::tensor({float(x1 * gain + pad_x), float(y1 * gain + pad_y), float(x2 * gain + pad_x), float(y2 * gain + pad_y),
                                     float(score(rng)), float(t.cls)});
        }
        return std::vector<torch::Tensor>{y};
      };
    };

    // botsort runs its camera-motion estimate on its own thread during the forward pass (the default);
    // botsort-inline runs it before the association, as a plain sequential tracker would.
    // The arms run side by side, one frame each in turn (the first arm changes every frame), so that the load of a
    // shared machine, which drifts over seconds, falls on all of them alike; each arm's time is that of its next()
    // calls, which hold its forward pass, post-processing and tracking (decoding runs ahead on the pipelines' threads).
    std::vector<Arm> arms{{"predict"}, {"bytetrack"}, {"botsort"}, {"botsort-inline"}};
    for (int round = 0; round < rounds; ++round) {
      std::vector<std::unique_ptr<y26::Pipeline>> pipes;
      std::vector<double> wall(arms.size(), 0), track(arms.size(), 0);
      std::vector<y26::MotAccumulator> accs(arms.size());
      for (size_t k = 0; k < arms.size(); ++k) {
        y26::PipelineOptions po = base;
        if (arms[k].name != "predict") {
          const std::string type = arms[k].name == "bytetrack" ? "bytetrack" : "botsort";
          auto cfg = y26::load_tracker_config(y26::source_dir() + "/cfg/trackers/" + type + ".yaml");
          y26::attach_tracking(po, std::make_shared<y26::SharedTracker>(cfg), false, arms[k].name == "botsort");
          // The tracking step's own time on the pipeline thread: starting the motion estimate, waiting for it, the rest.
          double* track_ms = &track[k];
          auto timed = [track_ms](auto f) {
            return [f, track_ms](auto&&... args) {
              const auto t0 = Clock::now();
              f(args...);
              *track_ms += std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
            };
          };
          po.on_batch = timed(po.on_batch);
          po.on_result = timed(po.on_result);
        }
        pipes.push_back(std::make_unique<y26::Pipeline>(y26::open_path_source(video), make_forward(), po));
      }
      int n = 0;
      for (bool more = true; more; ++n)
        for (size_t j = 0; j < arms.size(); ++j) {
          const size_t k = (j + n + round) % arms.size();
          y26::Result r;
          const auto t0 = Clock::now();
          const bool got = pipes[k]->next(r);
          wall[k] += std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
          if (!got) {
            more = false;
            continue;
          }
          std::vector<y26::TrackedBox> tb;
          if (r.ids.defined())
            for (int64_t i = 0; i < r.ids.size(0); ++i) {
              auto b = r.boxes[i];
              tb.push_back({r.ids[i].item<int64_t>(), cv::Rect2d(b[0].item<float>(), b[1].item<float>(), (b[2] - b[0]).item<float>(), (b[3] - b[1]).item<float>())});
            }
          accs[k].add_frame(y26::scene_truth(scene, n), tb);
        }
      const int done = n - 1;  // the last turn found the end of the video
      for (size_t k = 0; k < arms.size(); ++k) {
        arms[k].ms.push_back(wall[k] / done);
        arms[k].track_ms.push_back(track[k] / done);
        if (round == 0) arms[k].acc = accs[k];
      }
    }
    std::ostringstream js;
    js << "{\"frames\": " << frames << ", \"size\": [" << w << ", " << h << "], \"objects\": " << objects << ", \"imgsz\": " << imgsz
       << ", \"rounds\": " << rounds << ", \"torch_threads\": " << torch::get_num_threads() << ", \"opencv_threads\": " << cv::getNumThreads() << ", \"forward_ms\": " << forward_ms << ", \"arms\": {";
    std::printf("%d frames %dx%d, %d objects, imgsz %d, %d rounds (arms alternated in each round), %d torch threads, %d OpenCV threads",
                frames, w, h, objects, imgsz, rounds, torch::get_num_threads(), cv::getNumThreads());
    if (forward_ms > 0) std::printf(", forward replaced by a %.1f ms idle wait", forward_ms);
    std::printf("\n");
    std::printf("ratio = ms per frame over predict's in the same round (arms interleaved frame by frame): median [min, max] over rounds\n");
    for (size_t k = 0; k < arms.size(); ++k) {
      const auto& a = arms[k];
      std::vector<double> ratio;
      for (int i = 0; i < rounds; ++i) ratio.push_back(a.ms[i] / arms[0].ms[i]);
      const double ms = median(a.ms), tr = median(a.track_ms), rm = median(ratio);
      const auto [lo, hi] = std::minmax_element(ratio.begin(), ratio.end());
      std::printf("%-15s %7.2f ms/frame  ratio %.3f [%.3f, %.3f]  tracking step %6.3f ms/frame", a.name.c_str(), ms, rm, *lo, *hi, tr);
      if (a.name != "predict")
        std::printf("  id switches %d  MOTA %.3f (misses %d, false positives %d, truth %d)", a.acc.id_switches, a.acc.mota(),
                    a.acc.misses, a.acc.false_positives, a.acc.truth);
      std::printf("\n");
      js << (k ? ", " : "") << "\"" << a.name << "\": {\"ms_per_frame\": " << ms << ", \"ratio\": " << rm << ", \"ratio_min\": " << *lo
         << ", \"ratio_max\": " << *hi << ", \"track_ms_per_frame\": " << tr << ", \"id_switches\": " << a.acc.id_switches
         << ", \"mota\": " << a.acc.mota() << "}";
    }
    js << "}}\n";
    if (!json_path.empty()) std::ofstream(json_path) << js.str();
    fs::remove(video);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_track: %s\n", e.what());
    return 1;
  }
}
