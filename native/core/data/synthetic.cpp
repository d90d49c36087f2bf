#include "data/synthetic.h"

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "model/task.h"
#include "util/error.h"

namespace fs = std::filesystem;

namespace y26 {

const char* const kSyntheticNames[3] = {"rectangle", "ellipse", "triangle"};
const int kSyntheticFlipIdx[kSyntheticKeypoints] = {1, 0, 3, 2, 4};

namespace {

// The label format the options ask for; classify (no boxes to draw) and unknown names are refused alike.
Task synthetic_task(const SyntheticOptions& o) {
  Task t = Task::Classify;
  try {
    t = parse_task(o.task);
  } catch (const Error&) {
  }
  if (t == Task::Classify) fail("synthetic dataset task must be detect, pose, segment or obb (got '" + o.task + "')");
  return t;
}

}  // namespace

SyntheticImage make_synthetic_image(int width, int height, uint64_t seed, const SyntheticOptions& opt) {
  std::mt19937_64 g(seed * 0x9E3779B97F4A7C15ull + 12345);
  auto U = [&](double a, double b) { return std::uniform_real_distribution<double>(a, b)(g); };
  auto I = [&](int a, int b) { return std::uniform_int_distribution<int>(a, b)(g); };
  SyntheticImage out;
  // Background: a linear gradient between two muted colours, plus per-pixel noise.
  cv::Mat img(height, width, CV_8UC3);
  cv::Vec3d c0(U(40, 200), U(40, 200), U(40, 200)), c1(U(40, 200), U(40, 200), U(40, 200));
  double ang = U(0, 2 * CV_PI), ca = std::cos(ang), sa = std::sin(ang);
  cv::Mat noise(height, width, CV_8SC3);
  cv::theRNG().state = seed ^ 0x5DEECE66Dull;
  cv::randu(noise, cv::Scalar::all(-12), cv::Scalar::all(12));
  for (int y = 0; y < height; ++y) {
    auto* row = img.ptr<cv::Vec3b>(y);
    const auto* nr = noise.ptr<cv::Vec3b>(y);
    for (int x = 0; x < width; ++x) {
      double t = 0.5 + 0.5 * ((x - width / 2.0) * ca + (y - height / 2.0) * sa) / (0.5 * std::hypot(width, height));
      for (int c = 0; c < 3; ++c) {
        double v = c0[c] * (1 - t) + c1[c] * t + (int8_t)nr[x][c];
        row[x][c] = cv::saturate_cast<uint8_t>(v);
      }
    }
  }
  const Task task = synthetic_task(opt);
  const bool obb = task == Task::Obb;
  const int n = I(opt.min_objects, opt.max_objects);
  const int short_side = std::min(width, height);
  std::vector<cv::Rect> placed;
  cv::Mat mask(height, width, CV_8U);
  for (int k = 0; k < n; ++k) {
    for (int attempt = 0; attempt < 50; ++attempt) {
      int cls = I(0, 2);
      int w = (int)(U(opt.min_size, opt.max_size) * short_side), h = (int)(U(opt.min_size, opt.max_size) * short_side);
      w = std::max(w, 8);
      h = std::max(h, 8);
      if (w >= width - 2 || h >= height - 2) continue;
      int x0 = I(1, width - w - 1), y0 = I(1, height - h - 1);
      cv::Rect r(x0, y0, w, h);
      bool overlaps = false;
      for (auto& p : placed) {
        cv::Rect grown(p.x - 3, p.y - 3, p.width + 6, p.height + 6);
        if ((grown & r).area() > 0) { overlaps = true; break; }
      }
      if (overlaps) continue;
      mask.setTo(0);
      cv::Point2f corners[4];
      if (obb) {
        // A rotated rectangle whose diagonal fits the chosen square, so it stays inside the w x h cell.
        const double m = std::min(w, h);
        cv::RotatedRect rr(cv::Point2f(x0 + w / 2.f, y0 + h / 2.f), cv::Size2f((float)(U(0.55, 0.7) * m),
                           (float)(U(0.3, 0.55) * m)), (float)U(0, 180));
        rr.points(corners);
        cv::Point p[4];
        for (int j = 0; j < 4; ++j) p[j] = cv::Point((int)std::lround(corners[j].x), (int)std::lround(corners[j].y));
        if (cls == 0) cv::fillConvexPoly(mask, p, 4, 255, cv::LINE_8);
        else if (cls == 1) cv::ellipse(mask, rr, 255, cv::FILLED, cv::LINE_8);
        else {
          cv::Point tri[3] = {(p[1] + p[2]) / 2, p[0], p[3]};  // apex mid one short side, base the other
          cv::fillConvexPoly(mask, tri, 3, 255, cv::LINE_8);
        }
      } else if (cls == 0) {
        cv::rectangle(mask, r, 255, cv::FILLED);
      } else if (cls == 1) {
        cv::ellipse(mask, cv::Point(x0 + w / 2, y0 + h / 2), cv::Size(w / 2, h / 2), 0, 0, 360, 255, cv::FILLED, cv::LINE_8);
      } else {
        // Apex on the top edge, base on the bottom edge: clearly a triangle at any aspect ratio.
        cv::Point pts[3] = {{x0 + I(w / 4, 3 * w / 4), y0}, {x0, y0 + h - 1}, {x0 + w - 1, y0 + h - 1}};
        cv::fillConvexPoly(mask, pts, 3, 255, cv::LINE_8);
      }
      // Saturated colour, far from the muted background.
      cv::Mat hsv(1, 1, CV_8UC3, cv::Scalar(I(0, 179), I(180, 255), I(170, 255))), bgr;
      cv::cvtColor(hsv, bgr, cv::COLOR_HSV2BGR);
      img.setTo(cv::Scalar(bgr.at<cv::Vec3b>(0, 0)), mask);
      cv::Rect ext = cv::boundingRect(mask);  // the label is the exact extent of the drawn pixels
      if (ext.area() == 0) continue;
      placed.push_back(ext);
      out.cls.push_back(cls);
      out.boxes.insert(out.boxes.end(), {(ext.x + ext.width / 2.f) / width, (ext.y + ext.height / 2.f) / height,
                                         (float)ext.width / width, (float)ext.height / height});
      if (task == Task::Segment) {
        // The outline of the drawn pixels, lightly simplified.
        std::vector<std::vector<cv::Point>> contours;
        cv::findContours(mask, contours, cv::RETR_EXTERNAL, cv::CHAIN_APPROX_SIMPLE);
        size_t best = 0;
        for (size_t c = 1; c < contours.size(); ++c)
          if (cv::contourArea(contours[c]) > cv::contourArea(contours[best])) best = c;
        std::vector<cv::Point> poly;
        cv::approxPolyDP(contours.at(best), poly, 1.0, true);
        std::vector<float> pts;
        for (const auto& q : poly) pts.insert(pts.end(), {(float)q.x / width, (float)q.y / height});
        out.polygons.push_back(pts);
      }
      if (obb) {
        std::vector<float> pts;
        for (const auto& q : corners)
          pts.insert(pts.end(), {std::clamp(q.x / width, 0.f, 1.f), std::clamp(q.y / height, 0.f, 1.f)});
        out.polygons.push_back(pts);
      }
      if (task == Task::Pose) {
        const float x0n = (float)ext.x / width, y0n = (float)ext.y / height;
        const float x1n = (float)(ext.x + ext.width) / width, y1n = (float)(ext.y + ext.height) / height;
        out.keypoints.insert(out.keypoints.end(), {x0n, y0n, 2.f, x1n, y0n, 2.f, x1n, y1n, 2.f, x0n, y1n, 2.f,
                                                   (x0n + x1n) / 2, (y0n + y1n) / 2, 2.f});
      }
      break;
    }
  }
  out.bgr = img;
  return out;
}

namespace {

std::string stamp_of(const SyntheticOptions& o) {
  std::ostringstream s;
  s << "y26-synthetic v1 " << o.train_images << " " << o.val_images << " " << o.width << "x" << o.height << " "
    << o.min_objects << "-" << o.max_objects << " " << o.min_size << "-" << o.max_size << " seed " << o.seed << " q"
    << o.jpeg_quality << " " << o.ext << (synthetic_task(o) == Task::Detect ? "" : " " + o.task);
  return s.str();
}

}  // namespace

std::string write_synthetic_dataset(const std::string& dir, const SyntheticOptions& opt) {
  if (opt.ext != ".jpg" && opt.ext != ".png") fail("synthetic dataset ext must be .jpg or .png (got " + opt.ext + ")");
  if (opt.width < 32 || opt.height < 32) fail("synthetic images must be at least 32x32");
  const Task task = synthetic_task(opt);
  fs::path root = fs::absolute(dir);
  fs::path yaml = root / "data.yaml", stamp = root / ".y26synthetic";
  std::string want = stamp_of(opt);
  {
    std::ifstream in(stamp);
    std::string have;
    if (in && std::getline(in, have) && have == want && fs::exists(yaml)) return yaml.string();
  }
  std::error_code ec;
  for (const char* sub : {"images", "labels"}) fs::remove_all(root / sub, ec);
  fs::remove(stamp, ec);
  struct Job { std::string split; int i; };
  std::vector<Job> jobs;
  for (int i = 0; i < opt.train_images; ++i) jobs.push_back({"train", i});
  for (int i = 0; i < opt.val_images; ++i) jobs.push_back({"val", i});
  for (const char* split : {"train", "val"}) {
    fs::create_directories(root / "images" / split);
    fs::create_directories(root / "labels" / split);
  }
  std::atomic<size_t> next{0};
  std::vector<std::string> errors(jobs.size());
  auto work = [&] {
    for (size_t j; (j = next++) < jobs.size();) {
      const Job& job = jobs[j];
      // Train and val images come from disjoint seeds.
      uint64_t seed = opt.seed * 1000003ull + (job.split == "val" ? 500000000ull : 0) + job.i;
      SyntheticImage im = make_synthetic_image(opt.width, opt.height, seed, opt);
      char name[64];
      std::snprintf(name, sizeof name, "%s_%06d", job.split.c_str(), job.i);
      fs::path img_path = root / "images" / job.split / (std::string(name) + opt.ext);
      std::vector<int> params;
      if (opt.ext == ".jpg") params = {cv::IMWRITE_JPEG_QUALITY, opt.jpeg_quality};
      if (!cv::imwrite(img_path.string(), im.bgr, params)) { errors[j] = "cannot write " + img_path.string(); continue; }
      std::ofstream lab(root / "labels" / job.split / (std::string(name) + ".txt"));
      char line[128];
      for (size_t k = 0; k < im.cls.size(); ++k) {
        if (!im.polygons.empty()) {  // segment / obb: "cls x1 y1 x2 y2 ..."
          lab << im.cls[k];
          for (float v : im.polygons[k]) {
            std::snprintf(line, sizeof line, " %.6f", v);
            lab << line;
          }
          lab << "\n";
          continue;
        }
        std::snprintf(line, sizeof line, "%d %.6f %.6f %.6f %.6f", im.cls[k], im.boxes[4 * k], im.boxes[4 * k + 1],
                      im.boxes[4 * k + 2], im.boxes[4 * k + 3]);
        lab << line;
        if (task == Task::Pose)
          for (int j = 0; j < kSyntheticKeypoints; ++j) {
            const float* p = &im.keypoints[(k * kSyntheticKeypoints + j) * 3];
            std::snprintf(line, sizeof line, " %.6f %.6f %d", p[0], p[1], (int)p[2]);
            lab << line;
          }
        lab << "\n";
      }
      if (!lab) errors[j] = "cannot write labels for " + img_path.string();
    }
  };
  unsigned threads = std::max(1u, std::min(4u, std::thread::hardware_concurrency()));
  std::vector<std::thread> pool;
  for (unsigned t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  for (auto& e : errors) if (!e.empty()) fail(e + ": check that " + root.string() + " is writable");
  std::ofstream y(yaml);
  y << "# synthetic shapes dataset (" << want << ")\n"
    << "path: " << root.string() << "\ntrain: images/train\nval: images/val\nnc: 3\nnames:\n";
  for (int c = 0; c < 3; ++c) y << "  " << c << ": " << kSyntheticNames[c] << "\n";
  if (task == Task::Pose) {
    y << "kpt_shape: [" << kSyntheticKeypoints << ", 3]\nflip_idx: [";
    for (int j = 0; j < kSyntheticKeypoints; ++j) y << (j ? ", " : "") << kSyntheticFlipIdx[j];
    y << "]\n";
  }
  y.close();
  std::ofstream(stamp) << want << "\n";
  return yaml.string();
}

}  // namespace y26
