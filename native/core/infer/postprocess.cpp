#include "infer/postprocess.h"

#include <array>

#include <algorithm>
#include <numeric>

#include "infer/classify.h"
#include "geometry/box_ops.h"
#include "util/error.h"

namespace y26 {

using torch::indexing::None;
using torch::indexing::Slice;

torch::Tensor nms(const torch::Tensor& boxes, const torch::Tensor& scores, double iou) {
  if (boxes.dim() != 2 || boxes.size(1) != 4 || scores.dim() != 1 || scores.size(0) != boxes.size(0))
    fail("nms: expected boxes (N,4) and scores (N), got " + std::to_string(boxes.dim()) + "-d boxes and " +
         std::to_string(scores.numel()) + " scores");
  const int64_t n = boxes.size(0);
  torch::Tensor b = boxes.to(torch::kCPU, torch::kFloat32).contiguous();
  torch::Tensor s = scores.to(torch::kCPU, torch::kFloat32).contiguous();
  const float* bp = b.data_ptr<float>();
  const float* sp = s.data_ptr<float>();
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [sp](int64_t a, int64_t c) { return sp[a] > sp[c]; });
  std::vector<float> area(n);
  for (int64_t i = 0; i < n; ++i) area[i] = (bp[4 * i + 2] - bp[4 * i]) * (bp[4 * i + 3] - bp[4 * i + 1]);
  std::vector<char> removed(n, 0);
  std::vector<int64_t> keep;
  for (int64_t oi = 0; oi < n; ++oi) {
    const int64_t i = order[oi];
    if (removed[i]) continue;
    keep.push_back(i);
    const float* bi = bp + 4 * i;
    for (int64_t oj = oi + 1; oj < n; ++oj) {
      const int64_t j = order[oj];
      if (removed[j]) continue;
      const float* bj = bp + 4 * j;
      const float w = std::max(0.f, std::min(bi[2], bj[2]) - std::max(bi[0], bj[0]));
      const float h = std::max(0.f, std::min(bi[3], bj[3]) - std::max(bi[1], bj[1]));
      const float inter = w * h;
      if (inter / (area[i] + area[j] - inter) > iou) removed[j] = 1;
    }
  }
  return torch::tensor(keep, torch::kInt64);
}

namespace {

torch::Tensor filter_classes(const torch::Tensor& rows, const std::vector<int64_t>& classes) {
  if (classes.empty() || rows.size(0) == 0) return rows;
  torch::Tensor wanted = torch::tensor(classes, torch::kInt64).to(rows.device());
  torch::Tensor cls = rows.select(1, 5).to(torch::kInt64);
  return rows.index({(cls.unsqueeze(1) == wanted.unsqueeze(0)).any(1)});
}

}  // namespace

std::vector<torch::Tensor> select_end2end(const torch::Tensor& preds, const PostprocessOptions& opt) {
  if (preds.dim() != 3 || preds.size(2) < 6)
    fail("postprocess: end2end output must be (B, N, 6+extra) [x1,y1,x2,y2,score,cls,...], got " +
         std::to_string(preds.dim()) + "-d; set end2end=false for a classic (B, 4+nc, A) output");
  std::vector<torch::Tensor> out;
  torch::Tensor p = preds.to(torch::kFloat32);
  for (int64_t i = 0; i < p.size(0); ++i) {
    torch::Tensor rows = p[i];
    rows = rows.index({rows.select(1, 4) > opt.conf});
    rows = rows.index({Slice(0, opt.max_det)});
    out.push_back(filter_classes(rows, opt.classes));
  }
  return out;
}

torch::Tensor probiou_matrix(const torch::Tensor& a_in, const torch::Tensor& b_in, double eps) {
  if (a_in.dim() != 2 || a_in.size(1) != 5 || b_in.dim() != 2 || b_in.size(1) != 5)
    fail("probiou: expected rotated boxes (N,5) [cx,cy,w,h,angle]");
  // One implementation (geometry/box_ops) for the loss, the assigner, matching and NMS: pairs by broadcasting.
  return probiou(a_in.to(torch::kFloat32).unsqueeze(1), b_in.to(torch::kFloat32).unsqueeze(0), eps).squeeze(-1);
}

torch::Tensor obb_enclosing_xyxy(const torch::Tensor& xywha, int orig_h, int orig_w) {
  torch::Tensor angle = xywha.index({Slice(), Slice(4, 5)});
  torch::Tensor c = angle.cos().abs(), s = angle.sin().abs();
  torch::Tensor w = xywha.index({Slice(), Slice(2, 3)}), h = xywha.index({Slice(), Slice(3, 4)});
  torch::Tensor hw = (w * c + h * s) / 2, hh = (w * s + h * c) / 2;
  torch::Tensor cx = xywha.index({Slice(), Slice(0, 1)}), cy = xywha.index({Slice(), Slice(1, 2)});
  torch::Tensor boxes = torch::cat({cx - hw, cy - hh, cx + hw, cy + hh}, 1);
  clip_boxes_(boxes, orig_h, orig_w);
  return boxes;
}

torch::Tensor nms_rotated(const torch::Tensor& boxes, const torch::Tensor& scores, double iou) {
  if (boxes.size(0) == 0) return torch::zeros({0}, torch::kInt64);
  torch::Tensor order = scores.to(torch::kCPU).argsort(0, /*descending=*/true);
  torch::Tensor sorted = boxes.to(torch::kCPU).index({order});
  // Upper triangle: each box against the higher-scored ones; kept when no such overlap reaches the threshold.
  torch::Tensor ious = probiou_matrix(sorted, sorted).triu(1);
  torch::Tensor keep = (std::get<0>(ious.max(0)) < iou).nonzero().view(-1);
  return order.index({keep});
}

std::vector<torch::Tensor> non_max_suppression(const torch::Tensor& preds, const PostprocessOptions& opt) {
  if (preds.dim() != 3 || preds.size(1) < 5)
    fail("postprocess: classic output must be (B, 4+nc+extra, anchors), got " + std::to_string(preds.dim()) + "-d");
  const bool rotated = opt.task == Task::Obb;  // rows carry the angle as the last extra column
  const int64_t nc = opt.nc > 0 ? opt.nc : preds.size(1) - 4;
  const int64_t extra = preds.size(1) - 4 - nc;
  if (extra < 0) fail("postprocess: nc=" + std::to_string(nc) + " exceeds the output's " + std::to_string(preds.size(1) - 4) + " class rows");
  const int64_t mi = 4 + nc;
  // Class offset large enough that boxes of different classes never overlap (class-aware NMS in one call).
  const double max_wh = 7680.0;
  torch::Tensor p = preds.to(torch::kFloat32);
  torch::Tensor candidates = p.index({Slice(), Slice(4, mi)}).amax(1) > opt.conf;  // (B, A)
  p = p.transpose(-1, -2);                                                           // (B, A, 4+nc+E)
  std::vector<torch::Tensor> out;
  for (int64_t b = 0; b < p.size(0); ++b) {
    torch::Tensor x = p[b].index({candidates[b]});
    torch::Tensor empty = torch::zeros({0, 6 + extra}, p.options().device(torch::kCPU));
    if (x.size(0) == 0) { out.push_back(empty); continue; }
    torch::Tensor box = x.index({Slice(), Slice(0, 4)});
    if (opt.classic_xywh && !rotated) box = xywh2xyxy(box);  // OBB keeps cx, cy, w, h next to its angle
    torch::Tensor cls = x.index({Slice(), Slice(4, mi)});
    torch::Tensor ext = x.index({Slice(), Slice(mi, None)});
    if (opt.multi_label) {
      torch::Tensor ij = (cls > opt.conf).nonzero();
      torch::Tensor i = ij.select(1, 0), j = ij.select(1, 1);
      x = torch::cat({box.index({i}), cls.index({i, j}).unsqueeze(1), j.unsqueeze(1).to(torch::kFloat32), ext.index({i})}, 1);
    } else {
      auto [conf, j] = cls.max(1, /*keepdim=*/true);
      x = torch::cat({box, conf, j.to(torch::kFloat32), ext}, 1);
      x = x.index({conf.view(-1) > opt.conf});
    }
    x = filter_classes(x, opt.classes);
    if (x.size(0) == 0) { out.push_back(empty); continue; }
    if (x.size(0) > opt.max_nms) x = x.index({x.select(1, 4).argsort(0, /*descending=*/true).index({Slice(0, opt.max_nms)})});
    x = x.to(torch::kCPU);
    torch::Tensor offset = x.index({Slice(), Slice(5, 6)}) * (opt.agnostic_nms ? 0.0 : max_wh);
    torch::Tensor keep;
    if (rotated) {
      if (extra < 1) fail("postprocess: OBB classic output needs the angle row after the class scores");
      torch::Tensor rb = torch::cat({x.index({Slice(), Slice(0, 2)}) + offset, x.index({Slice(), Slice(2, 4)}),
                                     x.index({Slice(), Slice(-1, None)})}, 1);
      keep = nms_rotated(rb, x.select(1, 4), opt.iou);
    } else {
      keep = nms(x.index({Slice(), Slice(0, 4)}) + offset, x.select(1, 4), opt.iou);
    }
    out.push_back(x.index({keep.index({Slice(0, opt.max_det)})}));
  }
  return out;
}

torch::Tensor process_masks(const torch::Tensor& proto, const torch::Tensor& coef, const torch::Tensor& boxes, int in_h,
                            int in_w) {
  if (proto.dim() != 3 || coef.dim() != 2 || coef.size(1) != proto.size(0))
    fail("segment: mask coefficients (n," + std::to_string(coef.size(-1)) + ") do not match the proto's " +
         std::to_string(proto.size(0)) + " channels");
  const int64_t c = proto.size(0), mh = proto.size(1), mw = proto.size(2), n = coef.size(0);
  if (n == 0) return torch::zeros({0, in_h, in_w}, torch::kUInt8);
  torch::Tensor m = coef.to(proto.device(), torch::kFloat32).matmul(proto.to(torch::kFloat32).reshape({c, -1})).view({n, mh, mw});
  // Zero everything outside each box, in proto pixels.
  torch::Tensor b = boxes.to(m.device(), torch::kFloat32) *
                    torch::tensor({static_cast<float>(mw) / in_w, static_cast<float>(mh) / in_h,
                                   static_cast<float>(mw) / in_w, static_cast<float>(mh) / in_h}).to(m.device());
  torch::Tensor cols = torch::arange(mw, m.options()).view({1, 1, mw});
  torch::Tensor rows = torch::arange(mh, m.options()).view({1, mh, 1});
  auto col = [&](int k) { return b.select(1, k).view({n, 1, 1}); };
  torch::Tensor inside = (cols >= col(0)) & (cols < col(2)) & (rows >= col(1)) & (rows < col(3));
  m = m * inside.to(m.scalar_type());
  m = torch::nn::functional::interpolate(m.unsqueeze(0), torch::nn::functional::InterpolateFuncOptions()
                                                             .size(std::vector<int64_t>{in_h, in_w})
                                                             .mode(torch::kBilinear)
                                                             .align_corners(false))[0];
  return (m > 0).to(torch::kUInt8);
}

torch::Tensor scale_masks(const torch::Tensor& masks, const RatioPad& rp, int orig_h, int orig_w) {
  const int64_t n = masks.size(0), in_h = masks.size(1), in_w = masks.size(2);
  if (n == 0) return torch::zeros({0, orig_h, orig_w}, torch::kUInt8);
  const int64_t top = static_cast<int64_t>(rp.pad_y), left = static_cast<int64_t>(rp.pad_x);
  const int64_t h = std::min<int64_t>(in_h - top, std::llround(orig_h * rp.gain_y));
  const int64_t w = std::min<int64_t>(in_w - left, std::llround(orig_w * rp.gain_x));
  torch::Tensor m = masks.index({Slice(), Slice(top, top + h), Slice(left, left + w)}).to(torch::kFloat32);
  m = torch::nn::functional::interpolate(m.unsqueeze(0), torch::nn::functional::InterpolateFuncOptions()
                                                             .size(std::vector<int64_t>{orig_h, orig_w})
                                                             .mode(torch::kBilinear)
                                                             .align_corners(false))[0];
  return (m > 0.5).to(torch::kUInt8);
}

Result make_result(const torch::Tensor& det_in, const Letterboxed& meta, const PostprocessOptions& opt,
                   const torch::Tensor& proto) {
  const RatioPad& rp = meta.ratio_pad;
  const int orig_h = meta.orig_h, orig_w = meta.orig_w;
  torch::Tensor det = det_in;
  torch::Tensor input_masks;
  if (opt.task == Task::Segment) {
    if (!proto.defined()) fail("postprocess: a segment model must return its mask prototypes (proto) with the detections");
    if (meta.in_h <= 0 || meta.in_w <= 0) fail("postprocess: segment needs the letterboxed input size");
    input_masks = process_masks(proto, det.index({Slice(), Slice(6, None)}), det.index({Slice(), Slice(0, 4)}), meta.in_h, meta.in_w);
    // Detections whose mask is empty are dropped, as the official predictor does.
    torch::Tensor keep = input_masks.flatten(1).amax(1).gt(0).to(torch::kCPU);
    if (input_masks.size(0) > 0 && !keep.all().item<bool>()) {
      det = det.index({keep.to(det.device())});
      input_masks = input_masks.index({keep.to(input_masks.device())});
    }
  }
  Result r;
  r.orig_h = orig_h;
  r.orig_w = orig_w;
  torch::Tensor d = det.to(torch::kCPU, torch::kFloat32);
  const int64_t n = d.size(0);
  r.conf = d.select(1, 4).contiguous();
  r.cls = d.select(1, 5).to(torch::kInt64);
  if (opt.task == Task::Obb) {
    if (d.size(1) < 7) fail("postprocess: OBB rows need 7 columns [cx,cy,w,h,score,cls,angle], got " + std::to_string(d.size(1)));
    // Rotated boxes are not clipped (as the official OBB predictor): only the centre shifts, all of xywh scale.
    torch::Tensor xywh = d.index({Slice(), Slice(0, 4)}).clone();
    xywh.select(1, 0).sub_(rp.pad_x);
    xywh.select(1, 1).sub_(rp.pad_y);
    xywh.index({Slice(), Slice(0, 4, 2)}).div_(rp.gain_x);
    xywh.index({Slice(), Slice(1, 4, 2)}).div_(rp.gain_y);
    torch::Tensor angle = d.index({Slice(), Slice(6, 7)});
    r.obb = torch::cat({xywh, angle}, 1);
    r.boxes = obb_enclosing_xyxy(r.obb, orig_h, orig_w);
  } else {
    r.boxes = scale_boxes(d.index({Slice(), Slice(0, 4)}), rp, orig_h, orig_w).contiguous();
  }
  if (opt.task == Task::Pose) {
    const int64_t need = 6 + static_cast<int64_t>(opt.kpt_count) * opt.kpt_dims;
    if (d.size(1) < need)
      fail("postprocess: pose rows need " + std::to_string(need) + " columns for kpt_shape [" +
           std::to_string(opt.kpt_count) + ", " + std::to_string(opt.kpt_dims) + "], got " + std::to_string(d.size(1)));
    torch::Tensor k = d.index({Slice(), Slice(6, need)}).reshape({n, opt.kpt_count, opt.kpt_dims});
    r.keypoints = scale_coords(k, rp, orig_h, orig_w).contiguous();
  }
  if (opt.task == Task::Segment) r.masks = scale_masks(input_masks, rp, orig_h, orig_w).to(torch::kCPU).contiguous();
  return r;
}

std::vector<Result> postprocess(const torch::Tensor& preds, const std::vector<Letterboxed>& metas,
                                const PostprocessOptions& opt, const torch::Tensor& proto) {
  if (opt.task == Task::Classify) {
    if (preds.dim() != 2 || preds.size(0) != static_cast<int64_t>(metas.size()))
      fail("postprocess: a classify model must return (B, nc) probabilities for a batch of " +
           std::to_string(metas.size()) + ", got a " + std::to_string(preds.dim()) + "-d output");
    torch::Tensor p = preds.to(torch::kCPU, torch::kFloat32);
    std::vector<Result> out;
    for (size_t i = 0; i < metas.size(); ++i) out.push_back(make_classify_result(p[i], metas[i].orig_h, metas[i].orig_w));
    return out;
  }
  std::vector<torch::Tensor> dets = opt.end2end ? select_end2end(preds, opt) : non_max_suppression(preds, opt);
  if (dets.size() != metas.size())
    fail("postprocess: the model returned " + std::to_string(dets.size()) + " images for a batch of " +
         std::to_string(metas.size()));
  std::vector<Result> out;
  out.reserve(dets.size());
  for (size_t i = 0; i < dets.size(); ++i)
    out.push_back(make_result(dets[i], metas[i], opt, proto.defined() ? proto[i] : torch::Tensor()));
  return out;
}

}  // namespace y26
