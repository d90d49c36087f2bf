// Where predict() images come from: files, directories, globs, lists, .txt lists, encoded bytes, raw pixels,
// videos and cameras. Each yields decoded BGR frames one at a time (decoding happens in next(), on the caller's
// thread, so the pipeline's worker does it).
#pragma once
#include <opencv2/core.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace y26 {

struct Frame {
  std::string path;        // file path, "memory:N", "pixels:N", "camera:N"
  int64_t frame = -1;      // frame index within a video/camera stream (0-based), -1 for still images
  int64_t video_frames = 0;// frames the video reports (0 when unknown or not a video)
  double fps = 0;          // video frame rate (0 when not a video)
  bool is_video = false;
  cv::Mat image;           // BGR uint8, 3 channels
  std::string error;       // non-empty when this item could not be read (image is then empty)
  double decode_ms = 0;
};

// Finishes a Frame that next_deferred() returned undecoded (sets image or error, and decode_ms).
using DecodeJob = std::function<void(Frame&)>;

class Source {
 public:
  virtual ~Source() = default;
  // Fills `out` with the next item and returns true, or returns false at the end. An unreadable item is
  // returned with `error` set; the stream continues after it.
  virtual bool next(Frame& out) = 0;
  // Like next(), but a source whose items decode independently (image files, encoded bytes) may return only
  // the item's identity plus a job that decodes it, so several items can decode in parallel on other threads.
  // `job` is left empty when `out` is already complete (the default, and video frames, which decode in order).
  virtual bool next_deferred(Frame& out, DecodeJob& job) {
    job = nullptr;
    return next(out);
  }
  virtual std::string describe() const = 0;
};

struct SourceOptions {
  int vid_stride = 1;  // keep every vid_stride-th video frame (frames vid_stride-1, 2*vid_stride-1, ...)
};

// Extensions (lower case, no dot) read as images by OpenCV, and those opened as videos.
bool is_image_extension(const std::string& ext);
bool is_video_extension(const std::string& ext);

// Resolves a path spec to a sorted file list: an image or video file, a directory (its images and videos,
// non-recursive, sorted), a glob pattern (sorted), or a .txt file listing such entries one per line (relative
// entries resolve against the working directory, then the .txt file's folder). Fails naming the path when it
// does not exist or matches nothing.
std::vector<std::string> expand_source_paths(const std::string& spec);

// Any path spec above (a single video file must open, or it fails naming the file).
std::unique_ptr<Source> open_path_source(const std::string& spec, const SourceOptions& opt = {});
// Several path specs, each expanded as above, in the given order.
std::unique_ptr<Source> open_path_list_source(const std::vector<std::string>& specs, const SourceOptions& opt = {});
// Encoded images (JPEG, PNG, ... bytes) held in memory; decoded lazily.
std::unique_ptr<Source> open_encoded_source(std::vector<std::vector<uint8_t>> images);

enum class PixelOrder { RGB, BGR };
// Raw interleaved uint8 pixels (channels 1, 3 or 4; rows tightly packed unless stride_bytes > 0); copied now.
struct RawPixels {
  const uint8_t* data = nullptr;
  int width = 0, height = 0, channels = 3;
  size_t stride_bytes = 0;
  PixelOrder order = PixelOrder::RGB;
};
cv::Mat pixels_to_bgr(const RawPixels& px);  // validates and converts (copies) to BGR
std::unique_ptr<Source> open_pixels_source(const std::vector<RawPixels>& images);
// Already-decoded BGR images (shared, not copied).
std::unique_ptr<Source> open_mat_source(std::vector<cv::Mat> images, const std::string& name = "image");
// A camera by index; streams until the camera stops or the pipeline is cancelled.
std::unique_ptr<Source> open_camera_source(int index, const SourceOptions& opt = {});

}  // namespace y26
