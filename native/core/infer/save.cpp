#include "infer/save.h"

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "infer/classify.h"
#include "infer/segments.h"
#include "util/error.h"

namespace fs = std::filesystem;

namespace y26 {

std::string increment_path(const std::string& path, bool exist_ok, bool mkdir) {
  fs::path p(path);
  if (fs::exists(p) && !exist_ok) {
    const bool is_file = fs::is_regular_file(p);
    const fs::path base = is_file ? p.parent_path() / p.stem() : p;
    const std::string suffix = is_file ? p.extension().string() : "";
    for (int n = 2; n < 10000; ++n) {
      fs::path candidate = base.string() + std::to_string(n) + suffix;
      if (!fs::exists(candidate)) { p = candidate; break; }
    }
  }
  if (mkdir) {
    std::error_code ec;
    fs::create_directories(p, ec);
    if (ec) fail("cannot create directory " + p.string() + ": " + ec.message());
  }
  return p.string();
}

namespace {
void append_g(std::string& line, double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), line.empty() ? "%g" : " %g", v);
  line += buf;
}
}  // namespace

std::string format_yolo_txt(const Result& r, bool save_conf) {
  std::string out;
  if (r.size() == 0) return out;
  const double w = r.orig_w, h = r.orig_h;
  torch::Tensor b = r.boxes.to(torch::kFloat32).contiguous();
  auto bx = b.accessor<float, 2>();
  for (size_t i = 0; i < r.size(); ++i) {
    std::string line;
    append_g(line, static_cast<double>(r.cls[i].item<int64_t>()));
    if (r.masks.defined()) {
      // Segment labels are the outline of the mask, normalised, instead of the box; fewer than 3 points is no polygon.
      torch::Tensor poly = mask_polygon(r.masks[i]);
      if (poly.size(0) < 3) continue;
      auto pa = poly.accessor<float, 2>();
      for (int64_t j = 0; j < poly.size(0); ++j) {
        append_g(line, pa[j][0] / static_cast<float>(w));
        append_g(line, pa[j][1] / static_cast<float>(h));
      }
      if (save_conf) append_g(line, r.conf[i].item<float>());
      out += line + "\n";
      continue;
    }
    if (r.obb.defined()) {
      // OBB labels are the four corners, normalised.
      torch::Tensor c = obb_corners(r.obb.narrow(0, static_cast<int64_t>(i), 1))[0].contiguous();
      auto ca = c.accessor<float, 2>();
      for (int k = 0; k < 4; ++k) {
        append_g(line, ca[k][0] / static_cast<float>(w));
        append_g(line, ca[k][1] / static_cast<float>(h));
      }
      if (save_conf) append_g(line, r.conf[i].item<float>());
      if (r.ids.defined()) append_g(line, static_cast<double>(r.ids[i].item<int64_t>()));
      out += line + "\n";
      continue;
    }
    // Computed in float32 like the official xywhn, so the printed digits agree.
    const float x1 = bx[i][0], y1 = bx[i][1], x2 = bx[i][2], y2 = bx[i][3];
    append_g(line, ((x1 + x2) / 2.0f) / static_cast<float>(w));
    append_g(line, ((y1 + y2) / 2.0f) / static_cast<float>(h));
    append_g(line, (x2 - x1) / static_cast<float>(w));
    append_g(line, (y2 - y1) / static_cast<float>(h));
    if (r.keypoints.defined()) {
      torch::Tensor k = r.keypoints[i].to(torch::kFloat32).contiguous();
      auto ka = k.accessor<float, 2>();
      for (int64_t j = 0; j < k.size(0); ++j) {
        append_g(line, ka[j][0] / static_cast<float>(w));
        append_g(line, ka[j][1] / static_cast<float>(h));
        if (k.size(1) > 2) append_g(line, ka[j][2]);
      }
    }
    if (save_conf) append_g(line, r.conf[i].item<float>());
    if (r.ids.defined()) append_g(line, static_cast<double>(r.ids[i].item<int64_t>()));  // track id last, as upstream
    out += line + "\n";
  }
  return out;
}

cv::Mat crop_box(const cv::Mat& image, const float xyxy[4], double gain, int pad) {
  const double cx = (xyxy[0] + xyxy[2]) / 2.0, cy = (xyxy[1] + xyxy[3]) / 2.0;
  const double w = (xyxy[2] - xyxy[0]) * gain + pad, h = (xyxy[3] - xyxy[1]) * gain + pad;
  const int x1 = std::clamp(static_cast<int>(cx - w / 2), 0, image.cols), x2 = std::clamp(static_cast<int>(cx + w / 2), 0, image.cols);
  const int y1 = std::clamp(static_cast<int>(cy - h / 2), 0, image.rows), y2 = std::clamp(static_cast<int>(cy + h / 2), 0, image.rows);
  if (x2 <= x1 || y2 <= y1) return cv::Mat();
  return image(cv::Rect(x1, y1, x2 - x1, y2 - y1)).clone();
}

ResultSaver::ResultSaver(SaveOptions opt) : opt_(std::move(opt)) {
  save_dir_ = increment_path((fs::path(opt_.project) / task_name(opt_.task) / opt_.name).string(), opt_.exist_ok, true);
  if (opt_.save_txt) fs::create_directories(fs::path(save_dir_) / "labels");
}

ResultSaver::~ResultSaver() { close(); }

void ResultSaver::close() {
  for (auto& [path, writer] : videos_) writer.release();
  videos_.clear();
}

std::string ResultSaver::stem_for(const Result& r) const {
  // "memory:3" and "camera:0" become file-name friendly "memory_3", "camera_0".
  std::string stem = fs::path(r.path).stem().string();
  if (r.path.find(':') != std::string::npos && !fs::exists(r.path)) {
    stem = r.path;
    for (char& c : stem) if (c == ':' || c == '/') c = '_';
  }
  return stem.empty() ? "image" + std::to_string(r.index) : stem;
}

std::string ResultSaver::save(const Result& r) {
  if (!r.error.empty()) return "";
  const std::string stem = stem_for(r);
  const fs::path dir(save_dir_);
  if (opt_.save_txt) {
    const std::string txt = (dir / "labels" / (stem + (r.is_video ? "_" + std::to_string(r.frame) : "") + ".txt")).string();
    const std::string lines = r.probs.defined() ? format_classify_txt(r, opt_.names) : format_yolo_txt(r, opt_.save_conf);
    if (!lines.empty()) {  // no file for an image without detections, as the official writer
      std::ofstream f(txt, std::ios::app);
      if (!f) fail("save_txt: cannot write " + txt);
      f << lines;
    }
  }
  if ((opt_.save || opt_.save_crop) && r.orig_image.empty())
    fail("save: result for " + r.path + " has no image; run the pipeline with keep_images to save images or crops");
  if (opt_.save_crop && r.size() > 0) {
    torch::Tensor b = r.boxes.to(torch::kFloat32).contiguous();
    for (size_t i = 0; i < r.size(); ++i) {
      const int64_t c = r.cls[i].item<int64_t>();
      const std::string cname = c >= 0 && c < static_cast<int64_t>(opt_.names.size()) ? opt_.names[c] : std::to_string(c);
      const fs::path cdir = dir / "crops" / cname;
      fs::create_directories(cdir);
      cv::Mat crop = crop_box(r.orig_image, b[i].data_ptr<float>());
      if (crop.empty()) continue;
      const std::string file = increment_path((cdir / (stem + (r.is_video ? "_" + std::to_string(r.frame) : "") + ".jpg")).string());
      if (!cv::imwrite(file, crop)) fail("save_crop: cannot write " + file);
    }
  }
  if (!opt_.save) return "";
  cv::Mat plotted = annotate(r.orig_image, r, opt_.names, opt_.annotate);
  if (r.ids.defined() || trails_.count(r.is_video ? stem : "")) {  // tracking: each video (or the image run) has its trails
    TrackTrails& trails = trails_[r.is_video ? stem : ""];
    trails.add(r);
    trails.draw(plotted, r, opt_.annotate.line_width);
  }
  if (r.is_video) {
    const std::string file = (dir / (stem + ".mp4")).string();
    auto it = videos_.find(file);
    if (it == videos_.end()) {
      cv::VideoWriter w(file, cv::VideoWriter::fourcc('m', 'p', '4', 'v'), r.fps > 0 ? r.fps : 30.0, plotted.size());
      if (!w.isOpened()) fail("save: cannot open video writer for " + file + " (mp4v codec missing in this OpenCV build)");
      it = videos_.emplace(file, std::move(w)).first;
    }
    it->second.write(plotted);
    return file;
  }
  std::string name = fs::path(r.path).filename().string();
  if (stem != fs::path(r.path).stem().string() || fs::path(name).extension().empty()) name = stem + ".jpg";
  const std::string file = (dir / name).string();
  if (!cv::imwrite(file, plotted)) fail("save: cannot write " + file + " (check the folder is writable and the extension is an image format)");
  return file;
}

}  // namespace y26
