#include "eval/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>

#include "util/error.h"

namespace y26 {

torch::Tensor iou_thresholds() { return torch::linspace(0.5, 0.95, 10, torch::kFloat32); }

torch::Tensor box_iou(const torch::Tensor& box1, const torch::Tensor& box2, double eps) {
  if (box1.dim() != 2 || box1.size(1) != 4 || box2.dim() != 2 || box2.size(1) != 4)
    fail("box_iou: expected (N,4) and (M,4) xyxy boxes, got " + c10::str(box1.sizes()) + " and " +
         c10::str(box2.sizes()));
  auto a = box1.to(torch::kFloat32).unsqueeze(1).chunk(2, 2);
  auto b = box2.to(torch::kFloat32).unsqueeze(0).chunk(2, 2);
  torch::Tensor inter = (torch::min(a[1], b[1]) - torch::max(a[0], b[0])).clamp_(0).prod(2);
  return inter / ((a[1] - a[0]).prod(2) + (b[1] - b[0]).prod(2) - inter + eps);
}

torch::Tensor match_predictions(const torch::Tensor& pred_cls, const torch::Tensor& gt_cls, const torch::Tensor& iou,
                                const torch::Tensor& thresholds) {
  const int64_t np_ = pred_cls.numel(), ng = gt_cls.numel(), nt = thresholds.numel();
  if (iou.dim() != 2 || iou.size(0) != ng || iou.size(1) != np_)
    fail("match_predictions: iou must be (num_gt, num_pred) = (" + std::to_string(ng) + ", " + std::to_string(np_) +
         "), got " + c10::str(iou.sizes()));
  torch::Tensor correct = torch::zeros({np_, nt}, torch::kBool);
  if (np_ == 0 || ng == 0) return correct;
  torch::Tensor same = gt_cls.reshape({-1, 1}).to(torch::kCPU).eq(pred_cls.reshape({1, -1}).to(torch::kCPU));
  torch::Tensor masked = (iou.to(torch::kCPU, torch::kFloat32) * same).contiguous();
  const float* m = masked.data_ptr<float>();
  torch::Tensor th = thresholds.to(torch::kCPU, torch::kFloat32).contiguous();
  auto c = correct.accessor<bool, 2>();
  struct Pair { int64_t g, p; float iou; };
  std::vector<Pair> pairs, by_pred;
  for (int64_t t = 0; t < nt; ++t) {
    const float thr = th.data_ptr<float>()[t];
    pairs.clear();
    for (int64_t g = 0; g < ng; ++g)  // np.nonzero order: row-major
      for (int64_t p = 0; p < np_; ++p)
        if (m[g * np_ + p] >= thr) pairs.push_back({g, p, m[g * np_ + p]});
    if (pairs.size() > 1) {
      // argsort ascending then reversed: IoU descending, equal IoUs in reverse nonzero order.
      std::stable_sort(pairs.begin(), pairs.end(), [](const Pair& x, const Pair& y) { return x.iou < y.iou; });
      std::reverse(pairs.begin(), pairs.end());
      // np.unique(pred, return_index): first (best) pair per prediction, ordered by prediction index.
      by_pred.clear();
      std::vector<char> seen(np_, 0);
      for (const auto& pr : pairs)
        if (!seen[pr.p]) { seen[pr.p] = 1; by_pred.push_back(pr); }
      std::sort(by_pred.begin(), by_pred.end(), [](const Pair& x, const Pair& y) { return x.p < y.p; });
      // np.unique(gt, return_index): first pair per GT in that order, i.e. its lowest-index prediction.
      std::vector<char> gseen(ng, 0);
      pairs.clear();
      for (const auto& pr : by_pred)
        if (!gseen[pr.g]) { gseen[pr.g] = 1; pairs.push_back(pr); }
    }
    for (const auto& pr : pairs) c[pr.p][t] = true;
  }
  return correct;
}

torch::Tensor box_tp(const torch::Tensor& pred_boxes, const torch::Tensor& pred_cls, const torch::Tensor& gt_boxes,
                     const torch::Tensor& gt_cls) {
  const int64_t np_ = pred_cls.numel(), ng = gt_cls.numel();
  const torch::Tensor th = iou_thresholds();
  if (np_ == 0 || ng == 0) return torch::zeros({np_, th.numel()}, torch::kBool);
  torch::Tensor iou = box_iou(gt_boxes.reshape({ng, 4}).to(torch::kCPU), pred_boxes.reshape({np_, 4}).to(torch::kCPU));
  return match_predictions(pred_cls.reshape({-1}), gt_cls.reshape({-1}), iou, th);
}

std::vector<double> oks_sigmas(int64_t num_keypoints) {
  if (num_keypoints == 17) {
    std::vector<double> s = {0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72,
                             0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89};
    for (auto& v : s) v /= 10.0;  // the official table is written as these / 10
    return s;
  }
  return std::vector<double>(num_keypoints, 1.0 / (double)num_keypoints);
}

torch::Tensor kpt_iou(const torch::Tensor& gt_kpts, const torch::Tensor& pred_kpts, const torch::Tensor& area,
                      const std::vector<double>& sigmas, double eps) {
  if (gt_kpts.dim() != 3 || gt_kpts.size(2) != 3 || pred_kpts.dim() != 3 || pred_kpts.size(2) < 2 ||
      gt_kpts.size(1) != pred_kpts.size(1) || (int64_t)sigmas.size() != gt_kpts.size(1) ||
      area.numel() != gt_kpts.size(0))
    fail("kpt_iou: expected gt_kpts (M,K,3), pred_kpts (N,K,2|3), area (M) and K sigmas; got " +
         c10::str(gt_kpts.sizes()) + ", " + c10::str(pred_kpts.sizes()) + ", " + c10::str(area.sizes()) + " and " +
         std::to_string(sigmas.size()) + " sigmas");
  using torch::indexing::Slice;
  const torch::Tensor g = gt_kpts.to(torch::kFloat32), p = pred_kpts.to(torch::kFloat32);
  torch::Tensor d = (g.index({Slice(), torch::indexing::None, Slice(), 0}) - p.index({"...", 0})).pow(2) +
                    (g.index({Slice(), torch::indexing::None, Slice(), 1}) - p.index({"...", 1})).pow(2);
  torch::Tensor sigma = torch::tensor(sigmas, torch::kFloat64).to(torch::kFloat32);
  torch::Tensor mask = g.index({"...", 2}).ne(0);
  torch::Tensor e = d / ((2 * sigma).pow(2) * (area.to(torch::kFloat32).reshape({-1, 1, 1}) + eps) * 2);
  return ((-e).exp() * mask.unsqueeze(1)).sum(-1) / (mask.sum(-1).unsqueeze(1) + eps);
}

double np_interp(double x, const std::vector<double>& xp, const std::vector<double>& fp, double left, double right) {
  const size_t n = xp.size();
  if (n == 0 || fp.size() != n) fail("np_interp: xp and fp must be non-empty and of equal length");
  if (std::isnan(x)) return x;
  if (x > xp[n - 1]) return right;
  if (x < xp[0]) return left;
  // Last j with xp[j] <= x, as numpy's binary search returns.
  const size_t j = (size_t)(std::upper_bound(xp.begin(), xp.end(), x) - xp.begin()) - 1;
  if (j == n - 1 || xp[j] == x) return fp[j];
  const double slope = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j]);
  double r = slope * (x - xp[j]) + fp[j];
  if (std::isnan(r)) {
    r = slope * (x - xp[j + 1]) + fp[j + 1];
    if (std::isnan(r) && fp[j] == fp[j + 1]) r = fp[j];
  }
  return r;
}

std::vector<double> smooth(const std::vector<double>& y, double fraction) {
  if (y.empty()) return {};
  const int64_t nf = (int64_t)std::nearbyint((double)y.size() * fraction * 2) / 2 + 1;  // odd
  const int64_t pad = nf / 2;
  std::vector<double> yp;
  yp.reserve(y.size() + 2 * pad);
  yp.insert(yp.end(), pad, y.front());
  yp.insert(yp.end(), y.begin(), y.end());
  yp.insert(yp.end(), pad, y.back());
  const double w = 1.0 / (double)nf;
  std::vector<double> out(yp.size() - nf + 1);
  for (size_t k = 0; k < out.size(); ++k) {
    double s = 0;
    for (int64_t t = 0; t < nf; ++t) s += yp[k + t] * w;
    out[k] = s;
  }
  return out;
}

// numpy's pairwise summation of float64 (blocks of 128, 8 accumulators), so sums round as numpy's do.
static double pairwise_sum(const double* a, size_t n) {
  if (n < 8) {
    double res = 0.;
    for (size_t i = 0; i < n; ++i) res += a[i];
    return res;
  }
  if (n <= 128) {
    double r[8];
    for (int j = 0; j < 8; ++j) r[j] = a[j];
    size_t i = 8;
    for (; i < n - (n % 8); i += 8)
      for (int j = 0; j < 8; ++j) r[j] += a[i + j];
    double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) res += a[i];
    return res;
  }
  size_t n2 = n / 2;
  n2 -= n2 % 8;
  return pairwise_sum(a, n2) + pairwise_sum(a + n2, n - n2);
}

// np.linspace(0, 1, num): i * (1/(num-1)), last point exactly 1.
static std::vector<double> linspace01(size_t num) {
  std::vector<double> x(num);
  const double step = 1.0 / (double)(num - 1);
  for (size_t i = 0; i < num; ++i) x[i] = (double)i * step + 0.0;
  x[num - 1] = 1.0;
  return x;
}

// compute_ap with the sentinel recall and the precision envelope it integrates (the PR curve's points).
static double compute_ap_curve(const std::vector<double>& recall, const std::vector<double>& precision,
                               std::vector<double>& mrec, std::vector<double>& mpre) {
  mrec.clear();
  mpre.clear();
  mrec.reserve(recall.size() + 3);
  mpre.reserve(precision.size() + 3);
  // Sentinels as 8.4.x: precision drops to 0 right after the last recall reached (not a ramp to recall 1).
  mrec.push_back(0.0);
  mrec.insert(mrec.end(), recall.begin(), recall.end());
  mrec.push_back(recall.empty() ? 1.0 : recall.back());
  mrec.push_back(1.0);
  mpre.push_back(1.0);
  mpre.insert(mpre.end(), precision.begin(), precision.end());
  mpre.push_back(0.0);
  mpre.push_back(0.0);
  for (size_t i = mpre.size() - 1; i-- > 0;) mpre[i] = std::max(mpre[i], mpre[i + 1]);  // envelope
  static const std::vector<double> x = linspace01(101);
  std::vector<double> y(x.size()), terms(x.size() - 1);
  for (size_t i = 0; i < x.size(); ++i) y[i] = np_interp(x[i], mrec, mpre, mpre.front(), mpre.back());
  for (size_t i = 0; i + 1 < x.size(); ++i) terms[i] = (x[i + 1] - x[i]) * (y[i + 1] + y[i]) / 2.0;  // np.trapz
  return pairwise_sum(terms.data(), terms.size());
}

double compute_ap(const std::vector<double>& recall, const std::vector<double>& precision) {
  std::vector<double> mrec, mpre;
  return compute_ap_curve(recall, precision, mrec, mpre);
}

ApPerClass ap_per_class(const std::vector<uint8_t>& tp, int64_t num_thresholds, const std::vector<double>& conf,
                        const std::vector<int64_t>& pred_cls, const std::vector<int64_t>& target_cls) {
  const size_t n = conf.size();
  const int64_t T = num_thresholds;
  if (pred_cls.size() != n || tp.size() != n * (size_t)T)
    fail("ap_per_class: tp (" + std::to_string(tp.size()) + "), conf (" + std::to_string(n) + ") and pred_cls (" +
         std::to_string(pred_cls.size()) + ") disagree on the number of predictions");
  const double eps = 1e-16;
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return conf[a] > conf[b]; });

  ApPerClass out;
  out.classes = target_cls;
  std::sort(out.classes.begin(), out.classes.end());
  out.classes.erase(std::unique(out.classes.begin(), out.classes.end()), out.classes.end());
  const size_t nc = out.classes.size();
  for (auto c : out.classes) out.n_targets.push_back(std::count(target_cls.begin(), target_cls.end(), c));

  static const std::vector<double> x = linspace01(1000);
  out.ap.assign(nc, std::vector<double>(T, 0.0));
  std::vector<std::vector<double>> p_curve(nc, std::vector<double>(x.size(), 0.0)), r_curve = p_curve;
  out.pr_curve = p_curve;  // zeros for classes without predictions
  for (size_t ci = 0; ci < nc; ++ci) {
    std::vector<size_t> idx;  // this class's predictions, by confidence descending
    for (size_t k : order)
      if (pred_cls[k] == out.classes[ci]) idx.push_back(k);
    const double n_l = (double)out.n_targets[ci];
    if (idx.empty() || n_l == 0) continue;
    std::vector<double> neg_conf(idx.size());
    for (size_t k = 0; k < idx.size(); ++k) neg_conf[k] = -conf[idx[k]];
    std::vector<std::vector<double>> recall(T, std::vector<double>(idx.size())), precision = recall;
    for (int64_t j = 0; j < T; ++j) {
      double tpc = 0, fpc = 0;
      for (size_t k = 0; k < idx.size(); ++k) {
        const bool hit = tp[idx[k] * T + j] != 0;
        tpc += hit ? 1 : 0;
        fpc += hit ? 0 : 1;
        recall[j][k] = tpc / (n_l + eps);
        precision[j][k] = tpc / (tpc + fpc);
      }
    }
    for (size_t i = 0; i < x.size(); ++i) {
      r_curve[ci][i] = np_interp(-x[i], neg_conf, recall[0], 0.0, recall[0].back());
      p_curve[ci][i] = np_interp(-x[i], neg_conf, precision[0], 1.0, precision[0].back());
    }
    std::vector<double> mrec, mpre;
    for (int64_t j = 0; j < T; ++j) {
      out.ap[ci][j] = compute_ap_curve(recall[j], precision[j], mrec, mpre);
      if (j == 0)  // precision at recall x on the envelope, as the official prec_values
        for (size_t i = 0; i < x.size(); ++i) out.pr_curve[ci][i] = np_interp(x[i], mrec, mpre, mpre.front(), mpre.back());
    }
  }

  // P and R where the class-mean F1, smoothed over 0.1 of the confidence range, peaks.
  std::vector<std::vector<double>> f1(nc, std::vector<double>(x.size()));
  std::vector<double> f1_mean(x.size(), 0.0);
  for (size_t i = 0; i < x.size(); ++i) {
    double s = 0;
    for (size_t ci = 0; ci < nc; ++ci) {
      const double p = p_curve[ci][i], r = r_curve[ci][i];
      f1[ci][i] = 2 * p * r / (p + r + eps);
      s += f1[ci][i];
    }
    f1_mean[i] = nc ? s / (double)nc : std::nan("");
  }
  if (nc) {
    const auto sm = smooth(f1_mean, 0.1);
    out.best_index = std::max_element(sm.begin(), sm.end()) - sm.begin();
  }
  for (size_t ci = 0; ci < nc; ++ci) {
    out.p.push_back(p_curve[ci][out.best_index]);
    out.r.push_back(r_curve[ci][out.best_index]);
    out.f1.push_back(f1[ci][out.best_index]);
  }
  out.px = x;
  out.p_curve = std::move(p_curve);
  out.r_curve = std::move(r_curve);
  out.f1_curve = std::move(f1);
  return out;
}

// ---- accumulator ------------------------------------------------------------------------------------------------

DetMetrics::DetMetrics(std::vector<std::string> names) : names_(std::move(names)) {
  if (names_.empty()) fail("DetMetrics: the class-name list is empty; pass the data set's names");
}

void DetMetrics::reset() {
  images_ = 0;
  tp_.clear();
  conf_.clear();
  pred_cls_.clear();
  target_cls_.clear();
  target_img_.clear();
}

static std::vector<int64_t> to_int64(const torch::Tensor& t) {
  torch::Tensor c = t.reshape({-1}).to(torch::kCPU).to(torch::kInt64).contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

void DetMetrics::add_image(const torch::Tensor& pred_boxes, const torch::Tensor& pred_conf,
                           const torch::Tensor& pred_cls, const torch::Tensor& gt_boxes, const torch::Tensor& gt_cls) {
  const int64_t np_ = pred_cls.numel(), ng = gt_cls.numel();
  if (pred_boxes.numel() != np_ * 4 || pred_conf.numel() != np_ || gt_boxes.numel() != ng * 4)
    fail("DetMetrics.add_image: expected pred_boxes (N,4), pred_conf (N), pred_cls (N), gt_boxes (M,4), gt_cls (M); got " +
         c10::str(pred_boxes.sizes()) + ", " + c10::str(pred_conf.sizes()) + ", " + c10::str(pred_cls.sizes()) + ", " +
         c10::str(gt_boxes.sizes()) + ", " + c10::str(gt_cls.sizes()));
  add_matched(box_tp(pred_boxes, pred_cls, gt_boxes, gt_cls), pred_conf, pred_cls, gt_cls);
}

void DetMetrics::add_matched(const torch::Tensor& tp, const torch::Tensor& pred_conf, const torch::Tensor& pred_cls,
                             const torch::Tensor& gt_cls) {
  const int64_t np_ = pred_cls.numel();
  if (tp.dim() != 2 || tp.size(0) != np_ || tp.size(1) != 10 || pred_conf.numel() != np_)
    fail("DetMetrics.add_matched: tp must be (N,10) with N = number of predictions (" + std::to_string(np_) +
         "), got " + c10::str(tp.sizes()));
  ++images_;
  torch::Tensor t = tp.to(torch::kCPU, torch::kBool).contiguous();
  const bool* tb = t.data_ptr<bool>();
  tp_.insert(tp_.end(), tb, tb + t.numel());
  torch::Tensor cf = pred_conf.reshape({-1}).to(torch::kCPU, torch::kFloat64).contiguous();
  conf_.insert(conf_.end(), cf.data_ptr<double>(), cf.data_ptr<double>() + cf.numel());
  for (auto c : to_int64(pred_cls)) pred_cls_.push_back(c);
  auto g = to_int64(gt_cls);
  for (auto c : g) {
    if (c < 0 || c >= (int64_t)names_.size())
      fail("DetMetrics: GT class " + std::to_string(c) + " is outside the " + std::to_string(names_.size()) +
           " class names; check the labels against the data set's names");
    target_cls_.push_back(c);
  }
  std::sort(g.begin(), g.end());
  g.erase(std::unique(g.begin(), g.end()), g.end());
  target_img_.insert(target_img_.end(), g.begin(), g.end());
}

DetResults DetMetrics::compute() const {
  DetResults r;
  const size_t nc = names_.size();
  r.images = images_;
  r.nt_per_class.assign(nc, 0);
  r.nt_per_image.assign(nc, 0);
  for (auto c : target_cls_) ++r.nt_per_class[c];
  for (auto c : target_img_) ++r.nt_per_image[c];
  r.instances = (int64_t)target_cls_.size();
  const ApPerClass a = ap_per_class(tp_, 10, conf_, pred_cls_, target_cls_);
  const size_t k = a.classes.size();
  std::vector<double> ps, rs, ap50s, all_ap;
  for (size_t i = 0; i < k; ++i) {
    ClassMetrics cm;
    cm.cls = a.classes[i];
    cm.name = cm.cls < (int64_t)nc ? names_[cm.cls] : std::to_string(cm.cls);
    cm.images = r.nt_per_image[cm.cls];
    cm.instances = r.nt_per_class[cm.cls];
    cm.precision = a.p[i];
    cm.recall = a.r[i];
    cm.ap_per_iou = a.ap[i];
    cm.ap50 = a.ap[i][0];
    const double s = pairwise_sum(a.ap[i].data(), a.ap[i].size());  // numpy's ap.mean(1)
    cm.ap50_95 = s / (double)a.ap[i].size();
    ps.push_back(cm.precision);
    rs.push_back(cm.recall);
    ap50s.push_back(cm.ap50);
    all_ap.insert(all_ap.end(), a.ap[i].begin(), a.ap[i].end());
    r.per_class.push_back(cm);
  }
  if (k) {  // numpy means: pairwise sums over the class axis (and over all class x threshold APs)
    r.precision = pairwise_sum(ps.data(), k) / (double)k;
    r.recall = pairwise_sum(rs.data(), k) / (double)k;
    r.map50 = pairwise_sum(ap50s.data(), k) / (double)k;
    r.map50_95 = pairwise_sum(all_ap.data(), all_ap.size()) / (double)all_ap.size();
  }
  r.fitness = r.map50_95;
  r.curves = a;
  r.maps.assign(nc, r.map50_95);
  for (const auto& cm : r.per_class) r.maps[cm.cls] = cm.ap50_95;
  return r;
}

PoseMetrics::PoseMetrics(std::vector<std::string> names, int64_t num_keypoints, std::vector<double> sigmas)
    : box_(names), pose_(names), sigmas_(sigmas.empty() ? oks_sigmas(num_keypoints) : std::move(sigmas)) {
  bool ok = (int64_t)sigmas_.size() == num_keypoints;
  for (double v : sigmas_) ok = ok && v > 0;
  if (!ok)
    fail("PoseMetrics: kpt_oks_sigmas must be " + std::to_string(num_keypoints) + " positive values, got " +
         std::to_string(sigmas_.size()) + "; fix kpt_oks_sigmas in the data.yaml");
}

void PoseMetrics::add_image(const torch::Tensor& pred_boxes, const torch::Tensor& pred_conf,
                            const torch::Tensor& pred_cls, const torch::Tensor& pred_kpts,
                            const torch::Tensor& gt_boxes, const torch::Tensor& gt_cls, const torch::Tensor& gt_kpts) {
  const int64_t np_ = pred_cls.numel(), ng = gt_cls.numel(), k = (int64_t)sigmas_.size();
  if (pred_kpts.numel() != 0 && (pred_kpts.dim() != 3 || pred_kpts.size(0) != np_ || pred_kpts.size(1) != k))
    fail("PoseMetrics.add_image: pred_kpts must be (N," + std::to_string(k) + ",2|3), got " + c10::str(pred_kpts.sizes()));
  if (gt_kpts.numel() != 0 && (gt_kpts.dim() != 3 || gt_kpts.size(0) != ng || gt_kpts.size(1) != k))
    fail("PoseMetrics.add_image: gt_kpts must be (M," + std::to_string(k) + ",3), got " + c10::str(gt_kpts.sizes()));
  box_.add_image(pred_boxes, pred_conf, pred_cls, gt_boxes, gt_cls);
  torch::Tensor tp;
  if (np_ == 0 || ng == 0) {
    tp = torch::zeros({np_, 10}, torch::kBool);
  } else {
    // OKS scale: GT box area (w*h) * 0.53, as xtcocotools.
    torch::Tensor gb = gt_boxes.reshape({ng, 4}).to(torch::kCPU, torch::kFloat32);
    torch::Tensor wh = gb.narrow(1, 2, 2) - gb.narrow(1, 0, 2);
    torch::Tensor area = wh.prod(1) * 0.53;
    torch::Tensor iou = kpt_iou(gt_kpts.to(torch::kCPU), pred_kpts.to(torch::kCPU), area, sigmas_);
    tp = match_predictions(pred_cls.reshape({-1}), gt_cls.reshape({-1}), iou, iou_thresholds());
  }
  pose_.add_matched(tp, pred_conf, pred_cls, gt_cls);
}

// ---- confusion matrix -------------------------------------------------------------------------------------------

ConfusionMatrix::ConfusionMatrix(std::vector<std::string> names, bool classify)
    : names_(std::move(names)), classify_(classify) {
  const size_t n = names_.size() + (classify_ ? 0 : 1);
  m_.assign(n, std::vector<double>(n, 0.0));
}

void ConfusionMatrix::process_detections(const torch::Tensor& iou, const torch::Tensor& pred_conf,
                                         const torch::Tensor& pred_cls, const torch::Tensor& gt_cls, double conf,
                                         double iou_thres) {
  if (classify_) fail("ConfusionMatrix: a classify matrix takes process_classes, not detections");
  const auto gc = to_int64(gt_cls);
  const auto pc_all = to_int64(pred_cls);
  const int64_t bg = (int64_t)names_.size(), ng = (int64_t)gc.size(), np_all = (int64_t)pc_all.size();
  auto in_range = [&](int64_t c) {
    if (c < 0 || c >= bg)
      fail("ConfusionMatrix: class " + std::to_string(c) + " is outside the " + std::to_string(bg) + " class names");
    return c;
  };
  if (ng > 0 && np_all > 0 && (iou.dim() != 2 || iou.size(0) != ng || iou.size(1) != np_all))
    fail("ConfusionMatrix: iou must be (num_gt, num_pred) = (" + std::to_string(ng) + ", " + std::to_string(np_all) +
         "), got " + c10::str(iou.sizes()));
  if (np_all == 0) {  // every GT missed
    for (auto c : gc) m_[bg][in_range(c)] += 1;
    return;
  }
  torch::Tensor cf = pred_conf.reshape({-1}).to(torch::kCPU, torch::kFloat64).contiguous();
  std::vector<int64_t> keep, pc;  // predictions above the plotting confidence
  for (int64_t i = 0; i < np_all; ++i)
    if (cf.data_ptr<double>()[i] > conf) keep.push_back(i), pc.push_back(pc_all[i]);
  const int64_t np_ = (int64_t)keep.size();
  if (ng == 0) {
    for (auto c : pc) m_[in_range(c)][bg] += 1;
    return;
  }
  struct Pair { int64_t g, p; float iou; };
  std::vector<Pair> pairs;
  if (np_) {
    torch::Tensor m = iou.to(torch::kCPU, torch::kFloat32)
                          .index_select(1, torch::tensor(keep, torch::kLong))
                          .contiguous();
    const float* v = m.data_ptr<float>();
    for (int64_t g = 0; g < ng; ++g)
      for (int64_t p = 0; p < np_; ++p)
        if (v[g * np_ + p] > iou_thres) pairs.push_back({g, p, v[g * np_ + p]});
  }
  // Best IoU first; then each prediction keeps its best pair, then each GT its best remaining one.
  auto by_iou = [](const Pair& a, const Pair& b) { return a.iou > b.iou; };
  std::stable_sort(pairs.begin(), pairs.end(), by_iou);
  std::vector<char> pseen(np_, 0), gseen(ng, 0);
  std::vector<Pair> one_per_pred;
  for (const auto& pr : pairs)
    if (!pseen[pr.p]) pseen[pr.p] = 1, one_per_pred.push_back(pr);
  std::vector<int64_t> gt_match(ng, -1);
  std::vector<char> matched(np_, 0);
  for (const auto& pr : one_per_pred)
    if (!gseen[pr.g]) gseen[pr.g] = 1, gt_match[pr.g] = pr.p, matched[pr.p] = 1;
  for (int64_t g = 0; g < ng; ++g) {
    if (gt_match[g] >= 0) m_[in_range(pc[gt_match[g]])][in_range(gc[g])] += 1;  // TP, or a class confusion
    else m_[bg][in_range(gc[g])] += 1;                                          // missed
  }
  for (int64_t p = 0; p < np_; ++p)
    if (!matched[p]) m_[in_range(pc[p])][bg] += 1;  // false positive
}

void ConfusionMatrix::process_boxes(const torch::Tensor& pred_boxes, const torch::Tensor& pred_conf,
                                    const torch::Tensor& pred_cls, const torch::Tensor& gt_boxes,
                                    const torch::Tensor& gt_cls, double conf, double iou_thres) {
  const int64_t np_ = pred_cls.numel(), ng = gt_cls.numel();
  torch::Tensor iou = np_ && ng ? box_iou(gt_boxes.reshape({ng, 4}).to(torch::kCPU), pred_boxes.reshape({np_, 4}).to(torch::kCPU))
                                : torch::zeros({ng, np_});
  process_detections(iou, pred_conf, pred_cls, gt_cls, conf, iou_thres);
}

void ConfusionMatrix::process_classes(const std::vector<int64_t>& pred, const std::vector<int64_t>& target) {
  if (!classify_) fail("ConfusionMatrix: a detection matrix takes detections, not class lists");
  if (pred.size() != target.size()) fail("ConfusionMatrix: predictions and targets differ in length");
  const int64_t n = (int64_t)names_.size();
  for (size_t i = 0; i < pred.size(); ++i) {
    if (pred[i] < 0 || pred[i] >= n || target[i] < 0 || target[i] >= n)
      fail("ConfusionMatrix: class outside the " + std::to_string(n) + " class names");
    m_[pred[i]][target[i]] += 1;
  }
}

std::vector<std::vector<double>> ConfusionMatrix::normalized() const {
  auto out = m_;
  for (size_t c = 0; c < m_.size(); ++c) {
    double s = 0;
    for (size_t r = 0; r < m_.size(); ++r) s += m_[r][c];
    for (size_t r = 0; r < m_.size(); ++r) out[r][c] = m_[r][c] / (s + 1e-9);
  }
  return out;
}

std::string format_det_table(const DetResults& r, const std::vector<std::string>& names, bool per_class) {
  char buf[256];
  std::string out;
  std::snprintf(buf, sizeof buf, "%22s%11s%11s%11s%11s%11s%11s\n", "Class", "Images", "Instances", "Box(P", "R",
                "mAP50", "mAP50-95)");
  out += buf;
  std::snprintf(buf, sizeof buf, "%22s%11lld%11lld%11.3g%11.3g%11.3g%11.3g\n", "all", (long long)r.images,
                (long long)r.instances, r.precision, r.recall, r.map50, r.map50_95);
  out += buf;
  if (per_class && names.size() > 1)
    for (const auto& c : r.per_class) {
      const std::string name = c.cls < (int64_t)names.size() ? names[c.cls] : c.name;
      std::snprintf(buf, sizeof buf, "%22s%11lld%11lld%11.3g%11.3g%11.3g%11.3g\n", name.c_str(), (long long)c.images,
                    (long long)c.instances, c.precision, c.recall, c.ap50, c.ap50_95);
      out += buf;
    }
  return out;
}

}  // namespace y26
