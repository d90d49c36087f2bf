// OBB labels: YOLO OBB rows "cls x1 y1 x2 y2 x3 y3 x4 y4" are read (and augmented) as 4-point polygons; the
// loss and the validator need rotated boxes (cx, cy, w, h, angle). The conversion follows the official dataset:
// cv::minAreaRect of the polygon in pixels, then the canonical form w >= h with the angle in [-pi/4, 3pi/4).
#pragma once
#include <opencv2/core.hpp>
#include <torch/types.h>

#include <array>
#include <vector>

#include "data/loader.h"

namespace y26 {

// Canonical rotated box [cx, cy, w, h, angle (radians)] of a polygon's minimum-area rectangle: the longer side is w
// and the angle lies in [-pi/4, 3pi/4). A point or an empty polygon gives zeros.
std::array<float, 5> min_area_rbox(const std::vector<cv::Point2f>& pts);

// The canonical form of [cx, cy, w, h, angle] boxes (N, 5): w and h swapped (angle + pi/2) when w < h, then the
// angle wrapped into [-pi/4, 3pi/4). Same rectangles, one parameterisation.
torch::Tensor canonical_rboxes(const torch::Tensor& rboxes);

// Corners (N, P, 2) or (N, 2P), P >= 3 (any float dtype, CPU or not) -> (N, 5) float32 canonical rotated boxes,
// as the official xyxyxyxy2xywhr.
torch::Tensor corners_to_rboxes(const torch::Tensor& corners);

// The official OBB clip (Instances.clip with preserve_obb, used by mosaic/perspective/cutmix on OBB data): a
// polygon inside [0, w] x [0, h] is returned unchanged; one that crosses the border becomes the rectangle with the
// original box's direction that encloses its visible part (convex hull of the polygon cut by the image), so an edge
// crop never changes the angle. Returns false (polygon emptied, box zeroed) when nothing is visible. `box` receives
// the visible part's xyxy extent. The data pipeline clips polygons point-wise today (right for segments, not OBB).
bool clip_obb_polygon(std::vector<cv::Point2f>& poly, float w, float h, std::array<float, 4>* box = nullptr);

// The batch's instances as rotated boxes (N, 5) float32 on the CPU, in the rows' order: each polygon (normalised,
// Batch::segments) goes to pixels of the batch image, through min_area_rbox, and, when `normalized`, back with x and
// w divided by the image width, y and h by its height (the official Format(return_obb) order, which the loss and the
// validator undo with the same (w, h, w, h) scale). Instances without a polygon (a box row in a polygon file) use
// their axis-aligned box. Throws y26::Error when the batch has labels but no polygons (not an OBB dataset).
torch::Tensor batch_rboxes(const Batch& batch, bool normalized = true);

}  // namespace y26
