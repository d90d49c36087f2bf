// A seeded synthetic YOLO dataset: coloured rectangles (class 0), ellipses (1) and triangles (2) on noisy gradient
// backgrounds. Used by the loader benchmark, the tests and `yolo26 demo`. Task variants for the other heads: pose
// adds 5 keypoints per shape (the corners of its extent and its centre) with kpt_shape [5, 3] and flip_idx in the
// data.yaml; segment writes each shape's outline polygon; obb draws the shapes rotated and writes the 4 corners of
// their rotated rectangle ("cls x1 y1 ... x4 y4").
#pragma once
#include <opencv2/core.hpp>
#include <cstdint>
#include <string>
#include <vector>

namespace y26 {

struct SyntheticOptions {
  int train_images = 256;
  int val_images = 64;
  int width = 320, height = 320;
  int min_objects = 1, max_objects = 4;
  float min_size = 0.15f, max_size = 0.45f;  // object extent as a fraction of the shorter image side
  uint64_t seed = 0;
  int jpeg_quality = 90;
  std::string ext = ".jpg";                  // ".jpg" or ".png"
  std::string task = "detect";               // label format: detect, pose, segment or obb
};

// Pose variant: top-left, top-right, bottom-right, bottom-left corner of each shape's extent, then its centre;
// a horizontal flip swaps 0<->1 and 2<->3 (kSyntheticFlipIdx).
constexpr int kSyntheticKeypoints = 5;
extern const int kSyntheticFlipIdx[kSyntheticKeypoints];

struct SyntheticImage {
  cv::Mat bgr;
  std::vector<int> cls;
  std::vector<float> boxes;  // normalised xywh, the exact extent of each shape's drawn pixels
  std::vector<float> keypoints;  // pose: per shape kSyntheticKeypoints x (x, y, visibility 2), normalised
  std::vector<std::vector<float>> polygons;  // segment: outline; obb: 4 rotated-rectangle corners; normalised x, y
};

extern const char* const kSyntheticNames[3];  // rectangle, ellipse, triangle

// One image; the same (size, seed, options) always gives the same pixels and labels.
SyntheticImage make_synthetic_image(int width, int height, uint64_t seed, const SyntheticOptions& opt = {});

// Writes <dir>/images/{train,val}/*, <dir>/labels/{train,val}/*.txt and <dir>/data.yaml and returns the yaml path
// (pose: keypoints after each box and kpt_shape / flip_idx in the yaml; segment / obb: polygon rows).
// A stamp file records the options: an existing dataset made with the same options is reused, not rewritten.
std::string write_synthetic_dataset(const std::string& dir, const SyntheticOptions& opt = {});

}  // namespace y26
