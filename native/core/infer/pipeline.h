// The streaming predictor. Decoder threads read and decode items (in parallel where the source allows), a batcher
// thread puts them back in order, letterboxes and stacks batches, and the caller runs the forward pass and
// postprocess of one batch while the next is prepared. Every hand-off is bounded, so a slow consumer pauses
// decoding and memory stays flat on endless sources (video, camera).
#pragma once
#include <torch/types.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "infer/letterbox.h"
#include "infer/postprocess.h"
#include "infer/source.h"
#include "util/cpu_alloc_cache.h"

namespace y26 {

// The model as the pipeline sees it: (B,3,H,W) float input on the device -> raw output (end2end rows or classic).
using ForwardFn = std::function<torch::Tensor(const torch::Tensor&)>;
// Models with several outputs return them in order: detections first, then (segment) the mask prototypes (B,c,mh,mw).
using ForwardOutputsFn = std::function<std::vector<torch::Tensor>(const torch::Tensor&)>;

struct PipelineOptions {
  int imgsz_h = 640, imgsz_w = 640;
  int stride = 32;
  bool rect = true;            // minimal stride padding when every image in a batch has the same shape
  int batch = 1;
  std::string device = "cpu";  // torch device string ("cpu", "cuda:0")
  bool half = false;           // feed float16
  int queue_batches = 2;       // prepared batches allowed to wait ahead of the forward pass
  int workers = 1;             // decoder threads (image files and encoded bytes decode in parallel)
  bool skip_errors = false;    // unreadable items: false = error items after all good results; true = warn and skip
  bool keep_images = false;    // keep each original image in Result::orig_image (for annotate / save)
  // Run forward and postprocess on a thread of the pipeline, ahead of the caller (a few batches of results wait
  // for next()), so the caller's own work between next() calls overlaps the forward. For forwards that may run on
  // any thread (ONNX Runtime's C API); ignored with on_result, which stays on the caller's thread.
  bool forward_thread = false;
  PostprocessOptions post;
  // Runs on each good result in stream order, on the thread that calls next(), with the frame's original image
  // (tracking: see track/track_results.h). Its time counts as postprocess.
  std::function<void(Result&, const cv::Mat&)> on_result;
  // Runs with the frames of each batch, in stream order, on the thread that calls next(), just before the batch's
  // forward pass: work that needs only the images (tracking: camera-motion estimation) can start here and overlap
  // the forward pass. Each frame of the batch then reaches on_result, in the same order, unless the forward fails.
  std::function<void(const std::vector<Frame>&)> on_batch;
  // Runs on the same thread when a batch fails after on_batch ran (its forward pass, postprocess or an on_result
  // threw), before the error reaches next()'s caller: hooks that keep state across frames (tracking) put back what
  // on_batch and on_result changed for frames whose results are lost. A stream may go on after such an error.
  std::function<void()> on_batch_failed;
};

class Pipeline {
 public:
  Pipeline(std::unique_ptr<Source> source, ForwardFn forward, PipelineOptions opt);
  Pipeline(std::unique_ptr<Source> source, ForwardOutputsFn forward, PipelineOptions opt);
  ~Pipeline();  // cancels and joins the worker
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  // Blocks until the next Result is ready and returns true; false at the end of the stream or after cancel().
  // Results come in source order; unreadable items (error set) come after all good ones unless skip_errors.
  // Throws y26::Error when the forward pass or the source fails; call from one thread at a time.
  bool next(Result& out);
  void cancel();  // thread-safe; wakes a blocked next() and the worker
  bool cancelled() const { return cancel_.load(); }

  std::vector<std::string> warnings() const;  // skipped items (skip_errors)
  int64_t frames_read() const { return issued_.load(); }       // items taken from the source so far
  int decode_window() const { return window_; }                 // decoded items allowed ahead of the batcher
  size_t max_queue_depth() const;                              // high-water mark of the prepared-batch queue

 private:
  struct Prepared {
    torch::Tensor input_u8;               // (B,3,H,W) uint8, pinned: CUDA devices (normalised on the device)
    torch::Tensor input;                  // (B,3,H,W) float32/float16 model input: the CPU
    std::vector<Letterboxed> metas;       // ratio/pad and original shapes (images dropped)
    std::vector<Frame> frames;            // path, frame index, original image when kept
    std::vector<int64_t> indices;
    double preprocess_ms = 0, decode_ms = 0;
  };
  void decoder_loop();
  void batcher_loop();
  bool take_decoded(Frame& f);  // the next item in source order; false at the end or on cancel
  void run_batch(Prepared& p, std::deque<Result>& out);  // run_batch_hooked, then on_batch_failed if it throws
  void run_batch_hooked(Prepared& p, std::deque<Result>& out);
  void forward_loop();
  bool take_prepared(Prepared& p);  // the next prepared batch; false once the batcher is done and the queue empty

  // On the CPU: every batch allocates the same big input (and letterbox) buffers; keeping freed blocks spares the
  // page faults of fresh ones (util/cpu_alloc_cache.h).
  std::optional<CpuAllocCache> alloc_cache_;
  std::unique_ptr<Source> source_;
  ForwardOutputsFn forward_;
  PipelineOptions opt_;
  torch::Device device_;
  std::vector<std::thread> decoders_;
  std::thread batcher_;
  std::thread forwarder_;           // with forward_thread
  std::mutex source_mu_;            // serialises calls into the source
  mutable std::mutex mu_;           // guards everything below
  std::condition_variable cv_;
  std::map<int64_t, Frame> decoded_;   // decoded items by stream position, waiting for the batcher
  int64_t needed_ = 0;                 // next stream position the batcher takes
  int live_decoders_ = 0;
  int window_ = 1;
  std::deque<Prepared> queue_;
  std::deque<Result> ready_;       // results of the batch being handed out (filled by the forward thread when there is one)
  std::exception_ptr forward_error_;
  bool forward_done_ = false;      // the forward thread finished
  std::deque<Result> deferred_;    // error items, handed out after the good ones
  std::vector<std::string> warnings_;
  std::exception_ptr worker_error_;
  bool worker_done_ = false;           // the batcher finished (end of source, error or cancel)
  size_t max_depth_ = 0;
  std::atomic<bool> cancel_{false};
  std::atomic<int64_t> issued_{0};      // items taken from the source
  std::atomic<bool> source_done_{false};
};

// Runs a whole (finite) source and returns every result, error items included: the one-call predict().
std::vector<Result> predict_all(std::unique_ptr<Source> source, ForwardFn forward, PipelineOptions opt);
std::vector<Result> predict_all(std::unique_ptr<Source> source, ForwardOutputsFn forward, PipelineOptions opt);

}  // namespace y26
