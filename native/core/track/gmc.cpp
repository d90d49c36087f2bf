#include "track/gmc.h"

#include <opencv2/calib3d.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/video/tracking.hpp>

#include <algorithm>

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

cv::Mat CameraMotion::apply(const cv::Mat& bgr) {
  cv::Mat warp = cv::Mat::eye(2, 3, CV_64F);
  if (!enabled_ || bgr.empty()) return warp;
  cv::Mat gray;
  if (bgr.channels() == 3) cv::cvtColor(bgr, gray, cv::COLOR_BGR2GRAY);
  else if (bgr.channels() == 4) cv::cvtColor(bgr, gray, cv::COLOR_BGRA2GRAY);
  else gray = bgr;
  if (downscale_ > 1) cv::resize(gray, gray, cv::Size(gray.cols / downscale_, gray.rows / downscale_));
  std::vector<cv::Point2f> points;
  // Upstream's corner settings: up to 1000 corners, quality 0.01, min distance 1, block 3, no Harris.
  cv::goodFeaturesToTrack(gray, points, 1000, 0.01, 1, cv::noArray(), 3, false, 0.04);
  if (prev_gray_.empty() || prev_points_.empty()) {
    prev_gray_ = gray.clone();
    prev_points_ = std::move(points);
    return warp;
  }
  std::vector<cv::Point2f> moved;
  std::vector<uchar> status;
  std::vector<float> err;
  cv::calcOpticalFlowPyrLK(prev_gray_, gray, prev_points_, moved, status, err);
  std::vector<cv::Point2f> from, to;
  for (size_t i = 0; i < status.size(); ++i)
    if (status[i]) {
      from.push_back(prev_points_[i]);
      to.push_back(moved[i]);
    }
  if (from.size() > 4) {
    cv::Mat h = cv::estimateAffinePartial2D(from, to, cv::noArray(), cv::RANSAC);
    if (!h.empty()) {
      h.convertTo(warp, CV_64F);
      warp.at<double>(0, 2) *= downscale_;  // translation back to full resolution
      warp.at<double>(1, 2) *= downscale_;
    }
  }
  prev_gray_ = gray.clone();
  prev_points_ = std::move(points);
  return warp;
}

}  // namespace y26
