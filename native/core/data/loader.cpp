#include "data/loader.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

#include <opencv2/imgproc.hpp>

#include "util/error.h"
#include "util/system.h"

namespace y26 {

namespace {
double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

EpochShard::EpochShard(int64_t n, int rank, int world, const std::string& who) : n_(n), rank_(rank), world_(world) {
  if (n_ < 1) fail(who + ": no samples to shard");
  if (world_ < 1 || rank_ < 0 || rank_ >= world_)
    fail(who + ": rank " + std::to_string(rank_) + " is outside world size " + std::to_string(world_));
}

void EpochShard::permutation(uint64_t seed, int64_t epoch, std::vector<size_t>& perm) const {
  perm.resize((size_t)n_);
  std::iota(perm.begin(), perm.end(), 0);
  SampleRng rng(SampleRng::derive(seed, (uint64_t)epoch, ~0ull));
  for (int64_t i = n_ - 1; i > 0; --i) std::swap(perm[(size_t)i], perm[(size_t)rng.randint(i + 1)]);
}

std::vector<cv::Size> rect_batch_shapes(const std::vector<cv::Size>& sizes, int batch, int imgsz, int stride, float pad,
                                        std::vector<size_t>* order) {
  const size_t n = sizes.size();
  std::vector<double> ar(n);
  for (size_t i = 0; i < n; ++i) ar[i] = (double)sizes[i].height / sizes[i].width;
  std::vector<size_t> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  // Stable, so equal aspect ratios keep file order (numpy's argsort does the same for small arrays).
  std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return ar[a] < ar[b]; });
  std::vector<cv::Size> shapes;
  for (size_t b0 = 0; b0 < n; b0 += batch) {
    double mini = 1e30, maxi = -1e30;
    for (size_t k = b0; k < std::min(n, b0 + batch); ++k) { mini = std::min(mini, ar[idx[k]]); maxi = std::max(maxi, ar[idx[k]]); }
    double sh = 1, sw = 1;  // (h, w) relative to imgsz
    if (maxi < 1) sh = maxi;
    else if (mini > 1) sw = 1 / mini;
    int H = (int)std::ceil(sh * imgsz / stride + pad) * stride;
    int W = (int)std::ceil(sw * imgsz / stride + pad) * stride;
    shapes.emplace_back(W, H);
  }
  if (order) *order = std::move(idx);
  return shapes;
}

torch::Tensor polygon_masks(const Batch& batch, int mask_ratio, bool overlap) {
  if (mask_ratio < 1) fail("mask_ratio must be >= 1");
  const int64_t B = batch.size(), N = batch.cls.defined() ? batch.cls.size(0) : 0;
  const int H = (int)batch.img.size(2) / mask_ratio, W = (int)batch.img.size(3) / mask_ratio;
  if (N && (int64_t)batch.segments.size() != N)
    fail("polygon_masks needs polygons for every instance (a dataset with polygon labels)");
  torch::Tensor bidx = N ? batch.batch_idx.cpu() : torch::Tensor();
  auto poly_px = [&](int64_t k) {
    torch::Tensor t = batch.segments[k].cpu().contiguous();
    const float* p = t.data_ptr<float>();
    std::vector<cv::Point> pts;
    for (int64_t i = 0; i < t.size(0); ++i) pts.emplace_back((int)std::lround(p[2 * i] * W), (int)std::lround(p[2 * i + 1] * H));
    return pts;
  };
  if (!overlap) {
    torch::Tensor out = torch::zeros({N, H, W}, torch::kUInt8);
    for (int64_t k = 0; k < N; ++k) {
      auto pts = poly_px(k);
      if (pts.size() < 3) continue;
      cv::Mat m(H, W, CV_8U, out[k].data_ptr<uint8_t>());
      cv::fillPoly(m, std::vector<std::vector<cv::Point>>{pts}, cv::Scalar(1));
    }
    return out;
  }
  torch::Tensor out = torch::zeros({B, H, W}, torch::kInt32);
  std::vector<std::vector<int64_t>> per_image(B);
  for (int64_t k = 0; k < N; ++k) per_image[(int64_t)bidx[k].item<float>()].push_back(k);
  for (int64_t b = 0; b < B; ++b) {
    std::vector<std::pair<double, int64_t>> order;  // (area, instance)
    for (int64_t k : per_image[b]) {
      auto pts = poly_px(k);
      order.emplace_back(pts.size() >= 3 ? std::fabs(cv::contourArea(pts)) : 0.0, k);
    }
    std::stable_sort(order.begin(), order.end(), [](auto& x, auto& y) { return x.first > y.first; });
    cv::Mat m(H, W, CV_32S, out[b].data_ptr<int32_t>());
    for (auto& [area, k] : order) {
      auto pts = poly_px(k);
      if (pts.size() < 3) continue;
      int j = (int)(std::find(per_image[b].begin(), per_image[b].end(), k) - per_image[b].begin());
      cv::fillPoly(m, std::vector<std::vector<cv::Point>>{pts}, cv::Scalar(j + 1));
    }
  }
  return out;
}

DataLoader::DataLoader(std::shared_ptr<const Dataset> ds, LoaderOptions opt) : ds_(std::move(ds)), opt_(opt) {
  if (!ds_ || ds_->size() == 0) fail("DataLoader needs a non-empty dataset");
  if (opt_.batch < 1) fail("batch must be >= 1 (got " + std::to_string(opt_.batch) + ")");
  opt_.workers = std::max(1, opt_.workers);
  opt_.prefetch = std::max(1, opt_.prefetch);
  if (opt_.rect) { opt_.shuffle = false; opt_.augment = false; }
  const int64_t n = (int64_t)ds_->size();
  shard_ = EpochShard(n, opt_.rank, opt_.world, "DataLoader");
  if (opt_.world > 1 && opt_.rect) fail("DataLoader: rect batches are not sharded across ranks");
  const int64_t m = shard_size();
  if (opt_.drop_last && m < opt_.batch)
    fail("drop_last with batch " + std::to_string(opt_.batch) + " leaves no batch from " + std::to_string(m) + " images");
  nb_ = opt_.drop_last ? m / opt_.batch : (m + opt_.batch - 1) / opt_.batch;
  if (opt_.rect) {
    std::vector<cv::Size> sizes(n);
    for (int64_t i = 0; i < n; ++i) sizes[i] = {ds_->labels(i).width, ds_->labels(i).height};
    rect_shapes_ = rect_batch_shapes(sizes, opt_.batch, ds_->imgsz(), opt_.stride, opt_.pad, &rect_order_);
  }
  std::string dev = resolve_device(opt_.device);
  cuda_ = dev != "cpu";
  opt_.device = dev;
  // The workers are the parallelism: OpenCV's own thread pool inside them would only oversubscribe the cores
  // (the official loader sets the same process-wide).
  cv::setNumThreads(0);
  ready_.resize(opt_.workers);
  for (int w = 0; w < opt_.workers; ++w) threads_.emplace_back([this, w] { worker_main(w); });
}

DataLoader::~DataLoader() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  for (auto& t : threads_) t.join();
}

int64_t DataLoader::shard_size() const { return shard_.size(); }

int64_t DataLoader::samples_per_epoch() const {
  return opt_.drop_last ? nb_ * opt_.batch : shard_size();
}

bool DataLoader::mosaic_enabled(int epoch) const {
  // close_mosaic: the last hyp.close_mosaic epochs of opt.epochs train without mosaic, mixup and cutmix.
  return !(opt_.epochs > 0 && opt_.hyp.close_mosaic > 0 && epoch >= opt_.epochs - opt_.hyp.close_mosaic);
}

void DataLoader::restart(int64_t global_job) {
  ++generation_;
  gen_start_ = global_job;
  next_local_ = 0;
  for (auto& q : ready_) q.clear();
  work_cv_.notify_all();
}

void DataLoader::worker_main(int w) {
  const int W = opt_.workers;
  std::unique_ptr<TrainAugmenter> aug;
  if (opt_.augment) {
    // The official buffer holds min(N, batch*8, 1000) images; shared out among the workers.
    size_t cap = std::min<size_t>({ds_->size(), (size_t)opt_.batch * 8, 1000});
    aug = std::make_unique<TrainAugmenter>(ds_, opt_.hyp, std::max<size_t>(cap / W, 16));
  }
  int64_t my_gen = -1, local = 0, last_epoch = -1;
  while (true) {
    int64_t job;
    bool mosaic;
    {
      std::unique_lock<std::mutex> lk(mu_);
      work_cv_.wait(lk, [&] { return stop_ || generation_ != my_gen || (int)ready_[w].size() < opt_.prefetch; });
      if (stop_) return;
      if (generation_ != my_gen) { my_gen = generation_; local = w; last_epoch = -1; }
      job = gen_start_ + local;
      local += W;
      mosaic = gen_mosaic_;
    }
    int64_t epoch = job / nb_;
    // A fresh mosaic buffer per epoch (and restart): an epoch's batches depend only on (seed, epoch, workers).
    if (epoch != last_epoch && aug) aug->clear_buffer();
    last_epoch = epoch;
    Ready r{job, {}, {}};
    try {
      r.batch = build(job, mosaic && mosaic_enabled((int)epoch), aug.get());
    } catch (...) {
      r.error = describe_exception(std::current_exception());
    }
    std::lock_guard<std::mutex> lk(mu_);
    if (generation_ == my_gen) {
      ready_[w].push_back(std::move(r));
      ready_cv_.notify_all();
    }
  }
}

Batch DataLoader::build(int64_t job, bool mosaic, TrainAugmenter* aug) {
  auto t0 = std::chrono::steady_clock::now();
  const int64_t epoch = job / nb_, b = job % nb_;
  const int64_t p0 = b * opt_.batch, p1 = std::min<int64_t>(p0 + opt_.batch, shard_size());
  // Epoch order: a permutation from (seed, epoch) when shuffling, the aspect-ratio order for rect, else file order.
  thread_local std::vector<size_t> perm;
  thread_local int64_t perm_epoch = -1;
  thread_local const DataLoader* perm_owner = nullptr;
  if (opt_.shuffle && (perm_epoch != epoch || perm_owner != this)) {
    shard_.permutation(opt_.seed, epoch, perm);
    perm_epoch = epoch;
    perm_owner = this;
  }
  const int s = ds_->imgsz();
  std::vector<Sample> samples;
  samples.reserve(p1 - p0);
  for (int64_t p = p0; p < p1; ++p) {
    // This rank's p-th sample is the epoch order's position g (wrapped past n: the padding); the augmentation
    // stream follows g, so a sample is augmented the same whichever rank draws it.
    const int64_t g = shard_.position(p);
    size_t i = shard_.sample(g, opt_.rect ? &rect_order_ : opt_.shuffle ? &perm : nullptr);
    if (opt_.rect) samples.push_back(val_sample(*ds_, i, rect_shapes_[b]));
    else if (!aug) samples.push_back(letterbox_sample(*ds_, i, {s, s}, false));
    else samples.push_back(aug->make(i, SampleRng::derive(opt_.seed, (uint64_t)epoch, (uint64_t)g), mosaic, true));
  }

  Batch out;
  out.epoch = epoch;
  out.batch_index = b;
  const int B = (int)samples.size(), H = samples[0].img.rows, W = samples[0].img.cols;
  auto u8 = torch::TensorOptions().dtype(torch::kUInt8);
  if (cuda_ && opt_.pin_memory) u8 = u8.pinned_memory(true);
  // On the CPU, this worker's recent batch images: one that the consumer has let go of (nothing else references its
  // storage) is written again instead of faulting in fresh pages for every batch. Not for pinned batches, whose
  // non-blocking copy to the GPU may still be reading them after the consumer drops them.
  thread_local std::vector<torch::Tensor> img_pool;
  thread_local const DataLoader* img_pool_owner = nullptr;
  if (img_pool_owner != this) img_pool.clear(), img_pool_owner = this;
  if (!cuda_)
    for (auto& t : img_pool)
      if (t.use_count() == 1 && t.storage().use_count() == 1 && t.sizes() == torch::IntArrayRef({B, 3, H, W})) {
        out.img = t;
        break;
      }
  if (!out.img.defined()) {
    out.img = torch::empty({B, 3, H, W}, u8);
    if (!cuda_) {
      // Enough for the batches in flight (ready, being built, held by the consumer) plus one.
      if (img_pool.size() > (size_t)opt_.prefetch + 2) img_pool.erase(img_pool.begin());
      img_pool.push_back(out.img);
    }
  }
  uint8_t* base = out.img.data_ptr<uint8_t>();
  int64_t N = 0;
  for (auto& sm : samples) N += (int64_t)sm.inst.size();
  const int K = ds_->kpt_count(), D = ds_->kpt_dims();
  out.cls = torch::empty({N, 1}, torch::kFloat32);
  out.bboxes = torch::empty({N, 4}, torch::kFloat32);
  out.batch_idx = torch::empty({N}, torch::kFloat32);
  if (K) out.keypoints = torch::empty({N, K, D}, torch::kFloat32);
  float *pc = out.cls.data_ptr<float>(), *pb = out.bboxes.data_ptr<float>(), *pi = out.batch_idx.data_ptr<float>();
  float* pk = K ? out.keypoints.data_ptr<float>() : nullptr;
  const bool segs = ds_->has_segments();
  for (int bi = 0; bi < B; ++bi) {
    Sample& sm = samples[bi];
    if (sm.img.rows != H || sm.img.cols != W || sm.img.type() != CV_8UC3)
      fail("internal: sample " + ds_->labels(sm.index).im_file + " has a different size than its batch");
    // HWC BGR -> CHW RGB straight into the batch tensor, with the sample's pending HSV jitter and flips applied in
    // the same pass.
    uint8_t* dst = base + (int64_t)bi * 3 * H * W;
    if (sm.pending.any()) {
      write_planes(sm.img, sm.pending, sm.keep_bgr, dst);
    } else {
      cv::Mat planes[3];
      for (int c = 0; c < 3; ++c) planes[c] = cv::Mat(H, W, CV_8U, dst + (int64_t)c * H * W);
      cv::Mat order[3] = {planes[2], planes[1], planes[0]};
      if (sm.keep_bgr) { order[0] = planes[0]; order[2] = planes[2]; }
      cv::split(sm.img, order);
    }
    const float fw = (float)W, fh = (float)H;
    for (size_t k = 0; k < sm.inst.size(); ++k) {
      const float* x = &sm.inst.xyxy[4 * k];
      *pc++ = sm.inst.cls[k];
      *pb++ = (x[0] + x[2]) / 2 / fw;
      *pb++ = (x[1] + x[3]) / 2 / fh;
      *pb++ = (x[2] - x[0]) / fw;
      *pb++ = (x[3] - x[1]) / fh;
      *pi++ = (float)bi;
      for (int j = 0; K && j < K; ++j) {
        const float* kp = &sm.inst.kpts[(k * K + j) * D];
        *pk++ = kp[0] / fw;
        *pk++ = kp[1] / fh;
        if (D == 3) *pk++ = kp[2];
      }
      if (segs) {
        const auto& poly = k < sm.inst.segs.size() ? sm.inst.segs[k] : std::vector<cv::Point2f>{};
        torch::Tensor t = torch::empty({(int64_t)poly.size(), 2}, torch::kFloat32);
        float* pt = t.data_ptr<float>();
        for (auto& q : poly) { *pt++ = q.x / fw; *pt++ = q.y / fh; }
        out.segments.push_back(t);
      }
    }
    const ImageLabels& L = ds_->labels(sm.index);
    out.im_file.push_back(L.im_file);
    out.indices.push_back((int64_t)sm.index);
    out.ori_shape.push_back({L.height, L.width});
    out.resized_shape.push_back({H, W});  // official: the network input shape of the image
    out.ratio_pad.push_back({sm.gain_h, sm.gain_w, sm.pad_left, sm.pad_top});
  }
  double ms = ms_since(t0);
  std::lock_guard<std::mutex> lk(mu_);
  stats_.build_ms_total += ms;
  return out;
}

bool DataLoader::next(Batch& out) {
  auto t0 = std::chrono::steady_clock::now();
  std::unique_lock<std::mutex> lk(mu_);
  const int64_t job = gen_start_ + next_local_;
  const int e = (int)(job / nb_);
  if (e != current_epoch_) {
    if (!end_reported_) { end_reported_ = true; return false; }
    current_epoch_ = e;
  }
  end_reported_ = false;
  const int w = (int)(next_local_ % opt_.workers);
  ready_cv_.wait(lk, [&] { return !ready_[w].empty(); });
  Ready r = std::move(ready_[w].front());
  ready_[w].pop_front();
  ++next_local_;
  work_cv_.notify_all();
  lk.unlock();
  if (!r.error.empty()) fail(r.error);
  out = std::move(r.batch);
  if (cuda_) {
    torch::Device dev(opt_.device);
    out.img = out.img.to(dev, /*non_blocking=*/true);
    out.cls = out.cls.to(dev, true);
    out.bboxes = out.bboxes.to(dev, true);
    out.batch_idx = out.batch_idx.to(dev, true);
    if (out.keypoints.defined()) out.keypoints = out.keypoints.to(dev, true);
  }
  out.wait_ms = ms_since(t0);
  lk.lock();
  stats_.batches += 1;
  stats_.samples += out.size();
  stats_.wait_ms_total += out.wait_ms;
  stats_.wait_ms_max = std::max(stats_.wait_ms_max, out.wait_ms);
  stats_.wait_ms_last = out.wait_ms;
  return true;
}

void DataLoader::set_epoch(int e) {
  if (e < 0) fail("epoch must be >= 0");
  std::lock_guard<std::mutex> lk(mu_);
  current_epoch_ = e;
  end_reported_ = false;
  if (gen_start_ + next_local_ == (int64_t)e * nb_) return;  // already positioned there: keep prefetched batches
  restart((int64_t)e * nb_);
}

void DataLoader::set_mosaic(bool on) {
  std::lock_guard<std::mutex> lk(mu_);
  if (gen_mosaic_ == on) return;
  gen_mosaic_ = on;
  restart(gen_start_ + next_local_);  // prefetched batches were built with the old setting
}

LoaderStats DataLoader::stats() const {
  std::lock_guard<std::mutex> lk(mu_);
  return stats_;
}

void DataLoader::reset_stats() {
  std::lock_guard<std::mutex> lk(mu_);
  stats_ = LoaderStats{};
}

}  // namespace y26
