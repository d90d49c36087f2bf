#include "infer/annotate.h"

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "infer/classify.h"
#include "util/error.h"
#include "util/text.h"

namespace y26 {

namespace {

// Ultralytics' palette (RGB hex) and the COCO pose colours; BGR is derived when drawing.
const uint32_t kPalette[20] = {0x042AFF, 0x0BDBEB, 0xF3F3F3, 0x00DFB7, 0x111F68, 0xFF6FDD, 0xFF444F, 0xCCED00, 0x00F344, 0xBD00FF,
                               0x00B4FF, 0xDD00BA, 0x00FFFF, 0x26C000, 0x01FFB3, 0x7D24FF, 0x7B0068, 0xFF1B6C, 0xFC6D2F, 0xA2FF0B};
const int kPosePalette[20][3] = {{255, 128, 0}, {255, 153, 51}, {255, 178, 102}, {230, 230, 0},  {255, 153, 255},
                                 {153, 204, 255}, {255, 102, 255}, {255, 51, 255}, {102, 178, 255}, {51, 153, 255},
                                 {255, 153, 153}, {255, 102, 102}, {255, 51, 51},  {153, 255, 153}, {102, 255, 102},
                                 {51, 255, 51},  {0, 255, 0},     {0, 0, 255},     {255, 0, 0},     {255, 255, 255}};
// COCO 17-keypoint skeleton (1-based keypoint ids) with the palette index of each limb and keypoint.
const int kSkeleton[19][2] = {{16, 14}, {14, 12}, {17, 15}, {15, 13}, {12, 13}, {6, 12}, {7, 13}, {6, 7}, {6, 8}, {7, 9},
                              {8, 10}, {9, 11}, {2, 3}, {1, 2}, {1, 3}, {2, 4}, {3, 5}, {4, 6}, {5, 7}};
const int kLimbColor[19] = {9, 9, 9, 9, 7, 7, 7, 0, 0, 0, 0, 0, 16, 16, 16, 16, 16, 16, 16};
const int kKptColor[17] = {16, 16, 16, 16, 16, 0, 0, 0, 0, 0, 0, 9, 9, 9, 9, 9, 9};

cv::Scalar pose_color(int i) { return cv::Scalar(kPosePalette[i][0], kPosePalette[i][1], kPosePalette[i][2]); }

// Dark text on light tags, white on dark ones (readability rule of the official annotator).
cv::Scalar text_color(const cv::Scalar& bg) {
  const double luma = 0.114 * bg[0] + 0.587 * bg[1] + 0.299 * bg[2];
  return luma > 150 ? cv::Scalar(17, 31, 104) : cv::Scalar(255, 255, 255);
}

void draw_label(cv::Mat& im, const std::string& label, cv::Point p1, const cv::Scalar& color, int lw) {
  const int tf = std::max(lw - 1, 1);
  const double sf = lw / 3.0;
  int baseline = 0;
  cv::Size ts = cv::getTextSize(label, cv::FONT_HERSHEY_SIMPLEX, sf, tf, &baseline);
  const int h = ts.height + 3;
  const bool outside = p1.y >= h;  // tag above the box when it fits
  if (p1.x > im.cols - ts.width) p1.x = im.cols - ts.width;
  cv::Point p2(p1.x + ts.width, outside ? p1.y - h : p1.y + h);
  cv::rectangle(im, p1, p2, color, cv::FILLED, cv::LINE_AA);
  cv::putText(im, label, cv::Point(p1.x, outside ? p1.y - 2 : p1.y + h - 1), cv::FONT_HERSHEY_SIMPLEX, sf,
              text_color(color), tf, cv::LINE_AA);
}

void draw_keypoints(cv::Mat& im, const torch::Tensor& kpts, int lw, const AnnotateOptions& opt) {
  const int64_t nk = kpts.size(0), nd = kpts.size(1);
  const bool coco = nk == 17 && (nd == 2 || nd == 3);
  auto acc = kpts.accessor<float, 2>();
  // Points on the image border are where clipping put missing keypoints: not drawn.
  auto drawable = [&](int64_t k) {
    const float x = acc[k][0], y = acc[k][1];
    if (nd == 3 && acc[k][2] < opt.kpt_conf) return false;
    return std::fmod(x, static_cast<float>(im.cols)) != 0 && std::fmod(y, static_cast<float>(im.rows)) != 0 && x > 0 && y > 0;
  };
  for (int64_t k = 0; k < nk; ++k)
    if (drawable(k))
      cv::circle(im, cv::Point(static_cast<int>(acc[k][0]), static_cast<int>(acc[k][1])), opt.kpt_radius,
                 coco ? pose_color(kKptColor[k]) : class_color(k), cv::FILLED, cv::LINE_AA);
  if (!coco || !opt.kpt_line) return;
  for (int i = 0; i < 19; ++i) {
    const int a = kSkeleton[i][0] - 1, b = kSkeleton[i][1] - 1;
    if (!drawable(a) || !drawable(b)) continue;
    cv::line(im, cv::Point(static_cast<int>(acc[a][0]), static_cast<int>(acc[a][1])),
             cv::Point(static_cast<int>(acc[b][0]), static_cast<int>(acc[b][1])), pose_color(kLimbColor[i]),
             static_cast<int>(std::ceil(lw / 2.0)), cv::LINE_AA);
  }
}

// Classify: the top-5 "name 0.87" lines in white on grey tags from the top-left corner, at 3 % of the image
// height in, with a font of about 3.5 % of the mean image side (the official PIL annotator's text size).
void draw_top5(cv::Mat& im, const Result& r, const std::vector<std::string>& names) {
  const int x = static_cast<int>(std::nearbyint(r.orig_h * 0.03));
  const double font_px = std::max(std::nearbyint((im.rows + im.cols) / 2.0 * 0.035), 12.0);
  const double sf = font_px / 30.0;  // Hershey simplex is about 30 px tall (ascent + descent) at scale 1
  const int tf = std::max(1, static_cast<int>(std::lround(font_px / 12.0)));
  const float* p = r.probs.data_ptr<float>();
  int y = x;
  for (int64_t c : topk_classes(r.probs)) {
    char buf[16];
    std::snprintf(buf, sizeof buf, " %.2f", p[c]);
    const std::string line = (c >= 0 && c < static_cast<int64_t>(names.size()) ? names[c] : std::to_string(c)) + buf;
    int baseline = 0;
    cv::Size ts = cv::getTextSize(line, cv::FONT_HERSHEY_SIMPLEX, sf, tf, &baseline);
    const int h = ts.height + baseline + 2;
    cv::rectangle(im, cv::Point(x, y), cv::Point(x + ts.width + 1, y + h), cv::Scalar(64, 64, 64), cv::FILLED);
    cv::putText(im, line, cv::Point(x, y + ts.height + 1), cv::FONT_HERSHEY_SIMPLEX, sf, cv::Scalar(255, 255, 255), tf,
                cv::LINE_AA);
    y += h;
  }
}

}  // namespace

cv::Scalar class_color(int64_t cls) {
  const uint32_t c = kPalette[((cls % 20) + 20) % 20];
  return cv::Scalar(c & 0xFF, (c >> 8) & 0xFF, (c >> 16) & 0xFF);
}

cv::Mat annotate(const cv::Mat& image, const Result& r, const std::vector<std::string>& names, const AnnotateOptions& opt) {
  if (image.empty()) fail("annotate: no image for " + r.path + " (run the pipeline with keep_images to draw results)");
  if (image.rows != r.orig_h || image.cols != r.orig_w)
    fail("annotate: image is " + std::to_string(image.cols) + "x" + std::to_string(image.rows) + " but the result for " +
         r.path + " refers to " + std::to_string(r.orig_w) + "x" + std::to_string(r.orig_h));
  cv::Mat im = image.channels() == 3 ? image.clone() : cv::Mat();
  if (im.empty()) cv::cvtColor(image, im, image.channels() == 4 ? cv::COLOR_BGRA2BGR : cv::COLOR_GRAY2BGR);
  const int lw = opt.line_width > 0 ? opt.line_width
                                    : std::max(static_cast<int>(std::lround((im.rows + im.cols) / 2.0 * 0.003)), 2);
  if (r.probs.defined()) {
    draw_top5(im, r, names);
    return im;
  }
  const size_t n = r.size();
  if (n == 0) return im;
  if (r.masks.defined() && r.masks.size(0) == static_cast<int64_t>(n)) {
    // Each mask tints its pixels with the class colour at 50 %, lowest confidence first.
    cv::Mat tinted = im.clone();
    for (int64_t i = static_cast<int64_t>(n) - 1; i >= 0; --i) {
      torch::Tensor m = r.masks[i].to(torch::kUInt8).contiguous();
      cv::Mat mask(static_cast<int>(m.size(0)), static_cast<int>(m.size(1)), CV_8UC1, m.data_ptr<uint8_t>());
      tinted.setTo(class_color(r.cls[i].item<int64_t>()), mask);
    }
    cv::addWeighted(im, 0.5, tinted, 0.5, 0, im);
  }
  torch::Tensor boxes = r.boxes.to(torch::kFloat32).contiguous();
  auto b = boxes.accessor<float, 2>();
  auto conf = r.conf.accessor<float, 1>();
  auto cls = r.cls.accessor<int64_t, 1>();
  // Lowest confidence first so the best detections end up on top.
  for (int64_t i = static_cast<int64_t>(n) - 1; i >= 0; --i) {
    const cv::Scalar color = class_color(cls[i]);
    cv::Point p1(static_cast<int>(b[i][0]), static_cast<int>(b[i][1])), p2(static_cast<int>(b[i][2]), static_cast<int>(b[i][3]));
    if (opt.boxes) {
      if (r.obb.defined()) {
        cv::RotatedRect rr(cv::Point2f(r.obb[i][0].item<float>(), r.obb[i][1].item<float>()),
                           cv::Size2f(r.obb[i][2].item<float>(), r.obb[i][3].item<float>()),
                           r.obb[i][4].item<float>() * 180.0f / static_cast<float>(M_PI));
        cv::Point2f pts[4];
        rr.points(pts);
        std::vector<cv::Point> poly(pts, pts + 4);
        cv::polylines(im, poly, true, color, lw, cv::LINE_AA);
      } else {
        cv::rectangle(im, p1, p2, color, lw, cv::LINE_AA);
      }
      if (opt.labels) {
        const int64_t c = cls[i];
        std::string label = c >= 0 && c < static_cast<int64_t>(names.size()) ? names[c] : std::to_string(c);
        if (r.ids.defined()) label = "id:" + std::to_string(r.ids[i].item<int64_t>()) + " " + label;  // upstream's tag
        if (opt.conf) {
          char buf[16];
          std::snprintf(buf, sizeof(buf), " %.2f", conf[i]);
          label += buf;
        }
        draw_label(im, label, p1, color, lw);
      }
    }
    if (opt.keypoints && r.keypoints.defined())
      draw_keypoints(im, r.keypoints[i].to(torch::kFloat32).contiguous(), lw, opt);
  }
  return im;
}

void TrackTrails::add(const Result& r) {
  ++frame_;
  if (!r.ids.defined()) return;
  torch::Tensor b = r.boxes.to(torch::kFloat32).contiguous();
  auto bx = b.accessor<float, 2>();
  for (int64_t i = 0; i < r.ids.size(0); ++i) {
    Trail& t = trails_[r.ids[i].item<int64_t>()];
    t.points.emplace_back(static_cast<int>((bx[i][0] + bx[i][2]) / 2), static_cast<int>((bx[i][1] + bx[i][3]) / 2));
    if (t.points.size() > length_) t.points.pop_front();
    t.last_seen = frame_;
  }
  for (auto it = trails_.begin(); it != trails_.end();)  // forget tracks gone for longer than a trail
    it = frame_ - it->second.last_seen > static_cast<int64_t>(length_) ? trails_.erase(it) : std::next(it);
}

void TrackTrails::draw(cv::Mat& im, const Result& r, int line_width) const {
  if (!r.ids.defined()) return;
  const int lw = line_width > 0 ? line_width : std::max(static_cast<int>(std::lround((im.rows + im.cols) / 2.0 * 0.003)), 2);
  for (int64_t i = 0; i < r.ids.size(0); ++i) {
    const int64_t id = r.ids[i].item<int64_t>();
    auto it = trails_.find(id);
    if (it == trails_.end() || it->second.points.size() < 2) continue;
    std::vector<cv::Point> pts(it->second.points.begin(), it->second.points.end());
    cv::polylines(im, pts, false, class_color(id), lw, cv::LINE_AA);
  }
}

std::vector<uint8_t> plot(const Result& r, const std::vector<std::string>& names, const AnnotateOptions& opt,
                          const std::string& ext, int quality) {
  return encode_image(annotate(r.orig_image, r, names, opt), ext, quality);
}

std::vector<uint8_t> encode_image(const cv::Mat& image, const std::string& ext, int quality) {
  if (image.empty()) fail("encode_image: empty image");
  std::string e = ext.empty() || ext[0] == '.' ? ext : "." + ext;
  e = to_lower(e);
  std::vector<int> params;
  if (e == ".jpg" || e == ".jpeg") params = {cv::IMWRITE_JPEG_QUALITY, std::clamp(quality, 0, 100)};
  else if (e == ".webp") params = {cv::IMWRITE_WEBP_QUALITY, std::clamp(quality, 1, 100)};
  else if (e != ".png" && e != ".bmp") fail("encode_image: format '" + ext + "' is not supported: use .jpg, .png, .bmp or .webp");
  std::vector<uint8_t> out;
  if (!cv::imencode(e, image, out, params)) fail("encode_image: OpenCV could not encode a " + e + " image");
  return out;
}

}  // namespace y26
