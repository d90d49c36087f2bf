#include "track/kalman.h"

#include <opencv2/core.hpp>

namespace y26 {

namespace {
KfMat diag8(const std::array<double, 8>& std) {
  KfMat m = KfMat::zeros();
  for (int i = 0; i < 8; ++i) m(i, i) = std[i] * std[i];
  return m;
}
}  // namespace

std::array<double, 4> KalmanBoxFilter::scales(const KfVec& mean) const {
  if (coding_ == BoxCoding::XYAH) return {mean[3], mean[3], 0, mean[3]};
  return {mean[2], mean[3], mean[2], mean[3]};
}

KalmanState KalmanBoxFilter::initiate(const BoxMeasure& z) const {
  KalmanState s;
  s.mean = KfVec::zeros();
  for (int i = 0; i < 4; ++i) s.mean[i] = z[i];
  const auto sc = scales(s.mean);
  std::array<double, 8> std{};
  for (int i = 0; i < 4; ++i) {
    std[i] = 2 * kStdPos * sc[i];
    std[4 + i] = 10 * kStdVel * sc[i];
  }
  if (coding_ == BoxCoding::XYAH) {  // the aspect ratio gets fixed, small noise
    std[2] = 1e-2;
    std[6] = 1e-5;
  }
  s.cov = diag8(std);
  return s;
}

void KalmanBoxFilter::predict(KalmanState& s) const {
  const auto sc = scales(s.mean);
  std::array<double, 8> std{};
  for (int i = 0; i < 4; ++i) {
    std[i] = kStdPos * sc[i];
    std[4 + i] = kStdVel * sc[i];
  }
  if (coding_ == BoxCoding::XYAH) {
    std[2] = 1e-2;
    std[6] = 1e-5;
  }
  KfMat F = KfMat::eye();
  for (int i = 0; i < 4; ++i) F(i, 4 + i) = 1.0;
  s.mean = F * s.mean;
  s.cov = F * s.cov * F.t() + diag8(std);
}

std::pair<BoxMeasure, cv::Matx<double, 4, 4>> KalmanBoxFilter::project(const KalmanState& s) const {
  const auto sc = scales(s.mean);
  cv::Matx<double, 4, 4> S;
  BoxMeasure m;
  for (int i = 0; i < 4; ++i) {
    m[i] = s.mean[i];
    for (int j = 0; j < 4; ++j) S(i, j) = s.cov(i, j);
  }
  for (int i = 0; i < 4; ++i) {
    const double sd = coding_ == BoxCoding::XYAH && i == 2 ? 1e-1 : kStdPos * sc[i];
    S(i, i) += sd * sd;
  }
  return {m, S};
}

void KalmanBoxFilter::update(KalmanState& s, const BoxMeasure& z) const {
  auto [m, S] = project(s);
  // Gain K = P H^T S^-1, with H = [I4 0] so P H^T is the first four columns of P.
  cv::Matx<double, 8, 4> PHt;
  for (int i = 0; i < 8; ++i)
    for (int j = 0; j < 4; ++j) PHt(i, j) = s.cov(i, j);
  const cv::Matx<double, 8, 4> K = PHt * S.inv(cv::DECOMP_CHOLESKY);
  s.mean += K * (z - m);
  s.cov -= K * S * K.t();
}

void KalmanBoxFilter::freeze_size_velocity(KalmanState& s) const {
  s.mean[7] = 0;
  if (coding_ == BoxCoding::XYWH) s.mean[6] = 0;
}

BoxMeasure KalmanBoxFilter::from_tlwh(const std::array<double, 4>& t) const {
  const double cx = t[0] + t[2] / 2, cy = t[1] + t[3] / 2;
  if (coding_ == BoxCoding::XYAH) return {cx, cy, t[3] != 0 ? t[2] / t[3] : 0.0, t[3]};
  return {cx, cy, t[2], t[3]};
}

std::array<double, 4> KalmanBoxFilter::to_tlwh(const KfVec& m) const {
  const double w = coding_ == BoxCoding::XYAH ? m[2] * m[3] : m[2], h = m[3];
  return {m[0] - w / 2, m[1] - h / 2, w, h};
}

}  // namespace y26
