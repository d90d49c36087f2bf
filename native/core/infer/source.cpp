#include "infer/source.h"

#include <glob.h>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>
#include <opencv2/videoio/registry.hpp>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>

#include "util/error.h"
#include "util/text.h"

namespace fs = std::filesystem;

namespace y26 {

namespace {

const std::set<std::string> kImageExt = {"bmp", "dib", "jpeg", "jpg", "jpe", "jp2", "png", "webp", "pbm", "pgm", "ppm",
                                         "pxm", "pnm", "pfm", "sr", "ras", "tiff", "tif", "exr", "hdr", "pic"};
const std::set<std::string> kVideoExt = {"asf", "avi", "gif", "m4v", "mkv", "mov", "mp4", "mpeg", "mpg", "ts", "wmv", "webm"};

std::string lower_ext(const std::string& path) {
  std::string e = fs::path(path).extension().string();
  if (!e.empty() && e[0] == '.') e = e.substr(1);
  return to_lower(e);
}

// Words for a file type that is neither a regular file nor a directory; nullptr for those two.
const char* special_file_kind(fs::file_type t) {
  switch (t) {
    case fs::file_type::fifo: return "a FIFO (named pipe)";
    case fs::file_type::socket: return "a socket";
    case fs::file_type::character: return "a character device";
    case fs::file_type::block: return "a block device";
    case fs::file_type::regular: case fs::file_type::directory: return nullptr;
    default: return "not a regular file";
  }
}

bool has_glob_chars(const std::string& s) { return s.find_first_of("*?[") != std::string::npos; }

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

std::vector<std::string> glob_paths(const std::string& pattern) {
  glob_t g{};
  std::vector<std::string> out;
  if (::glob(pattern.c_str(), 0, nullptr, &g) == 0)
    for (size_t i = 0; i < g.gl_pathc; ++i) out.emplace_back(g.gl_pathv[i]);
  globfree(&g);
  std::sort(out.begin(), out.end());
  return out;
}

std::string supported_list() {
  std::string s;
  for (const auto& e : kImageExt) s += (s.empty() ? "" : " ") + e;
  for (const auto& e : kVideoExt) s += " " + e;
  return s;
}

// Keeps only files OpenCV can read as images or videos.
std::vector<std::string> media_only(const std::vector<std::string>& paths) {
  std::vector<std::string> out;
  for (const auto& p : paths) {
    const std::string e = lower_ext(p);
    if ((is_image_extension(e) || is_video_extension(e)) && fs::is_regular_file(p)) out.push_back(p);
  }
  return out;
}

void expand_one(const std::string& spec, const fs::path& txt_parent, std::vector<std::string>& out, int depth) {
  if (spec.rfind("http://", 0) == 0 || spec.rfind("https://", 0) == 0 || spec.rfind("rtsp://", 0) == 0)
    fail("source " + spec + ": URLs and streams are not supported; download the file and pass its path");
  if (has_glob_chars(spec)) {
    std::vector<std::string> hits = media_only(glob_paths(spec));
    if (hits.empty()) fail("source " + spec + ": the pattern matches no image or video files (supported: " + supported_list() + ")");
    out.insert(out.end(), hits.begin(), hits.end());
    return;
  }
  fs::path p(spec);
  if (!fs::exists(p) && !txt_parent.empty() && p.is_relative() && fs::exists(txt_parent / p)) p = txt_parent / p;
  if (!fs::exists(p)) fail("source " + spec + " does not exist: check the path (relative paths resolve against " + fs::current_path().string() + ")");
  // Opening a FIFO or a device would block (or read forever) without a word: refuse it by name.
  if (const char* what = special_file_kind(fs::status(p).type()))
    fail("source " + p.string() + " is " + what + ", not a regular file: predict reads image and video files; " +
         "read the bytes yourself and pass them as a Buffer, or use a camera index for a camera");
  if (fs::is_directory(p)) {
    std::vector<std::string> all;
    for (const auto& entry : fs::directory_iterator(p)) all.push_back(entry.path().string());
    std::sort(all.begin(), all.end());
    std::vector<std::string> hits = media_only(all);
    if (hits.empty()) fail("source directory " + p.string() + " holds no image or video files (supported: " + supported_list() + ")");
    out.insert(out.end(), hits.begin(), hits.end());
    return;
  }
  const std::string ext = lower_ext(p.string());
  if (ext == "txt") {
    if (depth > 0) fail("source list " + p.string() + " is named inside another .txt list: nest at most one level");
    std::ifstream in(p);
    if (!in) fail("source list " + p.string() + " cannot be opened for reading");
    std::string line;
    size_t before = out.size();
    int lineno = 0;
    while (std::getline(in, line)) {
      ++lineno;
      line.erase(0, line.find_first_not_of(" \t\r"));
      line.erase(line.find_last_not_of(" \t\r") + 1);
      if (line.empty() || line[0] == '#') continue;
      try {
        expand_one(line, p.parent_path(), out, depth + 1);
      } catch (const Error& e) {
        fail(p.string() + ":" + std::to_string(lineno) + ": " + e.what());
      }
    }
    if (out.size() == before) fail("source list " + p.string() + " names no files: write one image/video path per line");
    return;
  }
  if (!is_image_extension(ext) && !is_video_extension(ext))
    fail("source " + p.string() + ": '." + ext + "' is not an image or video format OpenCV reads (supported: " + supported_list() + ")");
  out.push_back(p.string());
}

// FFmpeg when OpenCV has it (the other backends, GStreamer above all, spam the console on files they cannot read).
bool open_video(cv::VideoCapture& cap, const std::string& path) {
  static const bool has_ffmpeg = cv::videoio_registry::hasBackend(cv::CAP_FFMPEG);
  return cap.open(path, has_ffmpeg ? cv::CAP_FFMPEG : cv::CAP_ANY);
}

// Grabs vid_stride frames and decodes the last; false at the end of the stream.
bool read_strided(cv::VideoCapture& cap, int stride, cv::Mat& image, int64_t& next_index, int64_t& frame_index) {
  bool ok = false;
  for (int i = 0; i < std::max(1, stride); ++i) {
    ok = cap.grab();
    if (!ok) return false;
    frame_index = next_index++;
  }
  return cap.retrieve(image) && !image.empty();
}

cv::Mat to_bgr3(const cv::Mat& m) {
  if (m.channels() == 3) return m;
  cv::Mat out;
  cv::cvtColor(m, out, m.channels() == 4 ? cv::COLOR_BGRA2BGR : cv::COLOR_GRAY2BGR);
  return out;
}

void decode_image_file(Frame& f) {
  auto t0 = std::chrono::steady_clock::now();
  f.image = cv::imread(f.path, cv::IMREAD_COLOR);
  if (f.image.empty())
    f.error = "image " + f.path + " cannot be decoded: the file is corrupt or truncated, or not an image format OpenCV reads";
  f.decode_ms = ms_since(t0);
}

// Files (images and videos) in order; videos are expanded frame by frame.
class FileSource : public Source {
 public:
  FileSource(std::vector<std::string> files, SourceOptions opt) : files_(std::move(files)), opt_(opt) {}
  bool next(Frame& out) override {
    DecodeJob job;
    if (!next_deferred(out, job)) return false;
    if (job) job(out);
    return true;
  }
  bool next_deferred(Frame& out, DecodeJob& job) override {
    job = nullptr;
    out = Frame{};
    auto t0 = std::chrono::steady_clock::now();
    while (true) {
      if (cap_.isOpened()) {
        out.path = files_[pos_ - 1];
        out.is_video = true;
        out.fps = fps_;
        out.video_frames = frames_;
        if (read_strided(cap_, opt_.vid_stride, out.image, next_frame_, out.frame)) {
          out.image = to_bgr3(out.image);
          out.decode_ms = ms_since(t0);
          return true;
        }
        cap_.release();
        continue;
      }
      if (pos_ >= files_.size()) return false;
      const std::string& path = files_[pos_++];
      out = Frame{};
      out.path = path;
      if (is_video_extension(lower_ext(path))) {
        if (!open_video(cap_, path)) {
          out.is_video = true;
          out.error = "video " + path + " will not open: the container or codec is not supported by this OpenCV build (FFmpeg)";
          return true;
        }
        fps_ = cap_.get(cv::CAP_PROP_FPS);
        frames_ = static_cast<int64_t>(cap_.get(cv::CAP_PROP_FRAME_COUNT)) / std::max(1, opt_.vid_stride);
        next_frame_ = 0;
        continue;
      }
      job = decode_image_file;
      return true;
    }
  }
  std::string describe() const override {
    return files_.size() == 1 ? files_[0] : std::to_string(files_.size()) + " files";
  }

 private:
  std::vector<std::string> files_;
  SourceOptions opt_;
  size_t pos_ = 0;
  cv::VideoCapture cap_;
  double fps_ = 0;
  int64_t frames_ = 0, next_frame_ = 0;
};

class EncodedSource : public Source {
 public:
  explicit EncodedSource(std::vector<std::vector<uint8_t>> items) : items_(std::move(items)) {}
  bool next(Frame& out) override {
    DecodeJob job;
    if (!next_deferred(out, job)) return false;
    job(out);
    return true;
  }
  bool next_deferred(Frame& out, DecodeJob& job) override {
    if (pos_ >= items_.size()) return false;
    out = Frame{};
    out.path = "memory:" + std::to_string(pos_);
    // The job owns the bytes, so the source lets go of each buffer once it is handed out.
    auto bytes = std::make_shared<std::vector<uint8_t>>(std::move(items_[pos_++]));
    job = [bytes](Frame& f) {
      auto t0 = std::chrono::steady_clock::now();
      if (!bytes->empty()) f.image = cv::imdecode(cv::Mat(1, static_cast<int>(bytes->size()), CV_8UC1, bytes->data()), cv::IMREAD_COLOR);
      if (f.image.empty())
        f.error = "image " + f.path + " (" + std::to_string(bytes->size()) +
                  " bytes in memory) cannot be decoded: pass the complete bytes of a JPEG, PNG, BMP, WebP or TIFF file";
      f.decode_ms = ms_since(t0);
      bytes->clear();
      bytes->shrink_to_fit();
    };
    return true;
  }
  std::string describe() const override { return std::to_string(items_.size()) + " encoded images in memory"; }

 private:
  std::vector<std::vector<uint8_t>> items_;
  size_t pos_ = 0;
};

class MatSource : public Source {
 public:
  MatSource(std::vector<cv::Mat> images, std::string name) : images_(std::move(images)), name_(std::move(name)) {}
  bool next(Frame& out) override {
    if (pos_ >= images_.size()) return false;
    out = Frame{};
    out.path = name_ + ":" + std::to_string(pos_);
    out.image = images_[pos_];
    images_[pos_++].release();
    return true;
  }
  std::string describe() const override { return std::to_string(images_.size()) + " images in memory"; }

 private:
  std::vector<cv::Mat> images_;
  std::string name_;
  size_t pos_ = 0;
};

class CameraSource : public Source {
 public:
  CameraSource(int index, SourceOptions opt) : index_(index), opt_(opt) {
    if (!cap_.open(index))
      fail("camera " + std::to_string(index) + " will not open: check that it exists (/dev/video" + std::to_string(index) +
           ") and is not in use by another program");
    fps_ = cap_.get(cv::CAP_PROP_FPS);
  }
  bool next(Frame& out) override {
    out = Frame{};
    auto t0 = std::chrono::steady_clock::now();
    out.path = "camera:" + std::to_string(index_);
    out.is_video = true;
    out.fps = fps_ > 0 ? fps_ : 30;
    if (!read_strided(cap_, opt_.vid_stride, out.image, next_frame_, out.frame)) return false;
    out.image = to_bgr3(out.image);
    out.decode_ms = ms_since(t0);
    return true;
  }
  std::string describe() const override { return "camera " + std::to_string(index_); }

 private:
  int index_;
  SourceOptions opt_;
  cv::VideoCapture cap_;
  double fps_ = 0;
  int64_t next_frame_ = 0;
};

}  // namespace

bool is_image_extension(const std::string& ext) { return kImageExt.count(ext) > 0; }
bool is_video_extension(const std::string& ext) { return kVideoExt.count(ext) > 0; }

std::vector<std::string> expand_source_paths(const std::string& spec) {
  if (spec.empty()) fail("source is an empty string: pass a file, directory, glob pattern or .txt list");
  std::vector<std::string> out;
  expand_one(spec, {}, out, 0);
  return out;
}

std::unique_ptr<Source> open_path_source(const std::string& spec, const SourceOptions& opt) {
  return open_path_list_source({spec}, opt);
}

std::unique_ptr<Source> open_path_list_source(const std::vector<std::string>& specs, const SourceOptions& opt) {
  if (specs.empty()) fail("source list is empty: pass at least one path");
  if (opt.vid_stride < 1) fail("vid_stride must be >= 1 (got " + std::to_string(opt.vid_stride) + ")");
  std::vector<std::string> files;
  for (const auto& s : specs) {
    std::vector<std::string> f = expand_source_paths(s);
    files.insert(files.end(), f.begin(), f.end());
  }
  // A video named directly must open now, so the caller gets the error before the stream starts.
  if (specs.size() == 1 && files.size() == 1 && is_video_extension(lower_ext(files[0]))) {
    cv::VideoCapture probe;
    if (!open_video(probe, files[0]))
      fail("video " + files[0] + " will not open: the container or codec is not supported by this OpenCV build (FFmpeg), or the file is damaged");
  }
  return std::make_unique<FileSource>(std::move(files), opt);
}

std::unique_ptr<Source> open_encoded_source(std::vector<std::vector<uint8_t>> images) {
  if (images.empty()) fail("source: no encoded images were given");
  return std::make_unique<EncodedSource>(std::move(images));
}

cv::Mat pixels_to_bgr(const RawPixels& px) {
  if (!px.data) fail("pixels source: the data pointer is null");
  if (px.width <= 0 || px.height <= 0)
    fail("pixels source: width and height must be positive (got " + std::to_string(px.width) + "x" + std::to_string(px.height) + ")");
  if (px.channels != 1 && px.channels != 3 && px.channels != 4)
    fail("pixels source: channels must be 1, 3 or 4 (got " + std::to_string(px.channels) + ")");
  const size_t row = static_cast<size_t>(px.width) * px.channels;
  const size_t stride = px.stride_bytes ? px.stride_bytes : row;
  if (stride < row) fail("pixels source: stride_bytes " + std::to_string(stride) + " is shorter than a row (" + std::to_string(row) + ")");
  cv::Mat view(px.height, px.width, CV_8UC(px.channels), const_cast<uint8_t*>(px.data), stride);
  cv::Mat out;
  const bool rgb = px.order == PixelOrder::RGB;
  switch (px.channels) {
    case 1: cv::cvtColor(view, out, cv::COLOR_GRAY2BGR); break;
    case 3: if (rgb) cv::cvtColor(view, out, cv::COLOR_RGB2BGR); else out = view.clone(); break;
    default: cv::cvtColor(view, out, rgb ? cv::COLOR_RGBA2BGR : cv::COLOR_BGRA2BGR); break;
  }
  return out;
}

std::unique_ptr<Source> open_pixels_source(const std::vector<RawPixels>& images) {
  if (images.empty()) fail("source: no pixel buffers were given");
  std::vector<cv::Mat> mats;
  for (const auto& px : images) mats.push_back(pixels_to_bgr(px));
  return std::make_unique<MatSource>(std::move(mats), "pixels");
}

std::unique_ptr<Source> open_mat_source(std::vector<cv::Mat> images, const std::string& name) {
  if (images.empty()) fail("source: no images were given");
  for (size_t i = 0; i < images.size(); ++i)
    if (images[i].type() != CV_8UC3) fail("source: image " + std::to_string(i) + " must be 8-bit BGR with 3 channels");
  return std::make_unique<MatSource>(std::move(images), name);
}

std::unique_ptr<Source> open_camera_source(int index, const SourceOptions& opt) {
  if (index < 0) fail("camera index must be >= 0 (got " + std::to_string(index) + ")");
  return std::make_unique<CameraSource>(index, opt);
}

}  // namespace y26
