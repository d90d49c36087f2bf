#include "data/classify_loader.h"

#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <future>
#include <numeric>
#include <random>

#include "data/image_io.h"
#include "util/error.h"

namespace y26 {

namespace {

uint64_t mix(uint64_t a, uint64_t b) {  // splitmix64 of a combined key: independent streams per (seed, epoch, i)
  uint64_t z = a * 0x9E3779B97F4A7C15ull + b + 0x632BE59BD9B4E019ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// torchvision RandomResizedCrop.get_params: 10 tries of (area fraction, log-uniform aspect), else a centre crop
// clamped to the ratio range; sizes rounded as Python's round (ties to even).
cv::Rect random_resized_crop(int w, int h, double smin, double smax, std::mt19937_64& rng) {
  std::uniform_real_distribution<double> U(0.0, 1.0);
  const double area = (double)w * h, lr0 = std::log(3.0 / 4.0), lr1 = std::log(4.0 / 3.0);
  for (int t = 0; t < 10; ++t) {
    const double target = area * (smin + (smax - smin) * U(rng));
    const double ar = std::exp(lr0 + (lr1 - lr0) * U(rng));
    const int cw = (int)std::nearbyint(std::sqrt(target * ar)), ch = (int)std::nearbyint(std::sqrt(target / ar));
    if (cw > 0 && ch > 0 && cw <= w && ch <= h) {
      const int x = std::uniform_int_distribution<int>(0, w - cw)(rng);
      const int y = std::uniform_int_distribution<int>(0, h - ch)(rng);
      return {x, y, cw, ch};
    }
  }
  const double in_ratio = (double)w / h;
  int cw = w, ch = h;
  if (in_ratio < 3.0 / 4.0) ch = (int)std::nearbyint(w / (3.0 / 4.0));
  else if (in_ratio > 4.0 / 3.0) cw = (int)std::nearbyint(h * (4.0 / 3.0));
  return {(w - cw) / 2, (h - ch) / 2, cw, ch};
}

// ColorJitter in a random order of its four steps, factors drawn as torchvision does.
void color_jitter(cv::Mat& bgr, const ClassifyAugment& a, std::mt19937_64& rng) {
  std::uniform_real_distribution<double> U(0.0, 1.0);
  auto factor = [&](double v) { return v > 0 ? std::max(0.0, 1 - v + 2 * v * U(rng)) : 1.0; };
  const double fb = factor(a.hsv_v), fc = factor(a.hsv_v), fs = factor(a.hsv_s);
  const double fh = a.hsv_h > 0 ? -a.hsv_h + 2 * a.hsv_h * U(rng) : 0.0;
  int order[4] = {0, 1, 2, 3};
  std::shuffle(order, order + 4, rng);
  cv::Mat f;
  bgr.convertTo(f, CV_32F);
  for (int step : order) {
    if (step == 0 && fb != 1.0) f *= fb;
    if (step == 1 && fc != 1.0) {  // blend with the mean grey level
      cv::Mat g;
      cv::cvtColor(cv::min(cv::max(f, 0.0), 255.0), g, cv::COLOR_BGR2GRAY);
      const double m = cv::mean(g)[0];
      f = f * fc + cv::Scalar::all(m * (1 - fc));  // every channel, explicitly
    }
    if (step == 2 && fs != 1.0) {  // blend with the grey image
      cv::Mat g, g3;
      cv::cvtColor(cv::min(cv::max(f, 0.0), 255.0), g, cv::COLOR_BGR2GRAY);
      cv::cvtColor(g, g3, cv::COLOR_GRAY2BGR);
      f = f * fs + g3 * (1 - fs);
    }
    if (step == 3 && fh != 0.0) {  // rotate the hue by fh of a turn
      cv::Mat hsv;
      cv::cvtColor(cv::min(cv::max(f, 0.0), 255.0) / 255.0, hsv, cv::COLOR_BGR2HSV);  // H in degrees
      std::vector<cv::Mat> ch;
      cv::split(hsv, ch);
      ch[0] += fh * 360.0;
      cv::Mat& hh = ch[0];
      for (int r = 0; r < hh.rows; ++r)
        for (float* p = hh.ptr<float>(r), *e = p + hh.cols; p < e; ++p) *p = std::fmod(*p + 360.f, 360.f);
      cv::merge(ch, hsv);
      cv::cvtColor(hsv, f, cv::COLOR_HSV2BGR);
      f *= 255.0;
    }
  }
  f.convertTo(bgr, CV_8U);  // saturating
}

}  // namespace

cv::Mat classify_train_transform(const cv::Mat& bgr, int imgsz, const ClassifyAugment& aug, uint64_t rng_seed) {
  std::mt19937_64 rng(rng_seed);
  std::uniform_real_distribution<double> U(0.0, 1.0);
  const double smin = std::clamp(1.0 - aug.scale, 0.0, 1.0);
  const cv::Rect r = random_resized_crop(bgr.cols, bgr.rows, smin, 1.0, rng);
  cv::Mat out;
  cv::resize(bgr(r), out, cv::Size(imgsz, imgsz), 0, 0, cv::INTER_LINEAR);
  if (U(rng) < aug.fliplr) cv::flip(out, out, 1);
  if (U(rng) < aug.flipud) cv::flip(out, out, 0);
  if (aug.auto_augment != AugPolicy::None) out = apply_auto_augment(out, aug.auto_augment, rng);
  else color_jitter(out, aug, rng);
  random_erasing(out, aug.erasing, kClassifyEraseValue, rng);
  return out;
}

namespace {
EpochShard make_shard(const ClassifySplit& split, int rank, int world) {
  if (split.files.empty()) fail(split.dir + ": no training images; put them under train/<class>/");
  return EpochShard((int64_t)split.files.size(), rank, world, "ClassifyLoader");
}
}  // namespace

ClassifyLoader::ClassifyLoader(ClassifySplit split, int imgsz, int batch, int workers, uint64_t seed,
                               ClassifyAugment aug, int rank, int world)
    : split_(std::move(split)), imgsz_(imgsz), batch_(std::max(1, batch)), workers_(std::max(1, workers)),
      seed_(seed), aug_(aug), shard_(make_shard(split_, rank, world)) {
  nb_ = (shard_.size() + batch_ - 1) / batch_;
  set_epoch(0);
}

void ClassifyLoader::set_epoch(int e) {
  epoch_ = e;
  pos_ = 0;
  shard_.permutation(seed_, e, order_);
}

bool ClassifyLoader::next(Batch& out) {
  if (pos_ >= shard_.size()) {
    set_epoch(epoch_ + 1);
    return false;
  }
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t n = std::min<int64_t>(batch_, shard_.size() - pos_);
  // This batch's samples: dataset index and epoch-order position (the padding past n wraps to the start).
  std::vector<size_t> idxs((size_t)n);
  std::vector<int64_t> pos((size_t)n);
  for (int64_t j = 0; j < n; ++j) {
    pos[(size_t)j] = shard_.position(pos_ + j);
    idxs[(size_t)j] = shard_.sample(pos[(size_t)j], &order_);
  }
  auto img = torch::empty({n, 3, imgsz_, imgsz_}, torch::kUInt8);
  auto cls = torch::empty({n, 1}, torch::kFloat32);
  uint8_t* img_p = img.data_ptr<uint8_t>();
  float* cls_p = cls.data_ptr<float>();
  std::vector<std::string> errors(workers_);
  std::vector<std::future<void>> jobs;
  for (int w = 0; w < workers_; ++w)
    jobs.push_back(std::async(std::launch::async, [&, w] {
      try {
        for (int64_t j = w; j < n; j += workers_) {
          const size_t idx = idxs[(size_t)j];
          cv::Mat im = classify_train_transform(read_image_bgr(split_.files[idx]), imgsz_, aug_,
                                                mix(mix(seed_, (uint64_t)epoch_), (uint64_t)pos[(size_t)j]));
          cv::Mat rgb;
          cv::cvtColor(im, rgb, cv::COLOR_BGR2RGB);
          // HWC -> CHW straight into the batch slot (raw pointers: safe from several threads)
          std::vector<cv::Mat> planes;
          cv::split(rgb, planes);
          const size_t plane = (size_t)imgsz_ * imgsz_;
          for (int c = 0; c < 3; ++c)
            std::memcpy(img_p + ((size_t)j * 3 + c) * plane, planes[c].data, plane);
          cls_p[j] = (float)split_.labels[idx];
        }
      } catch (const std::exception& e) {
        errors[w] = e.what();
      }
    }));
  for (auto& j : jobs) j.get();
  for (const auto& e : errors)
    if (!e.empty()) fail("classify training data: " + e);
  out = Batch();
  out.img = img;
  out.cls = cls;
  out.batch_idx = torch::arange(n, torch::kFloat32);
  for (size_t idx : idxs) {
    out.im_file.push_back(split_.files[idx]);
    out.indices.push_back((int64_t)idx);
  }
  out.epoch = epoch_;
  out.batch_index = pos_ / batch_;
  pos_ += n;
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  out.wait_ms = ms;  // synchronous: the consumer waits for the whole build
  stats_.batches++;
  stats_.samples += n;
  stats_.wait_ms_total += ms;
  stats_.wait_ms_max = std::max(stats_.wait_ms_max, ms);
  stats_.wait_ms_last = ms;
  stats_.build_ms_total += ms;
  return true;
}

}  // namespace y26
