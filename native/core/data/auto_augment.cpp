#include "data/auto_augment.h"

#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <vector>

#include "util/error.h"
#include "util/text.h"

namespace y26 {

namespace {

constexpr double kPi = 3.14159265358979323846;

double uniform(std::mt19937_64& rng) { return std::uniform_real_distribution<double>(0.0, 1.0)(rng); }
int randint(std::mt19937_64& rng, int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng); }  // [0, n)

uint8_t clip_trunc(float v) { return v <= 0.f ? 0 : v >= 255.f ? 255 : (uint8_t)v; }  // PIL / torch .to(uint8)

// A per-channel lookup: table row c maps channel c.
cv::Mat apply_tables(const cv::Mat& img, const std::vector<std::array<uint8_t, 256>>& t) {
  cv::Mat lut(1, 256, CV_8UC(img.channels()));
  for (int i = 0; i < 256; ++i)
    for (int c = 0; c < img.channels(); ++c) lut.ptr<uint8_t>(0)[i * img.channels() + c] = t[(size_t)c][i];
  cv::Mat out;
  cv::LUT(img, lut, out);
  return out;
}

std::vector<std::array<uint8_t, 256>> same_table(const cv::Mat& img, uint8_t (*f)(int, double), double arg) {
  std::array<uint8_t, 256> t{};
  for (int i = 0; i < 256; ++i) t[i] = f(i, arg);
  return std::vector<std::array<uint8_t, 256>>((size_t)img.channels(), t);
}

std::vector<std::array<int64_t, 256>> histograms(const cv::Mat& img) {
  const int ch = img.channels();
  std::vector<std::array<int64_t, 256>> h((size_t)ch, std::array<int64_t, 256>{});
  for (int r = 0; r < img.rows; ++r) {
    const uint8_t* p = img.ptr<uint8_t>(r);
    for (int i = 0; i < img.cols * ch; ++i) ++h[(size_t)(i % ch)][p[i]];
  }
  return h;
}

// PIL convert("L") of a BGR image: 0.299 R + 0.587 G + 0.114 B in 16-bit fixed point, rounded.
cv::Mat pil_grey(const cv::Mat& bgr) {
  cv::Mat g(bgr.size(), CV_8U);
  for (int r = 0; r < bgr.rows; ++r) {
    const uint8_t* p = bgr.ptr<uint8_t>(r);
    uint8_t* o = g.ptr<uint8_t>(r);
    for (int x = 0; x < bgr.cols; ++x, p += 3) o[x] = (uint8_t)((p[2] * 19595 + p[1] * 38470 + p[0] * 7471 + 0x8000) >> 16);
  }
  return g;
}

// PIL Image.blend(degenerate, img, factor) = degenerate + factor * (img - degenerate), in float, truncated.
cv::Mat blend(const cv::Mat& deg, const cv::Mat& img, double factor) {
  const float a = (float)factor;
  cv::Mat out(img.size(), img.type());
  const int n = img.cols * img.channels();
  for (int r = 0; r < img.rows; ++r) {
    const uint8_t *d = deg.ptr<uint8_t>(r), *s = img.ptr<uint8_t>(r);
    uint8_t* o = out.ptr<uint8_t>(r);
    for (int i = 0; i < n; ++i) o[i] = clip_trunc((float)d[i] + a * (float)((int)s[i] - (int)d[i]));
  }
  return out;
}

// PIL ImageFilter.SMOOTH (3x3, centre 5, others 1, /13) rounded; the outermost rows and columns are kept.
cv::Mat pil_smooth(const cv::Mat& img) {
  cv::Mat out = img.clone();
  const int ch = img.channels();
  for (int y = 1; y + 1 < img.rows; ++y) {
    const uint8_t *a = img.ptr<uint8_t>(y - 1), *b = img.ptr<uint8_t>(y), *c = img.ptr<uint8_t>(y + 1);
    uint8_t* o = out.ptr<uint8_t>(y);
    for (int x = 1; x + 1 < img.cols; ++x)
      for (int k = 0; k < ch; ++k) {
        const int i = x * ch + k;
        const int s = a[i - ch] + a[i] + a[i + ch] + b[i - ch] + 5 * b[i] + b[i + ch] + c[i - ch] + c[i] + c[i + ch];
        o[i] = clip_trunc((float)s / 13.f + 0.5f);
      }
  }
  return out;
}

// PIL Image.transform(AFFINE, bilinear, black fill): the output point (x, y) in continuous coordinates (pixel
// centres at i + 0.5) reads the input at (a x + b y + c, d x + e y + f). OpenCV's inverse map uses pixel indices.
cv::Mat pil_affine(const cv::Mat& img, double a, double b, double c, double d, double e, double f) {
  // PIL's bilinear filter, to the bit: an output pixel whose centre maps outside [0, w) x [0, h) gets the fill
  // (black); inside, the 2x2 neighbourhood repeats the edge pixels, and the value is truncated (OpenCV's warpAffine
  // would blend the edge with black and quantise the weights to 1/32).
  cv::Mat out = cv::Mat::zeros(img.size(), img.type());
  const int W = img.cols, H = img.rows, C = img.channels();
  for (int y = 0; y < H; ++y) {
    uint8_t* o = out.ptr<uint8_t>(y);
    for (int x = 0; x < W; ++x, o += C) {
      double xi = a * (x + 0.5) + b * (y + 0.5) + c, yi = d * (x + 0.5) + e * (y + 0.5) + f;
      if (xi < 0 || xi >= W || yi < 0 || yi >= H) continue;
      xi -= 0.5, yi -= 0.5;
      const int x0 = (int)std::floor(xi), y0 = (int)std::floor(yi);
      const double dx = xi - x0, dy = yi - y0;
      const int c0 = std::clamp(x0, 0, W - 1), c1 = std::clamp(x0 + 1, 0, W - 1);
      const uint8_t* r0 = img.ptr<uint8_t>(std::clamp(y0, 0, H - 1));
      const uint8_t* r1 = y0 + 1 < H ? img.ptr<uint8_t>(y0 + 1) : r0;
      for (int k = 0; k < C; ++k) {
        const double v1 = r0[c0 * C + k] + (r0[c1 * C + k] - r0[c0 * C + k]) * dx;
        const double v2 = r1[c0 * C + k] + (r1[c1 * C + k] - r1[c0 * C + k]) * dx;
        o[k] = (uint8_t)std::clamp(v1 + (v2 - v1) * dy, 0.0, 255.0);
      }
    }
  }
  return out;
}

uint8_t posterize_px(int v, double bits) {
  const int b = std::clamp((int)bits, 0, 8);
  return (uint8_t)(v & (0xFF << (8 - b)) & 0xFF);
}
uint8_t solarize_px(int v, double threshold) { return (uint8_t)(v < threshold ? v : 255 - v); }
uint8_t invert_px(int v, double) { return (uint8_t)(255 - v); }

// PIL ImageOps.autocontrast (cutoff 0): each channel's [min, max] stretched to [0, 255], truncated.
cv::Mat autocontrast(const cv::Mat& img) {
  const auto h = histograms(img);
  std::vector<std::array<uint8_t, 256>> t(h.size());
  for (size_t c = 0; c < h.size(); ++c) {
    int lo = 0, hi = 255;
    while (lo < 255 && !h[c][lo]) ++lo;
    while (hi > 0 && !h[c][hi]) --hi;
    for (int i = 0; i < 256; ++i) {
      if (hi <= lo) {
        t[c][i] = (uint8_t)i;
        continue;
      }
      const double scale = 255.0 / (hi - lo), offset = -lo * scale;
      t[c][i] = (uint8_t)std::clamp((int)(i * scale + offset), 0, 255);
    }
  }
  return apply_tables(img, t);
}

// PIL ImageOps.equalize: per channel, step = (pixels - count of the top value) // 255 and
// lut[i] = (step // 2 + pixels below i) // step; identity with a single value or step 0.
cv::Mat equalize(const cv::Mat& img) {
  const auto h = histograms(img);
  std::vector<std::array<uint8_t, 256>> t(h.size());
  for (size_t c = 0; c < h.size(); ++c) {
    int64_t total = 0, last = 0, used = 0;
    for (int i = 0; i < 256; ++i)
      if (h[c][i]) total += h[c][i], last = h[c][i], ++used;
    const int64_t step = (total - last) / 255;
    int64_t n = step / 2;
    for (int i = 0; i < 256; ++i) {
      t[c][i] = used <= 1 || step == 0 ? (uint8_t)i : (uint8_t)std::min<int64_t>(255, n / step);
      n += h[c][i];
    }
  }
  return apply_tables(img, t);
}

// torchvision's _augmentation_space value of magnitude bin k of `bins` for one op, and whether it is signed.
struct Space {
  double translate_x, translate_y;  // largest translations in pixels
  int posterize_top;                // bits at bin 0
};

double op_magnitude(AugOp op, int k, int bins, const Space& s, bool* is_signed) {
  const double t = (double)k / (bins - 1);
  *is_signed = true;
  switch (op) {
    case AugOp::ShearX: case AugOp::ShearY: return 0.3 * t;
    case AugOp::TranslateX: return s.translate_x * t;
    case AugOp::TranslateY: return s.translate_y * t;
    case AugOp::Rotate: return 30.0 * t;
    case AugOp::Brightness: case AugOp::Color: case AugOp::Contrast: case AugOp::Sharpness: return 0.9 * t;
    default: break;
  }
  *is_signed = false;
  if (op == AugOp::Posterize) return s.posterize_top - std::nearbyint(k / ((bins - 1) / 4.0));  // torch round: half to even
  if (op == AugOp::Solarize) return 255.0 * (1.0 - t);
  return 0.0;
}

bool has_magnitudes(AugOp op) {
  return op != AugOp::Identity && op != AugOp::AutoContrast && op != AugOp::Equalize && op != AugOp::Invert;
}

Space randaugment_space(const cv::Mat& img) { return {150.0 / 331.0 * img.cols, 150.0 / 331.0 * img.rows, 8}; }

cv::Mat rand_augment(cv::Mat img, std::mt19937_64& rng) {
  static const AugOp ops[] = {AugOp::Identity,   AugOp::ShearX,     AugOp::ShearY,    AugOp::TranslateX,
                              AugOp::TranslateY, AugOp::Rotate,     AugOp::Brightness, AugOp::Color,
                              AugOp::Contrast,   AugOp::Sharpness,  AugOp::Posterize, AugOp::Solarize,
                              AugOp::AutoContrast, AugOp::Equalize};
  const int num_ops = 2, magnitude = 9, bins = 31;  // torchvision defaults
  const Space s = randaugment_space(img);
  for (int i = 0; i < num_ops; ++i) {
    const AugOp op = ops[randint(rng, 14)];
    bool sgn = false;
    double m = has_magnitudes(op) ? op_magnitude(op, magnitude, bins, s, &sgn) : 0.0;
    if (sgn && randint(rng, 2)) m = -m;
    img = apply_augment_op(img, op, m);
  }
  return img;
}

struct PolicyStep {
  AugOp op;
  double p;
  int bin;  // -1: no magnitude
};

cv::Mat auto_augment_imagenet(cv::Mat img, std::mt19937_64& rng) {
  using A = AugOp;
  static const PolicyStep policy[25][2] = {
      {{A::Posterize, 0.4, 8}, {A::Rotate, 0.6, 9}},     {{A::Solarize, 0.6, 5}, {A::AutoContrast, 0.6, -1}},
      {{A::Equalize, 0.8, -1}, {A::Equalize, 0.6, -1}},  {{A::Posterize, 0.6, 7}, {A::Posterize, 0.6, 6}},
      {{A::Equalize, 0.4, -1}, {A::Solarize, 0.2, 4}},   {{A::Equalize, 0.4, -1}, {A::Rotate, 0.8, 8}},
      {{A::Solarize, 0.6, 3}, {A::Equalize, 0.6, -1}},   {{A::Posterize, 0.8, 5}, {A::Equalize, 1.0, -1}},
      {{A::Rotate, 0.2, 3}, {A::Solarize, 0.6, 8}},      {{A::Equalize, 0.6, -1}, {A::Posterize, 0.4, 6}},
      {{A::Rotate, 0.8, 8}, {A::Color, 0.4, 0}},         {{A::Rotate, 0.4, 9}, {A::Equalize, 0.6, -1}},
      {{A::Equalize, 0.0, -1}, {A::Equalize, 0.8, -1}},  {{A::Invert, 0.6, -1}, {A::Equalize, 1.0, -1}},
      {{A::Color, 0.6, 4}, {A::Contrast, 1.0, 8}},       {{A::Rotate, 0.8, 8}, {A::Color, 1.0, 2}},
      {{A::Color, 0.8, 8}, {A::Solarize, 0.8, 7}},       {{A::Sharpness, 0.4, 7}, {A::Invert, 0.6, -1}},
      {{A::ShearX, 0.6, 5}, {A::Equalize, 1.0, -1}},     {{A::Color, 0.4, 0}, {A::Equalize, 0.6, -1}},
      {{A::Equalize, 0.4, -1}, {A::Solarize, 0.2, 4}},   {{A::Solarize, 0.6, 5}, {A::AutoContrast, 0.6, -1}},
      {{A::Invert, 0.6, -1}, {A::Equalize, 1.0, -1}},    {{A::Color, 0.6, 4}, {A::Contrast, 1.0, 8}},
      {{A::Equalize, 0.8, -1}, {A::Equalize, 0.6, -1}},
  };
  // torchvision's get_params order: policy index, two probabilities, two signs.
  const int id = randint(rng, 25);
  const double probs[2] = {uniform(rng), uniform(rng)};
  const int signs[2] = {randint(rng, 2), randint(rng, 2)};
  const Space s = randaugment_space(img);
  for (int i = 0; i < 2; ++i) {
    const PolicyStep& st = policy[id][i];
    if (!(probs[i] <= st.p)) continue;
    bool sgn = false;
    double m = st.bin >= 0 ? op_magnitude(st.op, st.bin, 10, s, &sgn) : 0.0;
    if (sgn && signs[i] == 0) m = -m;
    img = apply_augment_op(img, st.op, m);
  }
  return img;
}

// Dirichlet(1, ..., 1): normalised Exp(1) draws (Gamma with shape 1).
std::vector<double> dirichlet_ones(int n, std::mt19937_64& rng) {
  std::vector<double> v((size_t)n);
  double sum = 0;
  for (auto& x : v) sum += (x = -std::log(1.0 - uniform(rng)));
  for (auto& x : v) x = sum > 0 ? x / sum : 1.0 / n;
  return v;
}

cv::Mat aug_mix(const cv::Mat& img, std::mt19937_64& rng) {
  static const AugOp ops[] = {AugOp::ShearX,    AugOp::ShearY,       AugOp::TranslateX, AugOp::TranslateY,
                              AugOp::Rotate,    AugOp::Posterize,    AugOp::Solarize,   AugOp::AutoContrast,
                              AugOp::Equalize,  AugOp::Brightness,   AugOp::Color,      AugOp::Contrast,
                              AugOp::Sharpness};
  const int severity = 3, width = 3, bins = 10;  // torchvision defaults (chain depth 1-3, alpha 1)
  const Space s{img.cols / 3.0, img.rows / 3.0, 4};
  const std::vector<double> m = dirichlet_ones(2, rng);
  std::vector<double> w = dirichlet_ones(width, rng);
  for (auto& x : w) x *= m[1];
  cv::Mat mix;
  img.convertTo(mix, CV_32F, m[0]);
  for (int i = 0; i < width; ++i) {
    cv::Mat aug = img;
    const int depth = 1 + randint(rng, 3);
    for (int d = 0; d < depth; ++d) {
      const AugOp op = ops[randint(rng, 13)];
      bool sgn = false;
      double mag = has_magnitudes(op) ? op_magnitude(op, randint(rng, severity), bins, s, &sgn) : 0.0;
      if (sgn && randint(rng, 2)) mag = -mag;
      aug = apply_augment_op(aug, op, mag);
    }
    cv::Mat f;
    aug.convertTo(f, CV_32F);
    mix += f * w[(size_t)i];
  }
  cv::Mat out(img.size(), img.type());  // float -> uint8 truncates, as torch's .to(uint8)
  const int n = img.cols * img.channels();
  for (int r = 0; r < img.rows; ++r) {
    const float* p = mix.ptr<float>(r);
    uint8_t* o = out.ptr<uint8_t>(r);
    for (int i = 0; i < n; ++i) o[i] = clip_trunc(p[i]);
  }
  return out;
}

}  // namespace

AugPolicy parse_auto_augment(const std::string& name) {
  const std::string v = to_lower(name);
  if (v.empty() || v == "none" || v == "null" || v == "false") return AugPolicy::None;
  if (v == "randaugment") return AugPolicy::RandAugment;
  if (v == "autoaugment") return AugPolicy::AutoAugment;
  if (v == "augmix") return AugPolicy::AugMix;
  fail("auto_augment='" + name + "' is not a policy: use randaugment, autoaugment or augmix (or null to turn it off)");
}

const char* auto_augment_name(AugPolicy p) {
  switch (p) {
    case AugPolicy::RandAugment: return "randaugment";
    case AugPolicy::AutoAugment: return "autoaugment";
    case AugPolicy::AugMix: return "augmix";
    default: return "none";
  }
}

cv::Mat apply_augment_op(const cv::Mat& bgr, AugOp op, double m) {
  if (bgr.depth() != CV_8U || bgr.channels() != 3) fail("apply_augment_op: expected a uint8 BGR image");
  switch (op) {
    case AugOp::Identity: return bgr.clone();
    case AugOp::ShearX: return pil_affine(bgr, 1, m, 0, 0, 1, 0);  // torchvision: shear atan(m) about (0, 0)
    case AugOp::ShearY: return pil_affine(bgr, 1, 0, 0, m, 1, 0);
    case AugOp::TranslateX: return pil_affine(bgr, 1, 0, -(double)(int)m, 0, 1, 0);
    case AugOp::TranslateY: return pil_affine(bgr, 1, 0, 0, 0, 1, -(double)(int)m);
    case AugOp::Rotate: {  // PIL rotate: counter-clockwise about (w/2, h/2)
      // PIL turns exact quarter turns into transposes (90 / 270 only for square images) and rounds cos and sin to
      // 15 decimals, so that 90 degrees is exact.
      const double deg = std::fmod(std::fmod(m, 360.0) + 360.0, 360.0);
      cv::Mat q;
      if (deg == 0) return bgr.clone();
      if (deg == 180) return cv::rotate(bgr, q, cv::ROTATE_180), q;
      if ((deg == 90 || deg == 270) && bgr.cols == bgr.rows)
        return cv::rotate(bgr, q, deg == 90 ? cv::ROTATE_90_COUNTERCLOCKWISE : cv::ROTATE_90_CLOCKWISE), q;
      auto round15 = [](double v) { return std::nearbyint(v * 1e15) / 1e15; };
      const double r = m * kPi / 180.0, cs = round15(std::cos(r)), sn = round15(std::sin(r));
      const double cx = bgr.cols * 0.5, cy = bgr.rows * 0.5;
      return pil_affine(bgr, cs, -sn, cx - cs * cx + sn * cy, sn, cs, cy - sn * cx - cs * cy);
    }
    case AugOp::Brightness: return blend(cv::Mat::zeros(bgr.size(), bgr.type()), bgr, 1.0 + m);
    case AugOp::Color: {
      cv::Mat g3;
      cv::cvtColor(pil_grey(bgr), g3, cv::COLOR_GRAY2BGR);
      return blend(g3, bgr, 1.0 + m);
    }
    case AugOp::Contrast: {  // blend with a flat image at the rounded mean of the grey image
      const int mean = (int)(cv::mean(pil_grey(bgr))[0] + 0.5);
      return blend(cv::Mat(bgr.size(), bgr.type(), cv::Scalar::all(mean)), bgr, 1.0 + m);
    }
    case AugOp::Sharpness: return blend(pil_smooth(bgr), bgr, 1.0 + m);
    case AugOp::Posterize: return apply_tables(bgr, same_table(bgr, posterize_px, m));
    case AugOp::Solarize: return apply_tables(bgr, same_table(bgr, solarize_px, m));
    case AugOp::Invert: return apply_tables(bgr, same_table(bgr, invert_px, 0));
    case AugOp::AutoContrast: return autocontrast(bgr);
    case AugOp::Equalize: return equalize(bgr);
  }
  return bgr.clone();
}

cv::Mat apply_auto_augment(const cv::Mat& bgr, AugPolicy policy, std::mt19937_64& rng) {
  switch (policy) {
    case AugPolicy::RandAugment: return rand_augment(bgr, rng);
    case AugPolicy::AutoAugment: return auto_augment_imagenet(bgr, rng);
    case AugPolicy::AugMix: return aug_mix(bgr, rng);
    default: return bgr;
  }
}

cv::Rect random_erasing(cv::Mat& img, double p, uint8_t value, std::mt19937_64& rng) {
  if (p <= 0 || !(uniform(rng) < p)) return {};
  const int H = img.rows, W = img.cols;
  const double area = (double)H * W, lr0 = std::log(0.3), lr1 = std::log(3.3);
  for (int t = 0; t < 10; ++t) {
    const double ea = area * (0.02 + (0.33 - 0.02) * uniform(rng));
    const double ar = std::exp(lr0 + (lr1 - lr0) * uniform(rng));
    const int eh = (int)std::nearbyint(std::sqrt(ea * ar)), ew = (int)std::nearbyint(std::sqrt(ea / ar));  // Python round
    if (!(eh < H && ew < W)) continue;
    const int y = std::uniform_int_distribution<int>(0, H - eh)(rng);
    const int x = std::uniform_int_distribution<int>(0, W - ew)(rng);
    const cv::Rect r(x, y, ew, eh);
    img(r).setTo(cv::Scalar::all(value));
    return r;
  }
  return {};
}

}  // namespace y26
