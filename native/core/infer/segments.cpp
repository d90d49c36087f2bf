#include "infer/segments.h"

#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cstdlib>
#include <limits>

#include "util/error.h"

namespace y26 {

namespace {

using Points = std::vector<cv::Point>;

// Indices (in a, in b) of the closest pair of points between two contours.
std::pair<int, int> closest_pair(const Points& a, const Points& b) {
  std::pair<int, int> best{0, 0};
  int64_t best_d = std::numeric_limits<int64_t>::max();
  for (size_t i = 0; i < a.size(); ++i)
    for (size_t j = 0; j < b.size(); ++j) {
      const int64_t dx = a[i].x - b[j].x, dy = a[i].y - b[j].y, d = dx * dx + dy * dy;
      if (d < best_d) best_d = d, best = {static_cast<int>(i), static_cast<int>(j)};
    }
  return best;
}

// Joins contours into one closed walk: each piece is entered and left at its closest points to its neighbours,
// walked forward to the next piece, and the middle pieces' remainders are walked on the way back.
Points join_contours(std::vector<Points> pieces) {
  const size_t n = pieces.size();
  std::vector<std::vector<int>> links(n);
  for (size_t i = 1; i < n; ++i) {
    auto [a, b] = closest_pair(pieces[i - 1], pieces[i]);
    links[i - 1].push_back(a);
    links[i].push_back(b);
  }
  Points out;
  for (size_t i = 0; i < n; ++i) {
    std::vector<int> idx = links[i];
    Points& p = pieces[i];
    if (idx.size() == 2 && idx[0] > idx[1]) {
      std::swap(idx[0], idx[1]);
      std::reverse(p.begin(), p.end());
    }
    std::rotate(p.begin(), p.begin() + idx[0], p.end());
    p.push_back(p.front());
    if (i == 0 || i == n - 1) out.insert(out.end(), p.begin(), p.end());
    else out.insert(out.end(), p.begin(), p.begin() + (idx[1] - idx[0]) + 1);
  }
  for (size_t i = n; i-- > 0;) {
    if (i == 0 || i == n - 1) continue;
    const int skip = std::abs(links[i][1] - links[i][0]);
    out.insert(out.end(), pieces[i].begin() + skip, pieces[i].end());
  }
  return out;
}

}  // namespace

torch::Tensor mask_polygon(const torch::Tensor& mask) {
  if (mask.dim() != 2) fail("mask_polygon: expected one (H,W) mask, got a " + std::to_string(mask.dim()) + "-d tensor");
  torch::Tensor m = mask.to(torch::kCPU, torch::kUInt8).contiguous();
  cv::Mat img(static_cast<int>(m.size(0)), static_cast<int>(m.size(1)), CV_8UC1, m.data_ptr<uint8_t>());
  std::vector<Points> contours;
  cv::findContours(img.clone(), contours, cv::RETR_EXTERNAL, cv::CHAIN_APPROX_SIMPLE);
  if (contours.empty()) return torch::zeros({0, 2}, torch::kFloat32);
  Points poly = contours.size() == 1 ? contours[0] : join_contours(std::move(contours));
  torch::Tensor out = torch::empty({static_cast<int64_t>(poly.size()), 2}, torch::kFloat32);
  auto a = out.accessor<float, 2>();
  for (size_t i = 0; i < poly.size(); ++i) a[i][0] = static_cast<float>(poly[i].x), a[i][1] = static_cast<float>(poly[i].y);
  return out;
}

std::vector<torch::Tensor> mask_polygons(const torch::Tensor& masks) {
  std::vector<torch::Tensor> out;
  if (!masks.defined()) return out;
  for (int64_t i = 0; i < masks.size(0); ++i) out.push_back(mask_polygon(masks[i]));
  return out;
}

torch::Tensor obb_corners(const torch::Tensor& xywhr) {
  if (xywhr.dim() != 2 || xywhr.size(1) < 5) fail("obb_corners: expected (N,5) [cx,cy,w,h,angle]");
  torch::Tensor x = xywhr.to(torch::kFloat32);
  torch::Tensor ctr = x.narrow(1, 0, 2), w = x.narrow(1, 2, 1), h = x.narrow(1, 3, 1), a = x.narrow(1, 4, 1);
  torch::Tensor c = a.cos(), s = a.sin();
  torch::Tensor along = torch::cat({w / 2 * c, w / 2 * s}, 1), across = torch::cat({-h / 2 * s, h / 2 * c}, 1);
  return torch::stack({ctr + along + across, ctr + along - across, ctr - along - across, ctr - along + across}, 1);
}

}  // namespace y26
