#include "infer/pipeline.h"

#include <torch/cuda.h>

#include <chrono>
#include <iostream>

#include "infer/classify.h"
#include "infer/preprocess.h"
#include "util/error.h"

namespace y26 {

namespace {
using Clock = std::chrono::steady_clock;
double ms_between(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double, std::milli>(b - a).count(); }
}  // namespace

namespace {
ForwardOutputsFn as_outputs(ForwardFn f) {
  if (!f) fail("predict: no model forward function");
  return [f = std::move(f)](const torch::Tensor& x) { return std::vector<torch::Tensor>{f(x)}; };
}
}  // namespace

Pipeline::Pipeline(std::unique_ptr<Source> source, ForwardFn forward, PipelineOptions opt)
    : Pipeline(std::move(source), as_outputs(std::move(forward)), std::move(opt)) {}

Pipeline::Pipeline(std::unique_ptr<Source> source, ForwardOutputsFn forward, PipelineOptions opt)
    : source_(std::move(source)), forward_(std::move(forward)), opt_(std::move(opt)), device_(opt_.device) {
  if (!source_) fail("predict: no source");
  if (!forward_) fail("predict: no model forward function");
  if (opt_.batch < 1) fail("predict: batch must be >= 1 (got " + std::to_string(opt_.batch) + ")");
  if (opt_.queue_batches < 1) fail("predict: queue_batches must be >= 1 (got " + std::to_string(opt_.queue_batches) + ")");
  if (opt_.imgsz_h <= 0 || opt_.imgsz_w <= 0 || opt_.imgsz_h % opt_.stride || opt_.imgsz_w % opt_.stride)
    fail("predict: imgsz " + std::to_string(opt_.imgsz_h) + "x" + std::to_string(opt_.imgsz_w) +
         " must be a positive multiple of the model stride " + std::to_string(opt_.stride));
  if (opt_.workers < 1) fail("predict: workers must be >= 1 (got " + std::to_string(opt_.workers) + ")");
  if (device_.is_cuda() && !torch::cuda::is_available())
    fail("predict: device " + opt_.device + " was asked for but CUDA is not available; use device 'cpu'");
  if (!device_.is_cuda()) alloc_cache_.emplace();
  // Enough decoded items ahead to fill the next batch while every decoder stays busy.
  window_ = opt_.batch + opt_.workers;
  live_decoders_ = opt_.workers;
  for (int i = 0; i < opt_.workers; ++i) decoders_.emplace_back([this] { decoder_loop(); });
  batcher_ = std::thread([this] { batcher_loop(); });
  if (opt_.forward_thread && !opt_.on_result) forwarder_ = std::thread([this] { forward_loop(); });
}

Pipeline::~Pipeline() {
  cancel();
  if (batcher_.joinable()) batcher_.join();
  if (forwarder_.joinable()) forwarder_.join();
  for (auto& t : decoders_)
    if (t.joinable()) t.join();
}

void Pipeline::cancel() {
  cancel_ = true;
  std::lock_guard<std::mutex> lock(mu_);
  cv_.notify_all();
}

std::vector<std::string> Pipeline::warnings() const {
  std::lock_guard<std::mutex> lock(mu_);
  return warnings_;
}

size_t Pipeline::max_queue_depth() const {
  std::lock_guard<std::mutex> lock(mu_);
  return max_depth_;
}

void Pipeline::decoder_loop() {
  try {
    while (true) {
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return cancel_ || source_done_ || issued_ - needed_ < window_; });
        if (cancel_ || source_done_) break;
      }
      Frame f;
      DecodeJob job;
      int64_t seq = 0;
      {
        std::lock_guard<std::mutex> source_lock(source_mu_);
        if (cancel_ || source_done_) break;
        if (!source_->next_deferred(f, job)) {
          source_done_ = true;
          break;
        }
        seq = issued_++;
      }
      if (job) {
        try {
          job(f);
        } catch (...) {  // one bad item is an error item, not the end of the stream
          f.image.release();
          f.error = f.path + ": " + describe_exception(std::current_exception());
        }
      }
      std::lock_guard<std::mutex> lock(mu_);
      decoded_.emplace(seq, std::move(f));
      cv_.notify_all();
    }
  } catch (...) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!worker_error_) worker_error_ = std::current_exception();
    source_done_ = true;
  }
  std::lock_guard<std::mutex> lock(mu_);
  --live_decoders_;
  cv_.notify_all();
}

bool Pipeline::take_decoded(Frame& f) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] {
    return cancel_ || decoded_.count(needed_) > 0 || live_decoders_ == 0 || (source_done_ && needed_ >= issued_);
  });
  auto it = decoded_.find(needed_);
  if (cancel_ || it == decoded_.end()) return false;
  f = std::move(it->second);
  decoded_.erase(it);
  ++needed_;
  cv_.notify_all();  // the decode window moved
  return true;
}

void Pipeline::batcher_loop() {
  int64_t index = 0;
  bool source_done = false;
  try {
    while (!cancel_ && !source_done) {
      Prepared p;
      std::vector<cv::Mat> images;
      while (static_cast<int>(p.frames.size()) < opt_.batch && !cancel_) {
        Frame f;
        if (!take_decoded(f)) { source_done = true; break; }
        const int64_t idx = index++;
        if (!f.error.empty()) {
          std::lock_guard<std::mutex> lock(mu_);
          if (opt_.skip_errors) {
            warnings_.push_back("skipped " + f.error);  // the caller reports it (its log, once per kind)
          } else {
            Result r;
            r.path = f.path;
            r.frame = f.frame;
            r.index = idx;
            r.error = f.error;
            deferred_.push_back(std::move(r));
          }
          continue;
        }
        p.decode_ms += f.decode_ms;
        images.push_back(f.image);
        if (!opt_.keep_images && !opt_.on_result) f.image.release();
        p.frames.push_back(std::move(f));
        p.indices.push_back(idx);
      }
      if (p.frames.empty() || cancel_) break;
      const auto t0 = Clock::now();
      LetterboxOptions lo;
      lo.height = opt_.imgsz_h;
      lo.width = opt_.imgsz_w;
      lo.stride = opt_.stride;
      lo.auto_pad = opt_.rect && batch_allows_auto_pad(images);
      std::vector<cv::Mat> boxed;
      const bool classify = opt_.post.task == Task::Classify;
      for (const auto& im : images) {
        Letterboxed lb;
        if (classify) {  // classify_transforms: short-side resize + centre crop, no letterbox
          lb.image = classify_transform(im, opt_.imgsz_h, opt_.imgsz_w);
          lb.orig_h = im.rows;
          lb.orig_w = im.cols;
          lb.in_h = lb.image.rows;
          lb.in_w = lb.image.cols;
        } else {
          lb = letterbox(im, lo);
        }
        boxed.push_back(lb.image);
        lb.image.release();
        p.metas.push_back(std::move(lb));
      }
      images.clear();
      if (device_.is_cuda()) p.input_u8 = images_to_uint8_batch(boxed, true);
      else p.input = images_to_float_batch(boxed, opt_.half);  // here, off the forward's thread
      p.preprocess_ms = ms_between(t0, Clock::now());
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return cancel_ || static_cast<int>(queue_.size()) < opt_.queue_batches; });
      if (cancel_) break;
      queue_.push_back(std::move(p));
      max_depth_ = std::max(max_depth_, queue_.size());
      cv_.notify_all();
    }
  } catch (...) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!worker_error_) worker_error_ = std::current_exception();
  }
  std::lock_guard<std::mutex> lock(mu_);
  worker_done_ = true;
  cv_.notify_all();
}

void Pipeline::run_batch(Prepared& p, std::deque<Result>& out) {
  try {
    run_batch_hooked(p, out);
  } catch (...) {
    if (opt_.on_batch_failed) {
      try {
        opt_.on_batch_failed();
      } catch (...) {
        // the batch's own error is the one to report
      }
    }
    throw;
  }
}

void Pipeline::run_batch_hooked(Prepared& p, std::deque<Result>& out) {
  torch::NoGradGuard no_grad;
  const double n = static_cast<double>(p.frames.size());
  if (opt_.on_batch) opt_.on_batch(p.frames);
  const auto t0 = Clock::now();
  torch::Tensor x = p.input.defined() ? std::move(p.input) : normalize_batch(p.input_u8, device_, opt_.half);
  p.input_u8 = torch::Tensor();
  const auto t1 = Clock::now();
  std::vector<torch::Tensor> y;
  try {
    y = forward_(x);
  } catch (...) {
    fail("predict: the model forward failed on a batch of " + std::to_string(p.frames.size()) + " image(s) starting at " +
         p.frames.front().path + ": " + describe_exception(std::current_exception()));
  }
  if (device_.is_cuda()) torch::cuda::synchronize();
  const auto t2 = Clock::now();
  if (y.empty() || !y[0].defined()) fail("predict: the model forward returned no tensor");
  std::vector<Result> results = postprocess(y[0], p.metas, opt_.post, y.size() > 1 ? y[1] : torch::Tensor());
  for (size_t i = 0; i < results.size(); ++i) {  // before on_result, which reads the path (tracking resets on a new one)
    Result& r = results[i];
    r.path = p.frames[i].path;
    r.frame = p.frames[i].frame;
    r.is_video = p.frames[i].is_video;
    r.fps = p.frames[i].fps;
    r.index = p.indices[i];
  }
  if (opt_.on_result)
    for (size_t i = 0; i < results.size(); ++i) opt_.on_result(results[i], p.frames[i].image);
  const auto t3 = Clock::now();
  Speed speed;
  speed.decode = p.decode_ms / n;
  speed.preprocess = (p.preprocess_ms + ms_between(t0, t1)) / n;
  speed.inference = ms_between(t1, t2) / n;
  speed.postprocess = ms_between(t2, t3) / n;
  for (size_t i = 0; i < results.size(); ++i) {
    Result& r = results[i];
    r.speed = speed;
    if (opt_.keep_images) r.orig_image = p.frames[i].image;
    out.push_back(std::move(r));
  }
}

bool Pipeline::take_prepared(Prepared& p) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return cancel_ || !queue_.empty() || worker_done_; });
  if (cancel_ || queue_.empty()) return false;
  p = std::move(queue_.front());
  queue_.pop_front();
  cv_.notify_all();  // room in the queue: the batcher may prepare the next batch
  return true;
}

void Pipeline::forward_loop() {
  const size_t ahead = static_cast<size_t>(opt_.batch) * opt_.queue_batches;  // results waiting for next()
  try {
    Prepared p;
    while (take_prepared(p)) {
      std::deque<Result> out;
      run_batch(p, out);
      p = Prepared();
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return cancel_ || ready_.size() < ahead; });
      if (cancel_) break;
      for (auto& r : out) ready_.push_back(std::move(r));
      cv_.notify_all();
    }
  } catch (...) {
    std::lock_guard<std::mutex> lock(mu_);
    forward_error_ = std::current_exception();
  }
  std::lock_guard<std::mutex> lock(mu_);
  forward_done_ = true;
  cv_.notify_all();
}

bool Pipeline::next(Result& out) {
  if (forwarder_.joinable()) {  // results come from the forward thread; at its end, errors and error items as below
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return cancel_ || !ready_.empty() || forward_done_; });
    if (cancel_) return false;
    if (!ready_.empty()) {
      out = std::move(ready_.front());
      ready_.pop_front();
      cv_.notify_all();
      return true;
    }
    if (forward_error_) {
      std::exception_ptr e = forward_error_;
      forward_error_ = nullptr;
      std::rethrow_exception(e);
    }
  }
  while (true) {
    if (cancel_) return false;
    if (!ready_.empty()) {
      out = std::move(ready_.front());
      ready_.pop_front();
      return true;
    }
    Prepared p;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return cancel_ || !queue_.empty() || worker_done_; });
      if (cancel_) return false;
      if (queue_.empty()) {  // the worker is done: surface its error, then the deferred error items
        if (worker_error_) {
          std::exception_ptr e = worker_error_;
          worker_error_ = nullptr;
          try {
            std::rethrow_exception(e);
          } catch (const Error&) {
            throw;
          } catch (...) {
            fail("predict: reading " + source_->describe() + " failed: " + describe_exception(std::current_exception()));
          }
        }
        if (deferred_.empty()) return false;
        out = std::move(deferred_.front());
        deferred_.pop_front();
        return true;
      }
      p = std::move(queue_.front());
      queue_.pop_front();
      cv_.notify_all();  // room in the queue: the worker may prepare the next batch
    }
    run_batch(p, ready_);
  }
}

std::vector<Result> predict_all(std::unique_ptr<Source> source, ForwardFn forward, PipelineOptions opt) {
  return predict_all(std::move(source), as_outputs(std::move(forward)), std::move(opt));
}

std::vector<Result> predict_all(std::unique_ptr<Source> source, ForwardOutputsFn forward, PipelineOptions opt) {
  Pipeline p(std::move(source), std::move(forward), std::move(opt));
  std::vector<Result> out;
  Result r;
  while (p.next(r)) out.push_back(std::move(r));
  return out;
}

}  // namespace y26
