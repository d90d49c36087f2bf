// Classification auto-augment policies and random erasing, as the official classify_augmentations builds them from
// torchvision: RandAugment(interpolation=bilinear) with its defaults (2 ops, magnitude 9 of 31 bins), AutoAugment
// with the ImageNet policy (bilinear) and AugMix with its defaults (severity 3, width 3, depth 1-3, alpha 1), then
// RandomErasing(scale=(0.02, 0.33), ratio=(0.3, 3.3)).
// Every op works on a uint8 BGR image and follows the pixel rules of the PIL path the official takes for
// RandAugment / AutoAugment (PIL images): Image.blend truncates, "L" grey uses PIL's integer weights, the contrast
// mean is rounded to an integer, the sharpness blur is PIL's SMOOTH 3x3 kernel (rounded, border kept), affine ops
// are PIL's bilinear filter (edge pixels repeated inside the image, black outside, values truncated; rotate's quarter
// turns exact). Checked against torchvision 0.14.1 / PIL 9.4 outputs (test/fixtures/auto_augment): the pixel ops
// equal, the affine ones within one level on <1 % of values. AugMix runs the same ops on the uint8 tensor upstream,
// whose grey/contrast rounding differs from PIL's by at most one level; here AugMix reuses the PIL-rule ops.
// All randomness comes from the caller's rng, so a sample's augmentation is a function of its seed.
#pragma once
#include <opencv2/core.hpp>

#include <cstdint>
#include <random>
#include <string>

namespace y26 {

enum class AugPolicy { None, RandAugment, AutoAugment, AugMix };

// "randaugment" | "autoaugment" | "augmix" (any case); "", "none", "null" and "false" turn it off, as a falsy
// auto_augment upstream. Anything else throws y26::Error naming the valid policies.
AugPolicy parse_auto_augment(const std::string& name);
const char* auto_augment_name(AugPolicy p);

// torchvision's op names (autoaugment._apply_op).
enum class AugOp {
  Identity, ShearX, ShearY, TranslateX, TranslateY, Rotate, Brightness, Color, Contrast, Sharpness, Posterize,
  Solarize, AutoContrast, Equalize, Invert
};

// One op on a uint8 BGR image with the magnitude _apply_op receives (already signed): shear factor (ShearX: the
// output pixel at row y reads the input at x + m*y, so m > 0 moves lower rows left), translation in pixels
// (truncated to an int; content moves by +m), rotation in degrees counter-clockwise about the centre, enhance
// factor 1 + m (Brightness / Color / Contrast / Sharpness), posterize bits, solarize threshold.
cv::Mat apply_augment_op(const cv::Mat& bgr, AugOp op, double magnitude);

// The policy on a uint8 BGR image (None returns it unchanged).
cv::Mat apply_auto_augment(const cv::Mat& bgr, AugPolicy policy, std::mt19937_64& rng);

// torchvision RandomErasing(p, scale=(0.02, 0.33), ratio=(0.3, 3.3)) on a uint8 image, in place: with probability p
// one rectangle (10 tries to fit, else nothing) is set to `value` in every channel. Returns the rectangle erased
// (empty when none).
cv::Rect random_erasing(cv::Mat& img, double p, uint8_t value, std::mt19937_64& rng);

}  // namespace y26
