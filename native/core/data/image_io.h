// Image file decoding for the data pipeline: libjpeg-turbo directly for JPEG (the loader's hot path),
// OpenCV for everything else, and header probes that read sizes without decoding.
#pragma once
#include <opencv2/core.hpp>
#include <cstdint>
#include <string>
#include <vector>

namespace y26 {

struct ImageInfo {
  int width = 0;
  int height = 0;
  std::string format;  // "jpeg", "png", or "other" (probed by a full decode)
};

// Reads a whole file into `out` (reused between calls to avoid allocations). Throws y26::Error.
void read_file_bytes(const std::string& path, std::vector<uint8_t>& out);

// Width and height from the file header (JPEG, PNG); other formats are decoded. Throws y26::Error naming the file
// when it is unreadable or not an image.
ImageInfo probe_image(const std::string& path);

// Decodes to 3-channel BGR uint8. min_long_side > 0 allows libjpeg-turbo's DCT-scaled decoding: the smallest scale
// (k/8) whose long side is still >= min_long_side, so the caller only ever downsizes. Throws y26::Error naming the file.
cv::Mat read_image_bgr(const std::string& path, int min_long_side = 0);

// The same from bytes already in memory; `name` is only used in error messages.
cv::Mat decode_image_bgr(const uint8_t* data, size_t size, const std::string& name, int min_long_side = 0);

// Hands an image that the caller no longer needs to this thread's next JPEG decode of the same size, which then
// writes into it instead of faulting in fresh pages (used only when nothing else references it by then).
void recycle_image(cv::Mat&& img);

// True when the bytes start with the JPEG SOI marker.
inline bool is_jpeg(const uint8_t* d, size_t n) { return n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF; }

}  // namespace y26
