#include "track/scene.h"

#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>

#include <algorithm>
#include <cmath>
#include <random>

#include "util/error.h"

namespace y26 {

namespace {

bool visible_at(const SceneObject& o, int frame) {
  if (frame < o.first || frame > o.last) return false;
  for (const auto& [a, b] : o.hidden)
    if (frame >= a && frame < b) return false;
  return true;
}

cv::Point2d camera_offset(const SceneSpec& s, int frame) {
  const int n = std::max(0, frame - s.pan_from);
  return {s.pan_x * n, s.pan_y * n};
}

cv::Rect2d image_box(const SceneSpec& s, const SceneObject& o, int frame) {
  const cv::Point2d cam = camera_offset(s, frame);
  return {o.x + o.vx * frame + cam.x, o.y + o.vy * frame + cam.y, o.w, o.h};
}

}  // namespace

std::vector<TruthBox> scene_truth(const SceneSpec& s, int frame) {
  std::vector<TruthBox> out;
  const cv::Rect2d picture(0, 0, s.width, s.height);
  for (const auto& o : s.objects) {
    if (!visible_at(o, frame)) continue;
    const cv::Rect2d b = image_box(s, o, frame);
    const cv::Rect2d in = b & picture;
    if (in.area() < 0.5 * b.area()) continue;
    out.push_back({o.id, o.cls, in});
  }
  return out;
}

cv::Mat render_scene(const SceneSpec& s, int frame) {
  // The background is drawn in world coordinates, so a camera pan moves its texture with the objects.
  const cv::Point2d cam = camera_offset(s, frame);
  cv::Mat im(s.height, s.width, CV_8UC3);
  for (int y = 0; y < s.height; ++y)
    for (int x = 0; x < s.width; ++x) {
      const double wx = x - cam.x, wy = y - cam.y;
      // Deterministic hash noise per world pixel, on a red-to-grey gradient like the demo data.
      uint32_t hsh = static_cast<uint32_t>(std::lround(wx) * 73856093) ^ static_cast<uint32_t>(std::lround(wy) * 19349663);
      hsh = (hsh ^ (hsh >> 13)) * 1274126177u;
      const int noise = static_cast<int>((hsh >> 24) % 41) - 20;
      const double t = std::clamp((wx + 200) / (s.width + 400.0), 0.0, 1.0);
      im.at<cv::Vec3b>(y, x) = cv::Vec3b(cv::saturate_cast<uchar>(40 + 110 * t + noise), cv::saturate_cast<uchar>(40 + 110 * t + noise),
                                         cv::saturate_cast<uchar>(200 - 50 * t + noise));
    }
  for (const auto& o : s.objects) {
    if (!visible_at(o, frame)) continue;
    const cv::Rect2d b = image_box(s, o, frame);
    if (o.cls == 1) {
      cv::ellipse(im, cv::Point(static_cast<int>(b.x + b.width / 2), static_cast<int>(b.y + b.height / 2)),
                  cv::Size(static_cast<int>(b.width / 2), static_cast<int>(b.height / 2)), 0, 0, 360, o.color, cv::FILLED, cv::LINE_AA);
    } else if (o.cls == 2) {
      std::vector<cv::Point> tri{{static_cast<int>(b.x + b.width / 2), static_cast<int>(b.y)},
                                 {static_cast<int>(b.x + b.width), static_cast<int>(b.y + b.height)},
                                 {static_cast<int>(b.x), static_cast<int>(b.y + b.height)}};
      cv::fillConvexPoly(im, tri, o.color, cv::LINE_AA);
    } else {
      cv::rectangle(im, cv::Rect(static_cast<int>(b.x), static_cast<int>(b.y), static_cast<int>(b.width), static_cast<int>(b.height)),
                    o.color, cv::FILLED);
    }
  }
  return im;
}

void write_scene_video(const SceneSpec& s, const std::string& path, double fps) {
  const bool avi = path.size() > 4 && path.substr(path.size() - 4) == ".avi";
  const int fourcc = avi ? cv::VideoWriter::fourcc('M', 'J', 'P', 'G') : cv::VideoWriter::fourcc('m', 'p', '4', 'v');
  cv::VideoWriter w(path, fourcc, fps, cv::Size(s.width, s.height));
  if (!w.isOpened()) fail("write_scene_video: cannot open a video writer for " + path);
  for (int f = 0; f < s.frames; ++f) w.write(render_scene(s, f));
}

SceneSpec crossing_scene(int width, int height, int frames, int hide) {
  SceneSpec s;
  s.width = width;
  s.height = height;
  s.frames = frames;
  const double W = width, H = height, sz = std::min(W, H) / 5;
  // Two shapes on crossing diagonals meet in the middle at the half-way frame.
  SceneObject a;
  a.id = 1, a.cls = 0, a.color = cv::Scalar(230, 120, 20);
  a.x = 0.1 * W, a.y = 0.2 * H, a.w = sz, a.h = sz * 1.2;
  a.vx = 0.6 * W / frames, a.vy = 0.4 * H / frames;  // to (0.7 W, 0.6 H)
  SceneObject b;
  b.id = 2, b.cls = 1, b.color = cv::Scalar(40, 220, 40);
  b.x = 0.18 * W, b.y = 0.6 * H, b.w = sz * 1.1, b.h = sz;
  b.vx = 0.5 * W / frames, b.vy = -0.4 * H / frames;  // to (0.68 W, 0.2 H): the paths cross half-way
  // A third shape crosses the picture horizontally and is hidden for `hide` frames after a quarter of the clip.
  SceneObject c;
  c.id = 3, c.cls = 0, c.color = cv::Scalar(200, 40, 200);
  c.x = 0.75 * W, c.y = 0.05 * H, c.w = sz * 0.9, c.h = sz * 0.9, c.vx = -0.5 * W / frames;
  c.hidden = {{frames / 4, frames / 4 + hide}};
  // A fourth enters at a third of the clip (a new identity) and stays still.
  SceneObject d;
  d.id = 4, d.cls = 2, d.color = cv::Scalar(20, 200, 230);
  d.x = 0.45 * W, d.y = 0.78 * H, d.w = sz, d.h = sz * 0.9, d.first = frames / 3;
  s.objects = {a, b, c, d};
  return s;
}

SceneSpec random_scene(int w, int h, int frames, int objects, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(0, 1);
  SceneSpec s;
  s.width = w, s.height = h, s.frames = frames;
  for (int i = 0; i < objects; ++i) {
    SceneObject o;
    o.id = i + 1;
    o.cls = i % 3;
    o.color = cv::Scalar(40 + 200 * u(rng), 40 + 200 * u(rng), 40 + 200 * u(rng));
    o.w = 0.06 * w + 0.08 * w * u(rng);
    o.h = 0.06 * h + 0.1 * h * u(rng);
    o.x = u(rng) * (w - o.w), o.y = u(rng) * (h - o.h);
    o.vx = (u(rng) - 0.5) * 0.8 * w / frames * 2, o.vy = (u(rng) - 0.5) * 0.8 * h / frames * 2;
    if (i % 4 == 1) o.hidden = {{frames / 3, frames / 3 + 6}};
    if (i % 5 == 2) o.first = frames / 4;
    s.objects.push_back(o);
  }
  return s;
}

}  // namespace y26
