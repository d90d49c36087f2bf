#include "data/image_io.h"

#include <opencv2/imgcodecs.hpp>
#include <turbojpeg.h>

#include <cstdio>
#include <cstring>

#include "util/error.h"

namespace y26 {

namespace {

// One decompressor per thread: tjhandles are not thread-safe and creating one per image costs time.
struct TjHandle {
  tjhandle h = tjInitDecompress();
  ~TjHandle() { if (h) tjDestroy(h); }
};
tjhandle thread_decompressor() {
  thread_local TjHandle handle;
  if (!handle.h) fail("libjpeg-turbo: tjInitDecompress failed");
  return handle.h;
}

bool is_png(const uint8_t* d, size_t n) {
  static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
  return n >= 24 && std::memcmp(d, sig, 8) == 0;
}

uint32_t be32(const uint8_t* p) { return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | p[3]; }

cv::Mat decode_with_opencv(const uint8_t* data, size_t size, const std::string& name) {
  cv::Mat raw(1, (int)size, CV_8U, const_cast<uint8_t*>(data));
  cv::Mat img = cv::imdecode(raw, cv::IMREAD_COLOR);
  if (img.empty()) fail("cannot decode image " + name + ": the file is corrupt or not an image; remove or replace it");
  return img;
}

// The image recycle_image() handed over on this thread.
thread_local cv::Mat spare_image;

}  // namespace

void recycle_image(cv::Mat&& img) { spare_image = std::move(img); }

void read_file_bytes(const std::string& path, std::vector<uint8_t>& out) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) fail("cannot open " + path + ": check that the file exists and is readable");
  std::fseek(f, 0, SEEK_END);
  long n = std::ftell(f);
  std::fseek(f, 0, SEEK_SET);
  if (n < 0) { std::fclose(f); fail("cannot read " + path); }
  out.resize((size_t)n);
  size_t got = n ? std::fread(out.data(), 1, (size_t)n, f) : 0;
  std::fclose(f);
  if (got != (size_t)n) fail("short read on " + path + ": the file changed or the disk failed while reading");
}

ImageInfo probe_image(const std::string& path) {
  thread_local std::vector<uint8_t> bytes;
  read_file_bytes(path, bytes);
  ImageInfo info;
  if (is_jpeg(bytes.data(), bytes.size())) {
    int w = 0, h = 0, sub = 0, cs = 0;
    if (tjDecompressHeader3(thread_decompressor(), bytes.data(), (unsigned long)bytes.size(), &w, &h, &sub, &cs) != 0)
      fail("corrupt JPEG " + path + ": " + tjGetErrorStr2(thread_decompressor()));
    // A JPEG must end with the EOI marker; a truncated file decodes to grey garbage.
    size_t n = bytes.size();
    bool has_eoi = false;
    for (size_t i = n; i >= 2 && i + 16 >= n; --i)
      if (bytes[i - 2] == 0xFF && bytes[i - 1] == 0xD9) { has_eoi = true; break; }
    if (!has_eoi) fail("truncated JPEG " + path + ": no end-of-image marker; re-save or remove the file");
    info = {w, h, "jpeg"};
  } else if (is_png(bytes.data(), bytes.size())) {
    info = {(int)be32(bytes.data() + 16), (int)be32(bytes.data() + 20), "png"};
  } else {
    cv::Mat img = decode_with_opencv(bytes.data(), bytes.size(), path);
    info = {img.cols, img.rows, "other"};
  }
  if (info.width < 10 || info.height < 10)
    fail("image " + path + " is " + std::to_string(info.width) + "x" + std::to_string(info.height) +
         ": smaller than 10 px; remove it");
  return info;
}

cv::Mat decode_image_bgr(const uint8_t* data, size_t size, const std::string& name, int min_long_side) {
  if (!is_jpeg(data, size)) return decode_with_opencv(data, size, name);
  tjhandle tj = thread_decompressor();
  int w = 0, h = 0, sub = 0, cs = 0;
  if (tjDecompressHeader3(tj, data, (unsigned long)size, &w, &h, &sub, &cs) != 0)
    fail("corrupt JPEG " + name + ": " + tjGetErrorStr2(tj));
  if (cs == TJCS_CMYK || cs == TJCS_YCCK) return decode_with_opencv(data, size, name);  // OpenCV converts CMYK
  int dw = w, dh = h;
  if (min_long_side > 0) {
    int nf = 0;
    tjscalingfactor* f = tjGetScalingFactors(&nf);
    // Smallest scale whose long side still reaches min_long_side (factors are listed largest first).
    for (int i = 0; i < nf; ++i) {
      if (f[i].num > f[i].denom) continue;  // never upscale while decoding
      int sw = TJSCALED(w, f[i]), sh = TJSCALED(h, f[i]);
      if (std::max(sw, sh) >= min_long_side && (long)sw * sh < (long)dw * dh) { dw = sw; dh = sh; }
    }
  }
  // Always the accurate DCT, as OpenCV (and so the official loader) decodes: the fast integer DCT came out 0.8 grey
  // levels darker on average, a train/val mismatch the official pipeline does not have.
  const int flags = 0;
  cv::Mat img;
  if (spare_image.rows == dh && spare_image.cols == dw && spare_image.type() == CV_8UC3 && spare_image.isContinuous() &&
      spare_image.u && spare_image.u->refcount == 1)
    img = std::move(spare_image);
  else
    img.create(dh, dw, CV_8UC3);
  spare_image.release();
  if (tjDecompress2(tj, data, (unsigned long)size, img.data, dw, (int)img.step, dh, TJPF_BGR, flags) != 0) {
    // Warnings (e.g. extraneous bytes) still produce an image; only fatal errors fail.
    if (tjGetErrorCode(tj) == TJERR_FATAL) fail("corrupt JPEG " + name + ": " + tjGetErrorStr2(tj));
  }
  return img;
}

cv::Mat read_image_bgr(const std::string& path, int min_long_side) {
  thread_local std::vector<uint8_t> bytes;
  read_file_bytes(path, bytes);
  return decode_image_bgr(bytes.data(), bytes.size(), path, min_long_side);
}

}  // namespace y26
