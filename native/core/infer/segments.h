// Geometry of segment and OBB results in the forms the official Results expose: mask outlines as polygons
// (Masks.xy) and rotated boxes as their four corners (OBB.xyxyxyxy). Shared by save_txt and the addon.
#pragma once
#include <torch/types.h>

#include <vector>

namespace y26 {

// One instance mask (H,W) 0/1 -> its outline (k,2) float32 x, y in mask pixels: the external contours
// (OpenCV, simple chain), several pieces joined into one polygon through their closest points as the official
// masks2segments (strategy "all"). (0,2) for an empty mask.
torch::Tensor mask_polygon(const torch::Tensor& mask);
std::vector<torch::Tensor> mask_polygons(const torch::Tensor& masks);  // (N,H,W) -> N polygons

// (N,5) cx, cy, w, h, angle (radians) -> (N,4,2) corners: centre +- w/2 along the angle +- h/2 across it, in the
// official order (+w+h, +w-h, -w-h, -w+h).
torch::Tensor obb_corners(const torch::Tensor& xywhr);

}  // namespace y26
