// Constant-velocity Kalman filter over a box, as the ByteTrack/BoT-SORT trackers use it: the state is the box
// (4 numbers) and its velocity (4 numbers); the box is measured directly. Noise scales with the box size.
#pragma once
#include <opencv2/core/matx.hpp>

#include <array>

namespace y26 {

// How a box is coded in the state: centre x, centre y, aspect ratio w/h, height (ByteTrack) or centre x, centre y,
// width, height (BoT-SORT).
enum class BoxCoding { XYAH, XYWH };

using KfVec = cv::Vec<double, 8>;
using KfMat = cv::Matx<double, 8, 8>;
using BoxMeasure = cv::Vec<double, 4>;

struct KalmanState {
  KfVec mean;
  KfMat cov;
};

class KalmanBoxFilter {
 public:
  explicit KalmanBoxFilter(BoxCoding coding = BoxCoding::XYAH) : coding_(coding) {}
  BoxCoding coding() const { return coding_; }

  // A new state at the measured box with zero velocity and a covariance proportional to the box size.
  KalmanState initiate(const BoxMeasure& z) const;
  // One frame ahead (dt = 1): mean += velocity, covariance grows by the motion noise.
  void predict(KalmanState& s) const;
  // The box distribution in measurement space: (mean, covariance + measurement noise).
  std::pair<BoxMeasure, cv::Matx<double, 4, 4>> project(const KalmanState& s) const;
  // Corrects the state with a measured box.
  void update(KalmanState& s, const BoxMeasure& z) const;
  // Zeroes the velocities that must not carry over while a track is not being observed (upstream: the height
  // velocity for XYAH, the width and height velocities for XYWH).
  void freeze_size_velocity(KalmanState& s) const;

  // Box <-> measurement: tlwh is top-left x, top-left y, width, height.
  BoxMeasure from_tlwh(const std::array<double, 4>& tlwh) const;
  std::array<double, 4> to_tlwh(const KfVec& mean) const;

 private:
  // Standard deviations of the position and velocity noise relative to the box size (the upstream weights).
  static constexpr double kStdPos = 1.0 / 20, kStdVel = 1.0 / 160;
  // Per-component scale of the box part: (w or h, h, 1, h) for XYAH, (w, h, w, h) for XYWH.
  std::array<double, 4> scales(const KfVec& mean) const;
  BoxCoding coding_;
};

}  // namespace y26
