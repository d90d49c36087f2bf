#include "data/hsv_row.h"

#include <algorithm>

namespace y26 {

namespace {

// Round half to even (as cvRound) for 0 <= x < 2^22, in a form that vectorises without SSE4.1.
inline float round_even(float x) { return (x + 12582912.f) - 12582912.f; }

// In place on int planes (values 0..255). Written without branches (selects only) so that the loop vectorises.
inline __attribute__((always_inline)) void hsv_jitter(int* __restrict B, int* __restrict G, int* __restrict R, int n,
                                                      int hshift, double sgain, double vgain) {
  for (int i = 0; i < n; ++i) {
    const int b = B[i], g = G[i], r = R[i];
    const int v = std::max(std::max(b, g), r), diff = v - std::min(std::min(b, g), r);
    // OpenCV's tables sdiv[v] = round((255 << 12) / v) and hdiv[diff] = round((180 << 12) / (6 diff)), computed:
    // no quotient lies within float rounding error of a half, so these are the same integers.
    const int sdiv = (int)round_even(1044480.f / (float)std::max(v, 1));
    const int hdiv = (int)round_even(122880.f / (float)std::max(diff, 1));
    const int s = (diff * sdiv + (1 << 11)) >> 12;
    const int n_r = g - b, n_g = b - r + 2 * diff, n_b = r - g + 4 * diff;
    const int n_gb = v == g ? n_g : n_b;
    const int num = v == r ? n_r : n_gb;
    int h = (num * hdiv + (1 << 11)) >> 12;
    h += (h >> 31) & 180;
    // The official tables as arithmetic: (hue + shift) truncated modulo 180 = hue + floor(shift) modulo 180;
    // saturation and value scaled in double, as the tables are built, and truncated.
    h += hshift;
    h -= (int)(h >= 180) * 180;
    h += (h >> 31) & 180;
    const double sd = (double)s * sgain, vd = (double)v * vgain;
    int sj = (int)sd, vj = (int)vd;
    sj = std::min(sj, 255);
    vj = std::min(vj, 255);
    // OpenCV's HSV->BGR (its SIMD path): sector and fraction of the hue, four candidate values, truncated.
    const float hh = (float)h * (6.f / 180.f);
    const float sec = (float)(int)hh, f = hh - sec;
    const float sv = (float)sj * (1.f / 255.f), vv = (float)vj * (1.f / 255.f);
    const float t0 = vv, t1 = vv * (1.f - sv), t2 = vv * (1.f - sv * f), t3 = vv * (1.f - sv * (1.f - f));
    // (b, g, r) per sector: 0 (t1, t3, t0), 1 (t1, t0, t2), 2 (t3, t0, t1), 3 (t0, t2, t1), 4 (t0, t1, t3), 5 (t2, t1, t0)
    float ob = t2;
    ob = sec < 5.f ? t0 : ob;
    ob = sec < 3.f ? t3 : ob;
    ob = sec < 2.f ? t1 : ob;
    float og = t1;
    og = sec < 4.f ? t2 : og;
    og = sec < 3.f ? t0 : og;
    og = sec < 1.f ? t3 : og;
    float orr = t0;
    orr = sec < 5.f ? t3 : orr;
    orr = sec < 4.f ? t1 : orr;
    orr = sec < 2.f ? t2 : orr;
    orr = sec < 1.f ? t0 : orr;
    B[i] = (int)(ob * 255.f);
    G[i] = (int)(og * 255.f);
    R[i] = (int)(orr * 255.f);
  }
}

}  // namespace

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
__attribute__((target_clones("avx2", "default")))
#endif
void hsv_row(const uint8_t* __restrict src, int n, bool reverse, uint8_t* __restrict ob, uint8_t* __restrict og,
             uint8_t* __restrict orr, int hshift, double sgain, double vgain) {
  alignas(32) int cb[256], cg[256], cr[256];
  n = std::min(n, 256);
  for (int i = 0; i < n; ++i) cb[i] = src[3 * i], cg[i] = src[3 * i + 1], cr[i] = src[3 * i + 2];
  hsv_jitter(cb, cg, cr, n, hshift, sgain, vgain);
  if (reverse) {
    for (int i = 0; i < n; ++i) ob[n - 1 - i] = (uint8_t)cb[i];
    for (int i = 0; i < n; ++i) og[n - 1 - i] = (uint8_t)cg[i];
    for (int i = 0; i < n; ++i) orr[n - 1 - i] = (uint8_t)cr[i];
  } else {
    for (int i = 0; i < n; ++i) ob[i] = (uint8_t)cb[i];
    for (int i = 0; i < n; ++i) og[i] = (uint8_t)cg[i];
    for (int i = 0; i < n; ++i) orr[i] = (uint8_t)cr[i];
  }
}

}  // namespace y26
