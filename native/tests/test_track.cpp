// Tracking: Kalman filter, linear assignment against brute force, ByteTrack / BoT-SORT on generated scenes with
// known identities (crossings, occlusions, new objects, camera pan), results rewriting, YAML configs, and the
// pipeline with saving.
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>
#include <sstream>
#include <stdexcept>

#include "infer/pipeline.h"
#include "infer/save.h"
#include "scratch.h"
#include "testing.h"
#include "track/gmc.h"
#include "track/kalman.h"
#include "track/lap.h"
#include "track/mot_metrics.h"
#include "track/scene.h"
#include "track/track_results.h"
#include "track/tracker.h"
#include "util/source_dir.h"

namespace fs = std::filesystem;

namespace {

std::string shipped(const std::string& name) { return y26::source_dir() + "/cfg/trackers/" + name; }

y26::TrackerConfig config(const std::string& type, int buffer = 30, const std::string& gmc = "sparseOptFlow") {
  y26::TrackerConfig c = y26::load_tracker_config(shipped(type + ".yaml"));
  c.track_buffer = buffer;
  c.gmc_method = gmc;
  return c;
}

// Detections from the truth: boxes jittered by up to `jitter` px, score `score`.
std::vector<y26::TrackInput> detections(const std::vector<y26::TruthBox>& truth, std::mt19937& rng, double jitter = 1.5,
                                        double score = 0.9) {
  std::uniform_real_distribution<double> u(-jitter, jitter);
  std::vector<y26::TrackInput> in;
  for (const auto& t : truth) {
    y26::TrackInput d;
    d.cx = t.box.x + t.box.width / 2 + u(rng);
    d.cy = t.box.y + t.box.height / 2 + u(rng);
    d.w = t.box.width + u(rng);
    d.h = t.box.height + u(rng);
    d.score = score;
    d.cls = t.cls;
    d.idx = static_cast<int>(in.size());
    in.push_back(d);
  }
  return in;
}

std::vector<y26::TrackedBox> boxes_of(const std::vector<y26::TrackOutput>& out) {
  std::vector<y26::TrackedBox> b;
  for (const auto& o : out) b.push_back({o.id, cv::Rect2d(o.box[0], o.box[1], o.box[2] - o.box[0], o.box[3] - o.box[1])});
  return b;
}

// The whole scene through a tracker (with rendered frames when `images`), scored.
y26::MotAccumulator run_scene(const y26::SceneSpec& s, y26::Tracker& t, bool images, unsigned seed = 0) {
  std::mt19937 rng(seed);
  y26::MotAccumulator acc;
  for (int f = 0; f < s.frames; ++f) {
    const auto truth = y26::scene_truth(s, f);
    const auto out = t.update(detections(truth, rng), images ? y26::render_scene(s, f) : cv::Mat());
    acc.add_frame(truth, boxes_of(out));
  }
  return acc;
}

double brute_force_best(const std::vector<double>& c, int rows, int cols, double limit, int i, std::vector<char>& used) {
  if (i == rows) return 0;
  double best = brute_force_best(c, rows, cols, limit, i + 1, used);  // row i unmatched
  for (int j = 0; j < cols; ++j)
    if (!used[j] && c[i * cols + j] < limit) {
      used[j] = 1;
      best = std::min(best, c[i * cols + j] - limit + brute_force_best(c, rows, cols, limit, i + 1, used));
      used[j] = 0;
    }
  return best;
}

}  // namespace

TEST_CASE("Kalman filter: initiate, a hand-computed update, and convergence to a constant velocity") {
  for (auto coding : {y26::BoxCoding::XYAH, y26::BoxCoding::XYWH}) {
    y26::KalmanBoxFilter kf(coding);
    const std::array<double, 4> tlwh{100, 50, 40, 80};
    const y26::BoxMeasure z = kf.from_tlwh(tlwh);
    y26::KalmanState s = kf.initiate(z);
    for (int i = 0; i < 4; ++i) EXPECT_NEAR(s.mean[i], z[i], 1e-12);
    for (int i = 4; i < 8; ++i) EXPECT_NEAR(s.mean[i], 0, 1e-12);
    EXPECT_NEAR(s.cov(0, 0), std::pow(2 * 80 / 20.0 * (coding == y26::BoxCoding::XYWH ? 0.5 : 1.0), 2), 1e-9);  // 2 * w|h / 20
    EXPECT_NEAR(s.cov(4, 4), std::pow(10 * (coding == y26::BoxCoding::XYWH ? 40 : 80) / 160.0, 2), 1e-9);
    auto back = kf.to_tlwh(s.mean);
    for (int i = 0; i < 4; ++i) EXPECT_NEAR(back[i], tlwh[i], 1e-9);
    // Update right after initiate: position variance P = (2 h/20)^2, measurement noise R = (h/20)^2, gain 4/5.
    y26::KalmanState u = s;
    y26::BoxMeasure z2 = z;
    z2[1] += 10;
    kf.update(u, z2);
    EXPECT_NEAR(u.mean[1], z[1] + 8, 1e-6);
    EXPECT(u.cov(1, 1) < s.cov(1, 1));
    // Constant velocity: predict + update on a box moving (3, -2) px per frame; the velocity is learnt.
    y26::KalmanState m = s;
    for (int f = 1; f <= 40; ++f) {
      kf.predict(m);
      kf.update(m, kf.from_tlwh({100 + 3.0 * f, 50 - 2.0 * f, 40, 80}));
    }
    EXPECT_NEAR(m.mean[4], 3, 0.05);
    EXPECT_NEAR(m.mean[5], -2, 0.05);
    kf.predict(m);
    EXPECT_NEAR(kf.to_tlwh(m.mean)[0], 100 + 3.0 * 41, 0.2);
    // Lost tracks: size velocities are frozen before predicting.
    m.mean[7] = 5;
    m.mean[6] = 5;
    kf.freeze_size_velocity(m);
    EXPECT(m.mean[7] == 0 && (coding == y26::BoxCoding::XYAH ? m.mean[6] == 5 : m.mean[6] == 0));
  }
}

TEST_CASE("linear assignment equals brute force on random matrices (square and with a cost limit)") {
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> u(0, 1);
  for (int trial = 0; trial < 300; ++trial) {
    const int n = 1 + trial % 7;
    std::vector<double> c(n * n);
    for (auto& v : c) v = u(rng);
    const auto col = y26::solve_square_assignment(c, n);
    double got = 0;
    for (int i = 0; i < n; ++i) got += c[i * n + col[i]];
    std::vector<int> perm(n);
    std::iota(perm.begin(), perm.end(), 0);
    double best = 1e9;
    do {
      double t = 0;
      for (int i = 0; i < n; ++i) t += c[i * n + perm[i]];
      best = std::min(best, t);
    } while (std::next_permutation(perm.begin(), perm.end()));
    EXPECT_NEAR(got, best, 1e-9);
  }
  for (int trial = 0; trial < 400; ++trial) {
    const int rows = trial % 6, cols = (trial / 6) % 6;
    const double limit = 0.3 + 0.6 * u(rng);
    std::vector<double> c(rows * cols);
    for (auto& v : c) v = u(rng);
    const y26::Assignment a = y26::linear_assignment(c, rows, cols, limit);
    double got = 0;
    std::vector<char> row_seen(rows, 0), col_seen(cols, 0);
    for (auto [i, j] : a.matches) {
      EXPECT(c[i * cols + j] < limit);
      got += c[i * cols + j] - limit;
      row_seen[i] = col_seen[j] = 1;
    }
    for (int i : a.unmatched_rows) EXPECT(!row_seen[i]);
    for (int j : a.unmatched_cols) EXPECT(!col_seen[j]);
    EXPECT(a.matches.size() + a.unmatched_rows.size() == (size_t)rows);
    EXPECT(a.matches.size() + a.unmatched_cols.size() == (size_t)cols);
    std::vector<char> used(cols, 0);
    EXPECT_NEAR(got, brute_force_best(c, rows, cols, limit, 0, used), 1e-9);
  }
  // Not greedy: the greedy choice (0,0) would leave row 1 without its only match.
  const y26::Assignment a = y26::linear_assignment({0.1, 0.2, 0.15, 0.9}, 2, 2, 0.8);
  EXPECT(a.matches.size() == 2 && a.matches[0] == std::make_pair(0, 1) && a.matches[1] == std::make_pair(1, 0));
}

TEST_CASE("ByteTrack and BoT-SORT on the crossing scene: no identity switch, ids kept through a short occlusion") {
  const y26::SceneSpec s = y26::crossing_scene(320, 240, 60, 8);
  for (const std::string type : {"bytetrack", "botsort"}) {
    y26::Tracker t(config(type));
    const auto acc = run_scene(s, t, type == "botsort");
    std::cout << "  " << type << ": truth " << acc.truth << ", matched " << acc.matches << ", misses " << acc.misses
              << ", false positives " << acc.false_positives << ", id switches " << acc.id_switches << ", MOTA " << acc.mota() << "\n";
    EXPECT_MSG(acc.id_switches == 0, type << ": " << acc.id_switches << " id switches");
    for (const auto& [truth, ids] : acc.ids_of_truth) EXPECT_MSG(ids.size() == 1, type << ": object " << truth << " got " << ids.size() << " ids");
    // Misses: a new track is confirmed on its second frame (objects 1, 2, 3 at frame 1 are confirmed at once).
    EXPECT_MSG(acc.misses <= 2 && acc.false_positives == 0, type << " misses " << acc.misses << " fp " << acc.false_positives);
    EXPECT(acc.mota() > 0.98);
    // The late object got an id never used before.
    std::set<int64_t> all;
    for (const auto& [truth, ids] : acc.ids_of_truth) all.insert(ids.begin(), ids.end());
    EXPECT(all.size() == 4 && *all.rbegin() == 4);
  }
}

TEST_CASE("an occlusion longer than track_buffer ends the track: the object comes back with a new id") {
  const y26::SceneSpec s = y26::crossing_scene(320, 240, 60, 12);
  y26::Tracker short_buffer(config("bytetrack", 5));
  const auto acc = run_scene(s, short_buffer, false);
  EXPECT(acc.ids_of_truth.at(3).size() == 2);
  EXPECT(acc.ids_of_truth.at(1).size() == 1 && acc.ids_of_truth.at(2).size() == 1);
  y26::Tracker long_buffer(config("bytetrack", 30));
  EXPECT(run_scene(s, long_buffer, false).ids_of_truth.at(3).size() == 1);
}

TEST_CASE("low-score detections keep a track (second association) but never start one") {
  y26::Tracker t(config("bytetrack"));
  auto det = [](double x, double score, int idx) {
    y26::TrackInput d;
    d.cx = x, d.cy = 50, d.w = 30, d.h = 30, d.score = score, d.idx = idx;
    return d;
  };
  auto out = t.update({det(50, 0.9, 0), det(200, 0.15, 1)});
  EXPECT(out.size() == 1 && out[0].id == 1 && out[0].idx == 0);
  for (int f = 1; f <= 5; ++f) {
    out = t.update({det(50 + 2 * f, 0.15, 0), det(200, 0.15, 1)});  // the tracked object fades to a low score
    EXPECT(out.size() == 1 && out[0].id == 1 && std::abs(out[0].score - 0.15) < 1e-6);
  }
  out = t.update({det(62, 0.05, 0)});  // below track_low_thresh: not associated, the track is lost
  EXPECT(out.empty());
  out = t.update({det(64, 0.9, 0)});
  EXPECT(out.size() == 1 && out[0].id == 1);  // found again with its id
  t.reset();
  out = t.update({det(64, 0.9, 0)});
  EXPECT(out.size() == 1 && out[0].id == 1);  // ids restart after reset
}

TEST_CASE("BoT-SORT camera-motion compensation: the optical-flow warp follows a pan and keeps ids through it") {
  y26::SceneSpec s = y26::crossing_scene(320, 240, 30, 0);
  s.objects.resize(1);
  s.objects[0].vx = s.objects[0].vy = 0;
  s.objects[0].w = s.objects[0].h = 24;
  s.objects[0].x = 150, s.objects[0].y = 100;
  s.pan_x = 14, s.pan_y = -6, s.pan_from = 15;  // the camera starts to move suddenly
  y26::CameraMotion gmc("sparseOptFlow");
  gmc.apply(y26::render_scene(s, 15));
  cv::Mat w = gmc.apply(y26::render_scene(s, 16));
  EXPECT_NEAR(w.at<double>(0, 2), 14, 0.5);
  EXPECT_NEAR(w.at<double>(1, 2), -6, 0.5);
  EXPECT_NEAR(w.at<double>(0, 0), 1, 0.01);
  EXPECT_THROWS(y26::CameraMotion("orb"));

  y26::Tracker with_gmc(config("botsort"));
  const auto a = run_scene(s, with_gmc, true);
  EXPECT_MSG(a.ids_of_truth.at(1).size() == 1 && a.misses == 0, "with GMC: " << a.ids_of_truth.at(1).size() << " ids, " << a.misses << " misses");
  // Without compensation the 15 px jumps defeat IoU matching: the track is lost and no new one gets confirmed.
  y26::Tracker without(config("botsort", 30, "none"));
  const auto b = run_scene(s, without, true);
  EXPECT_MSG(b.misses >= 5, "without GMC: " << b.misses << " misses");
}

TEST_CASE("track_result: boxes, ids, keypoints and masks stay aligned; an untracked frame keeps its detections; OBB") {
  y26::Tracker t(config("bytetrack"));
  auto make = [](const std::vector<float>& xs) {
    y26::Result r;
    r.orig_h = 200, r.orig_w = 400;
    const int64_t n = static_cast<int64_t>(xs.size());
    r.boxes = torch::empty({n, 4});
    r.keypoints = torch::zeros({n, 2, 3});
    r.masks = torch::zeros({n, 200, 400}, torch::kUInt8);
    for (int64_t i = 0; i < n; ++i) {
      r.boxes[i] = torch::tensor({xs[i], 50.f, xs[i] + 40, 90.f});
      r.keypoints[i][0][0] = xs[i] + 20;  // a keypoint at the box centre
      r.masks[i][70][static_cast<int64_t>(xs[i]) + 20] = 1;
    }
    r.conf = torch::full({n}, 0.9f);
    r.cls = torch::arange(n);
    return r;
  };
  y26::Result r1 = make({10, 200, 300});
  y26::track_result(t, r1, cv::Mat());
  EXPECT(r1.ids.defined() && r1.ids.size(0) == 3);
  // Frame 2: detections in another order, one missing.
  y26::Result r2 = make({302, 12});
  y26::track_result(t, r2, cv::Mat());
  EXPECT(r2.ids.defined() && r2.ids.size(0) == 2);
  for (int64_t i = 0; i < r2.size(); ++i) {
    const float x1 = r2.boxes[i][0].item<float>();
    EXPECT_NEAR(r2.keypoints[i][0][0].item<float>(), x1 + 20, 1.5);
    EXPECT(r2.masks[i][70][static_cast<int64_t>(std::lround(r2.keypoints[i][0][0].item<float>()))].item<int>() == 1);
    EXPECT(r2.ids[i].item<int64_t>() == (x1 < 100 ? 1 : 3));  // the same objects keep their ids
    EXPECT(r2.cls[i].item<int64_t>() == (x1 < 100 ? 1 : 0));  // the class of the detection matched in this frame
  }
  // A new tracker's second-frame-only object: nothing confirmed on a later frame means no ids, detections kept.
  y26::Tracker fresh(config("bytetrack"));
  fresh.update({});
  y26::Result r3 = make({10, 200});
  y26::track_result(fresh, r3, cv::Mat());
  EXPECT(!r3.ids.defined() && r3.size() == 2);

  // OBB: rotated boxes are tracked as cx, cy, w, h, angle with probabilistic IoU.
  y26::Tracker ot(config("bytetrack"));
  for (int f = 0; f < 3; ++f) {
    y26::Result r;
    r.orig_h = r.orig_w = 300;
    r.obb = torch::tensor({{100.f + 3 * f, 100.f, 60.f, 20.f, 0.5f}, {200.f, 220.f - 2 * f, 40.f, 30.f, -0.3f}});
    r.boxes = y26::obb_enclosing_xyxy(r.obb, 300, 300);
    r.conf = torch::tensor({0.8f, 0.7f});
    r.cls = torch::tensor({0, 0}, torch::kInt64);
    y26::track_result(ot, r, cv::Mat());
    EXPECT(r.ids.defined() && r.obb.size(0) == 2 && r.obb.size(1) == 5 && r.boxes.size(0) == 2);
    if (r.ids.defined() && r.ids.size(0) == 2) {
      EXPECT(r.ids[0].item<int64_t>() == 1 && r.ids[1].item<int64_t>() == 2);
      EXPECT_NEAR(r.obb[0][4].item<float>(), 0.5, 1e-6);
      EXPECT_NEAR(r.obb[0][0].item<float>(), 100 + 3 * f, 1.0);
    }
  }
}

TEST_CASE("tracker YAML: the shipped files have the official defaults; bad files fail naming the key") {
  const auto b = y26::load_tracker_config(shipped("bytetrack.yaml"));
  EXPECT(b.tracker_type == "bytetrack" && b.track_high_thresh == 0.25 && b.track_low_thresh == 0.1 && b.new_track_thresh == 0.25);
  EXPECT(b.track_buffer == 30 && b.match_thresh == 0.8 && b.fuse_score);
  const auto s = y26::load_tracker_config(shipped("botsort.yaml"));
  EXPECT(s.tracker_type == "botsort" && s.gmc_method == "sparseOptFlow" && s.proximity_thresh == 0.5 && s.appearance_thresh == 0.8);
  EXPECT(!s.with_reid && s.model == "auto");
  const std::string d = y26test::scratch_dir("test_track", "yaml");
  auto message = [&](const std::string& text) {
    const std::string f = d + "/t.yaml";
    std::ofstream(f) << text;
    try {
      y26::load_tracker_config(f);
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT(message("tracker_type: bytetrack\ntrack_bufer: 30\n").find("unknown key 'track_bufer' (did you mean 'track_buffer'?)") != std::string::npos);
  EXPECT(message("tracker_type: ocsort\n").find("not supported") != std::string::npos);
  EXPECT(message("tracker_type: botsort\nwith_reid: True\n").find("with_reid") != std::string::npos);
  EXPECT(message("tracker_type: botsort\ngmc_method: ecc\n").find("gmc_method") != std::string::npos);
  EXPECT(message("match_thresh: 1.5\n").find("match_thresh") != std::string::npos);
  EXPECT(message("match_thresh: high\n").find("match_thresh") != std::string::npos);
  EXPECT_THROWS(y26::load_tracker_config(d + "/missing.yaml"));
}

TEST_CASE("pipeline with tracking: a generated video through a deterministic detector, ids saved in txt and video") {
  const std::string d = y26test::scratch_dir("test_track", "pipeline");
  y26::SceneSpec s = y26::crossing_scene(320, 320, 24, 4);
  const std::string video = d + "/scene.avi";
  y26::write_scene_video(s, video, 10);
  // The detector reads the truth of the frame it is called for (batch 1, frames in order; 320 px needs no letterbox).
  auto frame = std::make_shared<int>(0);
  y26::ForwardOutputsFn fwd = [s, frame](const torch::Tensor& x) {
    torch::Tensor y = torch::zeros({1, 300, 6});
    int i = 0;
    for (const auto& t : y26::scene_truth(s, (*frame)++))
      y[0][i++] = torch::tensor({(float)t.box.x, (float)t.box.y, (float)(t.box.x + t.box.width), (float)(t.box.y + t.box.height), 0.9f, (float)t.cls});
    return std::vector<torch::Tensor>{y};
  };
  y26::PipelineOptions po;
  po.imgsz_h = po.imgsz_w = 320;
  po.keep_images = true;
  auto shared = std::make_shared<y26::SharedTracker>(config("botsort"));
  y26::attach_tracking(po, shared, false);
  y26::SaveOptions so;
  so.project = d;
  so.name = "track";
  so.save_txt = true;
  y26::ResultSaver saver(so);
  y26::Pipeline p(y26::open_path_source(video), fwd, po);
  y26::Result r;
  y26::MotAccumulator acc;
  int n = 0;
  while (p.next(r)) {
    EXPECT(r.frame == n);
    std::vector<y26::TrackedBox> tb;
    if (r.ids.defined())
      for (int64_t i = 0; i < r.ids.size(0); ++i) {
        auto b = r.boxes[i];
        tb.push_back({r.ids[i].item<int64_t>(), cv::Rect2d(b[0].item<float>(), b[1].item<float>(), (b[2] - b[0]).item<float>(), (b[3] - b[1]).item<float>())});
      }
    acc.add_frame(y26::scene_truth(s, n), tb);
    saver.save(r);
    ++n;
  }
  saver.close();
  EXPECT(n == 24);
  EXPECT_MSG(acc.id_switches == 0 && acc.mota() > 0.95, "switches " << acc.id_switches << " MOTA " << acc.mota());
  // save_txt: "cls xc yc w h id" per tracked box.
  std::ifstream txt(saver.save_dir() + "/labels/scene_5.txt");
  std::string line;
  int lines = 0;
  while (std::getline(txt, line)) {
    std::istringstream in(line);
    std::vector<double> v;
    double x;
    while (in >> x) v.push_back(x);
    EXPECT_MSG(v.size() == 6 && v[5] >= 1 && v[5] <= 4 && v[5] == std::floor(v[5]), line);
    ++lines;
  }
  EXPECT(lines == 3);
  cv::VideoCapture cap(saver.save_dir() + "/scene.mp4");
  EXPECT(cap.isOpened() && static_cast<int>(cap.get(cv::CAP_PROP_FRAME_COUNT)) == 24);
  // Without persist, a second stream starts over: ids from 1 again.
  *frame = 0;
  y26::attach_tracking(po, shared, false);
  auto rs = y26::predict_all(y26::open_path_source(video), fwd, po);
  EXPECT(rs.size() == 24 && rs[0].ids.defined() && rs[0].ids.max().item<int64_t>() == 3);
  // With persist, the tracker carries on: objects far from where the last run left them get new ids (5, 6, 7,
  // confirmed on their second frame), and the still object 4, back at its place at frame 8, gets its id 4 again.
  *frame = 0;
  y26::attach_tracking(po, shared, true);
  rs = y26::predict_all(y26::open_path_source(video), fwd, po);
  EXPECT(shared->tracker.frame_id() == 48);
  EXPECT(rs.size() == 24 && !rs[0].ids.defined() && rs[1].ids.defined());
  if (rs.size() == 24 && rs[1].ids.defined() && rs[8].ids.defined()) {
    EXPECT(rs[1].ids.min().item<int64_t>() == 5 && rs[1].ids.max().item<int64_t>() == 7);
    EXPECT((rs[8].ids == 4).any().item<bool>());
  }
}

TEST_CASE("BoT-SORT: the motion estimate overlapped with the forward pass gives the ids and boxes of the inline one") {
  const std::string d = y26test::scratch_dir("test_track", "overlap");
  // Two videos in one stream: a panning one (the warp matters) and a still one (without persist: a fresh start).
  y26::SceneSpec a = y26::crossing_scene(320, 320, 30, 4), b = y26::crossing_scene(320, 320, 20, 0);
  a.pan_x = 3, a.pan_y = -2, a.pan_from = 5;
  y26::write_scene_video(a, d + "/a.avi", 10);
  y26::write_scene_video(b, d + "/b.avi", 10);
  auto truth = [&](int f) { return f < a.frames ? y26::scene_truth(a, f) : y26::scene_truth(b, f - a.frames); };
  struct Run {
    std::vector<torch::Tensor> ids, boxes;
  };
  auto run = [&](const std::string& gmc, bool overlap, int batch) {
    auto frame = std::make_shared<int>(0);
    y26::ForwardOutputsFn fwd = [&, frame](const torch::Tensor& x) {
      torch::Tensor y = torch::zeros({x.size(0), 300, 6});
      for (int64_t k = 0; k < x.size(0); ++k) {
        int i = 0;
        for (const auto& t : truth((*frame)++))
          y[k][i++] = torch::tensor({(float)t.box.x, (float)t.box.y, (float)(t.box.x + t.box.width), (float)(t.box.y + t.box.height), 0.9f, (float)t.cls});
      }
      return std::vector<torch::Tensor>{y};
    };
    y26::PipelineOptions po;
    po.imgsz_h = po.imgsz_w = 320;
    po.batch = batch;
    y26::attach_tracking(po, std::make_shared<y26::SharedTracker>(config("botsort", 30, gmc)), false, overlap);
    Run out;
    for (auto& r : y26::predict_all(y26::open_path_list_source({d + "/a.avi", d + "/b.avi"}), fwd, po)) {
      out.ids.push_back(r.ids.defined() ? r.ids : torch::zeros({0}, torch::kInt64));
      out.boxes.push_back(r.boxes);
    }
    return out;
  };
  auto same = [](const Run& x, const Run& y) {
    if (x.ids.size() != y.ids.size()) return false;
    for (size_t f = 0; f < x.ids.size(); ++f)
      if (!torch::equal(x.ids[f], y.ids[f]) || !torch::equal(x.boxes[f], y.boxes[f])) return false;
    return true;
  };
  const Run reference = run("sparseOptFlow", false, 1);
  EXPECT(reference.ids.size() == 50);
  for (int batch : {1, 3}) {
    EXPECT_MSG(same(run("sparseOptFlow", true, batch), reference), "batch " << batch);
    EXPECT_MSG(same(run("sparseOptFlow", false, batch), reference), "batch " << batch);
  }
  // Not vacuous: without motion compensation the panning boxes come out differently.
  EXPECT(!same(run("none", true, 1), reference));
  // The second video starts over: its first frame confirms its objects at once, ids from 1.
  if (reference.ids.size() == 50) {
    const auto& first_b = reference.ids[a.frames];
    EXPECT_MSG(first_b.numel() == (int64_t)truth(a.frames).size() && first_b.min().item<int64_t>() == 1,
               "ids at the start of the second video: " << first_b);
  }
}

TEST_CASE("persist: a batch whose forward (or a later hook) fails is taken back; the ids and boxes are those of a run without its frames") {
  const std::string d = y26test::scratch_dir("test_track", "rollback");
  // Lossless frames of a panning scene (the camera-motion estimate matters), one file per frame.
  y26::SceneSpec s = y26::crossing_scene(320, 320, 24, 4);
  s.pan_x = 3, s.pan_y = -2, s.pan_from = 4;
  std::vector<std::string> files;
  for (int f = 0; f < s.frames; ++f) {
    char name[32];
    std::snprintf(name, sizeof name, "/f%03d.png", f);
    files.push_back(d + name);
    cv::imwrite(files.back(), y26::render_scene(s, f));
  }
  auto frame_of = [&](const std::string& path) {
    return static_cast<int>(std::find(files.begin(), files.end(), path) - files.begin());
  };
  struct Run {
    std::vector<int> frames;
    std::vector<torch::Tensor> ids, boxes;
    int errors = 0;
  };
  enum class Fail { Forward, AfterTracking };
  // Runs `frames` (indices into files) with persist; the batch holding `bad` fails, in the forward pass or after
  // tracking its first frame. The stream goes on after the error.
  auto run = [&](const std::vector<int>& frames, int batch, bool overlap, int bad, Fail how, bool hook) {
    auto pos = std::make_shared<size_t>(0);
    y26::ForwardOutputsFn fwd = [&, pos](const torch::Tensor& x) {
      torch::Tensor y = torch::zeros({x.size(0), 300, 6});
      bool fail = false;
      for (int64_t k = 0; k < x.size(0); ++k) {
        const int f = frames[(*pos)++];
        fail = fail || (f == bad && how == Fail::Forward);
        int i = 0;
        for (const auto& t : y26::scene_truth(s, f))
          y[k][i++] = torch::tensor({(float)t.box.x, (float)t.box.y, (float)(t.box.x + t.box.width), (float)(t.box.y + t.box.height), 0.9f, (float)t.cls});
      }
      if (fail) throw std::runtime_error("device lost");
      return std::vector<torch::Tensor>{y};
    };
    y26::PipelineOptions po;
    po.imgsz_h = po.imgsz_w = 320;
    po.batch = batch;
    y26::attach_tracking(po, std::make_shared<y26::SharedTracker>(config("botsort")), true, overlap);
    if (how == Fail::AfterTracking) {
      auto track = po.on_result;
      po.on_result = [track, &frame_of, bad](y26::Result& r, const cv::Mat& image) {
        track(r, image);
        if (frame_of(r.path) == bad) throw std::runtime_error("a later step failed");
      };
    }
    if (!hook) po.on_batch_failed = nullptr;
    std::vector<std::string> paths;
    for (int f : frames) paths.push_back(files[f]);
    y26::Pipeline p(y26::open_path_list_source(paths), fwd, po);
    Run out;
    y26::Result r;
    while (true) {
      try {
        if (!p.next(r)) break;
      } catch (const std::exception&) {
        ++out.errors;
        continue;
      }
      out.frames.push_back(frame_of(r.path));
      out.ids.push_back(r.ids.defined() ? r.ids : torch::zeros({0}, torch::kInt64));
      out.boxes.push_back(r.boxes);
    }
    return out;
  };
  auto same = [](const Run& x, const Run& y) {
    if (x.frames != y.frames) return false;
    for (size_t f = 0; f < x.ids.size(); ++f)
      if (!torch::equal(x.ids[f], y.ids[f]) || !torch::equal(x.boxes[f], y.boxes[f])) return false;
    return true;
  };
  std::vector<int> all(s.frames);
  std::iota(all.begin(), all.end(), 0);
  for (int batch : {1, 2}) {
    const int bad = 10;  // the first frame of a batch in both cases
    std::vector<int> kept;
    for (int f : all)
      if (f < bad || f >= bad + batch) kept.push_back(f);
    for (bool overlap : {true, false}) {
      const Run reference = run(kept, batch, overlap, -1, Fail::Forward, true);
      EXPECT(reference.errors == 0 && (int)reference.frames.size() == s.frames - batch);
      for (Fail how : {Fail::Forward, Fail::AfterTracking}) {
        const std::string label = "batch " + std::to_string(batch) + (overlap ? " overlapped" : " inline") +
                                  (how == Fail::Forward ? ", forward fails" : ", fails after tracking");
        const Run failed = run(all, batch, overlap, bad, how, true);
        EXPECT_MSG(failed.errors == 1, label << ": " << failed.errors << " errors");
        EXPECT_MSG(same(failed, reference), label << ": differs from the run without the failed frames");
        // Not vacuous: without taking the batch back, the tracker is left ahead (the motion estimator's previous
        // frame, or the tracks of the frame tracked before the failure) and the boxes after it differ.
        if (overlap || how == Fail::AfterTracking)
          EXPECT_MSG(!same(run(all, batch, overlap, bad, how, false), reference), label << ": the failure changed nothing");
      }
    }
  }
}

TEST_MAIN()
