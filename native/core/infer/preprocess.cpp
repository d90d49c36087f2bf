#include "infer/preprocess.h"

#include <opencv2/core.hpp>

#include "util/error.h"

namespace y26 {

namespace {
void check_batch(const std::vector<cv::Mat>& images) {
  if (images.empty()) fail("preprocess: empty batch");
  const int h = images.front().rows, w = images.front().cols;
  for (size_t i = 0; i < images.size(); ++i) {
    const cv::Mat& im = images[i];
    if (im.type() != CV_8UC3)
      fail("preprocess: image " + std::to_string(i) + " is not 3-channel uint8 BGR (OpenCV type " +
           std::to_string(im.type()) + "); convert it when it is read");
    if (im.rows != h || im.cols != w)
      fail("preprocess: images in one batch must share a shape after letterbox (" + std::to_string(h) + "x" +
           std::to_string(w) + " vs " + std::to_string(im.rows) + "x" + std::to_string(im.cols) + ")");
  }
}
}  // namespace

torch::Tensor images_to_float_batch(const std::vector<cv::Mat>& images, bool half) {
  check_batch(images);
  const int h = images.front().rows, w = images.front().cols;
  torch::Tensor out = torch::empty({static_cast<int64_t>(images.size()), 3, h, w}, torch::kFloat32);
  float* base = out.data_ptr<float>();
  const size_t plane = static_cast<size_t>(h) * w;
  float lut[256];  // v / 255 as torch's float division computes it (IEEE division, exact to the bit)
  for (int v = 0; v < 256; ++v) lut[v] = static_cast<float>(v) / 255.0f;
  for (size_t i = 0; i < images.size(); ++i) {
    float* r = base + i * 3 * plane;
    float* g = r + plane;
    float* b = g + plane;
    for (int y = 0; y < h; ++y) {
      const uint8_t* src = images[i].ptr<uint8_t>(y);
      const size_t row = static_cast<size_t>(y) * w;
      for (int x = 0; x < w; ++x) {
        b[row + x] = lut[src[3 * x]];
        g[row + x] = lut[src[3 * x + 1]];
        r[row + x] = lut[src[3 * x + 2]];
      }
    }
  }
  return half ? out.to(torch::kFloat16) : out;
}

torch::Tensor images_to_uint8_batch(const std::vector<cv::Mat>& images, bool pin_memory) {
  check_batch(images);
  const int h = images.front().rows, w = images.front().cols;
  auto opts = torch::TensorOptions().dtype(torch::kUInt8).pinned_memory(pin_memory);
  torch::Tensor out = torch::empty({static_cast<int64_t>(images.size()), 3, h, w}, opts);
  uint8_t* base = out.data_ptr<uint8_t>();
  const size_t plane = static_cast<size_t>(h) * w;
  for (size_t i = 0; i < images.size(); ++i) {
    uint8_t* dst = base + i * 3 * plane;
    // Planes in RGB order: channel 2 (R) of BGR goes first. mixChannels does the swap and the HWC->CHW split at once.
    std::vector<cv::Mat> planes = {cv::Mat(h, w, CV_8UC1, dst), cv::Mat(h, w, CV_8UC1, dst + plane),
                                   cv::Mat(h, w, CV_8UC1, dst + 2 * plane)};
    const int from_to[] = {2, 0, 1, 1, 0, 2};
    cv::mixChannels(&images[i], 1, planes.data(), 3, from_to, 3);
  }
  return out;
}

torch::Tensor normalize_batch(const torch::Tensor& batch_u8, const torch::Device& device, bool half) {
  torch::Tensor x = batch_u8.to(device, /*non_blocking=*/batch_u8.is_pinned());
  x = x.to(torch::kFloat32).div_(255.0);
  return half ? x.to(torch::kFloat16) : x;
}

torch::Tensor preprocess_batch(const std::vector<cv::Mat>& images, const torch::Device& device, bool half) {
  return normalize_batch(images_to_uint8_batch(images, device.is_cuda()), device, half);
}

}  // namespace y26
