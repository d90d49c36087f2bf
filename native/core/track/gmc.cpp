#include "track/gmc.h"

#include <opencv2/calib3d.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/video/tracking.hpp>

#include <algorithm>
#include <utility>

#include "util/error.h"

namespace y26 {

CameraMotion::CameraMotion(const std::string& method, int downscale) : downscale_(std::max(1, downscale)) {
  if (method == "sparseOptFlow") enabled_ = true;
  else if (method == "none" || method == "None" || method.empty()) enabled_ = false;
  else
    fail("tracker: gmc_method '" + method + "' is not supported: use sparseOptFlow (the default) or none");
}

void CameraMotion::reset() {
  prev_gray_.release();
  prev_points_.clear();
}

CameraMotion::Saved CameraMotion::save() const { return {prev_gray_.clone(), prev_points_}; }

void CameraMotion::restore(Saved s) {
  prev_gray_ = std::move(s.prev_gray);
  prev_points_ = std::move(s.prev_points);
}

cv::Mat CameraMotion::apply(const cv::Mat& bgr) {
  cv::Mat warp = cv::Mat::eye(2, 3, CV_64F);
  if (!enabled_ || bgr.empty()) return warp;
  // Grey once at full size, then shrunk (as upstream, in that order); both into buffers kept across frames.
  const cv::Mat* gray = &bgr;
  if (bgr.channels() == 3 || bgr.channels() == 4) {
    cv::cvtColor(bgr, full_gray_, bgr.channels() == 3 ? cv::COLOR_BGR2GRAY : cv::COLOR_BGRA2GRAY);
    gray = &full_gray_;
  }
  if (downscale_ > 1) cv::resize(*gray, gray_, cv::Size(gray->cols / downscale_, gray->rows / downscale_));
  else gray->copyTo(gray_);
  // Upstream's corner settings: up to 1000 corners, quality 0.01, min distance 1, block 3, no Harris.
  cv::goodFeaturesToTrack(gray_, points_, 1000, 0.01, 1, cv::noArray(), 3, false, 0.04);
  if (!prev_gray_.empty() && !prev_points_.empty()) {
    cv::calcOpticalFlowPyrLK(prev_gray_, gray_, prev_points_, moved_, status_, err_);
    from_.clear();
    to_.clear();
    for (size_t i = 0; i < status_.size(); ++i)
      if (status_[i]) {
        from_.push_back(prev_points_[i]);
        to_.push_back(moved_[i]);
      }
    if (from_.size() > 4) {
      cv::Mat h = cv::estimateAffinePartial2D(from_, to_, cv::noArray(), cv::RANSAC);
      if (!h.empty()) {
        h.convertTo(warp, CV_64F);
        warp.at<double>(0, 2) *= downscale_;  // translation back to full resolution
        warp.at<double>(1, 2) *= downscale_;
      }
    }
  }
  // This frame becomes the previous one; the old previous buffers take the next frame.
  std::swap(prev_gray_, gray_);
  std::swap(prev_points_, points_);
  return warp;
}

}  // namespace y26
