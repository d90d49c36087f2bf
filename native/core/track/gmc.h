// Global (camera) motion compensation for BoT-SORT: the affine motion of the whole image between two frames,
// from sparse optical flow (upstream's default gmc_method sparseOptFlow): corners in the previous frame, tracked
// into the current one with pyramidal Lucas-Kanade, then a RANSAC similarity transform.
#pragma once
#include <opencv2/core.hpp>

#include <string>
#include <vector>

namespace y26 {

class CameraMotion {
 public:
  // method: "sparseOptFlow" or "none" (upstream's names); downscale: frames are shrunk by this factor first.
  explicit CameraMotion(const std::string& method = "sparseOptFlow", int downscale = 2);
  bool enabled() const { return enabled_; }
  // The 2x3 affine warp (CV_64F) from the previous frame to this one; identity on the first frame, when disabled
  // or when too few points could be followed.
  cv::Mat apply(const cv::Mat& bgr);
  void reset();

  // The frame the next estimate starts from, saved so that frames whose results were lost can be taken back.
  struct Saved {
    cv::Mat prev_gray;
    std::vector<cv::Point2f> prev_points;
  };
  Saved save() const;  // a deep copy: apply() writes into its old buffers
  void restore(Saved s);

 private:
  bool enabled_;
  int downscale_;
  cv::Mat prev_gray_;
  std::vector<cv::Point2f> prev_points_;
  // Per-frame work buffers, kept so that a stream does not allocate them at every frame.
  cv::Mat full_gray_, gray_;
  std::vector<cv::Point2f> points_, moved_, from_, to_;
  std::vector<uchar> status_;
  std::vector<float> err_;
};

}  // namespace y26
