// The data loader: persistent worker threads, a bounded prefetch queue, batches collated straight into (pinned when
// the target is CUDA) host tensors, and timing of how long the consumer waited for data.
#pragma once
#include <torch/torch.h>

#include <array>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "data/augment.h"
#include "data/dataset.h"

namespace y26 {

struct LoaderOptions {
  int batch = 16;
  int workers = 2;              // threads preparing batches (at least 1)
  bool shuffle = true;          // a new permutation per epoch, from (seed, epoch)
  uint64_t seed = 0;
  bool augment = true;          // training transforms; false = LetterBox(imgsz, no upscaling) only
  AugmentConfig hyp;            // used when augment is true
  int epochs = 0;               // total epochs; with hyp.close_mosaic > 0, mosaic turns off for the last ones
  bool rect = false;            // rectangular batches as the official validator (implies no shuffle, no augment)
  int stride = 32;              // rect batch shapes are multiples of it
  float pad = 0.5f;             // rect padding, in strides (the validator uses 0.5)
  bool drop_last = false;
  int prefetch = 2;             // batches each worker may have ready ahead of the consumer
  std::string device = "cpu";   // "cpu" or "cuda[:n]": batches are copied there with non_blocking
  bool pin_memory = true;       // pinned host batches when device is CUDA (ignored on CPU)
  // Distributed training (DistributedSampler semantics): every rank draws the same (seed, epoch) order, pads it by
  // wrapping to a multiple of `world` so the ranks step together, and takes positions rank, rank + world, ...
  int rank = 0, world = 1;
};

struct Batch {
  torch::Tensor img;        // (B,3,H,W) uint8 RGB (BGR for images where the `bgr` augmentation fired)
  torch::Tensor cls;        // (N,1) float32
  torch::Tensor bboxes;     // (N,4) float32 normalised xywh
  torch::Tensor batch_idx;  // (N) float32, image index within the batch
  torch::Tensor keypoints;  // (N,K,D) float32, x/y normalised; undefined without pose
  std::vector<torch::Tensor> segments;  // N polygons (P,2) normalised; empty without polygon labels
  std::vector<std::string> im_file;
  std::vector<std::array<int, 2>> ori_shape;      // (h, w) of the original image
  std::vector<std::array<int, 2>> resized_shape;  // (h, w) of the image in the batch (official meaning)
  // (gain_h, gain_w, pad_left, pad_top): input pixel = original pixel * gain + pad (validator's ratio_pad)
  std::vector<std::array<double, 4>> ratio_pad;
  std::vector<int64_t> indices;  // dataset indices
  int64_t epoch = 0, batch_index = 0;
  double wait_ms = 0;            // how long next() waited for this batch
  int64_t size() const { return img.defined() ? img.size(0) : 0; }
};

struct LoaderStats {
  int64_t batches = 0, samples = 0;
  double wait_ms_total = 0, wait_ms_max = 0, wait_ms_last = 0;
  double build_ms_total = 0;  // worker time spent building batches (all workers)
  double mean_wait_ms() const { return batches ? wait_ms_total / batches : 0; }
};

// The training sampler of both loaders, with DistributedSampler semantics: every rank draws the same (seed, epoch)
// permutation of the n samples, pads it by wrapping to a multiple of `world` so the ranks step together, and takes
// positions rank, rank + world, ... One process is rank 0 of 1 (its slice is the whole order).
class EpochShard {
 public:
  // Throws y26::Error naming `who` when rank is outside [0, world) or n is 0.
  EpochShard(int64_t n, int rank, int world, const std::string& who);
  int64_t size() const { return (n_ + world_ - 1) / world_; }  // samples per rank and epoch: ceil(n / world)
  // The epoch order's position of this rank's p-th sample; positions n and up are the padding (they wrap).
  int64_t position(int64_t p) const { return p * world_ + rank_; }
  // The sample at epoch-order position g of `perm` (nullptr: file order).
  size_t sample(int64_t g, const std::vector<size_t>* perm) const {
    const int64_t q = g % n_;
    return perm ? (*perm)[(size_t)q] : (size_t)q;
  }
  // The epoch's shuffled order: a permutation of 0..n-1 from (seed, epoch) alone, so every rank draws the same.
  void permutation(uint64_t seed, int64_t epoch, std::vector<size_t>& perm) const;

 private:
  int64_t n_;
  int rank_, world_;
};

// What the trainer draws its batches from, one epoch after another: the detection DataLoader and the
// ClassifyLoader (data/classify_loader.h) implement it.
class TrainLoader {
 public:
  virtual ~TrainLoader() = default;
  virtual int64_t batches_per_epoch() const = 0;
  // Next batch of the current epoch; false once at the end of each epoch, then the following epoch continues.
  virtual bool next(Batch& out) = 0;
  virtual void set_epoch(int e) = 0;  // restarts at the first batch of epoch e
  virtual LoaderStats stats() const = 0;
  virtual void reset_stats() = 0;
};

// Official rect batch shapes for images of the given (w, h) sizes, in batch order after the aspect-ratio sort:
// `order` receives the sorted dataset indices; one (w, h) per batch, multiples of stride.
std::vector<cv::Size> rect_batch_shapes(const std::vector<cv::Size>& sizes, int batch, int imgsz, int stride, float pad,
                                        std::vector<size_t>* order);

// Segmentation targets from a batch's polygons, as the official loader builds them (masks at 1/mask_ratio of the
// image size, polygons filled with cv::fillPoly). overlap = true: (B, H/r, W/r) int32 where pixel value j + 1 marks
// the j-th instance of that image (instances in batch order); larger instances are drawn first so smaller ones
// stay visible, like the official polygons2masks_overlap (which reorders the labels instead). overlap = false:
// (N, H/r, W/r) uint8 0/1, one mask per instance. Instances without a polygon get an empty mask.
torch::Tensor polygon_masks(const Batch& batch, int mask_ratio = 4, bool overlap = true);

class DataLoader : public TrainLoader {
 public:
  DataLoader(std::shared_ptr<const Dataset> ds, LoaderOptions opt);
  ~DataLoader() override;
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  int64_t batches_per_epoch() const override { return nb_; }
  int64_t samples_per_epoch() const;
  // Samples this rank sees per epoch: ceil(n / world) (n without distributed training).
  int64_t shard_size() const;
  int epoch() const { return current_epoch_; }
  // Next batch of the current epoch; false once at the end of each epoch, after which next() continues with the
  // following epoch (set_epoch is then optional). Throws y26::Error when a worker failed (bad image, ...).
  bool next(Batch& out) override;
  // Restarts at the first batch of epoch e (cheap when e is the epoch about to start: prefetched work is kept).
  void set_epoch(int e) override;
  // Mosaic, mixup and cutmix on/off from the next unconsumed batch (close_mosaic() = set_mosaic(false)).
  void set_mosaic(bool on);
  void close_mosaic() { set_mosaic(false); }
  bool mosaic_enabled(int epoch) const;
  LoaderStats stats() const override;
  void reset_stats() override;
  const std::vector<cv::Size>& rect_shapes() const { return rect_shapes_; }

 private:
  struct Ready { int64_t job; Batch batch; std::string error; };
  void worker_main(int w);
  Batch build(int64_t global_job, bool mosaic, TrainAugmenter* aug);
  void restart(int64_t global_job);  // under lock

  std::shared_ptr<const Dataset> ds_;
  LoaderOptions opt_;
  int64_t nb_ = 0;
  EpochShard shard_{1, 0, 1, "DataLoader"};  // set from the dataset size and rank in the constructor
  std::vector<size_t> rect_order_;
  std::vector<cv::Size> rect_shapes_;
  bool cuda_ = false;

  mutable std::mutex mu_;
  std::condition_variable work_cv_, ready_cv_;
  bool stop_ = false;
  int64_t generation_ = 0;
  int64_t gen_start_ = 0;       // global job index of the generation's first job
  bool gen_mosaic_ = true;      // mosaic flag the current generation was started with
  int64_t next_local_ = 0;      // consumer's next job, relative to gen_start_
  std::vector<std::deque<Ready>> ready_;  // per worker, in job order
  int current_epoch_ = 0;
  bool end_reported_ = false;
  LoaderStats stats_;
  std::vector<std::thread> threads_;
};

}  // namespace y26
