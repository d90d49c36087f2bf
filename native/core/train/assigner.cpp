#include "train/assigner.h"

#include "geometry/box_ops.h"
#include "util/error.h"

#include <torch/torch.h>

#include <algorithm>

namespace y26 {

TaskAlignedAssigner::TaskAlignedAssigner(AssignerOptions opts) : opts_(std::move(opts)) {
  if (opts_.topk < 1) fail("TaskAlignedAssigner: topk must be >= 1, got " + std::to_string(opts_.topk));
  if (opts_.topk2 < 0) fail("TaskAlignedAssigner: topk2 must be >= 0 (0 = off), got " + std::to_string(opts_.topk2));
  if (opts_.num_classes < 1) fail("TaskAlignedAssigner: num_classes must be >= 1");
  if (opts_.strides.empty()) fail("TaskAlignedAssigner: strides must not be empty (use the model's, e.g. 8,16,32)");
  if (opts_.max_pair_elements < 1) fail("TaskAlignedAssigner: max_pair_elements must be >= 1");
}

AssignerResult TaskAlignedAssigner::operator()(const torch::Tensor& pd_scores, const torch::Tensor& pd_bboxes,
                                               const torch::Tensor& anchor_points, const torch::Tensor& gt_labels,
                                               const torch::Tensor& gt_bboxes, const torch::Tensor& mask_gt) const {
  torch::NoGradGuard no_grad;
  if (pd_scores.dim() != 3 || pd_scores.size(2) != opts_.num_classes)
    fail("TaskAlignedAssigner: pd_scores must be (B, A, " + std::to_string(opts_.num_classes) + "), got " +
         shape_str(pd_scores) + "; permute the head's (B, nc, A) scores and check the model's nc");
  const int64_t bs = pd_scores.size(0), na = pd_scores.size(1), bd = box_dim();
  const std::string bds = std::to_string(bd);
  if (pd_bboxes.dim() != 3 || pd_bboxes.size(0) != bs || pd_bboxes.size(1) != na || pd_bboxes.size(2) != bd)
    fail("TaskAlignedAssigner: pd_bboxes must be (B, A, " + bds + ") like pd_scores, got " + shape_str(pd_bboxes));
  if (anchor_points.dim() != 2 || anchor_points.size(0) != na || anchor_points.size(1) != 2)
    fail("TaskAlignedAssigner: anchor_points must be (A, 2) with A = " + std::to_string(na) + ", got " +
         shape_str(anchor_points) + "; the grid sizes do not match the head output");
  if (gt_bboxes.dim() != 3 || gt_bboxes.size(0) != bs || gt_bboxes.size(2) != bd)
    fail("TaskAlignedAssigner: gt_bboxes must be (B, n, " + bds + "), got " + shape_str(gt_bboxes));
  const int64_t n = gt_bboxes.size(1);
  if (gt_labels.dim() != 3 || gt_labels.size(0) != bs || gt_labels.size(1) != n || gt_labels.size(2) != 1 ||
      mask_gt.dim() != 3 || mask_gt.size(0) != bs || mask_gt.size(1) != n || mask_gt.size(2) != 1)
    fail("TaskAlignedAssigner: gt_labels and mask_gt must be (B, n, 1) like gt_bboxes " + shape_str(gt_bboxes) +
         ", got " + shape_str(gt_labels) + " and " + shape_str(mask_gt));

  if (n == 0) {  // no GT in the whole batch: everything is background
    auto idx_opts = pd_scores.options().dtype(torch::kLong);
    return {torch::full({bs, na}, opts_.num_classes, idx_opts), torch::zeros_like(pd_bboxes),
            torch::zeros_like(pd_scores), torch::zeros({bs, na}, idx_opts.dtype(torch::kBool)),
            torch::zeros({bs, na}, idx_opts)};
  }
  if (gt_labels.numel() > 0) {
    auto range = torch::stack({gt_labels.min(), gt_labels.max()}).to(torch::kDouble).cpu();  // one device sync
    const double lo = range[0].item<double>(), hi = range[1].item<double>();
    if (lo < 0 || hi >= opts_.num_classes)
      fail("TaskAlignedAssigner: GT class ids must lie in [0, " + std::to_string(opts_.num_classes) + "), got " +
           std::to_string(lo) + ".." + std::to_string(hi) + "; check the labels against the model's nc");
  }

  if (pd_scores.is_cuda()) {
    try {
      return assign_batch(pd_scores, pd_bboxes, anchor_points, gt_labels, gt_bboxes, mask_gt);
    } catch (const c10::Error& e) {
      if (std::string(e.what()).find("out of memory") == std::string::npos) throw;
    }
    // Out of GPU memory even per image (a very dense scene): assign on the CPU, as the reference does.
    auto cpu = [](const torch::Tensor& t) { return t.cpu(); };
    auto r = assign_batch(cpu(pd_scores), cpu(pd_bboxes), cpu(anchor_points), cpu(gt_labels), cpu(gt_bboxes),
                          cpu(mask_gt));
    auto dev = pd_scores.device();
    return {r.target_labels.to(dev), r.target_bboxes.to(dev), r.target_scores.to(dev), r.fg_mask.to(dev),
            r.target_gt_idx.to(dev)};
  }
  return assign_batch(pd_scores, pd_bboxes, anchor_points, gt_labels, gt_bboxes, mask_gt);
}

AssignerResult TaskAlignedAssigner::assign_batch(const torch::Tensor& pd_scores, const torch::Tensor& pd_bboxes,
                                                 const torch::Tensor& anchor_points, const torch::Tensor& gt_labels,
                                                 const torch::Tensor& gt_bboxes, const torch::Tensor& mask_gt) const {
  const int64_t bs = pd_scores.size(0), na = pd_scores.size(1), n = gt_bboxes.size(1);
  // Every step is per image, so chunking over images gives the same result as one pass.
  const int64_t chunk = std::max<int64_t>(1, opts_.max_pair_elements / std::max<int64_t>(1, n * na));
  if (chunk >= bs) return assign_chunk(pd_scores, pd_bboxes, anchor_points, gt_labels, gt_bboxes, mask_gt);
  std::vector<torch::Tensor> labels, bboxes, scores, fg, gt_idx;
  for (int64_t s = 0; s < bs; s += chunk) {
    const int64_t len = std::min(chunk, bs - s);
    auto r = assign_chunk(pd_scores.narrow(0, s, len), pd_bboxes.narrow(0, s, len), anchor_points,
                          gt_labels.narrow(0, s, len), gt_bboxes.narrow(0, s, len), mask_gt.narrow(0, s, len));
    labels.push_back(r.target_labels); bboxes.push_back(r.target_bboxes); scores.push_back(r.target_scores);
    fg.push_back(r.fg_mask); gt_idx.push_back(r.target_gt_idx);
  }
  return {torch::cat(labels), torch::cat(bboxes), torch::cat(scores), torch::cat(fg), torch::cat(gt_idx)};
}

torch::Tensor TaskAlignedAssigner::candidates_in_gts(const torch::Tensor& anchor_points,
                                                     const torch::Tensor& gt_bboxes,
                                                     const torch::Tensor& mask_gt) const {
  // STAL: a side shorter than the smallest stride is widened (around the same centre) so that tiny objects
  // still contain at least one anchor centre.
  auto xywh = xyxy2xywh(gt_bboxes);
  auto wh = xywh.narrow(-1, 2, 2);
  const double grown = opts_.strides.size() > 1 ? opts_.strides[1] : opts_.strides[0];
  auto small = ((wh < opts_.strides[0]) * mask_gt).to(torch::kBool);
  wh.copy_(torch::where(small, torch::full({}, grown, xywh.options()), wh));
  auto boxes = xywh2xyxy(xywh);

  const int64_t bs = gt_bboxes.size(0), n = gt_bboxes.size(1), na = anchor_points.size(0);
  auto lt_rb = boxes.view({-1, 1, 4}).chunk(2, 2);
  auto centres = anchor_points.unsqueeze(0);
  auto deltas = torch::cat({centres - lt_rb[0], lt_rb[1] - centres}, 2).view({bs, n, na, -1});
  return deltas.amin(3).gt_(opts_.eps);  // strictly inside, as float 0/1
}

torch::Tensor TaskAlignedAssigner::pair_overlaps(const torch::Tensor& gt_pairs, const torch::Tensor& pd_pairs) const {
  return bbox_iou(gt_pairs, pd_pairs, IouKind::CIoU).squeeze(-1).clamp_(0);
}

AssignerResult TaskAlignedAssigner::assign_chunk(const torch::Tensor& pd_scores, const torch::Tensor& pd_bboxes,
                                                 const torch::Tensor& anchor_points, const torch::Tensor& gt_labels,
                                                 const torch::Tensor& gt_bboxes, const torch::Tensor& mask_gt) const {
  const int64_t bs = pd_scores.size(0), na = pd_scores.size(1), n = gt_bboxes.size(1);
  const int64_t nc = opts_.num_classes, bd = box_dim();

  // Candidates and alignment metric: score(GT class)^alpha * CIoU^beta on anchors inside real GTs.
  auto mask_in_gts = candidates_in_gts(anchor_points, gt_bboxes, mask_gt);
  auto valid = (mask_in_gts * mask_gt).to(torch::kBool);
  auto overlaps = torch::zeros({bs, n, na}, pd_bboxes.options());
  auto bbox_scores = torch::zeros({bs, n, na}, pd_scores.options());
  auto labels = gt_labels.squeeze(-1).to(torch::kLong);  // (b, n)
  auto class_scores = pd_scores.permute({0, 2, 1}).gather(1, labels.unsqueeze(-1).expand({bs, n, na}));
  bbox_scores.index_put_({valid}, class_scores.index({valid}));
  auto pd_pairs = pd_bboxes.unsqueeze(1).expand({bs, n, na, bd}).index({valid});
  auto gt_pairs = gt_bboxes.unsqueeze(2).expand({bs, n, na, bd}).index({valid});
  overlaps.index_put_({valid}, pair_overlaps(gt_pairs, pd_pairs));
  auto align_metric = bbox_scores.pow(opts_.alpha) * overlaps.pow(opts_.beta);

  // Top-k anchors per GT (padding GTs select nothing).
  const int64_t k = std::min(opts_.topk, na);
  auto topk_idxs = std::get<1>(align_metric.topk(k, -1, /*largest=*/true));
  topk_idxs.masked_fill_(~mask_gt.expand({bs, n, k}).to(torch::kBool), 0);
  auto counts = torch::zeros({bs, n, na}, topk_idxs.options().dtype(torch::kChar));
  counts.scatter_add_(-1, topk_idxs, torch::ones_like(topk_idxs, topk_idxs.options().dtype(torch::kChar)));
  counts.masked_fill_(counts > 1, 0);
  auto mask_pos = counts.to(align_metric.scalar_type()) * mask_in_gts * mask_gt;

  // An anchor claimed by several GTs goes to the GT it overlaps most (argmax over all GTs, as the reference).
  auto fg = mask_pos.sum(-2);
  auto multi = (fg.unsqueeze(1) > 1).expand({bs, n, na});
  auto is_max = torch::zeros_like(mask_pos).scatter_(1, overlaps.argmax(1).unsqueeze(1), 1);
  mask_pos = torch::where(multi, is_max, mask_pos);

  // one2one: keep only the topk2 best-aligned of each GT's remaining anchors.
  if (opts_.topk2 > 0 && opts_.topk2 != opts_.topk) {
    auto best = std::get<1>((align_metric * mask_pos).topk(std::min(opts_.topk2, na), -1, /*largest=*/true));
    mask_pos = mask_pos * torch::zeros_like(mask_pos).scatter_(-1, best, 1.0);
  }
  fg = mask_pos.sum(-2);
  auto target_gt_idx = mask_pos.argmax(-2);  // (b, A)

  // Targets of the assigned GT.
  auto batch_ind = torch::arange(bs, target_gt_idx.options()).unsqueeze(-1);
  auto flat_idx = target_gt_idx + batch_ind * n;
  auto target_labels = gt_labels.to(torch::kLong).flatten().index({flat_idx});
  auto target_bboxes = gt_bboxes.reshape({-1, bd}).index({flat_idx});
  target_labels.clamp_(0);
  auto one_hot = torch::zeros({bs, na, nc}, target_labels.options())
                     .scatter_(2, target_labels.unsqueeze(-1), 1)
                     .mul_((fg > 0).unsqueeze(-1));

  // Soft targets: align / max_align_of_GT * max_IoU_of_GT, the largest over GTs.
  align_metric = align_metric * mask_pos;
  auto pos_align = align_metric.amax(-1, /*keepdim=*/true);
  auto pos_overlaps = (overlaps * mask_pos).amax(-1, /*keepdim=*/true);
  auto norm = (align_metric * pos_overlaps / (pos_align + opts_.eps)).amax(-2).unsqueeze(-1);
  auto target_scores = one_hot * norm;

  return {target_labels, target_bboxes, target_scores, fg.to(torch::kBool), target_gt_idx};
}

}  // namespace y26
