// Classification inference helpers shared by predict and val: the official classify_transforms preprocessing
// (torchvision Resize on a PIL image, then CenterCrop), the Probs view of a probability row (top1 / top5) and the
// save_txt lines of a classify result.
#pragma once
#include <opencv2/core.hpp>
#include <torch/types.h>

#include <string>
#include <vector>

#include "infer/postprocess.h"

namespace y26 {

// PIL's Image.resize(BILINEAR) on 8-bit images: a separable triangle filter whose support grows with the
// downscale factor (antialiasing), fixed-point weights, horizontal pass then vertical, each rounded to uint8.
// Works on any number of uint8 channels; a pass whose size does not change is skipped, as PIL does.
cv::Mat pil_resize_bilinear(const cv::Mat& image, int out_w, int out_h);

// classify_transforms(imgsz) without the ToTensor step: for a square target the short side is resized to it
// (the long side to int(size * long / short)) and the centre crop taken (offsets rounded half to even, as
// Python's round); a non-square target (h != w) is resized to exactly h x w. Returns a uint8 h x w image in
// the input's channel order.
cv::Mat classify_transform(const cv::Mat& image, int height, int width);

// Indices of the k largest probabilities, largest first (k capped at the class count); ties keep the lower index.
std::vector<int64_t> topk_classes(const torch::Tensor& probs, int64_t k = 5);

// Result of one image: probs (nc) float32 on the CPU, no boxes (empty box tensors so size() is 0).
Result make_classify_result(const torch::Tensor& probs, int orig_h, int orig_w);

// save_txt of a classify result: one "conf name" line per top-5 class, conf with two decimals.
std::string format_classify_txt(const Result& r, const std::vector<std::string>& names);

// The official verbose text "name 0.87, name 0.05, ..." of the top-5 classes (without the trailing ", ").
std::string classify_summary(const Result& r, const std::vector<std::string>& names);

}  // namespace y26
