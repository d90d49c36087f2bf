// Letterboxed BGR images -> the model's input batch: RGB, CHW, float32 / 255 on the target device.
#pragma once
#include <opencv2/core.hpp>
#include <torch/types.h>

#include <vector>

namespace y26 {

// Stacks same-size 3-channel BGR HWC uint8 images into a (B,3,H,W) uint8 RGB tensor on the CPU. With
// pin_memory the tensor is page-locked so the copy to a GPU can be asynchronous.
torch::Tensor images_to_uint8_batch(const std::vector<cv::Mat>& images, bool pin_memory = false);

// The same batch as normalize_batch(images_to_uint8_batch(images), cpu, half), bit for bit, in one pass over the
// pixels: the CPU input without the uint8 intermediate (the predict pipeline builds it off the forward's thread).
torch::Tensor images_to_float_batch(const std::vector<cv::Mat>& images, bool half = false);

// (B,3,H,W) uint8 -> float32 (or float16 when half) / 255 on device; the copy is non_blocking from pinned memory.
torch::Tensor normalize_batch(const torch::Tensor& batch_u8, const torch::Device& device, bool half = false);

// Both steps; pins memory when the device is CUDA.
torch::Tensor preprocess_batch(const std::vector<cv::Mat>& images, const torch::Device& device, bool half = false);

}  // namespace y26
