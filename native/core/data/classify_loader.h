// Training batches of a classification folder data set (official ClassificationDataset with augment=True).
// Augmentation, the torchvision steps of the official classify_augmentations in its order:
//   RandomResizedCrop(imgsz, scale=(1 - hyp scale, 1), ratio=(3/4, 4/3), bilinear), horizontal flip (fliplr),
//   vertical flip (flipud), then either the auto_augment policy (RandAugment / AutoAugment / AugMix, see
//   data/auto_augment.h) or, without one, ColorJitter(brightness=hsv_v, contrast=hsv_v, saturation=hsv_s,
//   hue=hsv_h) (upstream disables ColorJitter whenever a policy is set, so the hsv_* values then do nothing), and
//   last RandomErasing(p=erasing) with value 0 after the official ToTensor + Normalize(mean 0, std 1), i.e. black.
// The epoch order and the shard of each rank follow EpochShard (data/loader.h), as the detection loader; each
// sample's randomness comes from (seed, epoch, its position in the epoch order), so a run is reproducible for any
// worker count, and a sample is augmented the same whichever rank draws it.
#pragma once
#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "data/auto_augment.h"
#include "data/loader.h"
#include "eval/classify_val.h"

namespace y26 {

struct ClassifyAugment {
  double scale = 0.5;   // crop area fraction drawn from (1 - scale, 1), as the official (1.0 - args.scale, 1.0)
  double fliplr = 0.5, flipud = 0.0;
  double hsv_h = 0.015, hsv_s = 0.7, hsv_v = 0.4;  // ColorJitter hue, saturation, brightness and contrast
  AugPolicy auto_augment = AugPolicy::None;        // replaces ColorJitter when set
  double erasing = 0.0;                            // RandomErasing probability
};

// The official classify normalisation is mean 0, std 1 on ToTensor's [0, 1]: RandomErasing's value 0 is pixel 0.
constexpr uint8_t kClassifyEraseValue = 0;

// One training sample: decoded BGR image -> imgsz x imgsz BGR uint8 after the augmentation above. rng_seed fixes
// every random draw.
cv::Mat classify_train_transform(const cv::Mat& bgr, int imgsz, const ClassifyAugment& aug, uint64_t rng_seed);

class ClassifyLoader : public TrainLoader {
 public:
  // batch: this rank's batch (the global batch / world); rank of world: the shard this process trains on.
  ClassifyLoader(ClassifySplit split, int imgsz, int batch, int workers, uint64_t seed, ClassifyAugment aug,
                 int rank = 0, int world = 1);
  int64_t batches_per_epoch() const override { return nb_; }
  size_t size() const { return split_.files.size(); }
  // Samples this rank sees per epoch: ceil(n / world).
  int64_t shard_size() const { return shard_.size(); }
  // Next shuffled batch of this rank's shard of the current epoch: img (B,3,H,W) uint8 RGB, cls (B,1) float32 class
  // index, batch_idx 0..B-1. Returns false once at the end of each epoch, then continues with the next epoch.
  bool next(Batch& out) override;
  void set_epoch(int e) override;
  LoaderStats stats() const override { return stats_; }
  void reset_stats() override { stats_ = LoaderStats(); }

 private:
  ClassifySplit split_;
  int imgsz_, batch_, workers_;
  uint64_t seed_;
  ClassifyAugment aug_;
  EpochShard shard_;
  int64_t nb_ = 0, pos_ = 0;  // pos_: the next of this rank's shard_.size() samples
  int epoch_ = 0;
  std::vector<size_t> order_;  // the epoch's permutation, the same on every rank
  LoaderStats stats_;
};

}  // namespace y26
