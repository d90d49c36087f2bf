// Training augmentation (official order: mosaic -> random perspective -> mixup/cutmix -> HSV -> flips) and the
// validation letterbox, on pixel-space labels. Boxes, keypoints and polygons always move together.
#pragma once
#include <opencv2/core.hpp>
#include <cstdint>
#include <deque>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "data/dataset.h"

namespace y26 {

// Hyperparameters with the official names and defaults (ultralytics/cfg/default.yaml).
struct AugmentConfig {
  float hsv_h = 0.015f, hsv_s = 0.7f, hsv_v = 0.4f;
  float degrees = 0.f, translate = 0.1f, scale = 0.5f, shear = 0.f, perspective = 0.f;
  float flipud = 0.f, fliplr = 0.5f, bgr = 0.f;
  float mosaic = 1.f, mixup = 0.f, cutmix = 0.f;
  int close_mosaic = 10;  // mosaic, mixup and cutmix are off in the last close_mosaic epochs
  // Sets one key by its official name; throws y26::Error for an unknown key or an out-of-range value.
  void set(const std::string& key, double value);
  // Every key off: the non-augmented path (letterbox only), as the official pipeline with augment=False.
  static AugmentConfig none();
};

// Labels of one sample in pixels of its current image.
struct Instances {
  std::vector<float> cls;                         // N
  std::vector<float> xyxy;                        // N*4
  std::vector<float> kpts;                        // N*K*D (D = dataset kpt_dims); empty without pose
  std::vector<std::vector<cv::Point2f>> segs;     // N polygons, or empty without segments
  size_t size() const { return cls.size(); }
  void append(const Instances& o);
  void keep(const std::vector<uint8_t>& mask);    // drops the instances whose mask entry is 0
};

// One drawn HSV jitter in OpenCV's 8-bit HSV units: hue shifted by `h` (of 180), saturation and value scaled.
struct HsvShift {
  double h = 0, s = 1, v = 1;
  bool active = false;  // false when every gain is 0: the official pipeline then leaves the pixels alone
};

// Pixel work drawn for a sample but not yet applied to its image (the loader applies it while writing the batch).
struct PendingPixels {
  HsvShift hsv;
  bool flip_lr = false, flip_ud = false;
  bool any() const { return hsv.active || flip_lr || flip_ud; }
};

struct Sample {
  size_t index = 0;               // dataset index of the main image
  cv::Mat img;                    // BGR uint8 HxWx3
  Instances inst;
  cv::Size ori_size;              // original (w, h)
  cv::Size resized_size;          // after load_image (w, h)
  double gain_w = 1, gain_h = 1;  // original -> img scale (load resize x letterbox), for scaling predictions back
  double pad_left = 0, pad_top = 0;
  bool keep_bgr = false;          // the `bgr` augmentation fired: leave channels in BGR order
  PendingPixels pending;          // HSV and flips still to apply to img (labels already moved); see make()
};

// Deterministic randomness of one sample: a 64-bit generator seeded from (seed, epoch, position).
struct SampleRng {
  std::mt19937_64 gen;
  explicit SampleRng(uint64_t seed) : gen(seed) {}
  static uint64_t derive(uint64_t seed, uint64_t epoch, uint64_t position);
  double uniform(double a = 0, double b = 1) { return a + (b - a) * std::uniform_real_distribution<double>(0, 1)(gen); }
  int64_t randint(int64_t n) { return std::uniform_int_distribution<int64_t>(0, n - 1)(gen); }  // [0, n)
  double beta(double a, double b);
};

// Dataset labels of image i in pixels of a w x h image (load_image size), plus `pad`.
Instances labels_in_pixels(const Dataset& ds, size_t i, cv::Size size, cv::Point2f pad = {0, 0});

// The official LetterBox: resize (aspect kept; only down unless scaleup) into `target` and pad evenly with 114.
// Fills gain/pad and moves the labels.
Sample letterbox_sample(const Dataset& ds, size_t i, cv::Size target, bool scaleup);
// Validation/non-augmented sample: load_image, then letterbox to target (no upscaling), as the official validator.
inline Sample val_sample(const Dataset& ds, size_t i, cv::Size target) { return letterbox_sample(ds, i, target, false); }

// The official random perspective matrix T*S*R*P*C for an input of size `in` cropped to `out`; `applied_scale`
// receives the drawn scale (for the box filter).
cv::Matx33d random_perspective_matrix(const AugmentConfig& cfg, cv::Size in, cv::Size out, SampleRng& rng,
                                      double* applied_scale);
// Transforms labels by M into an out-size image; drops boxes that the official box_candidates filter rejects
// (w, h > 2 px, area ratio > 0.1 (0.01 with polygons), aspect < 100) relative to the input boxes scaled by `scale`.
// `obb`: polygons are rotated boxes, clipped at the border with clip_obb_polygon (angle kept).
void transform_instances(Instances& inst, const cv::Matx33d& M, cv::Size out, double scale, bool perspective,
                         int kpt_dims, bool obb = false);
// The official HSV jitter: draws the shift (three uniforms, none when every gain is 0), then applies it as the
// official tool does (OpenCV's BGR->HSV, a table per channel, HSV->BGR). The reference for write_planes().
HsvShift draw_hsv(float hgain, float sgain, float vgain, SampleRng& rng);
void apply_hsv(cv::Mat& bgr, const HsvShift& shift);
inline void random_hsv(cv::Mat& bgr, float hgain, float sgain, float vgain, SampleRng& rng) {
  apply_hsv(bgr, draw_hsv(hgain, sgain, vgain, rng));
}
// Writes a BGR HxWx3 image as three H*W planes at `dst` (RGB order unless keep_bgr) and applies the pending HSV
// jitter and flips in the same single pass over the pixels. Matches apply_hsv + cv::flip + split within 1 level.
void write_planes(const cv::Mat& bgr, const PendingPixels& p, bool keep_bgr, uint8_t* dst);
// Flips image and labels; horizontal flips remap keypoints through flip_idx (empty = identity).
void flip_sample(Sample& s, bool horizontal, int kpt_count, int kpt_dims, const std::vector<int>& flip_idx);
// The labels' part of flip_sample, for an image of size `size` flipped later.
void flip_labels(Instances& in, cv::Size size, bool horizontal, int kpt_count, int kpt_dims, const std::vector<int>& flip_idx);

// Builds augmented training samples. One per loader worker: it owns the buffer of recently decoded images that
// feeds the other mosaic tiles (so each sample costs at most one decode, as in the official loader). Output
// depends only on the dataset, config, the sequence of make() calls and their seeds.
class TrainAugmenter {
 public:
  TrainAugmenter(std::shared_ptr<const Dataset> ds, AugmentConfig cfg, size_t buffer_capacity = 64);
  // One sample of size imgsz x imgsz. mosaic_enabled = false after close_mosaic (mosaic, mixup and cutmix off).
  // defer_pixels: the HSV jitter and flips are drawn (same randomness) and the labels flipped, but the pixel work
  // is left in Sample::pending for write_planes(), which does it while writing the batch (one pass, not four).
  Sample make(size_t index, uint64_t seed, bool mosaic_enabled, bool defer_pixels = false);
  void clear_buffer() { buffer_.clear(); }
  const AugmentConfig& config() const { return cfg_; }
  size_t decodes() const { return decodes_; }  // images decoded so far (tests check the one-decode-per-sample rule)

 private:
  struct Loaded { size_t index; cv::Mat img; };
  Loaded load(size_t index);
  // An s x s image filled with the padding colour, reusing a pooled one that no sample holds any more (fresh pages
  // cost page faults: kernel time that showed as 12 % of the loader's).
  cv::Mat blank(int s);
  Loaded partner(SampleRng& rng);
  Sample base_sample(size_t index, SampleRng& rng, bool mosaic_enabled);  // mosaic or letterbox, then perspective
  Sample mosaic_perspective(size_t index, SampleRng& rng);
  Sample letterbox_perspective(size_t index, SampleRng& rng);
  void mixup(Sample& s, Sample&& other, SampleRng& rng);
  void cutmix(Sample& s, Sample&& other, SampleRng& rng);

  std::shared_ptr<const Dataset> ds_;
  AugmentConfig cfg_;
  size_t capacity_;
  std::deque<Loaded> buffer_;
  std::vector<cv::Mat> pool_;
  size_t decodes_ = 0;
};

}  // namespace y26
