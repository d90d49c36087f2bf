// Identity switches of our trackers side by side with a reference tracker run elsewhere (scripts/track-compare.sh
// runs upstream's BYTETracker / BOTSORT from its source) on the same generated detection sequences.
//   bench_track_compare --write DIR   writes DIR/scenes.csv, DIR/sequence.csv and DIR/frames/<scene>_<frame>.png
//   bench_track_compare --score DIR   runs our ByteTrack and BoT-SORT on that sequence (BoT-SORT with the frames,
//                                     for camera-motion compensation) and scores them and DIR/reference_tracks.csv
// Files: scenes.csv "scene,frames,width,height"; sequence.csv "scene,frame,kind,id,x1,y1,x2,y2,conf,cls" with kind
// "det" (id: the true id, 0 for a false positive) or "gt"; reference_tracks.csv "tracker,scene,frame,id,x1,y1,x2,y2".
// Scores: per frame, truth and tracks matched one-to-one at IoU >= 0.5 (track/mot_metrics.h).
#include <opencv2/imgcodecs.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>

#include "track/mot_metrics.h"
#include "track/scene.h"
#include "track/tracker.h"
#include "util/error.h"
#include "util/source_dir.h"

namespace fs = std::filesystem;

namespace {

// How the made-up detector sees a scene: box jitter, score range, misses and false positives.
struct Noise {
  double jitter = 2;                // +- pixels on each coordinate
  double score_lo = 0.5, score_hi = 0.95;
  double miss = 0;                  // probability that a visible object is not detected in a frame
  double false_pos = 0;             // probability of one spurious box in a frame
  double fp_lo = 0.1, fp_hi = 0.4;  // its score range
};

struct Case {
  std::string name;
  y26::SceneSpec scene;
  Noise noise;
};

std::vector<Case> cases() {
  std::vector<Case> c;
  c.push_back({"crossing", y26::crossing_scene(640, 480, 90, 8), {}});
  c.push_back({"random10", y26::random_scene(640, 480, 90, 10, 3), {}});
  // A weaker detector: wider jitter, scores down to the low band (second association), misses, false positives.
  c.push_back({"noisy12", y26::random_scene(640, 480, 120, 12, 7), {4, 0.15, 0.95, 0.1, 0.3, 0.1, 0.4}});
  // A panning camera: every box drifts 4 px per frame after frame 10 (BoT-SORT compensates with the frames).
  y26::SceneSpec pan = y26::random_scene(640, 480, 90, 8, 11);
  pan.pan_x = 4, pan.pan_from = 10;
  c.push_back({"pan8", pan, {3, 0.3, 0.95, 0.05, 0.1, 0.1, 0.4}});
  // A crowd: 30 shapes crossing each other often, a detector that misses one box in five and adds spurious ones.
  c.push_back({"crowd30", y26::random_scene(640, 480, 150, 30, 5), {5, 0.1, 0.9, 0.2, 0.5, 0.1, 0.5}});
  // An occlusion longer than track_buffer (30): the object comes back under a new id, one switch by design.
  c.push_back({"hide40", y26::crossing_scene(640, 480, 120, 40), {}});
  return c;
}

struct Det {
  int id = 0, cls = 0;
  double x1 = 0, y1 = 0, x2 = 0, y2 = 0, conf = 0;
};

// The detections of one frame: the true boxes seen through the noise model, seeded by scene and frame.
std::vector<Det> detect(const Case& c, size_t scene_index, int frame) {
  std::mt19937 rng(static_cast<unsigned>(1000 * scene_index + frame));
  std::uniform_real_distribution<double> u(0, 1);
  const Noise& n = c.noise;
  auto jit = [&]() { return (2 * u(rng) - 1) * n.jitter; };
  std::vector<Det> out;
  for (const auto& t : y26::scene_truth(c.scene, frame)) {
    const double j1 = jit(), j2 = jit(), j3 = jit(), j4 = jit(), s = n.score_lo + (n.score_hi - n.score_lo) * u(rng);
    if (u(rng) < n.miss) continue;
    out.push_back({t.id, t.cls, t.box.x + j1, t.box.y + j2, t.box.x + t.box.width + j3, t.box.y + t.box.height + j4, s});
  }
  if (u(rng) < n.false_pos) {
    const double w = 20 + 40 * u(rng), h = 20 + 40 * u(rng), x = u(rng) * (c.scene.width - w), y = u(rng) * (c.scene.height - h);
    out.push_back({0, static_cast<int>(3 * u(rng)) % 3, x, y, x + w, y + h, n.fp_lo + (n.fp_hi - n.fp_lo) * u(rng)});
  }
  return out;
}

std::string frame_png(const fs::path& dir, const std::string& scene, int frame) {
  return (dir / "frames" / (scene + "_" + std::to_string(frame) + ".png")).string();
}

std::vector<std::string> split(const std::string& line) {
  std::vector<std::string> f;
  std::stringstream ss(line);
  for (std::string x; std::getline(ss, x, ',');) f.push_back(x);
  return f;
}

void write(const fs::path& dir) {
  fs::create_directories(dir / "frames");
  std::ofstream scenes(dir / "scenes.csv"), seq(dir / "sequence.csv");
  scenes << "scene,frames,width,height\n";
  seq << "scene,frame,kind,id,x1,y1,x2,y2,conf,cls\n";
  seq.precision(9);
  const auto all = cases();
  for (size_t k = 0; k < all.size(); ++k) {
    const Case& c = all[k];
    scenes << c.name << "," << c.scene.frames << "," << c.scene.width << "," << c.scene.height << "\n";
    for (int f = 0; f < c.scene.frames; ++f) {
      for (const auto& t : y26::scene_truth(c.scene, f))
        seq << c.name << "," << f << ",gt," << t.id << "," << t.box.x << "," << t.box.y << "," << t.box.x + t.box.width << ","
            << t.box.y + t.box.height << ",1," << t.cls << "\n";
      for (const auto& d : detect(c, k, f))
        seq << c.name << "," << f << ",det," << d.id << "," << d.x1 << "," << d.y1 << "," << d.x2 << "," << d.y2 << "," << d.conf << ","
            << d.cls << "\n";
      if (!cv::imwrite(frame_png(dir, c.name, f), y26::render_scene(c.scene, f)))
        y26::fail("bench_track_compare: cannot write " + frame_png(dir, c.name, f));
    }
  }
  std::printf("wrote %zu scenes to %s\n", all.size(), dir.string().c_str());
}

struct FrameData {
  std::vector<y26::TruthBox> truth;
  std::vector<Det> dets;
};
// scene -> frame -> what sequence.csv holds for it
using Sequence = std::map<std::string, std::vector<FrameData>>;

Sequence read_sequence(const fs::path& dir) {
  Sequence seq;
  std::ifstream sc(dir / "scenes.csv"), in(dir / "sequence.csv");
  if (!sc || !in) y26::fail("bench_track_compare: no scenes.csv / sequence.csv in " + dir.string() + "; run with --write first");
  std::string line;
  std::getline(sc, line);
  while (std::getline(sc, line)) {
    auto f = split(line);
    if (f.size() == 4) seq[f[0]].resize(std::stoi(f[1]));
  }
  std::getline(in, line);
  while (std::getline(in, line)) {
    auto f = split(line);
    if (f.size() != 10) y26::fail("bench_track_compare: bad line in sequence.csv: " + line);
    FrameData& fd = seq.at(f[0]).at(std::stoi(f[1]));
    const double x1 = std::stod(f[4]), y1 = std::stod(f[5]), x2 = std::stod(f[6]), y2 = std::stod(f[7]);
    if (f[2] == "gt") fd.truth.push_back({std::stoi(f[3]), std::stoi(f[9]), cv::Rect2d(x1, y1, x2 - x1, y2 - y1)});
    else fd.dets.push_back({std::stoi(f[3]), std::stoi(f[9]), x1, y1, x2, y2, std::stod(f[8])});
  }
  return seq;
}

// tracker -> scene -> frame -> tracks
using Tracks = std::map<std::string, std::map<std::string, std::vector<std::vector<y26::TrackedBox>>>>;

Tracks run_ours(const Sequence& seq, const fs::path& dir) {
  Tracks out;
  for (const std::string name : {"bytetrack", "botsort"}) {
    const auto cfg = y26::load_tracker_config(y26::source_dir() + "/cfg/trackers/" + name + ".yaml");
    for (const auto& [scene, frames] : seq) {
      y26::Tracker tracker(cfg);
      auto& per_frame = out["ours-" + name][scene];
      for (size_t f = 0; f < frames.size(); ++f) {
        std::vector<y26::TrackInput> in;
        for (const auto& d : frames[f].dets) {
          y26::TrackInput t;
          t.cx = (d.x1 + d.x2) / 2, t.cy = (d.y1 + d.y2) / 2, t.w = d.x2 - d.x1, t.h = d.y2 - d.y1;
          t.score = d.conf, t.cls = d.cls, t.idx = static_cast<int>(in.size());
          in.push_back(t);
        }
        cv::Mat image;
        if (cfg.tracker_type == "botsort") {
          image = cv::imread(frame_png(dir, scene, static_cast<int>(f)));
          if (image.empty()) y26::fail("bench_track_compare: cannot read " + frame_png(dir, scene, static_cast<int>(f)));
        }
        std::vector<y26::TrackedBox> tb;
        for (const auto& t : tracker.update(in, image))
          tb.push_back({t.id, cv::Rect2d(t.box[0], t.box[1], t.box[2] - t.box[0], t.box[3] - t.box[1])});
        per_frame.push_back(std::move(tb));
      }
    }
  }
  return out;
}

void read_reference(const fs::path& file, const Sequence& seq, Tracks& out) {
  std::ifstream in(file);
  if (!in) return;
  std::string line;
  std::getline(in, line);
  while (std::getline(in, line)) {
    auto f = split(line);
    if (f.size() != 8) y26::fail("bench_track_compare: bad line in " + file.string() + ": " + line);
    auto& per_frame = out[f[0]][f[1]];
    per_frame.resize(seq.at(f[1]).size());
    const double x1 = std::stod(f[4]), y1 = std::stod(f[5]), x2 = std::stod(f[6]), y2 = std::stod(f[7]);
    per_frame.at(std::stoi(f[2])).push_back({std::stoll(f[3]), cv::Rect2d(x1, y1, x2 - x1, y2 - y1)});
  }
}

void score(const fs::path& dir) {
  const Sequence seq = read_sequence(dir);
  Tracks tracks = run_ours(seq, dir);
  read_reference(dir / "reference_tracks.csv", seq, tracks);
  std::printf("%-10s %-24s %6s %6s %6s %6s %8s %7s\n", "scene", "tracker", "truth", "IDsw", "miss", "FP", "ids/obj", "MOTA");
  struct Total {
    int truth = 0, id_switches = 0, misses = 0, false_positives = 0;
  };
  std::map<std::string, Total> total;
  for (const auto& [scene, frames] : seq)
    for (const auto& [name, by_scene] : tracks) {
      y26::MotAccumulator acc;
      auto it = by_scene.find(scene);
      for (size_t f = 0; f < frames.size(); ++f) {
        const std::vector<y26::TrackedBox> none;
        const auto& tb = it != by_scene.end() && f < it->second.size() ? it->second[f] : none;
        acc.add_frame(frames[f].truth, tb);
      }
      Total& t = total[name];
      t.truth += acc.truth, t.id_switches += acc.id_switches, t.misses += acc.misses, t.false_positives += acc.false_positives;
      size_t ids = 0;
      for (const auto& [t, v] : acc.ids_of_truth) ids += v.size();
      std::printf("%-10s %-24s %6d %6d %6d %6d %8.2f %7.3f\n", scene.c_str(), name.c_str(), acc.truth, acc.id_switches, acc.misses,
                  acc.false_positives, acc.ids_of_truth.empty() ? 0.0 : double(ids) / acc.ids_of_truth.size(), acc.mota());
    }
  for (const auto& [name, t] : total)
    std::printf("%-10s %-24s %6d %6d %6d %6d %8s %7.3f\n", "all", name.c_str(), t.truth, t.id_switches, t.misses, t.false_positives, "",
                t.truth ? 1.0 - double(t.misses + t.false_positives + t.id_switches) / t.truth : 1.0);
  // Frame by frame: the same ids on boxes within 1 px of the reference's (ours-X against upstream-X).
  for (const std::string name : {"bytetrack", "botsort"}) {
    auto ours = tracks.find("ours-" + name), ref = tracks.find("upstream-" + name);
    if (ours == tracks.end() || ref == tracks.end()) continue;
    int same = 0, all = 0;
    for (const auto& [scene, frames] : seq) {
      const auto& a = ours->second.at(scene);
      auto rb = ref->second.find(scene);
      for (size_t f = 0; f < frames.size(); ++f, ++all) {
        const std::vector<y26::TrackedBox> none;
        const auto& b = rb != ref->second.end() && f < rb->second.size() ? rb->second[f] : none;
        bool eq = a[f].size() == b.size();
        for (const auto& x : a[f]) {
          auto it = std::find_if(b.begin(), b.end(), [&](const y26::TrackedBox& y) { return y.id == x.id; });
          eq = eq && it != b.end() && std::abs(it->box.x - x.box.x) < 1 && std::abs(it->box.y - x.box.y) < 1 &&
               std::abs(it->box.br().x - x.box.br().x) < 1 && std::abs(it->box.br().y - x.box.br().y) < 1;
        }
        same += eq;
      }
    }
    std::printf("%s: the same ids and boxes (within 1 px) as the reference in %d of %d frames\n", name.c_str(), same, all);
  }
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc != 3 || (std::string(argv[1]) != "--write" && std::string(argv[1]) != "--score")) {
      std::fprintf(stderr, "usage: bench_track_compare --write DIR | --score DIR\n");
      return 2;
    }
    if (std::string(argv[1]) == "--write") write(argv[2]);
    else score(argv[2]);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_track_compare: %s\n", e.what());
    return 1;
  }
}
