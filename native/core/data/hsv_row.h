// The vectorised inner loop of the training loader's one-pass HSV jitter (augment.cpp: write_planes), kept in its
// own small file so that it builds for AVX2 as well, picked at run time.
#pragma once
#include <cstdint>

namespace y26 {

// Applies the official HSV jitter to n <= 256 interleaved BGR pixels at src and writes them as three channel rows
// (ob, og, orr), in reverse order when `reverse` (a horizontal flip). The jitter is OpenCV's 8-bit BGR->HSV, the
// official tables (hue + hshift modulo 180, saturation and value times sgain and vgain, truncated, at most 255) and
// OpenCV's HSV->BGR, so the result equals cv::cvtColor + tables + cv::cvtColor within one level.
void hsv_row(const uint8_t* src, int n, bool reverse, uint8_t* ob, uint8_t* og, uint8_t* orr, int hshift,
             double sgain, double vgain);

}  // namespace y26
