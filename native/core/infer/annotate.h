// Drawing results in the official style (class palette, box + label, pose skeleton) and encoding to bytes.
#pragma once
#include <opencv2/core.hpp>

#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <vector>

#include "infer/postprocess.h"

namespace y26 {

struct AnnotateOptions {
  int line_width = 0;        // 0: max(round((h + w) / 2 * 0.003), 2)
  bool boxes = true;
  bool labels = true;        // "name 0.87" tag above each box
  bool conf = true;          // confidence in the tag
  bool keypoints = true;
  bool kpt_line = true;      // COCO skeleton limbs (17-keypoint models)
  int kpt_radius = 5;
  float kpt_conf = 0.25f;    // keypoints (and limbs) below this visibility are not drawn
};

// The official 20-colour class palette, BGR, index modulo 20.
cv::Scalar class_color(int64_t cls);

// A copy of `image` (BGR, the original the result refers to) with the result drawn on it. `names` maps class
// ids to labels; missing ids print as numbers.
cv::Mat annotate(const cv::Mat& image, const Result& r, const std::vector<std::string>& names,
                 const AnnotateOptions& opt = {});

// The recent box centres of each track id, drawn as trails on saved tracking output (the centre path in the id's
// colour). Feed every result of one video in order.
class TrackTrails {
 public:
  explicit TrackTrails(size_t length = 30) : length_(length) {}
  void add(const Result& r);  // untracked results only advance the frame count
  void draw(cv::Mat& image, const Result& r, int line_width = 0) const;  // trails of r's current ids

 private:
  struct Trail {
    std::deque<cv::Point> points;
    int64_t last_seen = 0;
  };
  size_t length_;
  int64_t frame_ = 0;
  std::map<int64_t, Trail> trails_;
};

// Result::plot(): the result drawn on its own orig_image (kept by the pipeline with keep_images), encoded.
std::vector<uint8_t> plot(const Result& r, const std::vector<std::string>& names, const AnnotateOptions& opt = {},
                          const std::string& ext = ".jpg", int quality = 95);

// Encodes a BGR image as ".jpg"/".jpeg" (quality 0-100), ".png", ".bmp" or ".webp" bytes.
std::vector<uint8_t> encode_image(const cv::Mat& image, const std::string& ext = ".jpg", int quality = 95);

}  // namespace y26
